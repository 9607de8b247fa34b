/* Reading safetensors files (see gq_safetensors.h): header checks, mapping, dtype widening. */
#include "model/gq_safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/gq_fileio.h"
#include "core/gq_half.h"

/* safetensors' own reader refuses headers over 100 MB; so do we (a header is names and
 * shapes: a few hundred bytes per tensor). */
#define MAX_HEADER_BYTES (100u << 20)

static const struct {
    const char *name;
    gq_st_dtype dtype;
    size_t bytes;
} dtypes[] = {{"F32", GQ_ST_F32, 4}, {"F16", GQ_ST_F16, 2}, {"BF16", GQ_ST_BF16, 2},
               {"I32", GQ_ST_I32, 4}, {"U8", GQ_ST_U8, 1}};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

const char *gq_st_dtype_name(gq_st_dtype d)
{
    return (unsigned)d < N_DTYPES ? dtypes[d].name : "?";
}

gq_st_dtype gq_st_dtype_parse(const char *s)
{
    return strcmp(s, "bf16") == 0 ? GQ_ST_BF16 : strcmp(s, "f16") == 0 ? GQ_ST_F16 : GQ_ST_F32;
}

size_t gq_st_dtype_size(gq_st_dtype d)
{
    return (unsigned)d < N_DTYPES ? dtypes[d].bytes : 0;
}

/* A JSON integer in 0..max, or -1. */
static int64_t json_count(const json_t *v, int64_t max)
{
    if (!json_is_integer(v))
        return -1;
    json_int_t x = json_integer_value(v);
    return x >= 0 && x <= max ? (int64_t)x : -1;
}

static int parse_shape(const char *path, const char *name, const json_t *shape, gq_st_tensor *t,
                       gq_error *err)
{
    if (!json_is_array(shape) || json_array_size(shape) > GQ_ST_MAX_DIMS)
        return gq_fail(err, "%s: tensor %s: \"shape\" must be an array of at most %d sizes",
                       path, name, GQ_ST_MAX_DIMS);
    t->ndim = (int)json_array_size(shape);
    t->count = 1;
    for (int i = 0; i < t->ndim; i++) {
        int64_t d = json_count(json_array_get(shape, (size_t)i), INT32_MAX);
        if (d < 0)
            return gq_fail(err, "%s: tensor %s: shape[%d] is not a size in 0..%d", path, name,
                           i, INT32_MAX);
        t->shape[i] = d;
        if (d && t->count > SIZE_MAX / 8 / (size_t)d)
            return gq_fail(err, "%s: tensor %s: shape overflows", path, name);
        t->count *= (size_t)d;
    }
    return 0;
}

static int parse_dtype(const char *path, const char *name, const json_t *v, gq_st_tensor *t,
                       gq_error *err)
{
    if (!json_is_string(v))
        return gq_fail(err, "%s: tensor %s: \"dtype\" must be a string", path, name);
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(json_string_value(v), dtypes[i].name) == 0) {
            t->dtype = dtypes[i].dtype;
            return 0;
        }
    return gq_fail(err, "%s: tensor %s: dtype %.32s is not supported (F32, F16, BF16, I32 or U8)", path,
                   name, json_string_value(v));
}

/* One entry {"dtype", "shape", "data_offsets"}; body is the data section (body_n bytes). */
static int parse_tensor(const char *path, const char *name, const json_t *e,
                        const unsigned char *body, size_t body_n, gq_st_tensor *t,
                        size_t off[2], gq_error *err)
{
    if (!json_is_object(e) || json_object_size(e) != 3)
        return gq_fail(err, "%s: tensor %s: expected an object with exactly \"dtype\", "
                            "\"shape\" and \"data_offsets\"", path, name);
    const json_t *offs = json_object_get(e, "data_offsets");
    if (parse_dtype(path, name, json_object_get(e, "dtype"), t, err) ||
        parse_shape(path, name, json_object_get(e, "shape"), t, err))
        return -1;
    if (!json_is_array(offs) || json_array_size(offs) != 2)
        return gq_fail(err, "%s: tensor %s: \"data_offsets\" must be [begin, end]", path, name);
    int64_t b = json_count(json_array_get(offs, 0), INT64_MAX);
    int64_t en = json_count(json_array_get(offs, 1), INT64_MAX);
    if (b < 0 || en < b)
        return gq_fail(err, "%s: tensor %s: data_offsets are not 0 <= begin <= end", path,
                       name);
    if ((uint64_t)en > body_n)
        return gq_fail(err, "%s: tensor %s: data_offsets end %lld is past the %zu data bytes "
                            "of the file (truncated?)", path, name, (long long)en, body_n);
    size_t want = t->count * gq_st_dtype_size(t->dtype);
    if ((uint64_t)(en - b) != want)
        return gq_fail(err, "%s: tensor %s: %lld data bytes, but shape x %s needs %zu", path,
                       name, (long long)(en - b), gq_st_dtype_name(t->dtype), want);
    off[0] = (size_t)b;
    off[1] = (size_t)en;
    t->data = body + b;
    if (!(t->name = strdup(name)))
        return gq_fail(err, "%s: out of memory", path);
    return 0;
}

