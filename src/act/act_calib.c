/* Static activation scales: the calibration ranges of every linear input with a static spec,
 * observed over the calibration windows block by block (gq_act_calibrate in gq_act.h).
 *
 * Each segment (the whole input, or one group of input channels over every calibration token)
 * gets a range [lo, hi]:
 *   max         lo = min, hi = max of the values
 *   percentile  values sorted ascending (count c), lo = v[round((1 - q/100) (c-1))],
 *               hi = v[round(q/100 (c-1))]
 *   mse         the max range shrunk by p = 1 - i/100, i = 0..79: the first p with the
 *               smallest sum of squared fake-quantization errors over the values
 * The format's state is then fitted on the two values {lo, hi}. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "act/gq_act.h"
#include "core/gq_fileio.h"
#include "model/gq_forward.h"

#define MSE_STEPS 80

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Sum of squared errors of v[0..n) quantized with the state fitted on [lo, hi]. */
static double range_error(const gq_act_spec *s, const float *v, size_t n, float lo, float hi)
{
    _Alignas(16) unsigned char st[256];
    const float r[2] = {lo, hi};
    s->q.fmt->fit_group(s->q.params, r, 2, NULL, st);
    double e = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)s->q.fmt->quant_elem(s->q.params, st, 0, v[i]) - v[i];
        e += d * d;
    }
    return e;
}

/* [lo, hi] of the values v[0..n) by the spec's rule (v may be reordered). */
static void segment_range(const gq_act_spec *s, float *v, size_t n, float *lo, float *hi)
{
    float mn = v[0], mx = v[0];
    for (size_t i = 1; i < n; i++) {
        mn = v[i] < mn ? v[i] : mn;
        mx = v[i] > mx ? v[i] : mx;
    }
    *lo = mn;
    *hi = mx;
    if (s->calibration == GQ_ACT_CAL_PERCENTILE) {
        qsort(v, n, sizeof *v, cmp_float);
        double q = s->percentile / 100.0;
        *lo = v[(size_t)llround((1.0 - q) * (double)(n - 1))];
        *hi = v[(size_t)llround(q * (double)(n - 1))];
    } else if (s->calibration == GQ_ACT_CAL_MSE) {
        double errs[MSE_STEPS];
#pragma omp parallel for schedule(dynamic, 1)
        for (int i = 0; i < MSE_STEPS; i++) {
            float p = 1.0f - (float)i / 100.0f;
            errs[i] = range_error(s, v, n, p * mn, p * mx);
        }
        int best = 0;
        for (int i = 1; i < MSE_STEPS; i++)
            best = errs[i] < errs[best] ? i : best;
        float p = 1.0f - (float)best / 100.0f;
        *lo = p * mn;
        *hi = p * mx;
    }
}

/* Ranges of linear (l, k) from its inputs X (N, width). */
static int calibrate_linear(gq_act_model *am, int l, gq_linear_kind k, const float *X, size_t N,
                            gq_error *err)
{
    int nr = gq_act_n_ranges(am, l, k), rows, width;
    if (nr == 0)
        return 0;
    gq_linear_shape(&am->cfg, k, &rows, &width);
    int seg = width / nr; /* group sizes divide the width (gq_act_cfg_check) */
    float *v = gq_alloc_zero(N * (size_t)seg * sizeof(float), "activation calibration", err);
    float *ranges = calloc((size_t)nr * 2, sizeof(float));
    int rc = v && ranges ? 0 : gq_fail(err, "activation calibration: out of memory");
    for (int g = 0; rc == 0 && g < nr; g++) {
        for (size_t r = 0; r < N; r++)
            memcpy(v + r * seg, X + r * width + (size_t)g * seg, (size_t)seg * sizeof(float));
        segment_range(am->in[(size_t)l * GQ_N_LINEAR + k], v, N * (size_t)seg, &ranges[2 * g],
                      &ranges[2 * g + 1]);
    }
    if (rc == 0)
        rc = gq_act_set_ranges(am, l, k, ranges, err);
    free(v);
    free(ranges);
    return rc;
}

/* The input of linear k in a block trace. */
static const float *trace_input(const gq_block_trace *t, gq_linear_kind k)
{
    switch (k) {
    case GQ_LIN_Q: case GQ_LIN_K: case GQ_LIN_V: return t->attn_in;
    case GQ_LIN_O: return t->attn_ctx;
    case GQ_LIN_GATE: case GQ_LIN_UP: return t->mlp_in;
    default: return t->mlp_act;
    }
}

int gq_act_calibrate(gq_act_model *am, const gq_model *m, const int *tokens, int n_calib,
                     int ctx, gq_error *err)
{
    if (!gq_act_model_needs_calibration(am))
        return 0;
    const gq_config *c = &m->cfg;
    size_t N = (size_t)n_calib * ctx, nd = N * c->dim;
    gq_model mm = *m; /* the same weights, seen through the hook */
    mm.act = &am->hook;
    gq_forward_ws *ws = gq_forward_ws_new(c, (int)N, err);
    float *x = gq_alloc_zero(nd * sizeof(float), "activation calibration", err);
    float *x0 = gq_alloc_zero(nd * sizeof(float), "activation calibration", err);
    gq_block_trace t = {
        gq_alloc_zero(nd * sizeof(float), "activation calibration", err),
        gq_alloc_zero(nd * sizeof(float), "activation calibration", err),
        gq_alloc_zero(nd * sizeof(float), "activation calibration", err),
        gq_alloc_zero(N * c->hidden_dim * sizeof(float), "activation calibration", err)};
    int rc = ws && x && x0 && t.attn_in && t.attn_ctx && t.mlp_in && t.mlp_act ? 0 : -1;
    if (rc == 0)
        gq_embed(m, tokens, (int)N, x);
    for (int l = 0; rc == 0 && l < c->n_layers; l++) {
        memcpy(x0, x, nd * sizeof(float));
        am->skip_layer = l; /* observe block l's inputs before its own quantizers */
        gq_block_forward(&mm, l, x0, n_calib, ctx, ws, &t);
        am->skip_layer = -1;
        for (int k = 0; rc == 0 && k < GQ_N_LINEAR; k++)
            rc = calibrate_linear(am, l, (gq_linear_kind)k, trace_input(&t, (gq_linear_kind)k), N,
                                  err);
        if (rc == 0) /* block l+1 sees block l quantized */
            gq_block_forward(&mm, l, x, n_calib, ctx, ws, NULL);
    }
    am->skip_layer = -1;
    gq_forward_ws_free(ws);
    free(x);
    free(x0);
    free(t.attn_in);
    free(t.attn_ctx);
    free(t.mlp_in);
    free(t.mlp_act);
    return rc;
}

int gq_act_hook_calibrate_input(gq_act_hook *h, int layer, gq_linear_kind k, const float *x,
                                size_t n, int width, gq_error *err)
{
    gq_act_model *am = (gq_act_model *)h; /* the hook is the first member */
    int rows, w;
    gq_linear_shape(&am->cfg, k, &rows, &w);
    if (width != w)
        return gq_fail(err, "layers.%d.%s: activation calibration of %d-wide inputs, the "
                            "linear reads %d", layer, gq_linear_name(k), width, w);
    return calibrate_linear(am, layer, k, x, n, err);
}
