/* Loading the native format (gq_qmodel.h): metadata, configuration, then every tensor the
 * configuration implies, codes dequantized by their format. Tensors are copied out of the
 * mapping with memcpy (a U8 tensor of odd length leaves the next one unaligned). */
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_fileio.h"
#include "model/gq_hf.h"
#include "model/gq_safetensors.h"
#include "qmodel/gq_qmodel.h"
#include "model/gq_rotation.h"
#include "qmodel/native_internal.h"

typedef struct {
    gq_st_file f;
    json_t *meta;
    const json_t *formats;
} native_src;

/* path itself, or the model.safetensors of a directory. */
static void file_of(const char *path, char *out, size_t n)
{
    if (gq_hf_is_dir(path))
        snprintf(out, n, "%s/model.safetensors", path);
    else
        snprintf(out, n, "%s", path);
}

/* The gq_bench JSON of a parsed file's metadata, NULL when it is not a native file. */
static json_t *native_meta(const gq_st_file *f)
{
    json_t *md = f->metadata ? json_loads(f->metadata, 0, NULL) : NULL;
    const char *fmt = json_string_value(json_object_get(md, "format"));
    const char *text = json_string_value(json_object_get(md, "gq_bench"));
    json_t *meta = fmt && text && strcmp(fmt, NATIVE_MAGIC) == 0
                       ? json_loads(text, JSON_REJECT_DUPLICATES, NULL)
                       : NULL;
    json_decref(md);
    return meta;
}

bool gq_native_is(const char *path)
{
    char file[4200];
    file_of(path, file, sizeof file);
    if (!gq_file_exists(file))
        return false;
    gq_st_file f;
    gq_error ignored = {{0}};
    if (gq_st_open(file, &f, &ignored))
        return false;
    json_t *md = f.metadata ? json_loads(f.metadata, 0, NULL) : NULL;
    const char *fmt = json_string_value(json_object_get(md, "format"));
    bool is = fmt && strcmp(fmt, NATIVE_MAGIC) == 0; /* the loader names what else is wrong */
    json_decref(md);
    gq_st_close(&f);
    return is;
}

int gq_model_path_resolve(const char *path, char *out, size_t n, gq_error *err)
{
    if (!gq_hf_is_dir(path)) {
        snprintf(out, n, "%s", path);
        return 0;
    }
    char cfg[4200], file[4200];
    snprintf(cfg, sizeof cfg, "%s/config.json", path);
    snprintf(file, sizeof file, "%s/model.safetensors", path);
    const bool hf = gq_file_exists(cfg), native = gq_native_is(file);
    if (hf && native)
        return gq_fail(err, "%s: holds both config.json and a gq-bench native model.safetensors "
                            "(ambiguous: the native file carries its own configuration); give "
                            "the file %s, or move it out of the Hugging Face directory", path,
                       file);
    if (!hf && !native)
        return gq_fail(err, "%s: a directory without config.json (not a Hugging Face model "
                            "directory) nor a gq-bench native model.safetensors", path);
    if (snprintf(out, n, "%s", native ? file : path) >= (int)n)
        return gq_fail(err, "%s: path too long", path);
    return 0;
}

/* Tensor `name` with this dtype and shape (d1 0: one dimension), marked used. */
static const gq_st_tensor *get(native_src *s, const char *name, gq_st_dtype dtype, int64_t d0,
                               int64_t d1, gq_error *err)
{
    for (int i = 0; i < s->f.n; i++) {
        gq_st_tensor *t = &s->f.t[i];
        if (strcmp(t->name, name) != 0)
            continue;
        bool shape_ok = t->ndim == (d1 ? 2 : 1) && t->shape[0] == d0 && (!d1 || t->shape[1] == d1);
        if (t->dtype != dtype || !shape_ok) {
            gq_fail(err, "%s: tensor %s is %s of %d dimension(s) [%lld, ...], expected %s "
                         "[%lld%s%lld]", s->f.path, name, gq_st_dtype_name(t->dtype), t->ndim,
                    (long long)t->shape[0], gq_st_dtype_name(dtype), (long long)d0,
                    d1 ? ", " : "", d1 ? (long long)d1 : 0LL);
            return NULL;
        }
        t->used = 1;
        return t;
    }
    gq_fail(err, "%s: missing tensor %s", s->f.path, name);
    return NULL;
}

static bool has(const native_src *s, const char *name)
{
    for (int i = 0; i < s->f.n; i++)
        if (strcmp(s->f.t[i].name, name) == 0)
            return true;
    return false;
}

static int take_floats(native_src *s, const char *name, float *dst, int64_t d0, int64_t d1,
                       gq_error *err)
{
    const gq_st_tensor *t = get(s, name, GQ_ST_F32, d0, d1, err);
    if (!t)
        return -1;
    memcpy(dst, t->data, t->count * sizeof(float));
    return 0;
}

