/* A llama-architecture GGUF as a gq_model: the configuration from the llama.* keys, each
 * tensor checked against it and dequantized exactly into fp32, the linears' bytes kept. */
#include "gguf/gq_gguf_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_half.h"

static const char *const linear_names[GQ_N_LINEAR] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

const char *gq_gguf_linear_name(gq_linear_kind k)
{
    return (unsigned)k < GQ_N_LINEAR ? linear_names[k] : "?";
}

void gq_gguf_tensor_name(int layer, gq_linear_kind k, char *buf, size_t n)
{
    snprintf(buf, n, "blk.%d.%s.weight", layer, gq_gguf_linear_name(k));
}

static int get_int(const gq_gguf *g, const char *key, uint64_t max, int *out, gq_error *err)
{
    uint64_t v;
    if (gq_gguf_get_uint(g, key, false, max, &v, err))
        return -1;
    *out = (int)v;
    return 0;
}

/* Keys describing what gq-bench's forward pass computes: refused when they differ from it. */
static int check_forward_keys(const gq_gguf *g, gq_config *c, gq_error *err)
{
    float eps = 1e-5f, base = 10000.0f;
    uint64_t rot = (uint64_t)gq_head_size(c);
    const char *s;
    size_t n;
    if (gq_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", true, &eps, err) < 0 ||
        gq_gguf_get_f32(g, "llama.rope.freq_base", true, &base, err) < 0 ||
        gq_gguf_get_uint(g, "llama.rope.dimension_count", true, 1u << 20, &rot, err) < 0)
        return -1;
    if (!(eps > 0.0f && eps < 1.0f) || !(base > 1.0f && base < 1e9f))
        return gq_fail(err, "%s: keys llama.attention.layer_norm_rms_epsilon = %g, "
                       "llama.rope.freq_base = %g: out of range", g->path, (double)eps,
                       (double)base);
    /* zero keeps llama2.c's values (1e-5, 10000), so such a model stays llama2.c-shaped */
    c->norm_eps = eps == 1e-5f ? 0.0f : eps;
    c->rope_theta = base == 10000.0f ? 0.0f : base;
    if (rot != (uint64_t)gq_head_size(c))
        return gq_fail(err, "%s: key llama.rope.dimension_count = %llu; gq-bench rotates the "
                       "whole head (%d)", g->path, (unsigned long long)rot, gq_head_size(c));
    int rc = gq_gguf_get_str(g, "llama.rope.scaling.type", true, &s, &n, err);
    if (rc < 0)
        return -1;
    if (rc == 0 && !(n == 4 && memcmp(s, "none", 4) == 0))
        return gq_fail(err, "%s: key llama.rope.scaling.type = \"%.*s\"; gq-bench has no rope "
                       "scaling", g->path, (int)(n > 64 ? 64 : n), s);
    return 0;
}

static int read_config(const gq_gguf *g, gq_config *c, gq_error *err)
{
    const char *arch;
    size_t n;
    const gq_gguf_kv *tokens;
    memset(c, 0, sizeof *c);
    if (gq_gguf_get_str(g, "general.architecture", false, &arch, &n, err))
        return -1;
    if (!(n == 5 && memcmp(arch, "llama", 5) == 0))
        return gq_fail(err, "%s: key general.architecture = \"%.*s\"; gq-bench reads llama",
                       g->path, (int)(n > 64 ? 64 : n), arch);
    uint64_t kv = 0;
    if (get_int(g, "llama.embedding_length", 1u << 16, &c->dim, err) ||
        get_int(g, "llama.feed_forward_length", 1u << 18, &c->hidden_dim, err) ||
        get_int(g, "llama.block_count", 1u << 10, &c->n_layers, err) ||
        get_int(g, "llama.attention.head_count", 1u << 12, &c->n_heads, err) ||
        get_int(g, "llama.context_length", 1u << 20, &c->seq_len, err) ||
        gq_gguf_get_uint(g, "llama.attention.head_count_kv", true, 1u << 12, &kv, err) < 0 ||
        gq_gguf_get_array(g, "tokenizer.ggml.tokens", GQ_GGUF_STRING, 0, &tokens, err))
        return -1;
    c->n_kv_heads = kv ? (int)kv : c->n_heads;
    if (tokens->n > (1u << 22))
        return gq_fail(err, "%s: key tokenizer.ggml.tokens has %llu tokens (at most %u)",
                       g->path, (unsigned long long)tokens->n, 1u << 22);
    c->vocab_size = (int)tokens->n;
    if (gq_config_check(c, g->path, err) || check_forward_keys(g, c, err) ||
        gq_config_check_plausible(c, g->size, g->path, err))
        return -1;
    return 0;
}

