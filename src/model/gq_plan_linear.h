#ifndef GQ_PLAN_LINEAR_H
#define GQ_PLAN_LINEAR_H
/* The block linears of a quantized model as its exporters (GGUF, GPTQ, AWQ) see them: shape,
 * tensor name, the quantizer a plan gives it and the codes the method handed over. One walker
 * so that every exporter visits the same linears in the same order with the same lookups. */
#include <stddef.h>
#include <stdint.h>

#include "core/gq_error.h"
#include "model/gq_model.h"

struct gq_quantizer;

/* Where the quantizers and codes come from: quant_of(quant_ctx, c, "layers.L.attn.q_proj")
 * (e.g. gq_plan_tensor_quantizer with the plan), NULL when the tensor stays in floats; codes
 * and perm indexed l * GQ_N_LINEAR + k (gq_quant_report.linear_codes / linear_perm), n_codes
 * entries; NULL arrays or entries: none handed over / columns in order. */
typedef struct gq_plan_linears {
    const struct gq_quantizer *(*quant_of)(const void *quant_ctx, const gq_config *c,
                                           const char *tensor);
    const void *quant_ctx;
    const uint8_t *const *codes;
    const int32_t *const *perm;
    size_t n_codes;
} gq_plan_linears;

/* One block linear. */
typedef struct gq_plan_linear {
    int layer;
    gq_linear_kind kind;
    size_t index;                   /* layer * GQ_N_LINEAR + kind */
    int rows, cols;                 /* (out, in) */
    char name[64];                  /* "layers.3.mlp.down_proj" */
    const struct gq_quantizer *q;   /* NULL: kept in floats */
    const uint8_t *codes;           /* the method's storage of it, or NULL */
    const int32_t *perm;            /* its storage's column order, or NULL (in order) */
} gq_plan_linear;

/* Fills b for block linear `index` of a model of config c. */
void gq_plan_linear_at(const gq_config *c, const gq_plan_linears *src, size_t index,
                        gq_plan_linear *b);

/* Calls visit for every block linear, layer by layer in gq_linear_kind order; stops at the
 * first nonzero return, which it returns. */
typedef int (*gq_plan_linear_fn)(void *ctx, const gq_plan_linear *b, gq_error *err);
int gq_plan_each_linear(const gq_config *c, const gq_plan_linears *src, gq_plan_linear_fn visit,
                         void *ctx, gq_error *err);

#endif
