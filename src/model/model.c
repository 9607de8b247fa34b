/* Model bookkeeping: tensor names and shapes, parameter counts, configuration checks,
 * heap storage, clone, explicit transforms and free. */
#include "model/gq_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/gq_alloc.h"
#include "core/gq_fileio.h"
#include "model/gq_rotation.h"
#include "model/gq_stream.h"
#include "model/model_internal.h"

static const char *const linear_names[GQ_N_LINEAR] = {
    "attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.o_proj",
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
};

const char *gq_linear_name(gq_linear_kind k)
{
    return (unsigned)k < GQ_N_LINEAR ? linear_names[k] : "?";
}

void gq_tensor_name(int layer, gq_linear_kind k, char *buf, size_t n)
{
    snprintf(buf, n, "layers.%d.%s", layer, gq_linear_name(k));
}

static const char *const family_names[GQ_N_FAMILY] = {
    "llama2.c", "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
};

const char *gq_family_name(gq_family f)
{
    return (unsigned)f < GQ_N_FAMILY ? family_names[f] : "?";
}

void gq_linear_shape(const gq_config *c, gq_linear_kind k, int *rows, int *cols)
{
    int r = c->dim, in = c->dim;
    switch (k) {
    case GQ_LIN_Q: r = gq_q_dim(c); break;
    case GQ_LIN_O: in = gq_q_dim(c); break;
    case GQ_LIN_K:
    case GQ_LIN_V: r = gq_kv_dim(c); break;
    case GQ_LIN_GATE:
    case GQ_LIN_UP: r = c->hidden_dim; break;
    case GQ_LIN_DOWN: in = c->hidden_dim; break;
    default: break;
    }
    *rows = r;
    *cols = in;
}

int gq_layer_extras(const gq_config *c, gq_layer *L, int l, gq_extra_tensor *out)
{
    int n = 0;
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        if (!gq_has_bias(c, k))
            continue;
        int rows, cols;
        gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
        out[n].slot = &L->b[k];
        out[n].n = (size_t)rows;
        snprintf(out[n].name, sizeof out[n].name, "layers.%d.%s.bias", l,
                 gq_linear_name((gq_linear_kind)k));
        n++;
    }
    if (c->qk_norm) {
        for (int i = 0; i < 2; i++) {
            out[n].slot = i == 0 ? &L->q_norm : &L->k_norm;
            out[n].n = (size_t)gq_head_size(c);
            snprintf(out[n].name, sizeof out[n].name, "layers.%d.attn.%s", l,
                     i == 0 ? "q_norm" : "k_norm");
            n++;
        }
    }
    return n;
}

size_t gq_layer_floats(const gq_config *c)
{
    size_t d = (size_t)c->dim, kv = (size_t)gq_kv_dim(c), h = (size_t)c->hidden_dim;
    size_t qd = (size_t)gq_q_dim(c), n = 2 * d + 2 * qd * d + 2 * kv * d + 3 * d * h;
    gq_extra_tensor ex[GQ_MAX_EXTRAS];
    gq_layer scratch = {0};
    int ne = gq_layer_extras(c, &scratch, 0, ex);
    for (int i = 0; i < ne; i++)
        n += ex[i].n;
    return n;
}

size_t gq_model_param_count(const gq_config *c)
{
    size_t emb = (size_t)c->vocab_size * (size_t)c->dim;
    return emb + (size_t)c->n_layers * gq_layer_floats(c) + (size_t)c->dim +
           (c->shared_classifier ? 0 : emb);
}