/* The tensor `name` with shape ne = (cols, rows); rows 0 for a 1-D tensor. */
static int expect_tensor(const gq_gguf *g, const char *name, int cols, int rows,
                         bool optional, const gq_gguf_tensor **out, gq_error *err)
{
    const gq_gguf_tensor *t = gq_gguf_find_tensor(g, name);
    *out = t;
    if (!t)
        return optional ? 0 : gq_fail(err, "%s: tensor %s is missing", g->path, name);
    uint32_t dims = rows ? 2 : 1;
    if (t->n_dims != dims || t->ne[0] != (uint64_t)cols ||
        t->ne[1] != (uint64_t)(rows ? rows : 1))
        return gq_fail(err, "%s: tensor %s has shape [%llu, %llu] (%u dims); the metadata "
                       "implies [%d, %d]", g->path, name, (unsigned long long)t->ne[0],
                       (unsigned long long)t->ne[1], t->n_dims, cols, rows ? rows : 1);
    return 0;
}

/* out (rows, cols) = the tensor's values: floats converted, blocks dequantized by their
 * format. q receives the format (fmt NULL for float types) when not NULL. */
static int tensor_to_f32(const gq_gguf *g, const gq_gguf_tensor *t, int rows, int cols,
                         float *out, gq_quantizer *q, gq_error *err)
{
    size_t n = (size_t)rows * (size_t)cols;
    const uint8_t *d = t->data;
    if (!t->type->format) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            if (t->type->id == GQ_GGML_F32) {
                memcpy(&out[i], d + 4 * i, 4);
                continue;
            }
            memcpy(&h, d + 2 * i, 2);
            out[i] = t->type->id == GQ_GGML_F16 ? gq_fp16_to_fp32(h) : gq_bf16_to_fp32(h);
        }
        return 0;
    }
    gq_quantizer local = {0}, *qq = q ? q : &local;
    if (gq_quantizer_init(qq, t->type->format, NULL, t->name, err))
        return gq_fail_prefix(err, "%s", g->path);
    int rc = 0;
    if (gq_quantizer_bytes(qq, rows, cols) != t->nbytes)
        rc = gq_fail(err, "%s: tensor %s: %zu bytes of %s, the format stores %zu", g->path,
                     t->name, t->nbytes, t->type->name, gq_quantizer_bytes(qq, rows, cols));
    else if (qq->fmt->dequantize(qq->params, d, rows, cols, out, err))
        rc = gq_fail_prefix(err, "%s: tensor %s", g->path, t->name);
    if (!q || rc)
        gq_quantizer_free(qq);
    return rc;
}

