#ifndef GQ_ACT_HOOK_H
#define GQ_ACT_HOOK_H
/* Fake quantization of activations inside the forward pass, as seen by src/model: the batched
 * path (forward.c) and the decode path (forward_ref.c) hand the input of every block linear and
 * every key and value row written to the KV cache to the model's hook (gq_model.act; NULL: no
 * hook, the forward pass is exactly the unquantized one). The quantizers themselves live above
 * the model layer (src/act/gq_act.h builds a hook from activation specs and formats). */
#include <stdbool.h>
#include <stddef.h>

#include "core/gq_error.h"
#include "model/gq_model.h"

struct gq_act_hook {
    /* Whether the input of linear k of block `layer` is quantized. */
    bool (*has_input)(const gq_act_hook *h, int layer, gq_linear_kind k);
    /* xq (n, width) = the fake-quantized input x (n, width) of linear k of block `layer`. The
     * rows are windows of T consecutive tokens (n a multiple of T; T = 1 in decode): a
     * per-tensor dynamic scale covers one window. Same bits for any thread count. */
    void (*quant_input)(const gq_act_hook *h, int layer, gq_linear_kind k, const float *x,
                        float *xq, int n, int width, int T);
    /* Optional (NULL: the cache keeps fp32): quantizes in place n rows of kv_dim keys (after
     * RoPE; value false) or values (value true) of block `layer` as they enter the cache. */
    void (*quant_kv)(const gq_act_hook *h, int layer, bool value, float *rows, int n);
    /* Optional (NULL: no static scales): refits the static range of linear k of block `layer`
     * from its inputs x (n, width) by the spec's calibration rule; does nothing when that
     * input's scales are dynamic or it is not quantized. Methods that train through the
     * quantizers (AffineQuant) call it while a block's inputs change; the final ranges come
     * from the calibration of the quantized model. */
    int (*calibrate_input)(gq_act_hook *h, int layer, gq_linear_kind k, const float *x,
                           size_t n, int width, gq_error *err);
};

#endif
