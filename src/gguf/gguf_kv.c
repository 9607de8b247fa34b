/* Looking up GGUF keys and tensors, and reading values with their types checked. */
#include "gguf/gq_gguf.h"

#include <math.h>
#include <string.h>

static const char *const type_names[GQ_GGUF_NTYPES] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array",
    "uint64", "int64", "float64"};

const gq_gguf_kv *gq_gguf_find_kv(const gq_gguf *g, const char *key)
{
    for (size_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, key) == 0)
            return &g->kv[i];
    return NULL;
}

const gq_gguf_tensor *gq_gguf_find_tensor(const gq_gguf *g, const char *name)
{
    for (size_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0)
            return &g->tensors[i];
    return NULL;
}

/* The pair of `key`: 0 found, 1 absent and optional, -1 absent and required. */
static int find(const gq_gguf *g, const char *key, bool optional, const gq_gguf_kv **kv,
                gq_error *err)
{
    *kv = gq_gguf_find_kv(g, key);
    if (*kv)
        return 0;
    return optional ? 1 : gq_fail(err, "%s: key %s is missing", g->path, key);
}

static int wrong_type(const gq_gguf *g, const gq_gguf_kv *kv, const char *want, gq_error *err)
{
    return gq_fail(err, "%s: key %s is a %s, expected %s", g->path, kv->key,
                   type_names[kv->type], want);
}

int gq_gguf_get_uint(const gq_gguf *g, const char *key, bool optional, uint64_t max,
                     uint64_t *out, gq_error *err)
{
    const gq_gguf_kv *kv;
    int rc = find(g, key, optional, &kv, err);
    if (rc)
        return rc;
    int64_t s = 0;
    uint64_t u = 0;
    bool neg = false;
    switch (kv->type) {
    case GQ_GGUF_U8: u = kv->data[0]; break;
    case GQ_GGUF_U16: { uint16_t v; memcpy(&v, kv->data, 2); u = v; } break;
    case GQ_GGUF_U32: { uint32_t v; memcpy(&v, kv->data, 4); u = v; } break;
    case GQ_GGUF_U64: memcpy(&u, kv->data, 8); break;
    case GQ_GGUF_I8: s = (int8_t)kv->data[0]; neg = s < 0; u = (uint64_t)s; break;
    case GQ_GGUF_I16: { int16_t v; memcpy(&v, kv->data, 2); s = v; } neg = s < 0; u = (uint64_t)s; break;
    case GQ_GGUF_I32: { int32_t v; memcpy(&v, kv->data, 4); s = v; } neg = s < 0; u = (uint64_t)s; break;
    case GQ_GGUF_I64: memcpy(&s, kv->data, 8); neg = s < 0; u = (uint64_t)s; break;
    default: return wrong_type(g, kv, "an integer", err);
    }
    if (neg || u > max)
        return gq_fail(err, "%s: key %s = %s%llu is outside 0..%llu", g->path, key,
                       neg ? "-" : "", neg ? (unsigned long long)-(s + 1) + 1ull
                                           : (unsigned long long)u,
                       (unsigned long long)max);
    *out = u;
    return 0;
}

int gq_gguf_get_f32(const gq_gguf *g, const char *key, bool optional, float *out,
                    gq_error *err)
{
    const gq_gguf_kv *kv;
    int rc = find(g, key, optional, &kv, err);
    if (rc)
        return rc;
    if (kv->type == GQ_GGUF_F32) {
        memcpy(out, kv->data, 4);
    } else if (kv->type == GQ_GGUF_F64) {
        double d;
        memcpy(&d, kv->data, 8);
        *out = (float)d;
    } else {
        return wrong_type(g, kv, "a float32", err);
    }
    if (!isfinite(*out))
        return gq_fail(err, "%s: key %s is not finite", g->path, key);
    return 0;
}

int gq_gguf_get_str(const gq_gguf *g, const char *key, bool optional, const char **s,
                    size_t *len, gq_error *err)
{
    const gq_gguf_kv *kv;
    int rc = find(g, key, optional, &kv, err);
    if (rc)
        return rc;
    if (kv->type != GQ_GGUF_STRING)
        return wrong_type(g, kv, "a string", err);
    *s = (const char *)kv->data;
    *len = (size_t)kv->n;
    return 0;
}

int gq_gguf_get_array(const gq_gguf *g, const char *key, uint32_t elem_type, uint64_t n,
                      const gq_gguf_kv **out, gq_error *err)
{
    const gq_gguf_kv *kv;
    int rc = find(g, key, false, &kv, err);
    if (rc)
        return rc;
    if (kv->type != GQ_GGUF_ARRAY)
        return wrong_type(g, kv, "an array", err);
    if (kv->elem_type != elem_type)
        return gq_fail(err, "%s: key %s is an array of %s, expected %s", g->path, key,
                       type_names[kv->elem_type], type_names[elem_type]);
    if (n && kv->n != n)
        return gq_fail(err, "%s: key %s has %llu elements, expected %llu", g->path, key,
                       (unsigned long long)kv->n, (unsigned long long)n);
    *out = kv;
    return 0;
}

void gq_gguf_str_next(gq_gguf_str_iter *it, const char **s, size_t *len)
{
    uint64_t n;
    memcpy(&n, it->p, 8);
    *s = (const char *)it->p + 8;
    *len = (size_t)n;
    it->p += 8 + n;
}
