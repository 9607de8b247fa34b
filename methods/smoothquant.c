/* SmoothQuant (arXiv:2211.10438; mit-han-lab/smoothquant, smooth.py smooth_ln_fcs for Llama):
 * moves activation outliers into the weights by a per-input-channel scale s, folded into the
 * RMSNorm that feeds the linears and into their columns, so the FP function is unchanged:
 *     s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)      (clamped below at 1e-5)
 *     norm weight g_j -> g_j / s_j,   W[:, j] -> W[:, j] * s_j  for every linear reading X
 * X_j: the largest |value| of input channel j over the calibration tokens; W_j: the largest
 * |W[r, j]| over the rows of all linears sharing that input (each clamped at 1e-5 as the
 * reference does). Two groups per block: the attention RMSNorm into q/k/v and the
 * post-attention RMSNorm into gate/up. A transform only: it quantizes nothing, and a weight
 * method runs after it in a chain (["smoothquant", "rtn"]). */
#include "methods/gq_method.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "core/gq_time.h"

typedef struct {
    double alpha;
} sq_params;

static const gq_param_spec sq_specs[] = {
    {"alpha", GQ_PARAM_FLOAT, offsetof(sq_params, alpha), "0.5", 0, 1, NULL,
     "migration strength: s = max|X|^alpha / max|W|^(1-alpha)"},
    {0}};

/* amax[j] = max over the n rows of x (n, d) of |x[., j]|. */
static void abs_max_cols(const float *x, size_t n, int d, float *amax)
{
    for (int j = 0; j < d; j++)
        amax[j] = 0.0f;
    for (size_t t = 0; t < n; t++)
        for (int j = 0; j < d; j++) {
            const float a = fabsf(x[t * d + j]);
            amax[j] = a > amax[j] ? a : amax[j];
        }
}

/* Scales s (dim) of one group: the activations' column maxima xmax (dim) against the column
 * maxima over the linears kinds[0..n) of the block, then folded into norm and those linears. */
static void smooth_group(gq_block_ctx *ctx, double alpha, const float *xmax, float *norm,
                         const gq_linear_kind *kinds, int n)
{
    const int dim = ctx->cfg->dim;
    float wmax[dim], s[dim];
    for (int j = 0; j < dim; j++)
        wmax[j] = 0.0f;
    for (int i = 0; i < n; i++) {
        int rows, cols;
        gq_linear_shape(ctx->cfg, kinds[i], &rows, &cols);
        const float *W = ctx->w.w[kinds[i]];
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < cols; j++) {
                const float a = fabsf(W[(size_t)r * cols + j]);
                wmax[j] = a > wmax[j] ? a : wmax[j];
            }
    }
    for (int j = 0; j < dim; j++) {
        const double xs = xmax[j] > 1e-5f ? xmax[j] : 1e-5, ws = wmax[j] > 1e-5f ? wmax[j] : 1e-5;
        const double v = pow(xs, alpha) / pow(ws, 1.0 - alpha);
        s[j] = (float)(v > 1e-5 ? v : 1e-5);
        norm[j] /= s[j];
    }
    for (int i = 0; i < n; i++) {
        int rows, cols;
        gq_linear_shape(ctx->cfg, kinds[i], &rows, &cols);
        float *W = ctx->w.w[kinds[i]];
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < cols; j++)
                W[(size_t)r * cols + j] *= s[j];
    }
}

static int sq_block(const void *params, gq_block_ctx *ctx, gq_error *err)
{
    const double alpha = ((const sq_params *)params)->alpha;
    if (ctx->w.att_in_transform || ctx->w.ffn_in_transform)
        return gq_fail(err, "layers.%d: smoothquant folds into the RMSNorm weights, which an "
                            "explicit input transform follows here", ctx->layer);
    const int dim = ctx->cfg->dim;
    gq_block_trace tr = {0};
    double t0 = gq_now();
    if (gq_block_trace_alloc(ctx, &tr, err) || gq_block_run(ctx, false, &tr, NULL, err)) {
        gq_block_trace_free(&tr);
        return -1;
    }
    const size_t ntok = (size_t)ctx->B * ctx->T;
    float att_max[dim], ffn_max[dim];
    abs_max_cols(tr.attn_in, ntok, dim, att_max);
    abs_max_cols(tr.mlp_in, ntok, dim, ffn_max);
    gq_block_trace_free(&tr);
    ctx->t_stats += gq_now() - t0;
    static const gq_linear_kind qkv[3] = {GQ_LIN_Q, GQ_LIN_K, GQ_LIN_V};
    static const gq_linear_kind gate_up[2] = {GQ_LIN_GATE, GQ_LIN_UP};
    t0 = gq_now();
    smooth_group(ctx, alpha, att_max, ctx->w.rms_att, qkv, 3);
    smooth_group(ctx, alpha, ffn_max, ctx->w.rms_ffn, gate_up, 2);
    ctx->t_search += gq_now() - t0;
    return 0;
}

GQ_METHOD_DEFINE(gq_method_smoothquant, "smoothquant",
                 "SmoothQuant: per-channel scales max|X|^a / max|W|^(1-a) folded into the "
                 "RMSNorms and q/k/v, gate/up",
                 sq_params, sq_specs, .needs_calibration = gq_method_calibrates,
                 .propagate = GQ_PROPAGATE_FP, .transform_only = true,
                 .quantize_block = sq_block,
                 .families = "every family: the scales fold into the RMSNorm weights and the "
                             "input columns of q/k/v and gate/up, so biases and q/k norms (which "
                             "act on the outputs) are unchanged");
