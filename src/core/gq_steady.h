#ifndef GQ_STEADY_H
#define GQ_STEADY_H
/* Timed measurements repeated until they agree, so that a run disturbed by other load shows
 * as such instead of being written down as the machine's speed.
 *
 * A round is one complete measurement giving a rate (for example tokens/s). Rounds repeat
 * until at least GQ_STEADY_MIN_ROUNDS are done and the median rate is within GQ_STEADY_TOL of
 * the best one (so at least half the rounds agree with it), or GQ_STEADY_MAX_ROUNDS are done.
 * The figure reported is the best rate; median and min show the spread. */
#include <stdbool.h>

#include "core/gq_error.h"

#define GQ_STEADY_MIN_ROUNDS 3
#define GQ_STEADY_MAX_ROUNDS 10
#define GQ_STEADY_TOL 0.05 /* relative: median >= (1 - tol) * best */

typedef struct gq_rate_spread {
    double best, median, min; /* rates of the rounds */
    int rounds;
    bool steady;              /* the median came within the tolerance of the best */
} gq_rate_spread;

/* Calls round(ctx, &rate, err) as described above. Returns 0, or -1 with err when a round
 * fails or gives a rate that is not positive and finite. */
int gq_measure_steady(int (*round)(void *ctx, double *rate, gq_error *err), void *ctx,
                      gq_rate_spread *out, gq_error *err);

/* best, median and min of n >= 1 rates (sorted in place); steady as gq_measure_steady says. */
void gq_rate_spread_of(double *rates, int n, gq_rate_spread *out);

/* The 1-minute load average (getloadavg), or -1 when the system does not say. */
double gq_load_average(void);

#endif