int gq_config_check(const gq_config *c, const char *what, gq_error *err)
{
    struct { const char *name; int v, max; } f[] = {
        {"dim", c->dim, 1 << 16},           {"hidden_dim", c->hidden_dim, 1 << 18},
        {"n_layers", c->n_layers, 1 << 10}, {"n_heads", c->n_heads, 1 << 12},
        {"n_kv_heads", c->n_kv_heads, 1 << 12}, {"vocab_size", c->vocab_size, 1 << 22},
        {"seq_len", c->seq_len, 1 << 20},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].v <= 0 || f[i].v > f[i].max)
            return gq_fail(err, "%s: header field %s = %d is outside 1..%d (not a model file?)",
                           what, f[i].name, f[i].v, f[i].max);
    if (c->head_dim < 0 || c->head_dim > (1 << 12))
        return gq_fail(err, "%s: head_dim %d is outside 1..%d", what, c->head_dim, 1 << 12);
    if (!c->head_dim && c->dim % c->n_heads != 0)
        return gq_fail(err, "%s: dim %d is not a multiple of n_heads %d", what, c->dim,
                       c->n_heads);
    if (!(c->norm_eps >= 0 && c->norm_eps < 1) || !(c->rope_theta >= 0 && isfinite(c->rope_theta)))
        return gq_fail(err, "%s: rms_norm_eps %g or rope_theta %g is out of range", what,
                       (double)c->norm_eps, (double)c->rope_theta);
    if (c->sliding_window < 0)
        return gq_fail(err, "%s: sliding_window %d is negative", what, c->sliding_window);
    if (c->n_heads % c->n_kv_heads != 0)
        return gq_fail(err, "%s: n_heads %d is not a multiple of n_kv_heads %d", what,
                       c->n_heads, c->n_kv_heads);
    if (gq_head_size(c) % 2 != 0)
        return gq_fail(err, "%s: head size %d is odd; RoPE needs pairs", what,
                       gq_head_size(c));
    return 0;
}

/* Index of the first non-finite value of x (n), or n. Reduced over threads for big tensors. */
static size_t first_non_finite(const float *x, size_t n)
{
    size_t first = n;
#pragma omp parallel for reduction(min : first) schedule(static) if (n > (1u << 22))
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]) && i < first)
            first = i;
    return first;
}

static int check_tensor(const float *x, size_t n, const char *what, const char *name,
                        gq_error *err)
{
    size_t i = first_non_finite(x, n);
    if (i < n)
        return gq_fail(err, "%s: tensor %s has a non-finite value (%g) at index %zu", what, name,
                       (double)x[i], i);
    return 0;
}

int gq_model_check_outer_finite(const gq_model *m, const char *what, gq_error *err)
{
    const gq_config *c = &m->cfg;
    size_t d = (size_t)c->dim, emb = (size_t)c->vocab_size * d;
    if (check_tensor(m->tok_embeddings, emb, what, "tok_embeddings", err) ||
        check_tensor(m->rms_final, d, what, "final_norm", err) ||
        (!c->shared_classifier && check_tensor(m->wcls, emb, what, "classifier", err)))
        return -1;
    return 0;
}

int gq_layer_check_finite(const gq_model *m, int l, const char *what, gq_error *err)
{
    const gq_config *c = &m->cfg;
    const gq_layer *L = &m->layers[l];
    size_t d = (size_t)c->dim;
    char name[64];
    snprintf(name, sizeof name, "layers.%d.attn_norm", l);
    if (check_tensor(L->rms_att, d, what, name, err))
        return -1;
    snprintf(name, sizeof name, "layers.%d.ffn_norm", l);
    if (check_tensor(L->rms_ffn, d, what, name, err))
        return -1;
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        int rows, cols;
        gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
        gq_tensor_name(l, (gq_linear_kind)k, name, sizeof name);
        if (check_tensor(L->w[k], (size_t)rows * cols, what, name, err))
            return -1;
    }
    gq_extra_tensor ex[GQ_MAX_EXTRAS];
    int ne = gq_layer_extras(c, (gq_layer *)L, l, ex);
    for (int i = 0; i < ne; i++)
        if (check_tensor(*ex[i].slot, ex[i].n, what, ex[i].name, err))
            return -1;
    return 0;
}

int gq_model_check_finite(const gq_model *m, const char *what, gq_error *err)
{
    if (gq_model_check_outer_finite(m, what, err))
        return -1;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        if (gq_block_acquire(m, l, err))
            return -1;
        int rc = gq_layer_check_finite(m, l, what, err);
        gq_block_release(m, l);
        if (rc)
            return -1;
    }
    return 0;
}