/* The codes of tensor `name` (rows, cols) dequantized into dst; with q, kept in q's slot i. */
static int take_codes(native_src *s, const char *name, float *dst, int rows, int cols,
                      gq_qcodes *q, int i, gq_error *err)
{
    char what[4400], tname[160];
    snprintf(what, sizeof what, "%s: formats.%s", s->f.path, name);
    gq_quantizer qz = {0};
    if (gq_quantizer_from_json(json_object_get(s->formats, name), what, &qz, err))
        return -1;
    size_t bytes = gq_quantizer_bytes(&qz, rows, cols);
    snprintf(tname, sizeof tname, "%s.codes", name);
    const gq_st_tensor *t = get(s, tname, GQ_ST_U8, (int64_t)bytes, 0, err);
    snprintf(tname, sizeof tname, "%s.perm", name);
    const gq_st_tensor *p = t && has(s, tname) ? get(s, tname, GQ_ST_I32, cols, 0, err) : NULL;
    uint8_t *codes = t ? malloc(bytes ? bytes : 1) : NULL;
    int32_t *perm = p ? malloc((size_t)cols * sizeof *perm) : NULL;
    int rc = !t || (has(s, tname) && !p) ? -1
             : !codes || (p && !perm)     ? gq_fail(err, "%s: out of memory", s->f.path)
                                          : 0;
    if (!rc) {
        memcpy(codes, t->data, bytes);
        if (perm)
            memcpy(perm, p->data, (size_t)cols * sizeof *perm);
        snprintf(what, sizeof what, "%s: tensor %s", s->f.path, name);
        rc = gq_qcodes_dequantize(&qz, codes, perm, rows, cols, dst, what, err);
    }
    if (!rc && q && i >= 0) {
        q->quant[i] = qz, q->codes[i] = codes, q->perm[i] = perm;
        return 0;
    }
    gq_quantizer_free(&qz);
    free(codes);
    free(perm);
    return rc;
}

/* A tensor stored as floats or as codes (formats names it). */
static int take_tensor(native_src *s, const char *name, float *dst, int rows, int cols,
                       gq_qcodes *q, int i, gq_error *err)
{
    if (json_object_get(s->formats, name))
        return take_codes(s, name, dst, rows, cols, q, i, err);
    return take_floats(s, name, dst, rows, cols, err);
}

static int take_transforms(native_src *s, gq_model *m, int l, gq_error *err)
{
    const char *part[2] = {"att_in_transform", "ffn_in_transform"};
    size_t dd = (size_t)m->cfg.dim * m->cfg.dim;
    for (int i = 0; i < 2; i++) {
        char name[96];
        snprintf(name, sizeof name, "layers.%d.%s", l, part[i]);
        if (!has(s, name))
            continue;
        float *t = malloc(dd * sizeof *t);
        int rc = !t ? gq_fail(err, "%s: out of memory", s->f.path)
                    : take_floats(s, name, t, m->cfg.dim, m->cfg.dim, err) ||
                          gq_model_set_in_transform(m, l, i == 1, t, err);
        free(t);
        if (rc)
            return -1;
    }
    return 0;
}

static int take_block(native_src *s, gq_model *m, int l, gq_qcodes *q, gq_error *err)
{
    gq_layer *L = &m->layers[l];
    char name[96];
    snprintf(name, sizeof name, "layers.%d.attn_norm", l);
    if (take_floats(s, name, L->rms_att, m->cfg.dim, 0, err))
        return -1;
    snprintf(name, sizeof name, "layers.%d.ffn_norm", l);
    if (take_floats(s, name, L->rms_ffn, m->cfg.dim, 0, err))
        return -1;
    gq_extra_tensor ex[GQ_MAX_EXTRAS];
    int n = gq_layer_extras(&m->cfg, L, l, ex);
    for (int i = 0; i < n; i++)
        if (take_floats(s, ex[i].name, *ex[i].slot, (int64_t)ex[i].n, 0, err))
            return -1;
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        int rows, cols;
        gq_linear_shape(&m->cfg, (gq_linear_kind)k, &rows, &cols);
        gq_tensor_name(l, (gq_linear_kind)k, name, sizeof name);
        if (take_tensor(s, name, L->w[k], rows, cols, q, l * GQ_N_LINEAR + k, err))
            return -1;
    }
    return take_transforms(s, m, l, err);
}

