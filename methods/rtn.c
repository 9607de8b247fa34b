/* RTN: the format applied directly to every weight matrix (the baseline). With
 * imatrix=true the format receives mean x^2 of each input channel over the calibration
 * tokens as its per-column importance (llama.cpp's imatrix; formats without importance
 * ignore it). */
#include "methods/gq_method.h"

#include <stddef.h>
#include <stdlib.h>

#include "calib/gq_calib.h"
#include "core/gq_time.h"

typedef struct {
    bool imatrix;
} rtn_params;

static const gq_param_spec rtn_specs[] = {
    {"imatrix", GQ_PARAM_BOOL, offsetof(rtn_params, imatrix), "false", 0, 0, NULL,
     "pass mean x^2 per input channel (calibration) to the format as importance"},
    {0}};

static bool rtn_needs_calibration(const void *params) { return ((const rtn_params *)params)->imatrix; }

static int rtn_block(const void *params, gq_block_ctx *ctx, gq_error *err)
{
    const rtn_params *p = params;
    if (!p->imatrix) {
        for (int k = 0; k < GQ_N_LINEAR; k++)
            if (ctx->quant[k] && gq_block_quantize_rtn(ctx, (gq_linear_kind)k, NULL, NULL, err))
                return -1;
        return 0;
    }
    const gq_config *c = ctx->cfg;
    size_t n = (size_t)ctx->B * ctx->T;
    const gq_block_trace *tr; /* the pipeline's, which its report then reuses */
    size_t qd = (size_t)gq_q_dim(c); /* width of the attention output (o_proj's input) */
    float *imat = malloc(((size_t)c->dim * 2 + qd + c->hidden_dim) * sizeof *imat);
    int rc = -1;
    if (!imat) {
        gq_fail(err, "layers.%d: out of memory", ctx->layer);
        goto done;
    }
    double t0 = gq_now();
    if (gq_block_trace_fp(ctx, &tr, err))
        goto done;
    double t1 = gq_stage_begin(ctx);
    float *im_att = imat, *im_ctx = imat + c->dim, *im_mlp = imat + c->dim + qd,
          *im_act = imat + 2 * c->dim + qd;
    gq_calib_sq_mean(tr->attn_in, n, c->dim, im_att);
    gq_calib_sq_mean(tr->attn_ctx, n, (int)qd, im_ctx);
    gq_calib_sq_mean(tr->mlp_in, n, c->dim, im_mlp);
    gq_calib_sq_mean(tr->mlp_act, n, c->hidden_dim, im_act);
    ctx->t_stats += gq_now() - t0;
    gq_stage_end(ctx, t1, "stats", GQ_LIMIT_BANDWIDTH,
                 (double)n * (3.0 * c->dim + c->hidden_dim) * sizeof(float));
    const float *per_kind[GQ_N_LINEAR] = {im_att, im_att, im_att, im_ctx, im_mlp, im_mlp, im_act};
    for (int k = 0; k < GQ_N_LINEAR; k++)
        if (ctx->quant[k] &&
            gq_block_quantize_rtn(ctx, (gq_linear_kind)k, NULL, per_kind[k], err))
            goto done;
    rc = 0;
done:
    free(imat);
    return rc;
}

GQ_METHOD_DEFINE(gq_method_rtn, "rtn",
                 "round-to-nearest: the format applied directly (baseline), optional imatrix",
                 rtn_params, rtn_specs, .needs_calibration = rtn_needs_calibration,
                 .propagate = GQ_PROPAGATE_FP, .quantize_block = rtn_block,
                 .families = "every family: each linear rounded on its own; biases, norms and q/k "
                             "norms stay fp32");