float *gq_layer_point(const gq_config *c, gq_layer *L, int l, float *p)
{
    size_t d = (size_t)c->dim;
    L->rms_att = p, p += d;
    L->rms_ffn = p, p += d;
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        int rows, cols;
        gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
        L->w[k] = p, p += (size_t)rows * cols;
    }
    gq_extra_tensor ex[GQ_MAX_EXTRAS];
    int ne = gq_layer_extras(c, L, l, ex);
    for (int i = 0; i < ne; i++)
        *ex[i].slot = p, p += ex[i].n;
    return p;
}

/* m = configuration c, zeroed layers and one zeroed heap block of n floats. */
static int storage_alloc(gq_model *m, const gq_config *c, size_t n, const char *what,
                         gq_error *err)
{
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    m->heap = gq_alloc_zero(n * sizeof(float), what, err);
    if (!m->layers || !m->heap) {
        free(m->layers);
        free(m->heap);
        memset(m, 0, sizeof *m);
        return err && err->msg[0] ? -1 : gq_fail(err, "out of memory for the model");
    }
    m->heap_floats = n;
    return 0;
}

int gq_model_heap_alloc(gq_model *m, const gq_config *c, gq_error *err)
{
    size_t n = gq_model_param_count(c);
    if (storage_alloc(m, c, n, "model weights", err))
        return -1;
    size_t d = (size_t)c->dim;
    float *p = m->heap;
    m->tok_embeddings = p;
    p += (size_t)c->vocab_size * d;
    for (int l = 0; l < c->n_layers; l++)
        p = gq_layer_point(c, &m->layers[l], l, p);
    m->rms_final = p, p += d;
    if (c->shared_classifier) {
        m->wcls = m->tok_embeddings;
    } else {
        m->wcls = p;
        p += (size_t)c->vocab_size * d;
    }
    return 0;
}

int gq_model_outer_alloc(gq_model *m, const gq_config *c, gq_error *err)
{
    size_t d = (size_t)c->dim, emb = (size_t)c->vocab_size * d;
    size_t n = emb + d + (c->shared_classifier ? 0 : emb);
    if (storage_alloc(m, c, n, "the embeddings and classifier", err))
        return -1;
    m->tok_embeddings = m->heap;
    m->rms_final = m->heap + emb;
    m->wcls = c->shared_classifier ? m->tok_embeddings : m->rms_final + d;
    return 0;
}

int gq_model_alloc(const gq_config *c, gq_model *m, gq_error *err)
{
    return gq_model_heap_alloc(m, c, err);
}

static void copy_floats(float *dst, const float *src, size_t n)
{
    memcpy(dst, src, n * sizeof(float));
}

void gq_layer_copy(const gq_config *c, gq_layer *dst, const gq_layer *src, int l)
{
    size_t d = (size_t)c->dim;
    copy_floats(dst->rms_att, src->rms_att, d);
    copy_floats(dst->rms_ffn, src->rms_ffn, d);
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        int rows, cols;
        gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
        copy_floats(dst->w[k], src->w[k], (size_t)rows * cols);
    }
    gq_extra_tensor ex[GQ_MAX_EXTRAS], sx[GQ_MAX_EXTRAS];
    int ne = gq_layer_extras(c, dst, l, ex);
    gq_layer_extras(c, (gq_layer *)src, l, sx);
    for (int i = 0; i < ne; i++)
        copy_floats(*ex[i].slot, *sx[i].slot, ex[i].n);
}

int gq_model_copy_transforms(gq_model *dst, const gq_model *src, gq_error *err)
{
    for (int l = 0; l < src->cfg.n_layers; l++) {
        const gq_layer *S = &src->layers[l];
        if ((S->att_in_transform &&
             gq_model_set_in_transform(dst, l, false, S->att_in_transform, err) != 0) ||
            (S->ffn_in_transform &&
             gq_model_set_in_transform(dst, l, true, S->ffn_in_transform, err) != 0))
            return -1;
    }
    if (src->cfg.n_layers > 0 && src->layers[0].down_in_rot)
        return gq_model_set_down_rotation(dst, src->layers[0].down_in_rot, err);
    return 0;
}

