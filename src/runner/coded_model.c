/* A cell's quantized model held as codes (gq_coded_model.h): the pipeline's sink keeps each
 * finished block's codes, fp32 linears and small tensors; the model's block source
 * dequantizes a block's coded linears when it is acquired. */
#include "runner/gq_coded_model.h"

#include <stdlib.h>
#include <string.h>

#include "model/gq_rotation.h"
#include "model/gq_stream.h"
#include "qmodel/gq_qmodel.h"

/* Block linear (l, k): its codes (format q, optional column order) or its fp32 copy. */
typedef struct {
    const gq_quantizer *q; /* NULL: held in fp32 (w) */
    uint8_t *codes;
    int32_t *perm;
    size_t bytes;          /* of codes */
    float *w;
} coded_linear;

struct coded_store {
    const gq_quant_plan *plan;
    const gq_model *share; /* the source model, whose equal outer tensors are borrowed */
    gq_model *m;          /* the model being built (cm->model) */
    int n_layers;
    coded_linear *lin;    /* (n_layers, GQ_N_LINEAR) */
    float **small;        /* per block: norms, biases, q/k norms */
    float **deq;          /* per block: the acquired coded linears in fp32, or NULL */
    bool codes_lent;      /* the report owns the codes (after gq_coded_finish) */
    gq_coded_bytes bytes;
};

static void store_free(coded_store *s)
{
    if (!s)
        return;
    for (int i = 0; s->lin && i < s->n_layers * GQ_N_LINEAR; i++) {
        if (!s->codes_lent) {
            free(s->lin[i].codes);
            free(s->lin[i].perm);
        }
        free(s->lin[i].w);
    }
    for (int l = 0; l < s->n_layers; l++) {
        free(s->small ? s->small[l] : NULL);
        free(s->deq ? s->deq[l] : NULL);
    }
    free(s->lin);
    free(s->small);
    free(s->deq);
    free(s);
}

/* Whether the output's embeddings, final norm and classifier equal the source's (no rule
 * quantized them and no whole-model step changed them): then they are borrowed. */
static bool outer_shared(const gq_model *share, const gq_model *src)
{
    const gq_config *c = &src->cfg, *sc = share ? &share->cfg : NULL;
    if (!sc || sc->vocab_size != c->vocab_size || sc->dim != c->dim ||
        sc->shared_classifier != c->shared_classifier)
        return false;
    size_t emb = (size_t)c->vocab_size * c->dim * sizeof(float);
    return memcmp(share->tok_embeddings, src->tok_embeddings, emb) == 0 &&
           memcmp(share->rms_final, src->rms_final, (size_t)c->dim * sizeof(float)) == 0 &&
           (c->shared_classifier || memcmp(share->wcls, src->wcls, emb) == 0);
}

/* Sink: the output's embeddings, final norm and classifier (borrowed from the source model
 * when equal, else fp32 copies). */
static int sink_outer(void *user, const gq_model *src, gq_error *err)
{
    coded_store *s = user;
    const gq_config *c = &src->cfg;
    if (outer_shared(s->share, src)) {
        memset(s->m, 0, sizeof *s->m);
        s->m->cfg = *c;
        if (!(s->m->layers = calloc((size_t)c->n_layers, sizeof *s->m->layers)))
            return gq_fail(err, "coded model: out of memory");
        s->m->tok_embeddings = s->share->tok_embeddings;
        s->m->rms_final = s->share->rms_final;
        s->m->wcls = s->share->wcls;
    } else {
        if (gq_model_outer_alloc(s->m, c, err))
            return gq_fail_prefix(err, "coded model");
        size_t emb = (size_t)c->vocab_size * c->dim;
        memcpy(s->m->tok_embeddings, src->tok_embeddings, emb * sizeof(float));
        memcpy(s->m->rms_final, src->rms_final, (size_t)c->dim * sizeof(float));
        if (!c->shared_classifier)
            memcpy(s->m->wcls, src->wcls, emb * sizeof(float));
        s->bytes.outer = s->m->heap_floats * sizeof(float);
    }
    s->n_layers = c->n_layers;
    s->lin = calloc((size_t)c->n_layers * GQ_N_LINEAR, sizeof *s->lin);
    s->small = calloc((size_t)c->n_layers, sizeof *s->small);
    s->deq = calloc((size_t)c->n_layers, sizeof *s->deq);
    if (!s->lin || !s->small || !s->deq)
        return gq_fail(err, "coded model: out of memory");
    return 0;
}

