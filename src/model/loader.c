/* Loading llama2.c checkpoints: the legacy header (7 int32) and the versioned fp32 format
 * ("ak42", version 1). The whole file is mapped copy-on-write and tensors point into it. */
#include "model/gq_model.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/gq_fileio.h"
#include "model/gq_forward.h"
#include "model/gq_hf.h"
#include "model/model_internal.h"

#define V1_MAGIC 0x616b3432u
#define V1_HEADER_BYTES 256
#define LEGACY_HEADER_BYTES 28

typedef struct {
    gq_config cfg;
    size_t header_bytes;
    int version; /* 0 legacy, 1 versioned fp32 */
} file_layout;

/* Reads and checks the header; fills the configuration and layout. */
static int parse_header(const char *path, const unsigned char *h, size_t n, file_layout *fl,
                        gq_error *err)
{
    uint32_t magic;
    int32_t p[7];
    memset(fl, 0, sizeof *fl);
    if (n < LEGACY_HEADER_BYTES)
        return gq_fail(err, "%s: %zu bytes is too short for a llama2.c checkpoint header "
                            "(expected at least %d bytes)", path, n, LEGACY_HEADER_BYTES);
    memcpy(&magic, h, 4);
    if (magic == V1_MAGIC) {
        int32_t version;
        if (n < V1_HEADER_BYTES)
            return gq_fail(err, "%s: %zu bytes is too short for a version-1 header (expected "
                                "at least %d bytes)", path, n, V1_HEADER_BYTES);
        memcpy(&version, h + 4, 4);
        if (version != 1)
            return gq_fail(err, "%s: checkpoint version %d is not supported (only 1: fp32)",
                           path, version);
        memcpy(p, h + 8, sizeof p);
        fl->version = 1;
        fl->header_bytes = V1_HEADER_BYTES;
        if (h[8 + sizeof p] > 1)
            return gq_fail(err, "%s: shared_classifier byte is %u (expected 0 or 1)", path,
                           h[8 + sizeof p]);
        fl->cfg.shared_classifier = h[8 + sizeof p] == 1;
        if (p[5] <= 0)
            return gq_fail(err, "%s: header field vocab_size = %d must be positive in version 1",
                           path, p[5]);
    } else {
        memcpy(p, h, sizeof p);
        fl->version = 0;
        fl->header_bytes = LEGACY_HEADER_BYTES;
        /* negative vocab_size: a separate classifier follows the freq_cis tables */
        fl->cfg.shared_classifier = p[5] > 0;
        if (p[5] < 0 && p[5] != INT32_MIN)
            p[5] = -p[5];
    }
    fl->cfg.dim = p[0];
    fl->cfg.hidden_dim = p[1];
    fl->cfg.n_layers = p[2];
    fl->cfg.n_heads = p[3];
    fl->cfg.n_kv_heads = p[4];
    fl->cfg.vocab_size = p[5];
    fl->cfg.seq_len = p[6];
    return gq_config_check(&fl->cfg, path, err);
}

/* Bytes the whole file must have for this header. */
static size_t expected_bytes(const file_layout *fl)
{
    size_t floats = gq_model_param_count(&fl->cfg);
    if (fl->version == 0)
        floats += gq_freq_cis_floats(&fl->cfg);
    return fl->header_bytes + floats * sizeof(float);
}

