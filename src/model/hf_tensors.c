/* transformers' names and shapes of a model's tensors (see hf_internal.h). */
#include <stdio.h>
#include <stdlib.h>

#include "model/hf_internal.h"

static const char *const hf_linear[GQ_N_LINEAR] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

static void add(hf_tensor_ref *t, int *n, float *data, int rows, int cols, int ndim, int hs,
                const char *fmt, int l, const char *part)
{
    hf_tensor_ref *r = &t[(*n)++];
    snprintf(r->name, sizeof r->name, fmt, l, part);
    r->data = data;
    r->rows = rows;
    r->cols = cols;
    r->ndim = ndim;
    r->head_size = hs;
}

/* The tensors of block l (which exist follows the configuration; data is the layer's
 * pointer, NULL while a streamed block is not acquired). */
void hf_layer_refs(const gq_model *m, int l, hf_tensor_ref *t, int *n)
{
    const gq_config *c = &m->cfg;
    const gq_layer *L = &m->layers[l];
    int hs = gq_head_size(c);
    add(t, n, L->rms_att, c->dim, 1, 1, 0, "model.layers.%d.%s", l, "input_layernorm.weight");
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        int rows, cols, rope = k == GQ_LIN_Q || k == GQ_LIN_K ? hs : 0;
        gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
        add(t, n, L->w[k], rows, cols, 2, rope, "model.layers.%d.%s.weight", l, hf_linear[k]);
        if (gq_has_bias(c, k))
            add(t, n, L->b[k], rows, 1, 1, rope, "model.layers.%d.%s.bias", l, hf_linear[k]);
    }
    if (c->qk_norm) {
        add(t, n, L->q_norm, hs, 1, 1, hs, "model.layers.%d.%s", l, "self_attn.q_norm.weight");
        add(t, n, L->k_norm, hs, 1, 1, hs, "model.layers.%d.%s", l, "self_attn.k_norm.weight");
    }
    add(t, n, L->rms_ffn, c->dim, 1, 1, 0, "model.layers.%d.%s", l,
        "post_attention_layernorm.weight");
}

int hf_tensor_refs(const gq_model *m, hf_tensor_ref **out)
{
    const gq_config *c = &m->cfg;
    size_t cap = 4 + (size_t)c->n_layers * (2 + 2 * GQ_N_LINEAR + 2);
    hf_tensor_ref *t = calloc(cap, sizeof *t);
    if (!(*out = t))
        return -1;
    int n = 0;
    add(t, &n, m->tok_embeddings, c->vocab_size, c->dim, 2, 0, "model.%.0d%s", 0,
        "embed_tokens.weight");
    for (int l = 0; l < c->n_layers; l++)
        hf_layer_refs(m, l, t, &n);
    add(t, &n, m->rms_final, c->dim, 1, 1, 0, "model.%.0d%s", 0, "norm.weight");
    if (!c->shared_classifier)
        add(t, &n, m->wcls, c->vocab_size, c->dim, 2, 0, "%.0d%s", 0, "lm_head.weight");
    return n;
}
