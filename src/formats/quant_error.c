#include "formats/quant_error.h"

#include <math.h>

gq_quant_error gq_quant_error_compute(const float *x, const float *y, size_t n)
{
    double sig = 0.0, err = 0.0, mx = 0.0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)y[i] - (double)x[i];
        sig += (double)x[i] * (double)x[i];
        err += d * d;
        bad += !isfinite(y[i]);
        /* a NaN difference makes the maximum NaN (fmax would skip it) */
        mx = isnan(d) || isnan(mx) ? NAN : fabs(d) > mx ? fabs(d) : mx;
    }
    gq_quant_error e;
    e.rmse = n ? sqrt(err / (double)n) : 0.0;
    e.max_abs = mx;
    e.sqnr_db = err > 0.0 ? 10.0 * log10(sig / err) : err == 0.0 ? INFINITY : NAN;
    e.nonfinite = bad;
    return e;
}
