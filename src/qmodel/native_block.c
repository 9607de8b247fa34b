/* The native format's tensors of a model, block by block (gq_qmodel.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gq_rotation.h"
#include "model/gq_safetensors.h"
#include "qmodel/gq_qmodel.h"

static int add_floats(gq_native_writer *w, const char *name, const float *x, int64_t rows,
                      int64_t cols, gq_error *err)
{
    return gq_native_add(w, name, GQ_ST_F32, cols > 0 ? 2 : 1, rows, cols, x, err);
}

/* The codes of tensor `name` (rows, cols) with their column order, after checking that they
 * dequantize to exactly w: what is saved is what was evaluated. */
static int add_checked_codes(gq_native_writer *w, const char *name, const gq_quantizer *q,
                             const uint8_t *codes, const int32_t *perm, const float *weights,
                             int rows, int cols, gq_error *err)
{
    float *back = malloc((size_t)rows * cols * sizeof *back);
    if (!back)
        return gq_fail(err, "%s: out of memory", name);
    int rc = gq_qcodes_dequantize(q, codes, perm, rows, cols, back, name, err);
    if (!rc && memcmp(back, weights, (size_t)rows * cols * sizeof *back) != 0)
        rc = gq_fail(err, "%s: its codes do not dequantize to the quantized model's weights; "
                          "refusing a save that would not be lossless", name);
    free(back);
    return rc ? -1
              : gq_native_add_codes(w, name, q, codes, gq_quantizer_bytes(q, rows, cols), perm,
                                    cols, err);
}

static int add_transforms(gq_native_writer *w, const gq_model *m, int l, gq_error *err)
{
    const gq_layer *L = &m->layers[l];
    const float *t[2] = {L->att_in_transform, L->ffn_in_transform};
    const char *part[2] = {"att_in_transform", "ffn_in_transform"};
    for (int i = 0; i < 2; i++) {
        char name[96];
        snprintf(name, sizeof name, "layers.%d.%s", l, part[i]);
        if (t[i] && add_floats(w, name, t[i], m->cfg.dim, m->cfg.dim, err))
            return -1;
    }
    return 0;
}

int gq_native_add_block(gq_native_writer *w, const gq_model *m, int l,
                        const gq_quantizer *const quant[GQ_N_LINEAR],
                        const uint8_t *const codes[GQ_N_LINEAR],
                        const int32_t *const perm[GQ_N_LINEAR], gq_error *err)
{
    gq_layer *L = &m->layers[l];
    char name[96];
    snprintf(name, sizeof name, "layers.%d.attn_norm", l);
    if (add_floats(w, name, L->rms_att, m->cfg.dim, 0, err))
        return -1;
    snprintf(name, sizeof name, "layers.%d.ffn_norm", l);
    if (add_floats(w, name, L->rms_ffn, m->cfg.dim, 0, err))
        return -1;
    gq_extra_tensor ex[GQ_MAX_EXTRAS];
    int n = gq_layer_extras(&m->cfg, L, l, ex);
    for (int i = 0; i < n; i++)
        if (add_floats(w, ex[i].name, *ex[i].slot, (int64_t)ex[i].n, 0, err))
            return -1;
    if (add_transforms(w, m, l, err))
        return -1;
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        int rows, cols;
        gq_linear_shape(&m->cfg, (gq_linear_kind)k, &rows, &cols);
        gq_tensor_name(l, (gq_linear_kind)k, name, sizeof name);
        int rc = quant && quant[k] && codes && codes[k]
                     ? add_checked_codes(w, name, quant[k], codes[k], perm ? perm[k] : NULL,
                                         L->w[k], rows, cols, err)
                     : add_floats(w, name, L->w[k], rows, cols, err);
        if (rc)
            return -1;
    }
    return 0;
}

/* The online rotation of down_proj's input (one for every block, gq_layer.down_in_rot):
 * "down_in_rotation.order" (I32, [m, p]) and "down_in_rotation.block" (U8, the m x m doubles
 * of its block B, little-endian), from which the loader rebuilds it exactly. */
static int add_rotation(gq_native_writer *w, const gq_model *m, gq_error *err)
{
    const gq_rotation *r = m->cfg.n_layers > 0 ? m->layers[0].down_in_rot : NULL;
    if (!r)
        return 0;
    const int32_t order[2] = {r->m, r->p};
    return gq_native_add(w, "down_in_rotation.order", GQ_ST_I32, 1, 2, 0, order, err) ||
                   gq_native_add(w, "down_in_rotation.block", GQ_ST_U8, 1,
                                 (int64_t)r->m * r->m * (int64_t)sizeof(double), 0, r->base, err)
               ? -1
               : 0;
}

int gq_native_add_outer(gq_native_writer *w, const gq_model *m, const gq_quantizer *embd_q,
                        const uint8_t *embd_codes, const gq_quantizer *cls_q,
                        const uint8_t *cls_codes, gq_error *err)
{
    const gq_config *c = &m->cfg;
    int rc = embd_q && embd_codes
                 ? add_checked_codes(w, "tok_embeddings", embd_q, embd_codes, NULL,
                                     m->tok_embeddings, c->vocab_size, c->dim, err)
                 : add_floats(w, "tok_embeddings", m->tok_embeddings, c->vocab_size, c->dim,
                              err);
    if (rc || add_floats(w, "final_norm", m->rms_final, c->dim, 0, err) ||
        add_rotation(w, m, err))
        return -1;
    if (c->shared_classifier)
        return 0;
    return cls_q && cls_codes ? add_checked_codes(w, "classifier", cls_q, cls_codes, NULL,
                                                  m->wcls, c->vocab_size, c->dim, err)
                              : add_floats(w, "classifier", m->wcls, c->vocab_size, c->dim, err);
}