/* Every tensor of the file must be one the llama architecture names for this config. */
static int check_no_extra(const gq_gguf *g, int n_layers, size_t expected, gq_error *err)
{
    for (size_t i = 0; i < g->n_tensors; i++) {
        const char *nm = g->tensors[i].name;
        int l = -1, used = 0;
        char part[GQ_GGUF_MAX_NAME];
        bool known = strcmp(nm, "token_embd.weight") == 0 ||
                     strcmp(nm, "output_norm.weight") == 0 || strcmp(nm, "output.weight") == 0;
        if (!known && sscanf(nm, "blk.%d.%63[a-z_].weight%n", &l, part, &used) == 2 &&
            (size_t)used == strlen(nm) && l >= 0 && l < n_layers) {
            known = strcmp(part, "attn_norm") == 0 || strcmp(part, "ffn_norm") == 0;
            for (int k = 0; k < GQ_N_LINEAR && !known; k++)
                known = strcmp(part, linear_names[k]) == 0;
        }
        if (!known)
            return gq_fail(err, "%s: tensor %s is not part of gq-bench's llama model (no "
                           "biases, rope tables or other architectures)", g->path, nm);
    }
    if (g->n_tensors != expected)
        return gq_fail(err, "%s: %zu tensors, expected %zu", g->path, g->n_tensors, expected);
    return 0;
}

/* Layer l's norms and linears; the linears' formats and bytes go to w when given. */
static int load_layer(const gq_gguf *g, gq_model *m, int l, gq_gguf_weights *w, gq_error *err)
{
    const gq_config *c = &m->cfg;
    const gq_gguf_tensor *t;
    char name[GQ_GGUF_MAX_NAME];
    snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
    if (expect_tensor(g, name, c->dim, 0, false, &t, err) ||
        tensor_to_f32(g, t, 1, c->dim, m->layers[l].rms_att, NULL, err))
        return -1;
    snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
    if (expect_tensor(g, name, c->dim, 0, false, &t, err) ||
        tensor_to_f32(g, t, 1, c->dim, m->layers[l].rms_ffn, NULL, err))
        return -1;
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        int rows, cols;
        size_t i = (size_t)l * GQ_N_LINEAR + (size_t)k;
        gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
        gq_gguf_tensor_name(l, (gq_linear_kind)k, name, sizeof name);
        if (expect_tensor(g, name, cols, rows, false, &t, err) ||
            tensor_to_f32(g, t, rows, cols, m->layers[l].w[k], w ? &w->quant[i] : NULL, err))
            return -1;
        if (!w)
            continue;
        w->type[i] = t->type;
        if (t->type->format) {
            if (!(w->codes[i] = malloc(t->nbytes)))
                return gq_fail(err, "%s: out of memory for tensor %s", g->path, name);
            memcpy(w->codes[i], t->data, t->nbytes);
        }
    }
    return 0;
}

static int alloc_weights(gq_gguf_weights *w, int n_layers, gq_error *err)
{
    memset(w, 0, sizeof *w);
    w->n_linear = n_layers * GQ_N_LINEAR;
    w->type = calloc((size_t)w->n_linear, sizeof *w->type);
    w->quant = calloc((size_t)w->n_linear, sizeof *w->quant);
    w->codes = calloc((size_t)w->n_linear, sizeof *w->codes);
    if (!w->type || !w->quant || !w->codes) {
        gq_gguf_weights_free(w);
        return gq_fail(err, "out of memory");
    }
    return 0;
}

void gq_gguf_weights_free(gq_gguf_weights *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n_linear; i++) {
        if (w->quant)
            gq_quantizer_free(&w->quant[i]);
        if (w->codes)
            free(w->codes[i]);
    }
    free(w->type);
    free(w->quant);
    free(w->codes);
    memset(w, 0, sizeof *w);
}

/* Embeddings, final norm and classifier. output.weight absent, or equal in type and bytes to
 * token_embd.weight (llama.cpp's llama2.c converter writes a tied classifier twice), is tied. */
