/* A minimal FMI 3.0 co-simulation slave around one model (twinmesh's own FMUs).
 *
 * The same model sources as the FMI 2.0 build (fmi2_slave.h documents the
 * model's side: MODEL_GUID, N_REALS, model_defaults, model_step,
 * model_outputs, slave_log with MODEL_ERROR); only the API around it differs.
 *
 * The FMI 3.0 standard (Modelica Association, 2022) §2.3 defines the common
 * API and §4 co-simulation. The life cycle used here (§4.2, state machine of
 * Co-Simulation): fmi3InstantiateCoSimulation -> Instantiated;
 * fmi3EnterInitializationMode(startTime) -> Initialization Mode;
 * fmi3ExitInitializationMode -> Step Mode (we declare no event mode:
 * hasEventMode is absent, so the importer must not ask for it and never calls
 * fmi3EnterStepMode); then fmi3DoStep(t, h) from communication point to
 * communication point, inputs held over the step. Float64 variables only,
 * value reference = index; N_REALS is the independent variable ``time``. Every other function of the API is exported (an
 * importer may bind them all) and answers fmi3Error with a message.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fmi3Functions.h"

#define MODEL_ERROR fmi3Error

typedef struct {
    double r[N_REALS];
    double time;
    int initialized;
    int failed;
    fmi3InstanceEnvironment env;
    fmi3LogMessageCallback logger;
    char name[128];
} Slave;

static void slave_log(Slave *s, fmi3Status status, const char *category, const char *message) {
    if (s->logger) s->logger(s->env, status, category, message);
}

static void model_defaults(double *r);
static int model_step(Slave *s, double h);
static void model_outputs(Slave *s);

static fmi3Status unsupported(fmi3Instance c, const char *what) {
    if (c) slave_log((Slave *)c, fmi3Error, "logStatusError", what);
    return fmi3Error;
}

const char *fmi3GetVersion(void) { return fmi3Version; }

fmi3Status fmi3SetDebugLogging(fmi3Instance c, fmi3Boolean on, size_t n, const fmi3String cats[]) {
    (void)c; (void)on; (void)n; (void)cats;
    return fmi3OK;
}

fmi3Instance fmi3InstantiateCoSimulation(
    fmi3String name, fmi3String token, fmi3String resources, fmi3Boolean visible,
    fmi3Boolean loggingOn, fmi3Boolean eventModeUsed, fmi3Boolean earlyReturnAllowed,
    const fmi3ValueReference required[], size_t nRequired, fmi3InstanceEnvironment env,
    fmi3LogMessageCallback logger, fmi3IntermediateUpdateCallback intermediate) {
    (void)resources; (void)visible; (void)loggingOn; (void)eventModeUsed;
    (void)earlyReturnAllowed; (void)required; (void)nRequired; (void)intermediate;
    if (!token || strcmp(token, MODEL_GUID) != 0) {
        if (logger) logger(env, fmi3Error, "logStatusError", "instantiationToken does not match");
        return NULL;
    }
    Slave *s = (Slave *)calloc(1, sizeof(Slave));
    if (!s) return NULL;
    s->env = env;
    s->logger = logger;
    snprintf(s->name, sizeof s->name, "%s", name ? name : MODEL_IDENTIFIER_STR);
    model_defaults(s->r);
    return s;
}

fmi3Instance fmi3InstantiateModelExchange(fmi3String name, fmi3String token, fmi3String resources,
                                          fmi3Boolean visible, fmi3Boolean loggingOn,
                                          fmi3InstanceEnvironment env,
                                          fmi3LogMessageCallback logger) {
    (void)name; (void)token; (void)resources; (void)visible; (void)loggingOn;
    if (logger) logger(env, fmi3Error, "logStatusError", "co-simulation only");
    return NULL;
}

fmi3Instance fmi3InstantiateScheduledExecution(
    fmi3String name, fmi3String token, fmi3String resources, fmi3Boolean visible,
    fmi3Boolean loggingOn, fmi3InstanceEnvironment env, fmi3LogMessageCallback logger,
    fmi3ClockUpdateCallback clockUpdate, fmi3LockPreemptionCallback lock,
    fmi3UnlockPreemptionCallback unlock) {
    (void)name; (void)token; (void)resources; (void)visible; (void)loggingOn;
    (void)clockUpdate; (void)lock; (void)unlock;
    if (logger) logger(env, fmi3Error, "logStatusError", "co-simulation only");
    return NULL;
}

void fmi3FreeInstance(fmi3Instance c) { free(c); }

fmi3Status fmi3EnterInitializationMode(fmi3Instance c, fmi3Boolean tolDef, fmi3Float64 tol,
                                       fmi3Float64 start, fmi3Boolean stopDef, fmi3Float64 stop) {
    (void)tolDef; (void)tol; (void)stopDef; (void)stop;
    ((Slave *)c)->time = start;
    return fmi3OK;
}

fmi3Status fmi3ExitInitializationMode(fmi3Instance c) {
    Slave *s = (Slave *)c;
    model_outputs(s); /* states take their start parameters here */
    s->initialized = 1;
    return fmi3OK;
}

