/* Soft starter / VFD: the supply frequency follows the speed setpoint at a
 * bounded ramp rate (Hz/s), the way a drive ramps a motor up to speed instead
 * of starting it across the line. The setpoint is the shaft speed asked for;
 * with slip compensation (rated_slip > 0: the slip at 100 % load) the drive
 * aims the synchronous speed above it by the slip at the present load,
 * n_sync* = n* / (1 - rated_slip * load / 100), as drives with slip
 * compensation do; f* = n_sync* p / 120, clamped to [0, max_frequency]. A
 * setpoint <= 0 means none: the drive passes the line frequency (f_start).
 * The frequency is a state, so it has no direct feedthrough from the inputs.
 *
 * Exact for any step: within a step of length h the frequency moves by at
 * most ramp_rate * h towards f*, i.e. a linear ramp that stops at f*.
 */
#define MODEL_IDENTIFIER motor_controller
#define MODEL_IDENTIFIER_STR "motor_controller"
#include "motor_controller_vars.h"

static void model_outputs(Slave *s) {
    if (!s->initialized) s->r[VR_frequency] = s->r[VR_f_start];
}

static int model_step(Slave *s, double h) {
    double *r = s->r;
    double sp = r[VR_speedSetpoint];
    if (!isfinite(sp) || !(r[VR_ramp_rate] > 0.0)) {
        slave_log(s, MODEL_ERROR, "logStatusError", "speed setpoint or ramp rate is not usable");
        return 1;
    }
    double target;
    if (sp <= 0.0) {
        target = r[VR_f_start];
    } else {
        double slip = r[VR_rated_slip] * r[VR_load] / 100.0;
        if (!(slip < 0.5)) {
            slave_log(s, MODEL_ERROR, "logStatusError", "slip at this load is not below 0.5");
            return 1;
        }
        target = sp / (1.0 - slip) * r[VR_poles] / 120.0;
    }
    if (target < 0.0) target = 0.0;
    if (target > r[VR_max_frequency]) target = r[VR_max_frequency];
    double f = r[VR_frequency], dmax = r[VR_ramp_rate] * h;
    double d = target - f;
    if (d > dmax) d = dmax;
    if (d < -dmax) d = -dmax;
    r[VR_frequency] = f + d;
    return 0;
}
