/* Saving a model as a llama2.c checkpoint, written to a temporary file beside the target and
 * renamed into place, so readers never see a partial checkpoint.
 *   legacy: 7 int32 header (negative vocab_size when the classifier is separate), then
 *           token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final,
 *           freq_cis_real, freq_cis_imag, [wcls];
 *   v1:     256-byte header (magic "ak42", version 1, 7 int32, uint8 shared_classifier, zero
 *           padding), then rms_att, rms_ffn, rms_final, tok_embeddings, wq, wk, wv, wo, w1, w2,
 *           w3, [wcls]. */
#include "model/gq_model.h"

#include "core/gq_fileio.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/model_internal.h"

typedef struct {
    FILE *f;
    int failed;
} writer;

static void put(writer *w, const void *p, size_t bytes)
{
    if (!w->failed && fwrite(p, 1, bytes, w->f) != bytes)
        w->failed = errno ? errno : EIO;
}

/* One tensor for all layers; `field` is the byte offset of the pointer in gq_layer. */
static void put_layers(writer *w, const gq_model *m, size_t field, size_t floats)
{
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const float *t = *(float *const *)((const char *)&m->layers[l] + field);
        put(w, t, floats * sizeof(float));
    }
}

/* The RoPE tables llama2.c's exporter stores: (seq_len, head_size/2) cos then sin of
 * pos * 10000^(-2i/head_size), computed in float as PyTorch does. */
static void put_freq_cis(writer *w, const gq_config *c)
{
    int half = gq_head_size(c) / 2;
    float *row = malloc((size_t)half * sizeof(float));
    if (!row) {
        w->failed = ENOMEM;
        return;
    }
    for (int part = 0; part < 2; part++)
        for (int t = 0; t < c->seq_len; t++) {
            for (int i = 0; i < half; i++) {
                float freq = 1.0f / powf(10000.0f, (float)(2 * i) / (float)(2 * half));
                float v = (float)t * freq;
                row[i] = part == 0 ? cosf(v) : sinf(v);
            }
            put(w, row, (size_t)half * sizeof(float));
        }
    free(row);
}

static void put_body_legacy(writer *w, const gq_model *m)
{
    const gq_config *c = &m->cfg;
    size_t d = (size_t)c->dim, kv = (size_t)gq_kv_dim(c), h = (size_t)c->hidden_dim;
    int32_t hdr[7] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                      c->shared_classifier ? c->vocab_size : -c->vocab_size, c->seq_len};
    put(w, hdr, sizeof hdr);
    put(w, m->tok_embeddings, (size_t)c->vocab_size * d * sizeof(float));
    put_layers(w, m, offsetof(gq_layer, rms_att), d);
    put_layers(w, m, offsetof(gq_layer, w[GQ_LIN_Q]), d * d);
    put_layers(w, m, offsetof(gq_layer, w[GQ_LIN_K]), kv * d);
    put_layers(w, m, offsetof(gq_layer, w[GQ_LIN_V]), kv * d);
    put_layers(w, m, offsetof(gq_layer, w[GQ_LIN_O]), d * d);
    put_layers(w, m, offsetof(gq_layer, rms_ffn), d);
    put_layers(w, m, offsetof(gq_layer, w[GQ_LIN_GATE]), h * d);
    put_layers(w, m, offsetof(gq_layer, w[GQ_LIN_DOWN]), d * h);
    put_layers(w, m, offsetof(gq_layer, w[GQ_LIN_UP]), h * d);
    put(w, m->rms_final, d * sizeof(float));
    put_freq_cis(w, c);
    if (!c->shared_classifier)
        put(w, m->wcls, (size_t)c->vocab_size * d * sizeof(float));
}