fmi3Status fmi3EnterEventMode(fmi3Instance c) { return unsupported(c, "no event mode"); }
fmi3Status fmi3EnterStepMode(fmi3Instance c) {
    return unsupported(c, "no event mode: the FMU is in Step Mode after initialization");
}
fmi3Status fmi3Terminate(fmi3Instance c) { (void)c; return fmi3OK; }

fmi3Status fmi3Reset(fmi3Instance c) {
    Slave *s = (Slave *)c;
    model_defaults(s->r);
    s->time = 0.0;
    s->initialized = 0;
    s->failed = 0;
    return fmi3OK;
}

fmi3Status fmi3GetFloat64(fmi3Instance c, const fmi3ValueReference vr[], size_t n,
                          fmi3Float64 value[], size_t nValues) {
    Slave *s = (Slave *)c;
    if (nValues != n) return unsupported(c, "arrays are not supported: nValues != nValueReferences");
    model_outputs(s);
    for (size_t i = 0; i < n; i++) {
        if (vr[i] == N_REALS) { value[i] = s->time; continue; } /* the independent variable */
        if (vr[i] >= N_REALS) return unsupported(c, "no such value reference");
        value[i] = s->r[vr[i]];
    }
    return fmi3OK;
}

fmi3Status fmi3SetFloat64(fmi3Instance c, const fmi3ValueReference vr[], size_t n,
                          const fmi3Float64 value[], size_t nValues) {
    Slave *s = (Slave *)c;
    if (nValues != n) return unsupported(c, "arrays are not supported: nValues != nValueReferences");
    for (size_t i = 0; i < n; i++) {
        if (vr[i] >= N_REALS) return unsupported(c, "no such value reference");
        s->r[vr[i]] = value[i];
    }
    return fmi3OK;
}

fmi3Status fmi3DoStep(fmi3Instance c, fmi3Float64 t, fmi3Float64 h, fmi3Boolean noSetPrior,
                      fmi3Boolean *eventNeeded, fmi3Boolean *terminate, fmi3Boolean *earlyReturn,
                      fmi3Float64 *lastTime) {
    (void)noSetPrior;
    Slave *s = (Slave *)c;
    *eventNeeded = fmi3False;
    *terminate = fmi3False;
    *earlyReturn = fmi3False;
    *lastTime = s->time;
    if (!s->initialized || s->failed) return unsupported(c, "doStep before initialization or after an error");
    if (!(h > 0.0) || fabs(t - s->time) > 1e-9 * (1.0 + fabs(t))) {
        slave_log(s, fmi3Error, "logStatusError", "doStep: the communication point is not the FMU's time");
        return fmi3Error;
    }
    if (model_step(s, h) != 0) {
        s->failed = 1;
        return fmi3Error;
    }
    s->time = t + h;
    *lastTime = s->time;
    return fmi3OK;
}