/* Block l's norms, biases and q/k norms into one resident buffer, pointed at by the model. */
static int keep_small(coded_store *s, const gq_config *c, int l, const gq_layer *L,
                      gq_error *err)
{
    gq_layer *D = &s->m->layers[l];
    gq_extra_tensor ex[GQ_MAX_EXTRAS], dx[GQ_MAX_EXTRAS];
    int n_ex = gq_layer_extras(c, (gq_layer *)L, l, ex);
    size_t n = 2 * (size_t)c->dim;
    for (int i = 0; i < n_ex; i++)
        n += ex[i].n;
    float *p = malloc(n * sizeof *p);
    if (!p)
        return gq_fail(err, "coded model: out of memory for block %d", l);
    s->small[l] = p;
    s->bytes.small += n * sizeof *p;
    D->rms_att = memcpy(p, L->rms_att, (size_t)c->dim * sizeof *p);
    p += c->dim;
    D->rms_ffn = memcpy(p, L->rms_ffn, (size_t)c->dim * sizeof *p);
    p += c->dim;
    gq_layer_extras(c, D, l, dx);
    for (int i = 0; i < n_ex; i++) {
        *dx[i].slot = memcpy(p, *ex[i].slot, ex[i].n * sizeof *p);
        p += ex[i].n;
    }
    return 0;
}

/* The explicit input transforms (copied into the model's storage) and the online rotation
 * (one for the model, set at its first block). */
static int keep_transforms(coded_store *s, const gq_config *c, int l, const gq_layer *L,
                           gq_error *err)
{
    const float *tr[2] = {L->att_in_transform, L->ffn_in_transform};
    size_t dd = (size_t)c->dim * c->dim;
    for (int i = 0; i < 2; i++) {
        if (!tr[i])
            continue;
        if (gq_model_set_in_transform(s->m, l, i == 1, tr[i], err))
            return gq_fail_prefix(err, "coded model: layers.%d", l);
        s->bytes.transforms += dd * sizeof(float);
    }
    if (L->down_in_rot && !s->m->rotation) {
        if (gq_model_set_down_rotation(s->m, L->down_in_rot, err))
            return gq_fail_prefix(err, "coded model");
        size_t rm = (size_t)L->down_in_rot->m;
        s->bytes.transforms += rm * rm * sizeof(double);
    }
    return 0;
}

/* Linear k of block l: a copy of its codes (and column order), else of its fp32 weights. */
static int keep_linear(coded_store *s, const gq_config *c, int l, int k, const float *w,
                       const uint8_t *codes, const int32_t *perm, gq_error *err)
{
    coded_linear *x = &s->lin[(size_t)l * GQ_N_LINEAR + k];
    int rows, cols;
    gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
    char name[96];
    gq_tensor_name(l, (gq_linear_kind)k, name, sizeof name);
    if (!codes) {
        size_t n = (size_t)rows * cols;
        if (!(x->w = malloc(n * sizeof *x->w)))
            return gq_fail(err, "%s: out of memory", name);
        s->m->layers[l].w[k] = memcpy(x->w, w, n * sizeof *x->w);
        s->bytes.fp32_lin += n * sizeof *x->w;
        s->bytes.n_fp32++;
        return 0;
    }
    x->q = gq_plan_tensor_quantizer(s->plan, c, name);
    if (!x->q)
        return gq_fail(err, "%s: codes without a format in the plan", name);
    x->bytes = gq_quantizer_bytes(x->q, rows, cols);
    x->codes = malloc(x->bytes);
    x->perm = perm ? malloc((size_t)cols * sizeof *x->perm) : NULL;
    if (!x->codes || (perm && !x->perm))
        return gq_fail(err, "%s: out of memory for its codes", name);
    memcpy(x->codes, codes, x->bytes);
    if (perm)
        memcpy(x->perm, perm, (size_t)cols * sizeof *x->perm);
    s->bytes.codes += x->bytes + (perm ? (size_t)cols * sizeof *x->perm : 0);
    s->bytes.n_coded++;
    return 0;
}

