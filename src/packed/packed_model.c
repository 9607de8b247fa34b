/* Packed models: a view of an fp32 model whose block linears (and optionally the classifier)
 * run on packed weights through the forward pass's linear operators. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "core/gq_gemm.h"
#include "packed/packed_internal.h"

/* An fp32 weight as a linear operator through BLAS. */
struct pk_f32_op {
    gq_linear_op op;
    const float *W; /* (rows, cols) */
    int rows, cols;
};

static void f32_apply(const gq_linear_op *op, float *y, const float *x, int n)
{
    const struct pk_f32_op *f = (const struct pk_f32_op *)op;
    if (n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, f->rows, f->cols, 1.0f, f->W, f->cols, x, 1,
                    0.0f, y, 1);
    else
        gq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, f->rows, f->cols, 1.0f, x, f->cols,
                 f->W, f->cols, 0.0f, y, f->rows);
}

void gq_packed_model_free(gq_packed_model *pm)
{
    if (!pm)
        return;
    if (pm->lin)
        for (int i = 0; i < pm->model.cfg.n_layers * GQ_N_LINEAR; i++)
            gq_packed_linear_free(pm->lin[i]);
    free(pm->lin);
    gq_packed_linear_free(pm->cls);
    free(pm->model.layers);
    free(pm->f32_ops);
    memset(pm, 0, sizeof *pm);
}

size_t gq_packed_fp32_decode_bytes(const gq_config *c)
{
    size_t d = (size_t)c->dim;
    size_t lin = (size_t)c->n_layers * (gq_layer_floats(c) - 2 * d);
    return 4 * (lin + (size_t)c->n_layers * 2 * d + d + (size_t)c->vocab_size * d + d);
}

/* pm->model = a view of src with its own layer array and no storage of its own. */
static int make_view(const gq_model *src, gq_packed_model *pm, gq_error *err)
{
    const gq_config *c = &src->cfg;
    memset(pm, 0, sizeof *pm);
    pm->model = *src;
    pm->model.map = NULL;
    pm->model.map_size = 0;
    pm->model.heap = NULL;
    pm->model.heap_floats = 0;
    pm->model.transforms = NULL;
    pm->model.rotation = NULL; /* the layers' down_in_rot stay src's */
    pm->model.cls_op = NULL;
    pm->model.layers = malloc((size_t)c->n_layers * sizeof *pm->model.layers);
    if (!pm->model.layers)
        return gq_fail(err, "packed: out of memory");
    memcpy(pm->model.layers, src->layers, (size_t)c->n_layers * sizeof *pm->model.layers);
    return 0;
}

int gq_packed_model_fp32(const gq_model *src, gq_packed_model *pm, gq_error *err)
{
    const gq_config *c = &src->cfg;
    if (make_view(src, pm, err) != 0)
        return -1;
    int n = c->n_layers * GQ_N_LINEAR;
    pm->f32_ops = calloc((size_t)n + 1, sizeof *pm->f32_ops);
    if (!pm->f32_ops) {
        gq_packed_model_free(pm);
        return gq_fail(err, "packed: out of memory");
    }
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            struct pk_f32_op *f = &pm->f32_ops[l * GQ_N_LINEAR + k];
            f->op.apply = f32_apply;
            f->W = src->layers[l].w[k];
            gq_linear_shape(c, (gq_linear_kind)k, &f->rows, &f->cols);
            pm->model.layers[l].op[k] = &f->op;
        }
    struct pk_f32_op *cls = &pm->f32_ops[n];
    *cls = (struct pk_f32_op){{f32_apply, NULL}, src->wcls, c->vocab_size, c->dim};
    pm->model.cls_op = &cls->op;
    snprintf(pm->label, sizeof pm->label, "fp32");
    pm->decode_bytes = gq_packed_fp32_decode_bytes(c);
    return 0;
}

/* Block linear k of layer l: from the given codes in their column order (deq, when wanted,
 * is their dequantize() with the columns put back), else quantized from the weights. */
static gq_packed_linear *pack_block_linear(const gq_model *src, const gq_quantizer *q,
                                           const gq_packed_codes *codes, int l, int k,
                                           float *deq, gq_error *err)
{
    int rows, cols;
    gq_linear_shape(&src->cfg, (gq_linear_kind)k, &rows, &cols);
    const size_t i = (size_t)l * GQ_N_LINEAR + k;
    const uint8_t *st = codes && codes->codes ? codes->codes[i] : NULL;
    const int32_t *perm = st && codes->perm ? codes->perm[i] : NULL;
    if (!st)
        return gq_packed_linear_new(q, src->layers[l].w[k], rows, cols, deq, err);
    gq_packed_linear *P = gq_packed_linear_from_codes(q, st, rows, cols, err);
    if (P && perm && gq_packed_linear_set_in_perm(P, perm, err)) {
        gq_packed_linear_free(P);
        return NULL;
    }
    if (P && deq && q->fmt->dequantize(q->params, st, rows, cols, deq, err)) {
        gq_packed_linear_free(P);
        return NULL;
    }
    if (P && deq && perm)
        if (pk_unpermute_cols(deq, rows, cols, perm, err)) {
        gq_packed_linear_free(P);
        return NULL;
    }
    return P;
}

