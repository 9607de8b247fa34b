/* Bounded statistics of static activation ranges (gq_act_stats in gq_act.h): the values of a
 * linear input reach them in chunks of rows, and what is kept per segment does not grow with
 * the number of calibration tokens:
 *   pass 1  running min and max (exact: the "max" rule's range);
 *   pass 2  (percentile, mse) a histogram of GQ_ACT_HIST_BINS equal bins over [min, max].
 * The percentile's order statistic is read from the cumulative counts and placed at its bin's
 * centre, so it is within half a bin, (max - min) / 2^17, of the exact value; the MSE rule's
 * squared errors are summed with every value at its bin's centre. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "act/gq_act.h"

#define MSE_STEPS 80 /* shrink candidates p = 1 - i/100, i < 80 */

int gq_act_stats_init(gq_act_stats *st, const gq_act_spec *s, int width, gq_error *err)
{
    memset(st, 0, sizeof *st);
    int seg = gq_act_seg_cols(s, width, 0);
    st->spec = s;
    st->seg = seg ? seg : width;
    st->nseg = width / st->seg; /* group sizes divide the width (gq_act_cfg_check) */
    st->mn = malloc((size_t)st->nseg * sizeof *st->mn);
    st->mx = malloc((size_t)st->nseg * sizeof *st->mx);
    if (gq_act_stats_needs_hist(st))
        st->hist = calloc((size_t)st->nseg * GQ_ACT_HIST_BINS, sizeof *st->hist);
    if (!st->mn || !st->mx || (gq_act_stats_needs_hist(st) && !st->hist)) {
        gq_act_stats_free(st);
        return gq_fail(err, "activation calibration: out of memory");
    }
    for (int g = 0; g < st->nseg; g++)
        st->mn[g] = INFINITY, st->mx[g] = -INFINITY;
    return 0;
}

void gq_act_stats_free(gq_act_stats *st)
{
    free(st->mn);
    free(st->mx);
    free(st->hist);
    memset(st, 0, sizeof *st);
}

bool gq_act_stats_needs_hist(const gq_act_stats *st)
{
    return st->spec->calibration != GQ_ACT_CAL_MAX;
}

void gq_act_stats_minmax(gq_act_stats *st, const float *X, size_t n, int width)
{
#pragma omp parallel for schedule(static) if (st->nseg > 1)
    for (int g = 0; g < st->nseg; g++) {
        float mn = st->mn[g], mx = st->mx[g];
        for (size_t r = 0; r < n; r++) {
            const float *v = X + r * width + (size_t)g * st->seg;
            for (int j = 0; j < st->seg; j++) {
                mn = v[j] < mn ? v[j] : mn;
                mx = v[j] > mx ? v[j] : mx;
            }
        }
        st->mn[g] = mn, st->mx[g] = mx;
    }
    st->count += (uint64_t)n * st->seg;
}

/* The bin of v in a segment's [mn, mx] (the last bin holds mx). */
static size_t bin_of(float v, float mn, float mx)
{
    if (!(mx > mn))
        return 0;
    double b = ((double)v - mn) / ((double)mx - mn) * GQ_ACT_HIST_BINS;
    return b <= 0 ? 0 : b >= GQ_ACT_HIST_BINS - 1 ? GQ_ACT_HIST_BINS - 1 : (size_t)b;
}

static double bin_centre(size_t b, float mn, float mx)
{
    return mn + ((double)mx - mn) * ((double)b + 0.5) / GQ_ACT_HIST_BINS;
}

void gq_act_stats_hist(gq_act_stats *st, const float *X, size_t n, int width)
{
#pragma omp parallel for schedule(static) if (st->nseg > 1)
    for (int g = 0; g < st->nseg; g++) {
        uint64_t *h = st->hist + (size_t)g * GQ_ACT_HIST_BINS;
        for (size_t r = 0; r < n; r++) {
            const float *v = X + r * width + (size_t)g * st->seg;
            for (int j = 0; j < st->seg; j++)
                h[bin_of(v[j], st->mn[g], st->mx[g])]++;
        }
    }
}

/* The value of rank r (0-based, ascending) of segment g: min and max exactly, else the centre
 * of the bin holding it. */
static float rank_value(const gq_act_stats *st, int g, uint64_t r)
{
    if (r == 0)
        return st->mn[g];
    if (r + 1 >= st->count)
        return st->mx[g];
    const uint64_t *h = st->hist + (size_t)g * GQ_ACT_HIST_BINS;
    uint64_t c = 0;
    size_t b = 0;
    while (b < GQ_ACT_HIST_BINS - 1 && c + h[b] <= r)
        c += h[b++];
    return (float)bin_centre(b, st->mn[g], st->mx[g]);
}

/* Sum of squared fake-quantization errors of segment g's histogram (values at bin centres)
 * with the state fitted on [lo, hi]. */
static double hist_error(const gq_act_stats *st, int g, float lo, float hi)
{
    const gq_quantizer *q = &st->spec->q;
    _Alignas(16) unsigned char state[256];
    const float r[2] = {lo, hi};
    q->fmt->fit_group(q->params, r, 2, NULL, state);
    const uint64_t *h = st->hist + (size_t)g * GQ_ACT_HIST_BINS;
    double e = 0.0;
    for (size_t b = 0; b < GQ_ACT_HIST_BINS; b++) {
        if (!h[b])
            continue;
        double c = bin_centre(b, st->mn[g], st->mx[g]);
        double d = (double)q->fmt->quant_elem(q->params, state, 0, (float)c) - c;
        e += (double)h[b] * d * d;
    }
    return e;
}

/* The MSE rule: the first shrink p of [mn, mx] with the smallest error. */
static void mse_range(const gq_act_stats *st, int g, float *lo, float *hi)
{
    double errs[MSE_STEPS];
    const float mn = st->mn[g], mx = st->mx[g];
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < MSE_STEPS; i++) {
        float p = 1.0f - (float)i / 100.0f;
        errs[i] = hist_error(st, g, p * mn, p * mx);
    }
    int best = 0;
    for (int i = 1; i < MSE_STEPS; i++)
        best = errs[i] < errs[best] ? i : best;
    float p = 1.0f - (float)best / 100.0f;
    *lo = p * mn;
    *hi = p * mx;
}

void gq_act_stats_ranges(const gq_act_stats *st, float *ranges)
{
    const gq_act_spec *s = st->spec;
    for (int g = 0; g < st->nseg; g++) {
        float *lo = &ranges[2 * g], *hi = &ranges[2 * g + 1];
        *lo = st->mn[g], *hi = st->mx[g];
        if (s->calibration == GQ_ACT_CAL_PERCENTILE) {
            double q = s->percentile / 100.0, last = (double)(st->count - 1);
            *lo = rank_value(st, g, (uint64_t)llround((1.0 - q) * last));
            *hi = rank_value(st, g, (uint64_t)llround(q * last));
        } else if (s->calibration == GQ_ACT_CAL_MSE) {
            mse_range(st, g, lo, hi);
        }
    }
}