/* Sink: block l as the output holds it. */
static int sink_block(void *user, const gq_config *c, int l, const gq_layer *L,
                      uint8_t *const codes[GQ_N_LINEAR], int32_t *const perm[GQ_N_LINEAR],
                      gq_error *err)
{
    coded_store *s = user;
    if (keep_small(s, c, l, L, err) || keep_transforms(s, c, l, L, err))
        return -1;
    for (int k = 0; k < GQ_N_LINEAR; k++)
        if (keep_linear(s, c, l, k, L->w[k], codes[k], perm[k], err))
            return -1;
    return 0;
}

/* Source: block l's coded linears dequantized into one buffer (columns put back). */
static int coded_fill(void *ctx, gq_model *m, int l, gq_error *err)
{
    coded_store *s = ctx;
    const gq_config *c = &m->cfg;
    coded_linear *x = &s->lin[(size_t)l * GQ_N_LINEAR];
    size_t n = 0;
    int rows, cols;
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
        n += x[k].q ? (size_t)rows * cols : 0;
    }
    if (n == 0)
        return 0;
    float *buf = malloc(n * sizeof *buf), *p = buf;
    if (!buf)
        return gq_fail(err, "coded model: out of memory dequantizing block %d", l);
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        if (!x[k].q)
            continue;
        char name[96];
        gq_tensor_name(l, (gq_linear_kind)k, name, sizeof name);
        gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
        if (gq_qcodes_dequantize(x[k].q, x[k].codes, x[k].perm, rows, cols, p, name, err)) {
            free(buf);
            for (int j = 0; j < k; j++)
                m->layers[l].w[j] = x[j].q ? NULL : m->layers[l].w[j];
            return -1;
        }
        m->layers[l].w[k] = p;
        p += (size_t)rows * cols;
    }
    s->deq[l] = buf;
    return 0;
}

static void coded_unfill(void *ctx, gq_model *m, int l)
{
    coded_store *s = ctx;
    for (int k = 0; k < GQ_N_LINEAR; k++)
        if (s->lin[(size_t)l * GQ_N_LINEAR + k].q)
            m->layers[l].w[k] = NULL;
    free(s->deq[l]);
    s->deq[l] = NULL;
}

static void coded_close(void *ctx)
{
    store_free(ctx);
}

int gq_coded_init(gq_coded_model *cm, const gq_quant_plan *plan, const gq_model *share,
                  gq_error *err)
{
    memset(cm, 0, sizeof *cm);
    if (!(cm->store = calloc(1, sizeof *cm->store)))
        return gq_fail(err, "coded model: out of memory");
    cm->store->plan = plan;
    cm->store->share = share;
    cm->store->m = &cm->model;
    cm->sink = (gq_quant_sink){.outer = sink_outer, .block = sink_block, .user = cm->store,
                               .holds_transforms = true};
    return 0;
}

int gq_coded_finish(gq_coded_model *cm, gq_quant_report *rep, gq_error *err)
{
    coded_store *s = cm->store;
    if (!rep->linear_codes || !rep->linear_perm ||
        rep->n_linear_codes != (size_t)s->n_layers * GQ_N_LINEAR)
        return gq_fail(err, "coded model: the report has no room for %d blocks' codes",
                       s->n_layers);
    for (size_t i = 0; i < rep->n_linear_codes; i++) {
        rep->linear_codes[i] = s->lin[i].codes;
        rep->linear_perm[i] = s->lin[i].perm;
    }
    s->codes_lent = true;
    gq_block_source src = {.fill = coded_fill, .unfill = coded_unfill, .close = coded_close,
                           .ctx = s};
    cm->store = NULL; /* the source owns it now, also when setting it fails */
    return gq_model_set_source(&cm->model, &src, err);
}

void gq_coded_free(gq_coded_model *cm)
{
    store_free(cm->store); /* not finished: still ours */
    gq_model_free(&cm->model);
    memset(cm, 0, sizeof *cm);
}

void gq_coded_model_bytes(const gq_coded_model *cm, gq_coded_bytes *out)
{
    const coded_store *s = cm->store;
    if (!s && cm->model.blocks)
        s = cm->model.blocks->ctx;
    memset(out, 0, sizeof *out);
    if (s)
        *out = s->bytes;
}
