/* Streaming HF directory writer (gq_hf_stream.h). */
#include "model/gq_hf_stream.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gq_fileio.h"
#include "model/gq_st_write.h"
#include "model/hf_internal.h"

#define INDEX_NAME "model.safetensors.index.json"

typedef struct {
    char name[96];
    int rows, cols, ndim, shard;
    size_t bytes;
} planned;

typedef struct {
    char path[4200], tmp[4300];
    char *header;
    size_t header_len, bytes;
    bool started;
} shard;

struct gq_hf_writer {
    char dir[4096];
    gq_config cfg;
    gq_st_dtype dtype;
    char *config_text;
    gq_model skel;       /* cfg and zeroed layers: names and shapes (hf_layer_refs) */
    planned *t;          /* every tensor in file order */
    int n, next;         /* count, index of the next tensor to write */
    shard *s;
    int n_shards, cur;   /* shards, the one open (-1 none) */
    FILE *f;
    unsigned char *row;  /* one converted row */
};

/* The file order: embeddings, final norm, classifier, then the blocks. */
static int plan_tensors(gq_hf_writer *w)
{
    hf_tensor_ref *refs;
    int n = hf_tensor_refs(&w->skel, &refs);
    if (n < 0)
        return -1;
    int n_tail = w->cfg.shared_classifier ? 1 : 2, k = 0;
    w->t = calloc((size_t)n, sizeof *w->t);
    for (int i = 0; w->t && i < n; i++) {
        int src = i == 0 ? 0 : i <= n_tail ? n - n_tail + i - 1 : i - n_tail;
        planned *p = &w->t[k++];
        snprintf(p->name, sizeof p->name, "%s", refs[src].name);
        p->rows = refs[src].rows;
        p->cols = refs[src].cols;
        p->ndim = refs[src].ndim;
        p->bytes = (size_t)p->rows * p->cols * gq_st_dtype_size(w->dtype);
    }
    free(refs);
    w->n = k;
    return w->t ? 0 : -1;
}

/* Shards of at most shard_bytes (a larger tensor alone), their names and headers. */
static int plan_shards(gq_hf_writer *w, size_t shard_bytes)
{
    w->s = calloc((size_t)w->n, sizeof *w->s);
    if (!w->s)
        return -1;
    size_t cur = 0;
    w->n_shards = 0;
    for (int i = 0; i < w->n; i++) {
        if (w->n_shards == 0 || (shard_bytes && cur > 0 && cur + w->t[i].bytes > shard_bytes)) {
            w->n_shards++;
            cur = 0;
        }
        w->t[i].shard = w->n_shards - 1;
        cur += w->t[i].bytes;
    }
    for (int s = 0; s < w->n_shards; s++) {
        json_t *root = json_object();
        size_t off = 0;
        for (int i = 0; root && i < w->n; i++) {
            const planned *p = &w->t[i];
            if (p->shard != s)
                continue;
            json_t *shape = p->ndim == 1 ? json_pack("[i]", p->rows)
                                         : json_pack("[i,i]", p->rows, p->cols);
            if (json_object_set_new(root, p->name,
                                    json_pack("{s:s,s:o,s:[I,I]}", "dtype",
                                              gq_st_dtype_name(w->dtype), "shape", shape,
                                              "data_offsets", (json_int_t)off,
                                              (json_int_t)(off + p->bytes))))
                return -1;
            off += p->bytes;
        }
        if (!root || json_object_set_new(root, "__metadata__", json_pack("{s:s}", "format", "pt")))
            return -1;
        w->s[s].bytes = off;
        if (!(w->s[s].header = gq_st_header_text(root, &w->s[s].header_len)))
            return -1;
        if (w->n_shards == 1)
            snprintf(w->s[s].path, sizeof w->s[s].path, "%s/model.safetensors", w->dir);
        else
            snprintf(w->s[s].path, sizeof w->s[s].path, "%s/model-%05d-of-%05d.safetensors",
                     w->dir, s + 1, w->n_shards);
    }
    return 0;
}

void gq_hf_writer_abort(gq_hf_writer *w)
{
    if (!w)
        return;
    if (w->f)
        fclose(w->f);
    for (int s = 0; w->s && s < w->n_shards; s++) {
        if (w->s[s].started)
            unlink(w->s[s].tmp);
        free(w->s[s].header);
    }
    free(w->s);
    free(w->t);
    free(w->row);
    free(w->config_text);
    free(w->skel.layers);
    free(w);
}

gq_hf_writer *gq_hf_writer_open(const char *dir, const gq_config *c, gq_st_dtype dtype,
                                const char *quant_config, size_t shard_bytes, gq_error *err)
{
    if (gq_check_real_dir(dir, err) || gq_mkdir_p(dir, err))
        return NULL;
    gq_hf_writer *w = calloc(1, sizeof *w);
    if (!w) {
        gq_fail(err, "%s: out of memory", dir);
        return NULL;
    }
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    w->cfg = *c;
    w->dtype = dtype;
    w->cur = -1;
    w->skel.cfg = *c;
    w->skel.layers = calloc((size_t)c->n_layers, sizeof *w->skel.layers);
    int widest = c->dim > c->hidden_dim ? c->dim : c->hidden_dim;
    w->row = malloc((size_t)widest * gq_st_dtype_size(dtype));
    if (!w->skel.layers || !w->row || plan_tensors(w) || plan_shards(w, shard_bytes)) {
        gq_hf_writer_abort(w);
        gq_fail(err, "%s: out of memory", dir);
        return NULL;
    }
    if (!(w->config_text = hf_config_json(c, dtype, quant_config, err))) {
        gq_hf_writer_abort(w);
        return NULL;
    }
    return w;
}