/* pm = a view of src whose block linear i is packed with quant[i] (quant NULL: `one` for
 * all): the given codes where there are some, else quantized from src's weights. On failure
 * nothing is left in pm. */
static int pack_block_linears(const gq_model *src, const gq_quantizer *const *quant,
                              const gq_quantizer *one, const gq_packed_codes *codes,
                              gq_model *deq_model, gq_packed_model *pm, gq_error *err)
{
    const gq_config *c = &src->cfg;
    if (deq_model && deq_model->cfg.dim != c->dim)
        return gq_fail(err, "packed: the fake-quant model has another shape");
    if (make_view(src, pm, err) != 0)
        return -1;
    pm->lin = calloc((size_t)c->n_layers * GQ_N_LINEAR, sizeof *pm->lin);
    if (!pm->lin) {
        gq_packed_model_free(pm);
        return gq_fail(err, "packed: out of memory");
    }
    size_t d = (size_t)c->dim;
    pm->decode_bytes = 4 * ((size_t)c->n_layers * 2 * d + 2 * d); /* norms, embedding row */
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            size_t i = (size_t)l * GQ_N_LINEAR + (size_t)k;
            const gq_quantizer *q = quant ? quant[i] : one;
            float *deq = deq_model ? deq_model->layers[l].w[k] : NULL;
            gq_packed_linear *P = q ? pack_block_linear(src, q, codes, l, k, deq, err) : NULL;
            if (!P) {
                char name[64];
                gq_tensor_name(l, (gq_linear_kind)k, name, sizeof name);
                gq_packed_model_free(pm);
                if (!q)
                    return gq_fail(err, "%s: no format to pack it in", name);
                return gq_fail_prefix(err, "%s", name);
            }
            pm->lin[i] = P;
            pm->model.layers[l].op[k] = gq_packed_linear_op(P);
            pm->packed_bytes += P->bytes;
        }
    return 0;
}

int gq_packed_model_build_mixed(const gq_model *src, const gq_quantizer *const *quant,
                                const gq_packed_codes *codes, gq_model *deq_model,
                                gq_packed_model *pm, gq_error *err)
{
    const gq_config *c = &src->cfg;
    if (pack_block_linears(src, quant, NULL, codes, deq_model, pm, err))
        return -1;
    snprintf(pm->label, sizeof pm->label, "mixed");
    pm->decode_bytes += 4 * (size_t)c->vocab_size * (size_t)c->dim + pm->packed_bytes;
    return 0;
}

int gq_packed_model_build(const gq_model *src, const gq_quantizer *q,
                          const gq_packed_codes *codes, bool pack_classifier,
                          gq_model *deq_model, gq_packed_model *pm, gq_error *err)
{
    const gq_config *c = &src->cfg;
    if (pack_block_linears(src, NULL, q, codes, deq_model, pm, err))
        return -1;
    gq_quantizer_label(q, pm->label, sizeof pm->label);
    size_t d = (size_t)c->dim;
    size_t cls_floats = (size_t)c->vocab_size * d;
    if (pack_classifier) {
        float *deq = NULL;
        if (deq_model) {
            if (deq_model->wcls == deq_model->tok_embeddings) {
                gq_packed_model_free(pm);
                return gq_fail(err, "packed: a tied classifier cannot be fake-quantized "
                                    "without changing the embeddings");
            }
            deq = deq_model->wcls;
        }
        pm->cls = gq_packed_linear_new(q, src->wcls, c->vocab_size, c->dim, deq, err);
        if (!pm->cls) {
            gq_packed_model_free(pm);
            return gq_fail_prefix(err, "classifier");
        }
        pm->model.cls_op = gq_packed_linear_op(pm->cls);
        pm->packed_bytes += pm->cls->bytes;
    } else {
        pm->decode_bytes += 4 * cls_floats;
    }
    pm->decode_bytes += pm->packed_bytes;
    return 0;
}

void gq_packed_model_set_act_q8(gq_packed_model *pm, bool on)
{
    for (int i = 0; pm->lin && i < pm->model.cfg.n_layers * GQ_N_LINEAR; i++)
        gq_packed_linear_set_act_q8(pm->lin[i], on);
    if (pm->cls)
        gq_packed_linear_set_act_q8(pm->cls, on);
}
