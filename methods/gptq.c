/* GPTQ (IST-DASLab/gptq): per linear, H = 2/N sum x x^T over the calibration tokens of its
 * inputs, then the column-by-column solver of gptq_solver.c.
 *
 * Inputs: with true_sequential=false (the reference's default) the Hessians of all seven
 * linears come from one pass of the FP block; with true_sequential=true the block is
 * quantized in the LLaMA sub-groups [k, v, q] -> [o] -> [up, gate] -> [down], each sub-group's
 * Hessians collected after the previous sub-groups were quantized. Between blocks the
 * reference propagates the *quantized* block's outputs (propagate default "quantized"). */
#include "methods/gq_method.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "calib/gq_calib.h"
#include "core/gq_time.h"
#include "methods/gq_gptq.h"

typedef struct {
    double percdamp;
    double damp_step;
    int max_retries;
    int block_size;
    bool act_order;
    bool static_groups;
    bool true_sequential;
} gptq_params;

static const gq_param_spec gptq_specs[] = {
    {"percdamp", GQ_PARAM_FLOAT, offsetof(gptq_params, percdamp), "0.01", 0, 10, NULL,
     "damping added to diag(H) as a fraction of its mean"},
    {"damp_step", GQ_PARAM_FLOAT, offsetof(gptq_params, damp_step), "0.01", 1e-6, 10, NULL,
     "added to percdamp on each retry when the Cholesky factorisation fails"},
    {"max_retries", GQ_PARAM_INT, offsetof(gptq_params, max_retries), "10", 0, 1000, NULL,
     "Cholesky retries with more damping before giving up"},
    {"block_size", GQ_PARAM_INT, offsetof(gptq_params, block_size), "128", 1, 4096, NULL,
     "columns per lazy batch update"},
    {"act_order", GQ_PARAM_BOOL, offsetof(gptq_params, act_order), "false", 0, 0, NULL,
     "quantize columns in order of decreasing H_ii (desc_act)"},
    {"static_groups", GQ_PARAM_BOOL, offsetof(gptq_params, static_groups), "false", 0, 0, NULL,
     "fit all group parameters on the original W before any update"},
    {"true_sequential", GQ_PARAM_BOOL, offsetof(gptq_params, true_sequential), "false", 0, 0, NULL,
     "quantize [k,v,q] -> [o] -> [up,gate] -> [down], Hessians after earlier sub-groups"},
    {0}};

static bool gptq_needs_calibration(const void *params)
{
    (void)params;
    return true;
}

/* H = 2/N sum x x^T over the calibration inputs of linear k (the group's shared input). */
static int group_hessian(gq_block_ctx *ctx, const gq_block_trace *tr, gq_linear_kind k, int cols,
                         gq_hessian *H, gq_error *err)
{
    double t0 = gq_now();
    if (gq_hessian_init(H, cols, err))
        return -1;
    size_t ntok = (size_t)ctx->B * ctx->T;
    if (gq_hessian_add(H, gq_trace_input(tr, k), ntok, err)) {
        gq_hessian_free(H);
        return -1;
    }
    gq_hessian_finish(H);
    ctx->t_stats += gq_now() - t0;
    gq_stage_end(ctx, t0, "hessian", GQ_LIMIT_DGEMM, (double)ntok * cols * (cols + 1));
    return 0;
}

/* The column loop of linear k with the group's factor, and its report entries. */
static int quantize_linear(gq_block_ctx *ctx, gq_linear_kind k, const gq_gptq_factor *F,
                           const gq_gptq_opts *o, gq_error *err)
{
    int rows, cols;
    gq_linear_shape(ctx->cfg, k, &rows, &cols);
    gq_gptq_result res;
    double t0 = gq_now();
    if (gq_gptq_quantize_factored(ctx->quant[k], ctx->w.w[k], rows, cols, F, o, ctx->q[k],
                                  ctx->codes[k], &res, err))
        return gq_fail_prefix(err, "layers.%d.%s", ctx->layer, gq_linear_name(k));
    ctx->t_quant += gq_now() - t0;
    gq_stage_end(ctx, t0, "columns", GQ_LIMIT_SGEMM, (double)rows * cols * (cols + 1));
    ctx->done[k] = true;
    ctx->has_codes[k] = res.has_codes;
    free(ctx->in_perm[k]);
    ctx->in_perm[k] = res.in_perm;
    json_t *x = gq_block_extra(ctx, k);
    json_object_set_new(x, "gptq_loss", json_real(res.loss));
    json_object_set_new(x, "percdamp", json_real(res.percdamp));
    if (res.dead)
        json_object_set_new(x, "dead_columns", json_integer(res.dead));
    if (res.retries)
        gq_block_note(ctx, "%s: Cholesky failed, retried %d time(s) with percdamp raised to %g",
                      gq_linear_name(k), res.retries, res.percdamp);
    return 0;
}