/* The online down_proj rotation the writer stored (native_block.c), set on every block. */
static int take_rotation(native_src *s, gq_model *m, gq_error *err)
{
    if (!has(s, "down_in_rotation.order"))
        return 0;
    const gq_st_tensor *o = get(s, "down_in_rotation.order", GQ_ST_I32, 2, 0, err);
    if (!o)
        return -1;
    const int32_t *order = o->data;
    const int hid = m->cfg.hidden_dim, bm = order[0], bp = order[1];
    if (bm < 1 || bm > 4096 || bp < 1 || (bp & (bp - 1)) || (long long)bm * bp != hid)
        return gq_fail(err, "%s: down_in_rotation.order [%d, %d] is not a block order times a "
                            "power of two equal to hidden_dim %d", s->f.path, bm, bp, hid);
    size_t mm = (size_t)bm * bm;
    const gq_st_tensor *b = get(s, "down_in_rotation.block", GQ_ST_U8,
                                (int64_t)(mm * sizeof(double)), 0, err);
    double *base = b ? malloc(mm * sizeof *base) : NULL;
    if (!base)
        return b ? gq_fail(err, "%s: out of memory", s->f.path) : -1;
    memcpy(base, b->data, mm * sizeof *base);
    for (size_t i = 0; i < mm; i++)
        if (!isfinite(base[i])) {
            free(base);
            return gq_fail(err, "%s: down_in_rotation.block holds a NaN or infinity at %zu",
                           s->f.path, i);
        }
    gq_rotation r = {.n = hid, .m = bm, .p = bp, .base = base};
    snprintf(r.what, sizeof r.what, "stored block of order %d (x) WHT %d", bm, bp);
    int rc = gq_model_set_down_rotation(m, &r, err);
    free(base);
    return rc;
}

static int take_model(native_src *s, gq_model *m, gq_qcodes *q, gq_error *err)
{
    const gq_config *c = &m->cfg;
    if (take_tensor(s, "tok_embeddings", m->tok_embeddings, c->vocab_size, c->dim, NULL, -1,
                    err) ||
        take_floats(s, "final_norm", m->rms_final, c->dim, 0, err) ||
        (!c->shared_classifier &&
         take_tensor(s, "classifier", m->wcls, c->vocab_size, c->dim, NULL, -1, err)))
        return -1;
    for (int l = 0; l < c->n_layers; l++)
        if (take_block(s, m, l, q, err))
            return -1;
    if (take_rotation(s, m, err))
        return -1;
    for (int i = 0; i < s->f.n; i++)
        if (!s->f.t[i].used)
            return gq_fail(err, "%s: unexpected tensor %s", s->f.path, s->f.t[i].name);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)s->formats, key, v) {
        char tname[160];
        snprintf(tname, sizeof tname, "%s.codes", key);
        if (!has(s, tname))
            return gq_fail(err, "%s: formats names %s, which has no codes", s->f.path, key);
    }
    return gq_model_check_finite(m, s->f.path, err);
}

/* Opens the file and reads its metadata and configuration into c. */
static int open_src(const char *path, native_src *s, gq_config *c, gq_error *err)
{
    char file[4200];
    file_of(path, file, sizeof file);
    if (gq_st_open(file, &s->f, err))
        return -1;
    s->meta = native_meta(&s->f);
    if (!s->meta)
        return gq_fail(err, "%s: __metadata__ has no gq-bench native description "
                            "(format \"%s\" with valid \"gq_bench\" JSON)", file, NATIVE_MAGIC);
    const json_t *ver = json_object_get(s->meta, "version");
    if (json_integer_value(ver) != NATIVE_VERSION)
        return gq_fail(err, "%s: gq_bench.version must be %d", file, NATIVE_VERSION);
    s->formats = json_object_get(s->meta, "formats");
    if (!json_is_object(s->formats))
        return gq_fail(err, "%s: gq_bench.formats must be an object", file);
    if (native_config_from_json(json_object_get(s->meta, "config"), file, c, err))
        return -1;
    return gq_config_check_plausible(c, s->f.size, file, err);
}

int gq_native_load(const char *path, gq_model *m, gq_qcodes *q, json_t **meta, gq_error *err)
{
    memset(m, 0, sizeof *m);
    if (q)
        memset(q, 0, sizeof *q);
    native_src s = {0};
    gq_config c;
    int rc = open_src(path, &s, &c, err) || gq_model_alloc(&c, m, err) ||
             (q && gq_qcodes_alloc(q, c.n_layers, "native", err)) || take_model(&s, m, q, err);
    if (!rc && meta)
        *meta = json_incref(s.meta);
    json_decref(s.meta);
    gq_st_close(&s.f);
    if (rc) {
        gq_model_free(m);
        if (q)
            gq_qcodes_free(q);
        return -1;
    }
    snprintf(m->path, sizeof m->path, "%s", path);
    return 0;
}
