/* Induction motor, thermal side: one lumped first-order winding body,
 *
 *     C dT/dt = P_loss - (T - T_ambient) / R_th,   tau = R_th C,
 *     T_ss = T_ambient + gain * rise_rated * (k + (1 - k) (I / I_rated)^2),
 *
 * the synthetic plant's model (plant-adapters/synthetic/_physics.py): copper
 * losses go with I^2, core and friction losses (share k) do not; ``gain`` =
 * 1 / (1 - cooling loss) scales R_th and tau. doStep uses the exact solution
 * for inputs held over the step, T' = T_ss + (T - T_ss) exp(-h / (gain tau)),
 * so any step size is stable and the step response is exact.
 *
 * The winding temperature is a state: it depends on no input at the same
 * instant (ModelStructure: dependencies=""), which is what breaks algebraic
 * loops through this FMU.
 */
#define MODEL_IDENTIFIER motor_thermal
#define MODEL_IDENTIFIER_STR "motor_thermal"
#include "motor_thermal_vars.h"

static void model_outputs(Slave *s) {
    /* At the start the state is the initial temperature parameter. */
    if (!s->initialized) s->r[VR_windingTemperature] = s->r[VR_T_start];
}

static int model_step(Slave *s, double h) {
    double *r = s->r;
    double i = r[VR_current], amb = r[VR_ambient], gain = r[VR_cooling_gain];
    if (!isfinite(i) || i < 0.0 || !isfinite(amb) || !(gain >= 1.0) || !(r[VR_tau] > 0.0)) {
        char msg[200];
        snprintf(msg, sizeof msg, "inputs outside the model: current %g A, ambient %g degC,"
                 " cooling gain %g, tau %g s", i, amb, gain, r[VR_tau]);
        slave_log(s, MODEL_ERROR, "logStatusError", msg);
        return 1;
    }
    double ratio = i / r[VR_rated_current];
    double k = r[VR_constant_loss_share];
    double target = amb + gain * r[VR_rated_rise] * (k + (1.0 - k) * ratio * ratio);
    double T = r[VR_windingTemperature];
    r[VR_windingTemperature] = target + (T - target) * exp(-h / (r[VR_tau] * gain));
    return 0;
}
