/* Soft starter / VFD: the supply frequency follows the speed setpoint's
 * synchronous frequency (f* = n* p / 120, clamped to [0, max_frequency]) at a
 * bounded ramp rate (Hz/s), the way a drive ramps a motor up to speed instead
 * of starting it across the line. The frequency is a state, so it has no
 * direct feedthrough from the setpoint.
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
    double target = sp * r[VR_poles] / 120.0;
    if (target < 0.0) target = 0.0;
    if (target > r[VR_max_frequency]) target = r[VR_max_frequency];
    double f = r[VR_frequency], dmax = r[VR_ramp_rate] * h;
    double d = target - f;
    if (d > dmax) d = dmax;
    if (d < -dmax) d = -dmax;
    r[VR_frequency] = f + d;
    return 0;
}
