/* A method plugin that fails at run time when its parameter "fail" is true (standing for what
 * validation cannot foresee: memory, disk, a non-finite result) and is plain RTN otherwise; the
 * runner test uses it to check that a failing cell does not stop the others. */
#include <stdbool.h>
#include <stddef.h>

#include "plugin/gq_plugin.h"

const int gq_plugin_abi = GQ_PLUGIN_ABI;

typedef struct {
    bool fail;
} flaky_params;

static const gq_param_spec flaky_specs[] = {
    {"fail", GQ_PARAM_BOOL, offsetof(flaky_params, fail), "false", 0, 0, NULL,
     "fail in the first block"},
    {0}};

static int flaky_block(const void *params, gq_block_ctx *ctx, gq_error *err)
{
    if (((const flaky_params *)params)->fail)
        return gq_fail(err, "layers.%d: flaky: simulated run-time failure", ctx->layer);
    for (int k = 0; k < GQ_N_LINEAR; k++)
        if (ctx->quant[k] && gq_block_quantize_rtn(ctx, (gq_linear_kind)k, NULL, NULL, err))
            return -1;
    return 0;
}

static GQ_METHOD_DEFINE(flaky, "flaky", "RTN, or a run-time failure when fail is true (runner "
                        "tests)", flaky_params, flaky_specs, .propagate = GQ_PROPAGATE_FP,
                        .quantize_block = flaky_block);

int gq_plugin_init(const gq_plugin_host *host, gq_error *err)
{
    return host->register_method(&flaky, err);
}
