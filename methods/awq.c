/* AWQ (mit-han-lab/llm-awq): activation-aware scaling with salience s_x = mean |x| per input
 * channel, the 20-point alpha search per scaling group, folding into the preceding norm or
 * linear, and the clipping search. The search and folding are in awq_core.c; the next
 * block's inputs come from the FP block (the reference computes them before scaling). */
#include "methods/gq_awq.h"

typedef struct {
    gq_awq_params awq;
} awq_params;

static const gq_param_spec awq_specs[] = {GQ_AWQ_PARAM_SPECS(awq_params, awq), {0}};

static bool awq_needs_calibration(const void *params)
{
    (void)params;
    return true;
}

static int awq_block(const void *params, gq_block_ctx *ctx, gq_error *err)
{
    return gq_awq_quantize_block(&((const awq_params *)params)->awq, NULL, NULL, ctx, err);
}

GQ_METHOD_DEFINE(gq_method_awq, "awq",
                 "AWQ: activation-aware per-channel scales (alpha grid) + clipping search "
                 "(llm-awq)", awq_params, awq_specs, .needs_calibration = awq_needs_calibration,
                 .propagate = GQ_PROPAGATE_FP, .quantize_block = awq_block,
                 .families = "every family: the bias of a linear whose output rows are divided by "
                             "s (v before o, up before down) is divided too; q/k norms act after the "
                             "scaled q/k products and are untouched; v->o is skipped when v and o's "
                             "input differ in width (GQA, head_dim)");