/* Everything else: no variables of these types, no FMU state, no derivatives,
 * no clocks, no model exchange. Each answers fmi3Error (an empty get/set is OK). */
#define NO_SUCH_GET(T, F) \
    fmi3Status F(fmi3Instance c, const fmi3ValueReference vr[], size_t n, T v[], size_t nv) { \
        (void)vr; (void)v; (void)nv; return n ? unsupported(c, #F ": no such variable") : fmi3OK; }
#define NO_SUCH_SET(T, F) \
    fmi3Status F(fmi3Instance c, const fmi3ValueReference vr[], size_t n, const T v[], size_t nv) { \
        (void)vr; (void)v; (void)nv; return n ? unsupported(c, #F ": no such variable") : fmi3OK; }
NO_SUCH_GET(fmi3Float32, fmi3GetFloat32)
NO_SUCH_GET(fmi3Int8, fmi3GetInt8)
NO_SUCH_GET(fmi3UInt8, fmi3GetUInt8)
NO_SUCH_GET(fmi3Int16, fmi3GetInt16)
NO_SUCH_GET(fmi3UInt16, fmi3GetUInt16)
NO_SUCH_GET(fmi3Int32, fmi3GetInt32)
NO_SUCH_GET(fmi3UInt32, fmi3GetUInt32)
NO_SUCH_GET(fmi3Int64, fmi3GetInt64)
NO_SUCH_GET(fmi3UInt64, fmi3GetUInt64)
NO_SUCH_GET(fmi3Boolean, fmi3GetBoolean)
NO_SUCH_GET(fmi3String, fmi3GetString)
NO_SUCH_SET(fmi3Float32, fmi3SetFloat32)
NO_SUCH_SET(fmi3Int8, fmi3SetInt8)
NO_SUCH_SET(fmi3UInt8, fmi3SetUInt8)
NO_SUCH_SET(fmi3Int16, fmi3SetInt16)
NO_SUCH_SET(fmi3UInt16, fmi3SetUInt16)
NO_SUCH_SET(fmi3Int32, fmi3SetInt32)
NO_SUCH_SET(fmi3UInt32, fmi3SetUInt32)
NO_SUCH_SET(fmi3Int64, fmi3SetInt64)
NO_SUCH_SET(fmi3UInt64, fmi3SetUInt64)
NO_SUCH_SET(fmi3Boolean, fmi3SetBoolean)
NO_SUCH_SET(fmi3String, fmi3SetString)

fmi3Status fmi3GetBinary(fmi3Instance c, const fmi3ValueReference vr[], size_t n, size_t sizes[],
                         fmi3Binary v[], size_t nv) {
    (void)vr; (void)sizes; (void)v; (void)nv; return n ? unsupported(c, "no Binary variables") : fmi3OK; }
fmi3Status fmi3SetBinary(fmi3Instance c, const fmi3ValueReference vr[], size_t n,
                         const size_t sizes[], const fmi3Binary v[], size_t nv) {
    (void)vr; (void)sizes; (void)v; (void)nv; return n ? unsupported(c, "no Binary variables") : fmi3OK; }
fmi3Status fmi3GetClock(fmi3Instance c, const fmi3ValueReference vr[], size_t n, fmi3Clock v[]) {
    (void)vr; (void)v; return n ? unsupported(c, "no clocks") : fmi3OK; }
fmi3Status fmi3SetClock(fmi3Instance c, const fmi3ValueReference vr[], size_t n, const fmi3Clock v[]) {
    (void)vr; (void)v; return n ? unsupported(c, "no clocks") : fmi3OK; }
fmi3Status fmi3GetNumberOfVariableDependencies(fmi3Instance c, fmi3ValueReference vr, size_t *n) {
    (void)vr; (void)n; return unsupported(c, "dependencies are in modelDescription.xml"); }
fmi3Status fmi3GetVariableDependencies(fmi3Instance c, fmi3ValueReference dep, size_t ed[],
                                       fmi3ValueReference ind[], size_t ei[],
                                       fmi3DependencyKind kinds[], size_t n) {
    (void)dep; (void)ed; (void)ind; (void)ei; (void)kinds; (void)n;
    return unsupported(c, "dependencies are in modelDescription.xml"); }
fmi3Status fmi3GetFMUState(fmi3Instance c, fmi3FMUState *st) { (void)st; return unsupported(c, "no FMU state"); }
fmi3Status fmi3SetFMUState(fmi3Instance c, fmi3FMUState st) { (void)st; return unsupported(c, "no FMU state"); }
fmi3Status fmi3FreeFMUState(fmi3Instance c, fmi3FMUState *st) { (void)st; return unsupported(c, "no FMU state"); }
fmi3Status fmi3SerializedFMUStateSize(fmi3Instance c, fmi3FMUState st, size_t *n) {
    (void)st; (void)n; return unsupported(c, "no FMU state"); }
fmi3Status fmi3SerializeFMUState(fmi3Instance c, fmi3FMUState st, fmi3Byte b[], size_t n) {
    (void)st; (void)b; (void)n; return unsupported(c, "no FMU state"); }
fmi3Status fmi3DeserializeFMUState(fmi3Instance c, const fmi3Byte b[], size_t n, fmi3FMUState *st) {
    (void)b; (void)n; (void)st; return unsupported(c, "no FMU state"); }
#define NO_DERIVATIVE(F) \
    fmi3Status F(fmi3Instance c, const fmi3ValueReference u[], size_t nu, const fmi3ValueReference k[], \
                 size_t nk, const fmi3Float64 seed[], size_t ns, fmi3Float64 out[], size_t no) { \
        (void)u; (void)nu; (void)k; (void)nk; (void)seed; (void)ns; (void)out; (void)no; \
        return unsupported(c, #F ": not provided"); }
NO_DERIVATIVE(fmi3GetDirectionalDerivative)
NO_DERIVATIVE(fmi3GetAdjointDerivative)
fmi3Status fmi3EnterConfigurationMode(fmi3Instance c) { return unsupported(c, "no structural parameters"); }
fmi3Status fmi3ExitConfigurationMode(fmi3Instance c) { return unsupported(c, "no structural parameters"); }
fmi3Status fmi3GetIntervalDecimal(fmi3Instance c, const fmi3ValueReference vr[], size_t n,
                                  fmi3Float64 iv[], fmi3IntervalQualifier q[]) {
    (void)vr; (void)n; (void)iv; (void)q; return unsupported(c, "no clocks"); }
fmi3Status fmi3GetIntervalFraction(fmi3Instance c, const fmi3ValueReference vr[], size_t n,
                                   fmi3UInt64 cnt[], fmi3UInt64 res[], fmi3IntervalQualifier q[]) {
    (void)vr; (void)n; (void)cnt; (void)res; (void)q; return unsupported(c, "no clocks"); }
fmi3Status fmi3GetShiftDecimal(fmi3Instance c, const fmi3ValueReference vr[], size_t n, fmi3Float64 sh[]) {
    (void)vr; (void)n; (void)sh; return unsupported(c, "no clocks"); }
fmi3Status fmi3GetShiftFraction(fmi3Instance c, const fmi3ValueReference vr[], size_t n,
                                fmi3UInt64 cnt[], fmi3UInt64 res[]) {
    (void)vr; (void)n; (void)cnt; (void)res; return unsupported(c, "no clocks"); }
fmi3Status fmi3SetIntervalDecimal(fmi3Instance c, const fmi3ValueReference vr[], size_t n,
                                  const fmi3Float64 iv[]) {
    (void)vr; (void)n; (void)iv; return unsupported(c, "no clocks"); }
fmi3Status fmi3SetIntervalFraction(fmi3Instance c, const fmi3ValueReference vr[], size_t n,
                                   const fmi3UInt64 cnt[], const fmi3UInt64 res[]) {
    (void)vr; (void)n; (void)cnt; (void)res; return unsupported(c, "no clocks"); }
fmi3Status fmi3SetShiftDecimal(fmi3Instance c, const fmi3ValueReference vr[], size_t n,
                               const fmi3Float64 sh[]) {
    (void)vr; (void)n; (void)sh; return unsupported(c, "no clocks"); }
fmi3Status fmi3SetShiftFraction(fmi3Instance c, const fmi3ValueReference vr[], size_t n,
                                const fmi3UInt64 cnt[], const fmi3UInt64 res[]) {
    (void)vr; (void)n; (void)cnt; (void)res; return unsupported(c, "no clocks"); }
fmi3Status fmi3EvaluateDiscreteStates(fmi3Instance c) { return unsupported(c, "no event mode"); }
fmi3Status fmi3UpdateDiscreteStates(fmi3Instance c, fmi3Boolean *a, fmi3Boolean *b, fmi3Boolean *d,
                                    fmi3Boolean *e, fmi3Boolean *f, fmi3Float64 *g) {
    (void)a; (void)b; (void)d; (void)e; (void)f; (void)g; return unsupported(c, "no event mode"); }
fmi3Status fmi3EnterContinuousTimeMode(fmi3Instance c) { return unsupported(c, "co-simulation only"); }
fmi3Status fmi3CompletedIntegratorStep(fmi3Instance c, fmi3Boolean ns, fmi3Boolean *ev, fmi3Boolean *term) {
    (void)ns; (void)ev; (void)term; return unsupported(c, "co-simulation only"); }
fmi3Status fmi3SetTime(fmi3Instance c, fmi3Float64 t) { (void)t; return unsupported(c, "co-simulation only"); }
fmi3Status fmi3SetContinuousStates(fmi3Instance c, const fmi3Float64 x[], size_t n) {
    (void)x; (void)n; return unsupported(c, "co-simulation only"); }
fmi3Status fmi3GetContinuousStateDerivatives(fmi3Instance c, fmi3Float64 dx[], size_t n) {
    (void)dx; (void)n; return unsupported(c, "co-simulation only"); }
fmi3Status fmi3GetEventIndicators(fmi3Instance c, fmi3Float64 z[], size_t n) {
    (void)z; (void)n; return unsupported(c, "co-simulation only"); }
fmi3Status fmi3GetContinuousStates(fmi3Instance c, fmi3Float64 x[], size_t n) {
    (void)x; (void)n; return unsupported(c, "co-simulation only"); }
fmi3Status fmi3GetNominalsOfContinuousStates(fmi3Instance c, fmi3Float64 x[], size_t n) {
    (void)x; (void)n; return unsupported(c, "co-simulation only"); }
fmi3Status fmi3GetNumberOfEventIndicators(fmi3Instance c, size_t *n) {
    (void)n; return unsupported(c, "co-simulation only"); }
fmi3Status fmi3GetNumberOfContinuousStates(fmi3Instance c, size_t *n) {
    (void)n; return unsupported(c, "co-simulation only"); }
fmi3Status fmi3GetOutputDerivatives(fmi3Instance c, const fmi3ValueReference vr[], size_t n,
                                    const fmi3Int32 orders[], fmi3Float64 v[], size_t nv) {
    (void)vr; (void)n; (void)orders; (void)v; (void)nv;
    return unsupported(c, "output derivatives are not provided"); }
fmi3Status fmi3ActivateModelPartition(fmi3Instance c, fmi3ValueReference clock, fmi3Float64 t) {
    (void)clock; (void)t; return unsupported(c, "co-simulation only"); }
