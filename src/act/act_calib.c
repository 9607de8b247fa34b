/* Static activation scales: the calibration ranges of every linear input with a static spec,
 * observed over the calibration windows block by block (gq_act_calibrate in gq_act.h).
 *
 * Each segment (the whole input, or one group of input channels over every calibration token)
 * gets a range [lo, hi]:
 *   max         lo = min, hi = max of the values (exact)
 *   percentile  values ascending (count c): lo = v[round((1 - q/100) (c-1))],
 *               hi = v[round(q/100 (c-1))], read from a histogram (within half a bin)
 *   mse         the max range shrunk by p = 1 - i/100, i = 0..79: the first p with the
 *               smallest sum of squared fake-quantization errors over the histogram
 * The format's state is then fitted on the two values {lo, hi}. The statistics are bounded
 * (gq_act_stats); block l runs over the windows in chunks, twice for percentile and MSE. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "act/gq_act.h"
#include "core/gq_alloc.h"
#include "core/gq_fileio.h"
#include "core/gq_gemm.h"
#include "model/gq_forward.h"
#include "model/gq_stream.h"

#define GQ_GEMM_ROWS GQ_GEMM_TILE_M /* rows of a product tile */

/* Ranges of linear (l, k) from its inputs X (N, width), all in memory (the hook's
 * calibrate_input). */
static int calibrate_linear(gq_act_model *am, int l, gq_linear_kind k, const float *X, size_t N,
                            gq_error *err)
{
    const gq_act_spec *s = am->in[(size_t)l * GQ_N_LINEAR + k];
    int nr = gq_act_n_ranges(am, l, k), rows, width;
    if (nr == 0)
        return 0;
    gq_linear_shape(&am->cfg, k, &rows, &width);
    gq_act_stats st;
    if (gq_act_stats_init(&st, s, width, err))
        return -1;
    gq_act_stats_minmax(&st, X, N, width);
    if (gq_act_stats_needs_hist(&st))
        gq_act_stats_hist(&st, X, N, width);
    float *ranges = calloc((size_t)nr * 2, sizeof(float));
    int rc = ranges ? 0 : gq_fail(err, "activation calibration: out of memory");
    if (rc == 0) {
        gq_act_stats_ranges(&st, ranges);
        rc = gq_act_set_ranges(am, l, k, ranges, err);
    }
    free(ranges);
    gq_act_stats_free(&st);
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

int gq_act_calib_chunk(int n_calib, int ctx)
{
    if (ctx <= 0 || n_calib <= 0) /* nothing to calibrate on */
        return n_calib > 0 ? n_calib : 1;
    int a = ctx, b = GQ_GEMM_ROWS; /* windows per whole tile run: 256 / gcd(ctx, 256) */
    while (b) {
        int t = a % b;
        a = b, b = t;
    }
    int step = GQ_GEMM_ROWS / a, want = GQ_ACT_CALIB_TOKENS / ctx / step * step;
    int chunk = want > step ? want : step;
    return chunk < n_calib ? chunk : n_calib;
}

/* What calibrating block l needs: the statistics of each static linear input and one chunk's
 * block inputs (x0) and linear inputs (trace). */
typedef struct {
    gq_act_stats st[GQ_N_LINEAR];
    bool has[GQ_N_LINEAR], hist;
    float *x0;
    gq_block_trace t;
} block_calib;

static void block_calib_free(block_calib *bc)
{
    for (int k = 0; k < GQ_N_LINEAR; k++)
        if (bc->has[k])
            gq_act_stats_free(&bc->st[k]);
    free(bc->x0);
    free(bc->t.attn_in);
    free(bc->t.attn_ctx);
    free(bc->t.mlp_in);
    free(bc->t.mlp_act);
}

static int block_calib_init(block_calib *bc, const gq_act_model *am, int l, size_t chunk_tokens,
                            gq_error *err)
{
    memset(bc, 0, sizeof *bc);
    const gq_config *c = &am->cfg;
    const size_t nd = chunk_tokens * c->dim;
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        int rows, width;
        gq_linear_shape(c, (gq_linear_kind)k, &rows, &width);
        if (!gq_act_n_ranges(am, l, (gq_linear_kind)k))
            continue;
        if (gq_act_stats_init(&bc->st[k], am->in[(size_t)l * GQ_N_LINEAR + k], width, err)) {
            block_calib_free(bc);
            return -1;
        }
        bc->has[k] = true;
        bc->hist |= gq_act_stats_needs_hist(&bc->st[k]);
    }
    bc->x0 = gq_alloc_zero(nd * sizeof(float), "activation calibration", err);
    bc->t = (gq_block_trace){
        gq_alloc_zero(nd * sizeof(float), "activation calibration", err),
        gq_alloc_zero(nd * sizeof(float), "activation calibration", err),
        gq_alloc_zero(nd * sizeof(float), "activation calibration", err),
        gq_alloc_zero(chunk_tokens * c->hidden_dim * sizeof(float), "activation calibration",
                      err),
        false};
    if (!bc->x0 || !bc->t.attn_in || !bc->t.attn_ctx || !bc->t.mlp_in || !bc->t.mlp_act) {
        block_calib_free(bc);
        return -1;
    }
    return 0;
}