/* Points the tensors of m into the mapped body. */
static void map_tensors(gq_model *m, const file_layout *fl, float *body)
{
    const gq_config *c = &m->cfg;
    size_t d = (size_t)c->dim, kv = (size_t)gq_kv_dim(c), h = (size_t)c->hidden_dim;
    size_t L = (size_t)c->n_layers, emb = (size_t)c->vocab_size * d;
    float *p = body;
    /* Assigns per-layer pointers for one tensor stored for all layers consecutively. */
#define PER_LAYER(field, size)                          \
    for (size_t l = 0; l < L; l++)                      \
        m->layers[l].field = p + l * (size);            \
    p += L * (size);
    if (fl->version == 0) {
        /* token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final,
         * freq_cis_real, freq_cis_imag, [wcls] */
        m->tok_embeddings = p, p += emb;
        PER_LAYER(rms_att, d)
        PER_LAYER(w[GQ_LIN_Q], d * d)
        PER_LAYER(w[GQ_LIN_K], kv * d)
        PER_LAYER(w[GQ_LIN_V], kv * d)
        PER_LAYER(w[GQ_LIN_O], d * d)
        PER_LAYER(rms_ffn, d)
        PER_LAYER(w[GQ_LIN_GATE], h * d)
        PER_LAYER(w[GQ_LIN_DOWN], d * h)
        PER_LAYER(w[GQ_LIN_UP], h * d)
        m->rms_final = p, p += d;
        p += gq_freq_cis_floats(c);
    } else {
        /* rms_att, rms_ffn, rms_final, tok_embeddings, wq, wk, wv, wo, w1, w2, w3, [wcls] */
        PER_LAYER(rms_att, d)
        PER_LAYER(rms_ffn, d)
        m->rms_final = p, p += d;
        m->tok_embeddings = p, p += emb;
        PER_LAYER(w[GQ_LIN_Q], d * d)
        PER_LAYER(w[GQ_LIN_K], kv * d)
        PER_LAYER(w[GQ_LIN_V], kv * d)
        PER_LAYER(w[GQ_LIN_O], d * d)
        PER_LAYER(w[GQ_LIN_GATE], h * d)
        PER_LAYER(w[GQ_LIN_DOWN], d * h)
        PER_LAYER(w[GQ_LIN_UP], h * d)
    }
#undef PER_LAYER
    m->wcls = c->shared_classifier ? m->tok_embeddings : p;
}

/* A header can claim any context: a version-1 file of 110 KB may say seq_len 2^20 with 1024
 * layers, whose full-context KV cache is 17.9 GB. Real checkpoints need a KV cache of at most
 * a few times their own size (Llama 3 8B at 128K tokens: about 1x), so a header asking for
 * more than PLAUSIBLE_KV_RATIO times the file, and more than 1 GiB, is refused up front. */
#define PLAUSIBLE_KV_RATIO 64.0

int gq_config_check_plausible(const gq_config *c, size_t bytes, const char *path,
                              gq_error *err)
{
    double kv = (double)gq_decode_bytes(c, c->seq_len);
    if (kv > 1073741824.0 && kv > PLAUSIBLE_KV_RATIO * (double)bytes)
        return gq_fail(err, "%s: header field seq_len = %d with %d layers of kv width %d "
                            "implies a %.1f GiB KV cache for a %zu-byte model (more than %.0fx "
                            "its size): not a plausible checkpoint",
                       path, c->seq_len, c->n_layers, gq_kv_dim(c), kv / 1073741824.0, bytes,
                       PLAUSIBLE_KV_RATIO);
    return 0;
}

int gq_model_load(const char *path, gq_model *m, gq_error *err)
{
    memset(m, 0, sizeof *m);
    if (gq_hf_is_dir(path))
        return gq_model_load_hf(path, m, err);
    int fd = gq_open_input(path, err);
    if (fd < 0)
        return gq_fail_prefix(err, "model");
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return gq_fail(err, "%s: cannot stat: %s", path, strerror(errno));
    }
    size_t actual = (size_t)st.st_size;
    unsigned char head[V1_HEADER_BYTES];
    size_t got = 0;
    while (got < sizeof head && got < actual) {
        ssize_t r = pread(fd, head + got, sizeof head - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    file_layout fl;
    if (parse_header(path, head, got, &fl, err) != 0) {
        close(fd);
        return -1;
    }
    size_t want = expected_bytes(&fl);
    if (actual != want) {
        close(fd);
        return gq_fail(err, "%s: file size %zu bytes does not match the %zu bytes its header "
                            "implies (%s, dim %d, %d layers, vocab %d): %s", path, actual, want,
                       fl.version ? "version 1" : "legacy", fl.cfg.dim, fl.cfg.n_layers,
                       fl.cfg.vocab_size, actual < want ? "truncated" : "trailing bytes");
    }
    if (gq_config_check_plausible(&fl.cfg, actual, path, err)) {
        close(fd);
        return -1;
    }
    void *map = mmap(NULL, actual, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return gq_fail(err, "%s: cannot map %zu bytes: %s", path, actual, strerror(errno));
    m->cfg = fl.cfg;
    m->layers = calloc((size_t)fl.cfg.n_layers, sizeof *m->layers);
    if (!m->layers) {
        munmap(map, actual);
        return gq_fail(err, "%s: out of memory", path);
    }
    m->map = map;
    m->map_size = actual;
    snprintf(m->path, sizeof m->path, "%s", path);
    map_tensors(m, &fl, (float *)((char *)map + fl.header_bytes));
    if (gq_model_check_finite(m, path, err) != 0) {
        gq_model_free(m);
        return -1;
    }
    return 0;
}
