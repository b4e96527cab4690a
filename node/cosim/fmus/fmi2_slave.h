/* A minimal FMI 2.0 co-simulation slave around one model (twinmesh's own FMUs).
 *
 * Each model file defines MODEL_IDENTIFIER(_STR) and includes its generated
 * <id>_vars.h, which defines the following and then includes this header (or
 * fmi3_slave.h for an FMI 3.0 build: the model source is the same):
 *   MODEL_GUID                     (as in its modelDescription.xml)
 *   N_REALS                        number of Real variables; value reference = index
 *   static void model_defaults(double *r)         start values (generated header)
 *   static int  model_step(Slave *s, double h)    advance states over [t, t+h]; 0 ok, else error
 *   static void model_outputs(Slave *s)           outputs from states and current inputs
 * and it may call slave_log(s, MODEL_ERROR, category, message).
 *
 * The FMI 2.0 standard (Modelica Association, 2014) §2.1 defines the common
 * API and §4 the co-simulation part used here: instantiate, set parameters,
 * enter/exit initialization mode, then doStep(t, h) from communication point
 * to communication point; inputs set before doStep are held over the step.
 * Outputs with direct feedthrough are recomputed on every fmi2GetReal, so a
 * master may set inputs and read consistent outputs at one communication point.
 * Capabilities not offered (FMU state, directional derivatives, input
 * derivatives) are declared false in modelDescription.xml and answer fmi2Error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fmi2Functions.h"

#define MODEL_ERROR fmi2Error

typedef struct {
    double r[N_REALS];
    double time;
    int initialized;
    int failed;
    fmi2CallbackFunctions cb;
    char name[128];
} Slave;

static void slave_log(Slave *s, fmi2Status status, const char *category, const char *message) {
    if (s->cb.logger) s->cb.logger(s->cb.componentEnvironment, s->name, status, category, "%s", message);
}

static void model_defaults(double *r);
static int model_step(Slave *s, double h);
static void model_outputs(Slave *s);

const char *fmi2GetTypesPlatform(void) { return fmi2TypesPlatform; }
const char *fmi2GetVersion(void) { return fmi2Version; }

fmi2Status fmi2SetDebugLogging(fmi2Component c, fmi2Boolean on, size_t n, const fmi2String cats[]) {
    (void)c; (void)on; (void)n; (void)cats;
    return fmi2OK;
}

fmi2Component fmi2Instantiate(fmi2String name, fmi2Type type, fmi2String guid, fmi2String resources,
                              const fmi2CallbackFunctions *cb, fmi2Boolean visible, fmi2Boolean loggingOn) {
    (void)resources; (void)visible; (void)loggingOn;
    if (type != fmi2CoSimulation) return NULL;
    if (!guid || strcmp(guid, MODEL_GUID) != 0) return NULL;
    Slave *s = (Slave *)calloc(1, sizeof(Slave));
    if (!s) return NULL;
    if (cb) s->cb = *cb;
    snprintf(s->name, sizeof s->name, "%s", name ? name : MODEL_IDENTIFIER_STR);
    model_defaults(s->r);
    return s;
}

void fmi2FreeInstance(fmi2Component c) { free(c); }

fmi2Status fmi2SetupExperiment(fmi2Component c, fmi2Boolean tolDef, fmi2Real tol, fmi2Real start,
                               fmi2Boolean stopDef, fmi2Real stop) {
    (void)tolDef; (void)tol; (void)stopDef; (void)stop;
    ((Slave *)c)->time = start;
    return fmi2OK;
}

fmi2Status fmi2EnterInitializationMode(fmi2Component c) { (void)c; return fmi2OK; }

fmi2Status fmi2ExitInitializationMode(fmi2Component c) {
    Slave *s = (Slave *)c;
    model_outputs(s); /* states take their start parameters here */
    s->initialized = 1;
    return fmi2OK;
}

fmi2Status fmi2Terminate(fmi2Component c) { (void)c; return fmi2OK; }

fmi2Status fmi2Reset(fmi2Component c) {
    Slave *s = (Slave *)c;
    model_defaults(s->r);
    s->time = 0.0;
    s->initialized = 0;
    s->failed = 0;
    return fmi2OK;
}

fmi2Status fmi2GetReal(fmi2Component c, const fmi2ValueReference vr[], size_t n, fmi2Real value[]) {
    Slave *s = (Slave *)c;
    model_outputs(s);
    for (size_t i = 0; i < n; i++) {
        if (vr[i] >= N_REALS) return fmi2Error;
        value[i] = s->r[vr[i]];
    }
    return fmi2OK;
}

fmi2Status fmi2SetReal(fmi2Component c, const fmi2ValueReference vr[], size_t n, const fmi2Real value[]) {
    Slave *s = (Slave *)c;
    for (size_t i = 0; i < n; i++) {
        if (vr[i] >= N_REALS) return fmi2Error;
        s->r[vr[i]] = value[i];
    }
    return fmi2OK;
}

