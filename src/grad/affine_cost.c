/* AffineQuant's sub-stage timer and work counts (see affine_cost.h). */
#include "grad/affine_cost.h"

#include <math.h>

#include "core/gq_time.h"

const char *gq_aq_stage_name(gq_aq_stage s)
{
    static const char *const names[GQ_AQ_N_STAGES] = {
        "aq invert", "aq fold", "aq forward", "aq backward", "aq fold-bwd", "aq mask",
        "aq quant", "aq adamw"};
    return names[s];
}

gq_aq_work gq_aq_stage_work(gq_aq_stage s)
{
    switch (s) {
    case GQ_AQ_INVERT: return GQ_AQ_WORK_DFLOPS;
    case GQ_AQ_MASK: case GQ_AQ_QUANT: case GQ_AQ_ADAMW: return GQ_AQ_WORK_BYTES;
    default: return GQ_AQ_WORK_SFLOPS;
    }
}

double gq_aq_clock(const gq_affine_cost *cost) { return cost ? gq_now() : 0.0; }

void gq_aq_add(gq_affine_cost *cost, gq_aq_stage s, double t0, double work)
{
    if (!cost) return;
    cost->seconds[s] += gq_now() - t0;
    cost->work[s] += work;
}

int gq_aq_band(int n, int epoch, int epochs)
{
    return epochs > 1 ? (int)floor((double)(n - 1) * epoch / (epochs - 1)) + 1 : 1;
}

double gq_aq_band_nnz(int n, int band)
{
    const double b = band < n ? band : n;
    return (double)n * (2 * b - 1) - b * (b - 1); /* n + 2 sum_{d < b} (n - d) */
}

double gq_aq_band_product_flops(double rows, int n, int band)
{
    return band <= 1 ? rows * n : 2.0 * rows * gq_aq_band_nnz(n, band);
}

double gq_aq_invert_flops(int n, int band)
{
    return band <= 1 ? (double)n : 2.0 * (double)n * n * n;
}

double gq_aq_block_forward_flops(const gq_grad_shape *s, int T)
{
    const int hs = s->dim / s->n_heads, kv = hs * s->n_kv_heads;
    const double weights = 2.0 * s->dim * s->dim + 2.0 * kv * s->dim + 3.0 * s->dim * s->hidden;
    return 2.0 * T * weights + 4.0 * hs * s->n_heads * ((double)T * (T + 1) / 2.0);
}