/* Quantizes the linears kinds[0..n) that share one input: one Hessian and one factor of it
 * for all of them (the factor depends on H and the options only, so each linear gets exactly
 * what a factor of its own would give). */
static int quantize_group(const gptq_params *p, gq_block_ctx *ctx, const gq_block_trace *tr,
                          const gq_linear_kind *kinds, int n, gq_error *err)
{
    int rows, cols;
    gq_linear_shape(ctx->cfg, kinds[0], &rows, &cols);
    bool any = false;
    for (int i = 0; i < n; i++)
        any |= ctx->quant[kinds[i]] != NULL;
    if (!any)
        return 0;
    gq_hessian H;
    if (group_hessian(ctx, tr, kinds[0], cols, &H, err))
        return -1;
    gq_gptq_opts o = {p->percdamp, p->damp_step, p->max_retries, p->block_size, p->act_order,
                      p->static_groups};
    gq_gptq_factor F;
    double t0 = gq_now();
    int rc = gq_gptq_factor_init(&F, H.h, cols, &o, err); /* consumes H */
    gq_hessian_free(&H);
    ctx->t_quant += gq_now() - t0;
    gq_stage_end(ctx, t0, "factor", GQ_LIMIT_DGEMM, 2.0 * cols * cols * (double)cols / 3.0);
    if (rc)
        return gq_fail_prefix(err, "layers.%d.%s", ctx->layer, gq_linear_name(kinds[0]));
    for (int i = 0; i < n && rc == 0; i++)
        if (ctx->quant[kinds[i]])
            rc = quantize_linear(ctx, kinds[i], &F, &o, err);
    gq_gptq_factor_free(&F);
    return rc;
}

/* The sub-groups of a block: [k, v, q] -> [o] -> [up, gate] -> [down]. */
static const gq_linear_kind seq[4][3] = {
    {GQ_LIN_K, GQ_LIN_V, GQ_LIN_Q}, {GQ_LIN_O}, {GQ_LIN_UP, GQ_LIN_GATE}, {GQ_LIN_DOWN}};
static const int seq_n[4] = {3, 1, 2, 1};

/* true_sequential: a pass before each sub-group with the earlier sub-groups quantized. */
static int gptq_block_sequential(const gptq_params *p, gq_block_ctx *ctx, gq_error *err)
{
    gq_block_trace tr = {0};
    if (gq_block_trace_alloc(ctx, &tr, err))
        return -1;
    int rc = 0;
    for (int s = 0; s < 4 && rc == 0; s++) {
        double t0 = gq_now();
        rc = gq_block_run(ctx, true, &tr, NULL, err);
        ctx->t_stats += gq_now() - t0;
        if (rc == 0)
            rc = quantize_group(p, ctx, &tr, seq[s], seq_n[s], err);
    }
    gq_block_trace_free(&tr);
    return rc;
}

static int gptq_block(const void *params, gq_block_ctx *ctx, gq_error *err)
{
    const gptq_params *p = params;
    if (p->true_sequential)
        return gptq_block_sequential(p, ctx, err);
    /* one FP pass for all groups: the pipeline's trace, which its report then reuses (GPTQ
     * never changes `w`) */
    const gq_block_trace *tr;
    double t0 = gq_now();
    int rc = gq_block_trace_fp(ctx, &tr, err);
    ctx->t_stats += gq_now() - t0;
    for (int s = 0; s < 4 && rc == 0; s++)
        rc = quantize_group(p, ctx, tr, seq[s], seq_n[s], err);
    return rc;
}

GQ_METHOD_DEFINE(gq_method_gptq, "gptq",
                 "GPTQ: Hessian-based column-by-column rounding with error feedback (IST-DASLab)",
                 gptq_params, gptq_specs, .needs_calibration = gptq_needs_calibration,
                 .propagate = GQ_PROPAGATE_QUANTIZED, .quantize_block = gptq_block,
                 .families = "every family: biases are ignored (the Hessian is of the inputs; "
                             "biases stay fp32), as are q/k norms; o_proj's Hessian is q_dim wide");
