/* Loading Hugging Face model directories (gq_hf.h): config.json, the weight files (one
 * model.safetensors or the shards of model.safetensors.index.json), every header checked, then
 * every tensor the configuration implies widened to fp32 into the model's heap block, q/k rows
 * permuted to llama2.c's RoPE layout. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/gq_fileio.h"
#include "core/gq_sha256.h"
#include "model/gq_hf.h"
#include "model/gq_hf_packed.h"
#include "model/gq_stream.h"
#include "model/hf_internal.h"
#include "model/model_internal.h"

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"

/* The weight files of a directory, in index order (sorted shard names). */
typedef struct gq_hf_files {
    gq_st_file *files;
    int n;
    json_t *map; /* index weight_map (tensor -> shard), NULL for a single file */
    char index_path[4200];
} hf_weights;

bool gq_hf_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A block-linear unpacker (gq_model_load_hf_packed), or NULL in the plain loader. */
typedef struct {
    gq_hf_unpack_fn fn;
    void *ctx;
} hf_unpacker;

static void weights_close(hf_weights *w)
{
    for (int i = 0; i < w->n; i++)
        gq_st_close(&w->files[i]);
    free(w->files);
    json_decref(w->map);
    memset(w, 0, sizeof *w);
}

static int read_config(const char *dir, gq_config *c, gq_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!gq_file_exists(path))
        return gq_fail(err, "%s: no config.json in this model directory", dir);
    char *text;
    size_t n;
    if (gq_read_file(path, &text, &n, err))
        return -1;
    int rc = gq_hf_config_parse(path, text, n, c, err);
    free(text);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The index's weight_map, its distinct shard names sorted (each a plain file name). */
static int read_index(hf_weights *w, const char ***names, int *n_names, gq_error *err)
{
    json_error_t je;
    json_t *root = json_load_file(w->index_path, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return gq_fail(err, "%s: not valid JSON: %s (line %d)", w->index_path, je.text,
                       je.line);
    w->map = json_incref(json_object_get(root, "weight_map"));
    json_decref(root);
    if (!json_is_object(w->map) || json_object_size(w->map) == 0)
        return gq_fail(err, "%s: \"weight_map\" must be a non-empty object", w->index_path);
    *names = calloc(json_object_size(w->map), sizeof **names);
    if (!*names)
        return gq_fail(err, "%s: out of memory", w->index_path);
    const char *key;
    json_t *v;
    *n_names = 0;
    json_object_foreach(w->map, key, v) {
        const char *s = json_string_value(v);
        if (!s || !s[0] || strchr(s, '/') || strcmp(s, "..") == 0 || strcmp(s, ".") == 0)
            return gq_fail(err, "%s: weight_map.%s must name a file of the directory",
                           w->index_path, key);
        (*names)[(*n_names)++] = s;
    }
    qsort(*names, (size_t)*n_names, sizeof **names, cmp_str);
    int u = 0;
    for (int i = 0; i < *n_names; i++)
        if (u == 0 || strcmp((*names)[u - 1], (*names)[i]) != 0)
            (*names)[u++] = (*names)[i];
    *n_names = u;
    return 0;
}

static int open_files(const char *dir, hf_weights *w, const char **names, int n,
                      gq_error *err)
{
    w->files = calloc((size_t)n, sizeof *w->files);
    if (!w->files)
        return gq_fail(err, "%s: out of memory", dir);
    for (int i = 0; i < n; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (!gq_file_exists(path))
            return gq_fail(err, "%s: names shard %s, which is missing", w->index_path,
                           names[i]);
        if (gq_st_open(path, &w->files[i], err))
            return -1;
        w->n++;
    }
    return 0;
}

/* Each tensor of a shard is in the index under that shard, and each index entry exists. */
static int check_index(const hf_weights *w, const char **names, gq_error *err)
{
    size_t total = 0;
    for (int i = 0; i < w->n; i++) {
        total += (size_t)w->files[i].n;
        for (int j = 0; j < w->files[i].n; j++) {
            const char *t = w->files[i].t[j].name;
            const char *s = json_string_value(json_object_get(w->map, t));
            if (!s || strcmp(s, names[i]) != 0)
                return gq_fail(err, "%s: tensor %s is not in %s's weight_map under this file",
                               w->files[i].path, t, w->index_path);
        }
    }
    if (total != json_object_size(w->map))
        return gq_fail(err, "%s: weight_map names %zu tensors, the shards hold %zu (a tensor "
                            "the index names is missing from its shard)", w->index_path,
                       json_object_size(w->map), total);
    return 0;
}

static int open_weights(const char *dir, hf_weights *w, gq_error *err)
{
    memset(w, 0, sizeof *w);
    snprintf(w->index_path, sizeof w->index_path, "%s/%s", dir, INDEX_NAME);
    if (!gq_file_exists(w->index_path)) {
        const char *single = SINGLE_NAME;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, single);
        if (!gq_file_exists(path))
            return gq_fail(err, "%s: neither %s nor %s in this model directory", dir,
                           SINGLE_NAME, INDEX_NAME);
        return open_files(dir, w, &single, 1, err);
    }
    const char **names = NULL;
    int n = 0;
    int rc = read_index(w, &names, &n, err) || open_files(dir, w, names, n, err) ||
             check_index(w, names, err);
    free(names);
    return rc ? -1 : 0;
}