typedef struct {
    size_t begin, end;
    int idx;
} span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : x->idx - y->idx;
}

/* No two tensors share a byte (empty tensors overlap nothing). */
static int check_overlaps(const char *path, const gq_st_file *f, span *s, gq_error *err)
{
    qsort(s, (size_t)f->n, sizeof *s, cmp_span);
    size_t reach = 0;
    int last = -1;
    for (int i = 0; i < f->n; i++) {
        if (s[i].begin == s[i].end)
            continue;
        if (last >= 0 && s[i].begin < reach)
            return gq_fail(err, "%s: tensors %s and %s overlap in the file", path,
                           f->t[last].name, f->t[s[i].idx].name);
        reach = s[i].end;
        last = s[i].idx;
    }
    return 0;
}

static int parse_entries(const char *path, json_t *root, const unsigned char *body,
                         size_t body_n, gq_st_file *f, gq_error *err)
{
    size_t n = json_object_size(root);
    f->t = calloc(n ? n : 1, sizeof *f->t);
    span *s = calloc(n ? n : 1, sizeof *s);
    if (!f->t || !s) {
        free(s);
        return gq_fail(err, "%s: out of memory", path);
    }
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(v))
                rc = gq_fail(err, "%s: \"__metadata__\" must be an object", path);
            else if (!(f->metadata = json_dumps(v, JSON_COMPACT)))
                rc = gq_fail(err, "%s: out of memory", path);
        } else {
            size_t off[2] = {0, 0};
            rc = parse_tensor(path, key, v, body, body_n, &f->t[f->n], off, err);
            if (!rc)
                s[f->n] = (span){off[0], off[1], f->n}, f->n++;
        }
        if (rc)
            break;
    }
    if (!rc)
        rc = check_overlaps(path, f, s, err);
    free(s);
    return rc;
}

int gq_st_parse(const char *path, const void *data, size_t size, gq_st_file *f, gq_error *err)
{
    memset(f, 0, sizeof *f);
    const unsigned char *p = data;
    if (size < 8)
        return gq_fail(err, "%s: %zu bytes is too short for a safetensors file", path, size);
    uint64_t hn = 0;
    for (int i = 7; i >= 0; i--)
        hn = hn << 8 | p[i];
    if (hn > size - 8)
        return gq_fail(err, "%s: header length %llu is larger than the file (%zu bytes)", path,
                       (unsigned long long)hn, size);
    if (hn > MAX_HEADER_BYTES)
        return gq_fail(err, "%s: header length %llu exceeds %u bytes", path,
                       (unsigned long long)hn, MAX_HEADER_BYTES);
    json_error_t je;
    json_t *root = json_loadb((const char *)p + 8, (size_t)hn, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return gq_fail(err, "%s: header is not valid JSON: %s (line %d, column %d)", path,
                       je.text, je.line, je.column);
    int rc;
    if (!json_is_object(root))
        rc = gq_fail(err, "%s: header must be a JSON object", path);
    else
        rc = parse_entries(path, root, p + 8 + hn, size - 8 - (size_t)hn, f, err);
    json_decref(root);
    if (rc)
        gq_st_close(f);
    return rc;
}

int gq_st_open(const char *path, gq_st_file *f, gq_error *err)
{
    memset(f, 0, sizeof *f);
    int fd = gq_open_input(path, err);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return gq_fail(err, "%s: cannot stat: %s", path, strerror(errno));
    }
    size_t size = (size_t)st.st_size;
    void *map = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (map == MAP_FAILED)
        return gq_fail(err, "%s: cannot map %zu bytes: %s", path, size, strerror(errno));
    if (gq_st_parse(path, map ? map : "", size, f, err)) {
        if (map)
            munmap(map, size);
        return -1;
    }
    f->map = map;
    f->size = size;
    if (!(f->path = strdup(path))) {
        gq_st_close(f);
        return gq_fail(err, "%s: out of memory", path);
    }
    return 0;
}

void gq_st_close(gq_st_file *f)
{
    for (int i = 0; i < f->n; i++)
        free(f->t[i].name);
    free(f->t);
    free(f->path);
    free(f->metadata);
    if (f->map)
        munmap(f->map, f->size);
    memset(f, 0, sizeof *f);
}

void gq_st_to_f32(const gq_st_tensor *t, float *out, size_t first, size_t n)
{
    const unsigned char *b = t->data;
    for (size_t i = 0; i < n; i++) {
        size_t j = first + i;
        if (t->dtype == GQ_ST_F32) {
            memcpy(&out[i], b + 4 * j, 4);
        } else {
            uint16_t h;
            memcpy(&h, b + 2 * j, 2);
            out[i] = t->dtype == GQ_ST_F16 ? gq_fp16_to_fp32(h) : gq_bf16_to_fp32(h);
        }
    }
}