int gq_model_clone(const gq_model *src, gq_model *dst, gq_error *err)
{
    const gq_config *c = &src->cfg;
    gq_model m;
    if (gq_model_heap_alloc(&m, c, err) != 0)
        return gq_fail_prefix(err, "clone");
    size_t d = (size_t)c->dim;
    copy_floats(m.tok_embeddings, src->tok_embeddings, (size_t)c->vocab_size * d);
    for (int l = 0; l < c->n_layers; l++) {
        const gq_layer *S = &src->layers[l];
        gq_layer *L = &m.layers[l];
        if (gq_block_acquire(src, l, err)) {
            gq_model_free(&m);
            return gq_fail_prefix(err, "clone");
        }
        gq_layer_copy(c, L, S, l);
        gq_block_release(src, l);
    }
    copy_floats(m.rms_final, src->rms_final, d);
    if (!c->shared_classifier)
        copy_floats(m.wcls, src->wcls, (size_t)c->vocab_size * d);
    if (gq_model_copy_transforms(&m, src, err)) {
        gq_model_free(&m);
        return gq_fail_prefix(err, "clone");
    }
    *dst = m;
    return 0;
}

int gq_model_set_in_transform(gq_model *m, int l, bool ffn, const float *M, gq_error *err)
{
    const gq_config *c = &m->cfg;
    if (l < 0 || l >= c->n_layers)
        return gq_fail(err, "transform: layer %d is outside 0..%d", l, c->n_layers - 1);
    gq_layer *L = &m->layers[l];
    float **slot = ffn ? &L->ffn_in_transform : &L->att_in_transform;
    if (!M) {
        *slot = NULL;
        return 0;
    }
    size_t dd = (size_t)c->dim * (size_t)c->dim;
    if (!m->transforms) {
        m->transforms = gq_alloc_zero(2 * (size_t)c->n_layers * dd * sizeof(float),
                                      "explicit transforms", err);
        if (!m->transforms)
            return -1;
    }
    float *dst = m->transforms + (2 * (size_t)l + (ffn ? 1 : 0)) * dd;
    if (dst != M)
        memmove(dst, M, dd * sizeof(float));
    *slot = dst;
    return 0;
}

static bool has_in_transforms(const gq_model *m)
{
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (m->layers[l].att_in_transform || m->layers[l].ffn_in_transform)
            return true;
    return false;
}

static bool has_down_rotation(const gq_model *m)
{
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (m->layers[l].down_in_rot)
            return true;
    return false;
}

bool gq_model_has_transforms(const gq_model *m)
{
    return has_in_transforms(m) || has_down_rotation(m);
}

const char *gq_model_transforms_what(const gq_model *m)
{
    if (has_in_transforms(m))
        return "explicit input transforms (AffineQuant)";
    if (has_down_rotation(m))
        return "an online rotation of the down_proj input (rotate)";
    return "";
}

int gq_model_set_down_rotation(gq_model *m, const gq_rotation *r, gq_error *err)
{
    gq_rotation *own = NULL;
    if (r) {
        if (r->n != m->cfg.hidden_dim)
            return gq_fail(err, "rotation: width %d is not the hidden width %d", r->n,
                           m->cfg.hidden_dim);
        own = malloc(sizeof *own);
        if (!own || gq_rotation_copy(own, r, err)) {
            free(own);
            return own ? -1 : gq_fail(err, "rotation: out of memory");
        }
    }
    if (m->rotation) {
        gq_rotation_free(m->rotation);
        free(m->rotation);
    }
    m->rotation = own;
    for (int l = 0; l < m->cfg.n_layers; l++)
        m->layers[l].down_in_rot = own;
    return 0;
}

void gq_model_free(gq_model *m)
{
    if (!m)
        return;
    gq_model_close_source(m);
    if (m->map)
        munmap(m->map, m->map_size);
    free(m->heap);
    free(m->transforms);
    if (m->rotation) {
        gq_rotation_free(m->rotation);
        free(m->rotation);
    }
    free(m->layers);
    memset(m, 0, sizeof *m);
}