static gq_st_tensor *find_tensor(const hf_weights *w, const char *name, const char **file)
{
    for (int i = 0; i < w->n; i++)
        for (int j = 0; j < w->files[i].n; j++)
            if (strcmp(w->files[i].t[j].name, name) == 0) {
                *file = w->files[i].path;
                return &w->files[i].t[j];
            }
    return NULL;
}

/* Copies one tensor into r->data (widened, rows permuted for RoPE), checking its shape; with
 * r->data NULL only checks it. */
static int take(const hf_weights *w, const char *dir, const hf_tensor_ref *r, gq_error *err)
{
    const char *file = dir;
    gq_st_tensor *t = find_tensor(w, r->name, &file);
    if (!t)
        return gq_fail(err, "%s: missing tensor %s", dir, r->name);
    if (!gq_st_dtype_is_float(t->dtype))
        return gq_fail(err, "%s: tensor %s: dtype %s holds no float weights", file, r->name,
                       gq_st_dtype_name(t->dtype));
    bool ok = t->ndim == r->ndim && t->shape[0] == r->rows &&
              (r->ndim == 1 || t->shape[1] == r->cols);
    if (!ok)
        return gq_fail(err, "%s: tensor %s has shape [%lld%s%lld] but config.json implies "
                            "[%d%s%d]", file, r->name, t->ndim ? (long long)t->shape[0] : -1LL,
                       t->ndim > 1 ? ", " : " ", t->ndim > 1 ? (long long)t->shape[1] : 0LL,
                       r->rows, r->ndim > 1 ? ", " : " ", r->ndim > 1 ? r->cols : 0);
    for (int row = 0; r->data && row < r->rows; row++) { /* no data: a streamed block */
        int dst = row;
        if (r->head_size)
            dst = row - row % r->head_size + hf_rope_row(row % r->head_size, r->head_size);
        gq_st_to_f32(t, r->data + (size_t)dst * r->cols, (size_t)row * r->cols,
                     (size_t)r->cols);
    }
    t->used = 1;
    return 0;
}

/* transformers keeps derived RoPE buffers in some older checkpoints; they carry no weights. */
static bool ignorable(const char *name)
{
    const char *suffix = ".rotary_emb.inv_freq";
    size_t n = strlen(name), s = strlen(suffix);
    return n >= s && strcmp(name + n - s, suffix) == 0;
}

const gq_st_tensor *gq_hf_files_get(const gq_hf_files *w, const char *name, const char **file)
{
    gq_st_tensor *t = find_tensor(w, name, file);
    if (t)
        t->used = 1;
    else /* where it should be: the index of a sharded model, else its one file */
        *file = w->map ? w->index_path : w->n ? w->files[0].path : "";
    return t;
}

/* The unpacker's weights of the block linear r refers to (layer, kind). */
static int unpack_linear(const hf_weights *w, const hf_tensor_ref *r, int layer, int kind,
                         const hf_unpacker *u, gq_error *err)
{
    char prefix[96];
    snprintf(prefix, sizeof prefix, "%.*s", (int)(strlen(r->name) - strlen(".weight")), r->name);
    gq_hf_linear_site s = {layer, (gq_linear_kind)kind, prefix, r->rows, r->cols, r->head_size};
    return u->fn(u->ctx, w, &s, r->data, err);
}

static int fill_model(const char *dir, const hf_weights *w, gq_model *m, const hf_unpacker *u,
                      gq_error *err)
{
    hf_tensor_ref *refs;
    int n = hf_tensor_refs(m, &refs);
    if (n < 0)
        return gq_fail(err, "%s: out of memory", dir);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        int layer, kind;
        if (u && hf_linear_of(m, &refs[i], &layer, &kind))
            rc = unpack_linear(w, &refs[i], layer, kind, u, err);
        else
            rc = take(w, dir, &refs[i], err);
    }
    free(refs);
    for (int i = 0; i < w->n && !rc; i++)
        for (int j = 0; j < w->files[i].n && !rc; j++)
            if (!w->files[i].t[j].used && !ignorable(w->files[i].t[j].name))
                rc = gq_fail(err, "%s: unexpected tensor %s (not part of a %s of this "
                                  "config.json)", w->files[i].path, w->files[i].t[j].name,
                             gq_family_name(m->cfg.family));
    return rc;
}

static int load_dir(const char *dir, gq_model *m, const hf_unpacker *u, gq_error *err)
{
    memset(m, 0, sizeof *m);
    gq_config c;
    hf_weights w;
    if (read_config(dir, &c, err))
        return -1;
    if (open_weights(dir, &w, err)) {
        weights_close(&w);
        return -1;
    }
    int rc = gq_model_heap_alloc(m, &c, err);
    if (!rc)
        rc = fill_model(dir, &w, m, u, err);
    weights_close(&w);
    if (!rc)
        rc = gq_model_check_finite(m, dir, err);
    if (rc) {
        gq_model_free(m);
        return -1;
    }
    snprintf(m->path, sizeof m->path, "%s", dir);
    return 0;
}

