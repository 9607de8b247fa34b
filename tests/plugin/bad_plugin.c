/* Broken plugins for the loader's error paths, one shared module per -D flag:
 *   BAD_ABI    exports gq_plugin_abi = 999
 *   ABI_FUNC   exports gq_plugin_abi as a function (the loader must not read it as an int)
 *   NO_INIT    exports gq_plugin_abi but no gq_plugin_init
 *   DUP_NAME   registers a format named "int", which the built-ins already have
 *   LATE_FAIL  registers a format and a method named "late_fail", then fails (the loader must
 *              remove both) */
#include "plugin/gq_plugin.h"

#if defined(BAD_ABI)
const int gq_plugin_abi = 999;
#elif defined(ABI_FUNC)
int gq_plugin_abi(void);
int gq_plugin_abi(void) { return GQ_PLUGIN_ABI; }
#else
const int gq_plugin_abi = GQ_PLUGIN_ABI;
#endif

#if !defined(NO_INIT)
static size_t bytes(const void *p, int rows, int cols)
{
    (void)p;
    return (size_t)rows * (size_t)cols * 4;
}

static int quant(const void *p, const float *w, int rows, int cols, const float *im,
                 uint8_t *codes, float *deq, gq_error *err)
{
    (void)p, (void)w, (void)rows, (void)cols, (void)im, (void)codes, (void)deq;
    return gq_fail(err, "not a real format");
}

static int dequant(const void *p, const uint8_t *codes, int rows, int cols, float *out,
                   gq_error *err)
{
    (void)p, (void)codes, (void)rows, (void)cols, (void)out;
    return gq_fail(err, "not a real format");
}

static const gq_param_spec none[] = {{0}};
#if defined(LATE_FAIL)
static int no_block(const void *p, gq_block_ctx *ctx, gq_error *err)
{
    (void)p, (void)ctx;
    return gq_fail(err, "not a real method");
}

static const gq_format late_format = {
    .name = "late_fail", .summary = "registered, then init fails", .params = none,
    .storage_bytes = bytes, .quantize = quant, .dequantize = dequant};
static const gq_method late_method = {
    .name = "late_fail", .summary = "registered, then init fails", .params = none,
    .propagate = GQ_PROPAGATE_FP, .quantize_block = no_block};

int gq_plugin_init(const gq_plugin_host *host, gq_error *err)
{
    if (host->register_format(&late_format, err) || host->register_method(&late_method, err))
        return -1;
    return gq_fail(err, "late_fail: the device is not ready");
}
#else
static const gq_format dup = {
    .name = "int", .summary = "a second \"int\"", .params = none, .storage_bytes = bytes,
    .quantize = quant, .dequantize = dequant};

int gq_plugin_init(const gq_plugin_host *host, gq_error *err)
{
    return host->register_format(&dup, err);
}
#endif
#endif