#define NO_SUCH_VARIABLE(T, F) \
    fmi2Status F(fmi2Component c, const fmi2ValueReference vr[], size_t n, T value[]) { \
        (void)c; (void)vr; (void)value; return n ? fmi2Error : fmi2OK; }
NO_SUCH_VARIABLE(fmi2Integer, fmi2GetInteger)
NO_SUCH_VARIABLE(fmi2Boolean, fmi2GetBoolean)
NO_SUCH_VARIABLE(fmi2String, fmi2GetString)
#define NO_SUCH_VARIABLE_SET(T, F) \
    fmi2Status F(fmi2Component c, const fmi2ValueReference vr[], size_t n, const T value[]) { \
        (void)c; (void)vr; (void)value; return n ? fmi2Error : fmi2OK; }
NO_SUCH_VARIABLE_SET(fmi2Integer, fmi2SetInteger)
NO_SUCH_VARIABLE_SET(fmi2Boolean, fmi2SetBoolean)
NO_SUCH_VARIABLE_SET(fmi2String, fmi2SetString)

fmi2Status fmi2GetFMUstate(fmi2Component c, fmi2FMUstate *st) { (void)c; (void)st; return fmi2Error; }
fmi2Status fmi2SetFMUstate(fmi2Component c, fmi2FMUstate st) { (void)c; (void)st; return fmi2Error; }
fmi2Status fmi2FreeFMUstate(fmi2Component c, fmi2FMUstate *st) { (void)c; (void)st; return fmi2Error; }
fmi2Status fmi2SerializedFMUstateSize(fmi2Component c, fmi2FMUstate st, size_t *n) {
    (void)c; (void)st; (void)n; return fmi2Error; }
fmi2Status fmi2SerializeFMUstate(fmi2Component c, fmi2FMUstate st, fmi2Byte b[], size_t n) {
    (void)c; (void)st; (void)b; (void)n; return fmi2Error; }
fmi2Status fmi2DeSerializeFMUstate(fmi2Component c, const fmi2Byte b[], size_t n, fmi2FMUstate *st) {
    (void)c; (void)b; (void)n; (void)st; return fmi2Error; }
fmi2Status fmi2GetDirectionalDerivative(fmi2Component c, const fmi2ValueReference u[], size_t nu,
                                        const fmi2ValueReference z[], size_t nz,
                                        const fmi2Real dv[], fmi2Real dz[]) {
    (void)c; (void)u; (void)nu; (void)z; (void)nz; (void)dv; (void)dz; return fmi2Error; }
fmi2Status fmi2SetRealInputDerivatives(fmi2Component c, const fmi2ValueReference vr[], size_t n,
                                       const fmi2Integer order[], const fmi2Real value[]) {
    (void)c; (void)vr; (void)n; (void)order; (void)value; return fmi2Error; }
fmi2Status fmi2GetRealOutputDerivatives(fmi2Component c, const fmi2ValueReference vr[], size_t n,
                                        const fmi2Integer order[], fmi2Real value[]) {
    (void)c; (void)vr; (void)n; (void)order; (void)value; return fmi2Error; }

fmi2Status fmi2DoStep(fmi2Component c, fmi2Real t, fmi2Real h, fmi2Boolean noSetPrior) {
    (void)noSetPrior;
    Slave *s = (Slave *)c;
    if (!s->initialized || s->failed) return fmi2Error;
    if (!(h > 0.0) || fabs(t - s->time) > 1e-9 * (1.0 + fabs(t))) {
        slave_log(s, fmi2Error, "logStatusError", "doStep: the communication point is not the FMU's time");
        return fmi2Error;
    }
    if (model_step(s, h) != 0) {
        s->failed = 1;
        return fmi2Error;
    }
    s->time = t + h;
    return fmi2OK;
}

fmi2Status fmi2CancelStep(fmi2Component c) { (void)c; return fmi2Error; }
fmi2Status fmi2GetStatus(fmi2Component c, const fmi2StatusKind k, fmi2Status *v) {
    (void)c; (void)k; (void)v; return fmi2Discard; }
fmi2Status fmi2GetRealStatus(fmi2Component c, const fmi2StatusKind k, fmi2Real *v) {
    Slave *s = (Slave *)c;
    if (k == fmi2LastSuccessfulTime) { *v = s->time; return fmi2OK; }
    return fmi2Discard;
}
fmi2Status fmi2GetIntegerStatus(fmi2Component c, const fmi2StatusKind k, fmi2Integer *v) {
    (void)c; (void)k; (void)v; return fmi2Discard; }
fmi2Status fmi2GetBooleanStatus(fmi2Component c, const fmi2StatusKind k, fmi2Boolean *v) {
    (void)c; (void)k; (void)v; return fmi2Discard; }
fmi2Status fmi2GetStringStatus(fmi2Component c, const fmi2StatusKind k, fmi2String *v) {
    (void)c; (void)k; (void)v; return fmi2Discard; }