int gq_model_load_hf(const char *dir, gq_model *m, gq_error *err)
{
    return load_dir(dir, m, NULL, err);
}

int gq_model_load_hf_packed(const char *dir, gq_model *m, gq_hf_unpack_fn unpack, void *ctx,
                            gq_error *err)
{
    const hf_unpacker u = {unpack, ctx};
    return load_dir(dir, m, &u, err);
}

/* A streamed directory's open shards (gq_stream.h). */
typedef struct {
    hf_weights w;
    char dir[4096];
} hf_source;

static int hf_fill(void *ctx, gq_model *m, int l, gq_error *err)
{
    hf_source *s = ctx;
    hf_tensor_ref refs[HF_LAYER_REFS];
    int n = 0, rc = 0;
    hf_layer_refs(m, l, refs, &n);
    for (int i = 0; i < n && !rc; i++)
        rc = take(&s->w, s->dir, &refs[i], err);
    return rc;
}

static void hf_drop(void *ctx, const gq_model *m, int l)
{
    hf_source *s = ctx;
    hf_tensor_ref refs[HF_LAYER_REFS];
    int n = 0;
    hf_layer_refs(m, l, refs, &n);
    for (int i = 0; i < n; i++) {
        const char *file;
        const gq_st_tensor *t = find_tensor(&s->w, refs[i].name, &file);
        if (t) /* read-only mapping: dropping a neighbour's page only costs a re-read */
            gq_drop_pages(t->data, t->count * gq_st_dtype_size(t->dtype), true);
    }
}

static void hf_close(void *ctx)
{
    hf_source *s = ctx;
    weights_close(&s->w);
    free(s);
}

int gq_model_load_hf_streamed(const char *dir, gq_model *m, gq_error *err)
{
    memset(m, 0, sizeof *m);
    gq_config c;
    hf_source *s = calloc(1, sizeof *s);
    if (!s)
        return gq_fail(err, "%s: out of memory", dir);
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    if (read_config(dir, &c, err) || open_weights(dir, &s->w, err)) {
        hf_close(s);
        return -1;
    }
    int rc = gq_model_outer_alloc(m, &c, err);
    if (!rc)
        rc = fill_model(dir, &s->w, m, NULL, err) || gq_model_check_outer_finite(m, dir, err);
    for (int i = 0; i < s->w.n; i++) /* the converted embeddings/classifier's stored bytes */
        gq_drop_pages(s->w.files[i].map, s->w.files[i].size, true);
    snprintf(m->path, sizeof m->path, "%s", dir);
    gq_block_source src = {.fill = hf_fill, .drop = hf_drop, .close = hf_close, .ctx = s};
    if (rc) {
        hf_close(s);
        gq_model_free(m);
        return -1;
    }
    if (gq_model_set_source(m, &src, err)) {
        gq_model_free(m);
        return -1;
    }
    return 0;
}

/* Adds the bytes of file path to h, 1 MiB at a time. */
static int hash_into(gq_sha256 *h, const char *path, gq_error *err)
{
    int fd = gq_open_input(path, err);
    if (fd < 0)
        return -1;
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK);
    ssize_t r = -1;
    while (buf && (r = read(fd, buf, CHUNK)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        gq_sha256_update(h, buf, (size_t)r);
    }
    int e = buf ? errno : ENOMEM;
    free(buf);
    close(fd);
    if (r != 0)
        return gq_fail(err, "%s: cannot read: %s", path, strerror(e));
    return 0;
}

/* sha256 over the weight files of dir in index order (one stream, file after file). */
static int hash_weights(const char *dir, char out[65], gq_error *err)
{
    hf_weights w;
    memset(&w, 0, sizeof w);
    snprintf(w.index_path, sizeof w.index_path, "%s/%s", dir, INDEX_NAME);
    const char *single = SINGLE_NAME, **names = &single;
    int n = 1, rc = 0;
    bool sharded = gq_file_exists(w.index_path);
    if (sharded)
        rc = read_index(&w, &names, &n, err);
    gq_sha256 h;
    gq_sha256_init(&h);
    for (int i = 0; i < n && !rc; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        rc = hash_into(&h, path, err);
    }
    if (sharded)
        free(names);
    json_decref(w.map);
    if (!rc)
        gq_sha256_final_hex(&h, out);
    return rc;
}

int gq_model_hashes(const char *path, char config_sha[65], char weights_sha[65], gq_error *err)
{
    config_sha[0] = weights_sha[0] = '\0';
    if (!gq_hf_is_dir(path))
        return gq_sha256_file(path, weights_sha, err);
    char cfg[4200];
    snprintf(cfg, sizeof cfg, "%s/config.json", path);
    return gq_sha256_file(cfg, config_sha, err) || hash_weights(path, weights_sha, err) ? -1 : 0;
}
