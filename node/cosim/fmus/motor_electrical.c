/* Induction motor, electrical side: speed, phase current and shaft torque from
 * load and supply frequency (quasi-static: the electrical time constants of a
 * 15 kW motor are milliseconds, far below any step this FMU is stepped with).
 *
 * Agrees with the synthetic plant (plant-adapters/synthetic/_physics.py,
 * motor_step): the magnetising current is in quadrature with the active
 * current, which grows in proportion to load (Chapman, Electric Machinery
 * Fundamentals, 5th ed., ch. 6); slip grows linearly with load in the normal
 * operating region; synchronous speed is 120 f / p. Torque is the load share of
 * rated torque P_rated / omega_rated.
 *
 * All outputs have direct feedthrough from the inputs (ModelStructure lists
 * them), and there is no state. A load outside [0, max_load] is outside the
 * model's validity: doStep answers Error and says why.
 */
#define MODEL_IDENTIFIER motor_electrical
#define MODEL_IDENTIFIER_STR "motor_electrical"
#include "motor_electrical_vars.h"

static void model_outputs(Slave *s) {
    double *r = s->r;
    double f = r[VR_frequency], load = r[VR_load];
    double f_rated = r[VR_rated_frequency];
    double sync = 120.0 * f / r[VR_poles];
    double i_m = r[VR_magnetising_share] * r[VR_rated_current];
    double i_a = sqrt(r[VR_rated_current] * r[VR_rated_current] - i_m * i_m) * load / 100.0;
    double sync_rated = 120.0 * f_rated / r[VR_poles];
    double omega_rated = 2.0 * M_PI * sync_rated * (1.0 - r[VR_rated_slip]) / 60.0;
    /* A drive below 1 Hz has not started the motor: no speed, no current. */
    int running = f >= 1.0;
    r[VR_speed] = running ? sync * (1.0 - r[VR_rated_slip] * load / 100.0) : 0.0;
    r[VR_current] = running ? hypot(i_m, i_a) : 0.0;
    r[VR_torque] = running ? r[VR_rated_power] / omega_rated * load / 100.0 : 0.0;
}

static int model_step(Slave *s, double h) {
    (void)h;
    double load = s->r[VR_load], f = s->r[VR_frequency];
    if (!isfinite(load) || load < 0.0 || load > s->r[VR_max_load]) {
        char msg[160];
        snprintf(msg, sizeof msg, "load %g %% is outside the model's validity [0, %g] %%", load,
                 s->r[VR_max_load]);
        slave_log(s, MODEL_ERROR, "logStatusError", msg);
        return 1;
    }
    if (!isfinite(f) || f < 0.0) {
        slave_log(s, MODEL_ERROR, "logStatusError", "supply frequency is negative or not a number");
        return 1;
    }
    return 0;
}
