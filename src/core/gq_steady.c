#include "core/gq_steady.h"

#include <math.h>
#include <stdlib.h>

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void gq_rate_spread_of(double *rates, int n, gq_rate_spread *out)
{
    qsort(rates, (size_t)n, sizeof *rates, by_value);
    out->min = rates[0];
    out->best = rates[n - 1];
    out->median = n % 2 ? rates[n / 2] : 0.5 * (rates[n / 2 - 1] + rates[n / 2]);
    out->rounds = n;
    out->steady = out->median >= (1.0 - GQ_STEADY_TOL) * out->best;
}

int gq_measure_steady(int (*round)(void *ctx, double *rate, gq_error *err), void *ctx,
                      gq_rate_spread *out, gq_error *err)
{
    double rates[GQ_STEADY_MAX_ROUNDS], sorted[GQ_STEADY_MAX_ROUNDS];
    for (int n = 0; n < GQ_STEADY_MAX_ROUNDS; n++) {
        if (round(ctx, &rates[n], err))
            return -1;
        if (!(rates[n] > 0.0) || !isfinite(rates[n]))
            return gq_fail(err, "timed round %d gave the rate %g", n + 1, rates[n]);
        for (int i = 0; i <= n; i++)
            sorted[i] = rates[i];
        gq_rate_spread_of(sorted, n + 1, out);
        if (n + 1 >= GQ_STEADY_MIN_ROUNDS && out->steady)
            break;
    }
    return 0;
}

double gq_load_average(void)
{
    double l;
    return getloadavg(&l, 1) == 1 ? l : -1.0;
}