/* One pass of block l over the windows of x (n_calib, ctx) in chunks, its own quantizers off:
 * pass 1 (hist false) min/max, pass 2 the histograms. */
static void block_calib_pass(block_calib *bc, gq_act_model *am, const gq_model *mm, int l,
                             const float *x, int n_calib, int ctx, int chunk, bool hist,
                             gq_forward_ws *ws)
{
    const gq_config *c = &am->cfg;
    am->skip_layer = l;
    for (int w0 = 0; w0 < n_calib; w0 += chunk) {
        int nw = n_calib - w0 < chunk ? n_calib - w0 : chunk;
        size_t n = (size_t)nw * ctx;
        memcpy(bc->x0, x + (size_t)w0 * ctx * c->dim, n * c->dim * sizeof(float));
        gq_block_forward(mm, l, bc->x0, nw, ctx, ws, &bc->t);
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            if (!bc->has[k])
                continue;
            int rows, width;
            gq_linear_shape(c, (gq_linear_kind)k, &rows, &width);
            const float *in = trace_input(&bc->t, (gq_linear_kind)k);
            if (hist)
                gq_act_stats_hist(&bc->st[k], in, n, width);
            else
                gq_act_stats_minmax(&bc->st[k], in, n, width);
        }
    }
    am->skip_layer = -1;
}

/* Block l's static ranges from the windows x, then x moved through block l quantized. */
static int calibrate_block(gq_act_model *am, const gq_model *mm, int l, float *x, int n_calib,
                           int ctx, int chunk, gq_forward_ws *ws, gq_error *err)
{
    const gq_config *c = &am->cfg;
    block_calib bc;
    if (block_calib_init(&bc, am, l, (size_t)chunk * ctx, err))
        return -1;
    block_calib_pass(&bc, am, mm, l, x, n_calib, ctx, chunk, false, ws);
    if (bc.hist)
        block_calib_pass(&bc, am, mm, l, x, n_calib, ctx, chunk, true, ws);
    int rc = 0;
    for (int k = 0; rc == 0 && k < GQ_N_LINEAR; k++) {
        if (!bc.has[k])
            continue;
        float *ranges = malloc((size_t)bc.st[k].nseg * 2 * sizeof(float));
        if (!ranges) {
            rc = gq_fail(err, "activation calibration: out of memory");
            break;
        }
        gq_act_stats_ranges(&bc.st[k], ranges);
        rc = gq_act_set_ranges(am, l, (gq_linear_kind)k, ranges, err);
        free(ranges);
    }
    block_calib_free(&bc);
    for (int w0 = 0; rc == 0 && w0 < n_calib; w0 += chunk) /* block l+1 sees l quantized */
        gq_block_forward(mm, l, x + (size_t)w0 * ctx * c->dim,
                         n_calib - w0 < chunk ? n_calib - w0 : chunk, ctx, ws, NULL);
    return rc;
}

int gq_act_calibrate_chunked(gq_act_model *am, const gq_model *m, const int *tokens,
                             int n_calib, int ctx, int chunk, gq_error *err)
{
    if (!gq_act_model_needs_calibration(am))
        return 0;
    const gq_config *c = &m->cfg;
    size_t N = (size_t)n_calib * ctx;
    gq_model mm = *m; /* the same weights, seen through the hook */
    mm.act = &am->hook;
    gq_forward_ws *ws = gq_forward_ws_new(c, chunk * ctx, err);
    float *x = gq_alloc_zero(N * c->dim * sizeof(float), "activation calibration", err);
    int rc = ws && x ? 0 : -1;
    if (rc == 0)
        gq_embed(m, tokens, (int)N, x);
    for (int l = 0; rc == 0 && l < c->n_layers; l++) { /* a streamed model's block l in fp32 */
        if ((rc = gq_block_acquire(m, l, err)) != 0)
            break;
        rc = calibrate_block(am, &mm, l, x, n_calib, ctx, chunk, ws, err);
        gq_block_release(m, l);
    }
    am->skip_layer = -1;
    gq_forward_ws_free(ws);
    free(x);
    return rc;
}

int gq_act_calibrate(gq_act_model *am, const gq_model *m, const int *tokens, int n_calib,
                     int ctx, gq_error *err)
{
    if (!gq_act_model_needs_calibration(am)) /* dynamic scales: no calibration windows */
        return 0;
    return gq_act_calibrate_chunked(am, m, tokens, n_calib, ctx,
                                    gq_act_calib_chunk(n_calib, ctx), err);
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