static int load_outer(const gq_gguf *g, gq_model *m, gq_gguf_weights *w, gq_error *err)
{
    const gq_config *c = &m->cfg;
    const gq_gguf_tensor *emb, *out, *norm;
    if (expect_tensor(g, "token_embd.weight", c->dim, c->vocab_size, false, &emb, err) ||
        expect_tensor(g, "output.weight", c->dim, c->vocab_size, true, &out, err) ||
        expect_tensor(g, "output_norm.weight", c->dim, 0, false, &norm, err) ||
        tensor_to_f32(g, emb, c->vocab_size, c->dim, m->tok_embeddings, NULL, err) ||
        tensor_to_f32(g, norm, 1, c->dim, m->rms_final, NULL, err) ||
        (!c->shared_classifier &&
         tensor_to_f32(g, out, c->vocab_size, c->dim, m->wcls, NULL, err)))
        return -1;
    if (w) {
        w->embd_type = emb->type;
        w->output_type = c->shared_classifier ? NULL : out->type;
    }
    return 0;
}

static bool tied_output(const gq_gguf *g)
{
    const gq_gguf_tensor *e = gq_gguf_find_tensor(g, "token_embd.weight");
    const gq_gguf_tensor *o = gq_gguf_find_tensor(g, "output.weight");
    return !o || (e && e->type == o->type && e->nbytes == o->nbytes &&
                  memcmp(e->data, o->data, e->nbytes) == 0);
}

/* Every tensor's presence and shape, before the model (sized by the metadata) is allocated:
 * the tensors then bound the allocation by the file's size. */
static int check_shapes(const gq_gguf *g, const gq_config *c, gq_error *err)
{
    const gq_gguf_tensor *t;
    char name[GQ_GGUF_MAX_NAME];
    if (expect_tensor(g, "token_embd.weight", c->dim, c->vocab_size, false, &t, err) ||
        expect_tensor(g, "output.weight", c->dim, c->vocab_size, true, &t, err) ||
        expect_tensor(g, "output_norm.weight", c->dim, 0, false, &t, err))
        return -1;
    for (int l = 0; l < c->n_layers; l++) {
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            int rows, cols;
            gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
            gq_gguf_tensor_name(l, (gq_linear_kind)k, name, sizeof name);
            if (expect_tensor(g, name, cols, rows, false, &t, err))
                return -1;
        }
        for (int n = 0; n < 2; n++) {
            snprintf(name, sizeof name, "blk.%d.%s_norm.weight", l, n ? "ffn" : "attn");
            if (expect_tensor(g, name, c->dim, 0, false, &t, err))
                return -1;
        }
    }
    return 0;
}

int gq_gguf_model_from(const gq_gguf *g, gq_model *m, gq_gguf_weights *w, gq_error *err)
{
    gq_config c;
    memset(m, 0, sizeof *m);
    if (w)
        memset(w, 0, sizeof *w);
    if (read_config(g, &c, err))
        return -1;
    c.shared_classifier = tied_output(g);
    size_t expected = 2 + (c.shared_classifier && !gq_gguf_find_tensor(g, "output.weight")
                               ? 0 : 1) + (size_t)c.n_layers * (2 + GQ_N_LINEAR);
    if (check_no_extra(g, c.n_layers, expected, err) || check_shapes(g, &c, err) ||
        gq_model_alloc(&c, m, err))
        return -1;
    if (w && alloc_weights(w, c.n_layers, err))
        return -1;
    if (load_outer(g, m, w, err))
        return -1;
    for (int l = 0; l < c.n_layers; l++)
        if (load_layer(g, m, l, w, err))
            return -1;
    snprintf(m->path, sizeof m->path, "%s", g->path);
    return gq_model_check_finite(m, g->path, err);
}

int gq_gguf_load_model(const char *path, gq_model *m, gq_gguf_weights *w, gq_error *err)
{
    gq_gguf g;
    memset(m, 0, sizeof *m);
    if (w)
        memset(w, 0, sizeof *w);
    if (gq_gguf_open(path, &g, err))
        return -1;
    int rc = gq_gguf_model_from(&g, m, w, err);
    gq_gguf_close(&g);
    if (rc) {
        gq_model_free(m);
        gq_gguf_weights_free(w);
    }
    return rc;
}