/* Closes the open shard (flushed and synced); 0 or an errno value. */
static int close_shard(gq_hf_writer *w)
{
    if (!w->f)
        return 0;
    int rc = fflush(w->f) != 0 || fsync(fileno(w->f)) != 0 ? (errno ? errno : EIO) : 0;
    if (fclose(w->f) != 0 && !rc)
        rc = errno ? errno : EIO;
    w->f = NULL;
    return rc;
}

/* Opens shard s's temporary and writes its length prefix and header. */
static int open_shard(gq_hf_writer *w, int s, gq_error *err)
{
    shard *sh = &w->s[s];
    int fd = gq_tmp_create(sh->path, sh->tmp, sizeof sh->tmp, err);
    if (fd < 0)
        return -1;
    sh->started = true;
    w->cur = s;
    if (!(w->f = fdopen(fd, "wb"))) {
        close(fd);
        return gq_fail(err, "%s: cannot open: %s", sh->tmp, strerror(errno));
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)sh->header_len >> (8 * i));
    if (fwrite(len8, 1, 8, w->f) != 8 ||
        fwrite(sh->header, 1, sh->header_len, w->f) != sh->header_len)
        return gq_fail(err, "%s: write failed: %s", sh->tmp, strerror(errno ? errno : EIO));
    return 0;
}

/* Appends tensor r, which must be the next one planned. */
static int put(gq_hf_writer *w, const hf_tensor_ref *r, gq_error *err)
{
    if (w->next >= w->n || strcmp(w->t[w->next].name, r->name) != 0)
        return gq_fail(err, "%s: tensor %s arrives out of order (expected %s)", w->dir, r->name,
                       w->next < w->n ? w->t[w->next].name : "none");
    const planned *p = &w->t[w->next];
    if (p->shard != w->cur) {
        int rc = close_shard(w);
        if (rc)
            return gq_fail(err, "%s: write failed: %s", w->s[w->cur].tmp, strerror(rc));
        if (open_shard(w, p->shard, err))
            return -1;
    }
    size_t es = gq_st_dtype_size(w->dtype);
    errno = 0;
    for (int row = 0; row < r->rows; row++) {
        hf_tensor_row(r, row, w->dtype, w->row);
        if (fwrite(w->row, es, (size_t)r->cols, w->f) != (size_t)r->cols)
            return gq_fail(err, "%s: write failed: %s", w->s[w->cur].tmp,
                           strerror(errno ? errno : EIO));
    }
    w->next++;
    return 0;
}

int gq_hf_writer_outer(gq_hf_writer *w, const gq_model *m, gq_error *err)
{
    const gq_config *c = &w->cfg;
    hf_tensor_ref r[3] = {
        {"model.embed_tokens.weight", m->tok_embeddings, c->vocab_size, c->dim, 2, 0},
        {"model.norm.weight", m->rms_final, c->dim, 1, 1, 0},
        {"lm_head.weight", m->wcls, c->vocab_size, c->dim, 2, 0},
    };
    for (int i = 0; i < (c->shared_classifier ? 2 : 3); i++)
        if (put(w, &r[i], err))
            return -1;
    return 0;
}

int gq_hf_writer_block(gq_hf_writer *w, int l, const gq_layer *L, gq_error *err)
{
    if (L->att_in_transform || L->ffn_in_transform)
        return gq_fail(err, "%s: layers.%d has explicit input transforms (AffineQuant), which "
                            "an HF directory cannot hold", w->dir, l);
    hf_tensor_ref refs[HF_LAYER_REFS];
    int n = 0;
    w->skel.layers[l] = *L;
    hf_layer_refs(&w->skel, l, refs, &n);
    memset(&w->skel.layers[l], 0, sizeof *L);
    for (int i = 0; i < n; i++)
        if (put(w, &refs[i], err))
            return -1;
    return 0;
}

/* model.safetensors.index.json: total size and each tensor's shard file name. */
static int write_index(gq_hf_writer *w, gq_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", w->dir, INDEX_NAME);
    if (w->n_shards == 1) /* an older sharded model's index would shadow model.safetensors */
        return gq_file_exists(path) && unlink(path)
                   ? gq_fail(err, "%s: cannot remove: %s", path, strerror(errno))
                   : 0;
    size_t total = 0;
    json_t *map = json_object();
    for (int i = 0; map && i < w->n; i++) {
        total += w->t[i].bytes;
        const char *base = strrchr(w->s[w->t[i].shard].path, '/') + 1;
        json_object_set_new(map, w->t[i].name, json_string(base));
    }
    json_t *o = json_pack("{s:{s:I},s:o}", "metadata", "total_size", (json_int_t)total,
                          "weight_map", map);
    return gq_write_json_atomic(path, o, JSON_INDENT(2) | JSON_PRESERVE_ORDER, err);
}

int gq_hf_writer_finish(gq_hf_writer *w, gq_error *err)
{
    int rc = 0;
    if (w->next != w->n)
        rc = gq_fail(err, "%s: %d of %d tensors written", w->dir, w->next, w->n);
    int e = rc ? 0 : close_shard(w);
    if (e)
        rc = gq_fail(err, "%s: write failed: %s", w->s[w->cur].tmp, strerror(e));
    for (int s = 0; s < w->n_shards && !rc; s++) {
        rc = gq_tmp_commit(w->s[s].tmp, w->s[s].path, err);
        w->s[s].started = rc != 0;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", w->dir);
    if (!rc)
        rc = write_index(w, err) ||
             gq_write_file_atomic(path, w->config_text, strlen(w->config_text), err);
    gq_hf_writer_abort(w);
    return rc ? -1 : 0;
}
