/* The block linears of a quantized model, one at a time (gq_plan_linear.h). */
#include "model/gq_plan_linear.h"

#include <string.h>

void gq_plan_linear_at(const gq_config *c, const gq_plan_linears *src, size_t index,
                        gq_plan_linear *b)
{
    memset(b, 0, sizeof *b);
    b->layer = (int)(index / GQ_N_LINEAR);
    b->kind = (gq_linear_kind)(index % GQ_N_LINEAR);
    b->index = index;
    gq_linear_shape(c, b->kind, &b->rows, &b->cols);
    gq_tensor_name(b->layer, b->kind, b->name, sizeof b->name);
    b->q = src->quant_of ? src->quant_of(src->quant_ctx, c, b->name) : NULL;
    if (index < src->n_codes) {
        b->codes = src->codes ? src->codes[index] : NULL;
        b->perm = src->perm ? src->perm[index] : NULL;
    }
}

int gq_plan_each_linear(const gq_config *c, const gq_plan_linears *src, gq_plan_linear_fn visit,
                         void *ctx, gq_error *err)
{
    size_t n = (size_t)c->n_layers * GQ_N_LINEAR;
    for (size_t i = 0; i < n; i++) {
        gq_plan_linear b;
        gq_plan_linear_at(c, src, i, &b);
        int rc = visit(ctx, &b, err);
        if (rc)
            return rc;
    }
    return 0;
}