static void put_body_v1(writer *w, const gq_model *m)
{
    const gq_config *c = &m->cfg;
    size_t d = (size_t)c->dim, kv = (size_t)gq_kv_dim(c), h = (size_t)c->hidden_dim;
    unsigned char hdr[256] = {0};
    uint32_t magic = 0x616b3432u;
    int32_t version = 1, p[7] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads,
                                 c->n_kv_heads, c->vocab_size, c->seq_len};
    memcpy(hdr, &magic, 4);
    memcpy(hdr + 4, &version, 4);
    memcpy(hdr + 8, p, sizeof p);
    hdr[8 + sizeof p] = c->shared_classifier ? 1 : 0;
    put(w, hdr, sizeof hdr);
    put_layers(w, m, offsetof(gq_layer, rms_att), d);
    put_layers(w, m, offsetof(gq_layer, rms_ffn), d);
    put(w, m->rms_final, d * sizeof(float));
    put(w, m->tok_embeddings, (size_t)c->vocab_size * d * sizeof(float));
    put_layers(w, m, offsetof(gq_layer, w[GQ_LIN_Q]), d * d);
    put_layers(w, m, offsetof(gq_layer, w[GQ_LIN_K]), kv * d);
    put_layers(w, m, offsetof(gq_layer, w[GQ_LIN_V]), kv * d);
    put_layers(w, m, offsetof(gq_layer, w[GQ_LIN_O]), d * d);
    put_layers(w, m, offsetof(gq_layer, w[GQ_LIN_GATE]), h * d);
    put_layers(w, m, offsetof(gq_layer, w[GQ_LIN_DOWN]), d * h);
    put_layers(w, m, offsetof(gq_layer, w[GQ_LIN_UP]), h * d);
    if (!c->shared_classifier)
        put(w, m->wcls, (size_t)c->vocab_size * d * sizeof(float));
}

bool gq_model_llama2c_compatible(const gq_config *c)
{
    return !c->head_dim && gq_norm_eps(c) == 1e-5f && gq_rope_theta(c) == 10000.0f &&
           c->rope_scaling.kind == GQ_ROPE_PLAIN && !c->sliding_window && !c->bias_mask &&
           !c->qk_norm;
}

static int save(const gq_model *m, const char *path, int version, gq_error *err)
{
    if (gq_model_has_transforms(m))
        return gq_fail(err, "%s: the model has %s, which a llama2.c checkpoint cannot hold",
                       path, gq_model_transforms_what(m));
    if (!gq_model_llama2c_compatible(&m->cfg))
        return gq_fail(err, "%s: a %s model with this configuration (head_dim, eps, RoPE, "
                            "biases, q/k norms or sliding window) cannot be a llama2.c "
                            "checkpoint; export it as an HF directory", path,
                       gq_family_name(m->cfg.family));
    if (gq_check_writable("output", path, err) != 0)
        return -1;
    char tmp[4200];
    int fd = gq_tmp_create(path, tmp, sizeof tmp, err);
    if (fd < 0)
        return -1;
    writer w = {fdopen(fd, "wb"), 0};
    if (!w.f) {
        close(fd);
        unlink(tmp);
        return gq_fail(err, "%s: cannot write: %s", path, strerror(errno));
    }
    errno = 0;
    if (version == 1)
        put_body_v1(&w, m);
    else
        put_body_legacy(&w, m);
    if (!w.failed && (fflush(w.f) != 0 || fsync(fileno(w.f)) != 0))
        w.failed = errno ? errno : EIO;
    if (fclose(w.f) != 0 && !w.failed)
        w.failed = errno ? errno : EIO;
    if (w.failed) {
        unlink(tmp);
        return gq_fail(err, "%s: write failed: %s", path, strerror(w.failed));
    }
    return gq_tmp_commit(tmp, path, err);
}

int gq_model_save(const gq_model *m, const char *path, gq_error *err)
{
    return save(m, path, 0, err);
}

int gq_model_save_v1(const gq_model *m, const char *path, gq_error *err)
{
    return save(m, path, 1, err);
}
