/* Parsing a GGUF file (gq_gguf.h): header, key/value pairs, tensor infos, data offsets. Every
 * read goes through a cursor that knows how many bytes remain; counts are checked against
 * those bytes before anything is allocated. */
#include "gguf/gq_gguf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/gq_fileio.h"

typedef struct {
    const uint8_t *p, *end;
    const char *what;
    gq_error *err;
} cursor;

static size_t left(const cursor *c) { return (size_t)(c->end - c->p); }

static int take(cursor *c, void *out, size_t n, const char *field)
{
    if (left(c) < n)
        return gq_fail(c->err, "%s: truncated at %s (%zu bytes left, %zu needed)", c->what,
                       field, left(c), n);
    memcpy(out, c->p, n);
    c->p += n;
    return 0;
}

/* A string: u64 length, bytes. *s points into the file. */
static int take_str(cursor *c, const uint8_t **s, uint64_t *len, const char *field)
{
    if (take(c, len, 8, field))
        return -1;
    if (*len > left(c))
        return gq_fail(c->err, "%s: %s: string length %llu exceeds the %zu bytes left", c->what,
                       field, (unsigned long long)*len, left(c));
    *s = c->p;
    c->p += *len;
    return 0;
}

static const size_t scalar_size[GQ_GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

/* Skips one array: element type, count, elements; checked against the bytes left. */
static int take_array(cursor *c, gq_gguf_kv *kv)
{
    if (take(c, &kv->elem_type, 4, kv->key) || take(c, &kv->n, 8, kv->key))
        return -1;
    if (kv->elem_type >= GQ_GGUF_NTYPES || kv->elem_type == GQ_GGUF_ARRAY)
        return gq_fail(c->err, "%s: key %s: array element type %u is not a scalar or string "
                       "type", c->what, kv->key, kv->elem_type);
    kv->data = c->p;
    if (kv->elem_type != GQ_GGUF_STRING) {
        size_t es = scalar_size[kv->elem_type];
        if (kv->n > left(c) / es)
            return gq_fail(c->err, "%s: key %s: %llu array elements of %zu bytes exceed the "
                           "%zu bytes left", c->what, kv->key, (unsigned long long)kv->n, es,
                           left(c));
        c->p += kv->n * es;
        return 0;
    }
    if (kv->n > left(c) / 8)
        return gq_fail(c->err, "%s: key %s: %llu strings cannot fit in the %zu bytes left",
                       c->what, kv->key, (unsigned long long)kv->n, left(c));
    for (uint64_t i = 0; i < kv->n; i++) {
        const uint8_t *s;
        uint64_t len;
        if (take_str(c, &s, &len, kv->key))
            return -1;
    }
    return 0;
}

static int take_kv(cursor *c, gq_gguf_kv *kv, size_t idx)
{
    const uint8_t *k;
    uint64_t klen;
    char field[48];
    snprintf(field, sizeof field, "key %zu", idx);
    if (take_str(c, &k, &klen, field))
        return -1;
    if (!(kv->key = malloc(klen + 1)))
        return gq_fail(c->err, "%s: out of memory", c->what);
    memcpy(kv->key, k, klen);
    kv->key[klen] = '\0';
    if (strlen(kv->key) != klen || klen == 0)
        return gq_fail(c->err, "%s: %s is empty or holds a NUL byte", c->what, field);
    if (take(c, &kv->type, 4, kv->key))
        return -1;
    if (kv->type >= GQ_GGUF_NTYPES)
        return gq_fail(c->err, "%s: key %s: value type %u is not a GGUF type", c->what, kv->key,
                       kv->type);
    kv->n = 1;
    if (kv->type == GQ_GGUF_ARRAY)
        return take_array(c, kv);
    if (kv->type == GQ_GGUF_STRING) {
        const uint8_t *s;
        if (take_str(c, &s, &kv->n, kv->key))
            return -1;
        kv->data = s;
        return 0;
    }
    kv->data = c->p;
    if (left(c) < scalar_size[kv->type])
        return gq_fail(c->err, "%s: key %s: truncated value", c->what, kv->key);
    if (kv->type == GQ_GGUF_BOOL && *c->p > 1)
        return gq_fail(c->err, "%s: key %s: bool value %u is not 0 or 1", c->what, kv->key,
                       *c->p);
    c->p += scalar_size[kv->type];
    return 0;
}

static int read_kvs(cursor *c, gq_gguf *g, uint64_t n)
{
    /* a pair takes at least 8 (key length) + 1 (key) + 4 (type) + 1 (value) bytes */
    if (n > left(c) / 14)
        return gq_fail(c->err, "%s: header claims %llu key/value pairs; the file cannot hold "
                       "them", c->what, (unsigned long long)n);
    if (n && !(g->kv = calloc((size_t)n, sizeof *g->kv)))
        return gq_fail(c->err, "%s: out of memory", c->what);
    for (size_t i = 0; i < n; i++) {
        g->n_kv = i + 1;
        if (take_kv(c, &g->kv[i], i))
            return -1;
        for (size_t j = 0; j < i; j++)
            if (strcmp(g->kv[j].key, g->kv[i].key) == 0)
                return gq_fail(c->err, "%s: key %s appears twice", c->what, g->kv[i].key);
    }
    return 0;
}

/* Shape, type and size of one tensor info; names the tensor in every message. */
static int check_tensor_shape(cursor *c, gq_gguf_tensor *t, uint32_t type)
{
    if (t->n_dims < 1 || t->n_dims > 4)
        return gq_fail(c->err, "%s: tensor %s: %u dimensions (1..4 allowed)", c->what, t->name,
                       t->n_dims);
    if (!(t->type = gq_gguf_dtype_by_id(type)))
        return gq_fail(c->err, "%s: tensor %s has ggml type %s (%u), which gq-bench does not "
                       "implement", c->what, t->name, gq_gguf_dtype_name(type), type);
    uint64_t elems = 1;
    for (uint32_t d = 0; d < 4; d++) {
        if (t->ne[d] == 0 || t->ne[d] > (1ull << 40) || elems > (1ull << 50) / t->ne[d])
            return gq_fail(c->err, "%s: tensor %s: dimension %u = %llu is zero or too large",
                           c->what, t->name, d, (unsigned long long)t->ne[d]);
        elems *= t->ne[d];
    }
    if (t->ne[0] % (uint64_t)t->type->block_elems != 0)
        return gq_fail(c->err, "%s: tensor %s: row length %llu is not a multiple of the %s "
                       "block (%d)", c->what, t->name, (unsigned long long)t->ne[0],
                       t->type->name, t->type->block_elems);
    t->nbytes = (size_t)(elems / (uint64_t)t->type->block_elems * t->type->block_bytes);
    return 0;
}

static int take_tensor(cursor *c, gq_gguf_tensor *t, size_t idx)
{
    const uint8_t *s;
    uint64_t len;
    uint32_t type = 0;
    char field[48];
    snprintf(field, sizeof field, "tensor info %zu", idx);
    if (take_str(c, &s, &len, field))
        return -1;
    if (len == 0 || len >= GQ_GGUF_MAX_NAME || memchr(s, 0, len))
        return gq_fail(c->err, "%s: %s: name of %llu bytes (1..%d, no NUL)", c->what, field,
                       (unsigned long long)len, GQ_GGUF_MAX_NAME - 1);
    memcpy(t->name, s, len);
    if (take(c, &t->n_dims, 4, t->name))
        return -1;
    if (t->n_dims < 1 || t->n_dims > 4)
        return gq_fail(c->err, "%s: tensor %s: %u dimensions (1..4 allowed)", c->what, t->name,
                       t->n_dims);
    for (uint32_t d = 0; d < 4; d++)
        t->ne[d] = 1;
    if (take(c, t->ne, 8 * (size_t)t->n_dims, t->name) || take(c, &type, 4, t->name) ||
        take(c, &t->offset, 8, t->name))
        return -1;
    return check_tensor_shape(c, t, type);
}

static int read_tensor_infos(cursor *c, gq_gguf *g, uint64_t n)
{
    /* a tensor info takes at least 8 + 1 + 4 + 8 + 4 + 8 bytes */
    if (n > left(c) / 33)
        return gq_fail(c->err, "%s: header claims %llu tensors; the file cannot hold them",
                       c->what, (unsigned long long)n);
    if (n && !(g->tensors = calloc((size_t)n, sizeof *g->tensors)))
        return gq_fail(c->err, "%s: out of memory", c->what);
    for (size_t i = 0; i < n; i++) {
        g->n_tensors = i + 1;
        if (take_tensor(c, &g->tensors[i], i))
            return -1;
        for (size_t j = 0; j < i; j++)
            if (strcmp(g->tensors[j].name, g->tensors[i].name) == 0)
                return gq_fail(c->err, "%s: tensor %s appears twice", c->what,
                               g->tensors[i].name);
    }
    return 0;
}

static size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

static int read_alignment(const char *what, gq_gguf *g, gq_error *err)
{
    uint64_t a = GQ_GGUF_DEFAULT_ALIGNMENT;
    int rc = gq_gguf_get_uint(g, "general.alignment", true, 1u << 30, &a, err);
    if (rc < 0)
        return -1;
    if (a == 0 || (a & (a - 1)) != 0)
        return gq_fail(err, "%s: key general.alignment = %llu is not a power of two", what,
                       (unsigned long long)a);
    g->alignment = (size_t)a;
    return 0;
}

/* Tensor data: in order, each at the running offset padded to the alignment, as ggml writes. */
static int place_tensors(const char *what, gq_gguf *g, size_t header_end, gq_error *err)
{
    size_t data = align_up(header_end, g->alignment);
    if (data > g->size)
        return g->n_tensors ? gq_fail(err, "%s: truncated before the tensor data", what) : 0;
    size_t avail = g->size - data, expect = 0;
    for (size_t i = 0; i < g->n_tensors; i++) {
        gq_gguf_tensor *t = &g->tensors[i];
        if (t->offset != expect)
            return gq_fail(err, "%s: tensor %s: data offset %llu, expected %zu (tensors are "
                           "stored in order, aligned to %zu)", what, t->name,
                           (unsigned long long)t->offset, expect, g->alignment);
        if (expect > avail || t->nbytes > avail - expect)
            return gq_fail(err, "%s: tensor %s: %zu bytes at offset %zu run past the end of the "
                           "file (%zu data bytes)", what, t->name, t->nbytes, expect, avail);
        t->data = g->base + data + expect;
        expect += t->nbytes;
        if (i + 1 < g->n_tensors)
            expect = align_up(expect, g->alignment);
    }
    return 0;
}

int gq_gguf_parse(const char *what, const uint8_t *base, size_t size, gq_gguf *g,
                  gq_error *err)
{
    memset(g, 0, sizeof *g);
    snprintf(g->path, sizeof g->path, "%s", what);
    g->base = base;
    g->size = size;
    cursor c = {base, base + size, g->path, err};
    uint64_t n_tensors = 0, n_kv = 0;
    if (size < 4 || memcmp(base, "GGUF", 4) != 0) {
        gq_fail(err, "%s: not a GGUF file (no \"GGUF\" magic)", g->path);
        goto fail;
    }
    c.p += 4;
    if (take(&c, &g->version, 4, "the version"))
        goto fail;
    if (g->version != 2 && g->version != 3) {
        gq_fail(err, "%s: GGUF version %u is not supported (2 and 3 are)", g->path, g->version);
        goto fail;
    }
    if (take(&c, &n_tensors, 8, "the tensor count") || take(&c, &n_kv, 8, "the key count") ||
        read_kvs(&c, g, n_kv) || read_tensor_infos(&c, g, n_tensors) ||
        read_alignment(g->path, g, err) ||
        place_tensors(g->path, g, (size_t)(c.p - base), err))
        goto fail;
    return 0;
fail:
    gq_gguf_close(g);
    return -1;
}

bool gq_gguf_is_gguf(const char *path)
{
    gq_error e = {0};
    int fd = gq_open_input(path, &e);
    if (fd < 0)
        return false;
    char magic[4];
    bool yes = pread(fd, magic, 4, 0) == 4 && memcmp(magic, "GGUF", 4) == 0;
    close(fd);
    return yes;
}

int gq_gguf_open(const char *path, gq_gguf *g, gq_error *err)
{
    memset(g, 0, sizeof *g);
    int fd = gq_open_input(path, err);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size <= 0) {
        close(fd);
        return gq_fail(err, "%s: empty or unreadable file", path);
    }
    size_t size = (size_t)st.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return gq_fail(err, "%s: cannot map %zu bytes: %s", path, size, strerror(errno));
    if (gq_gguf_parse(path, map, size, g, err) != 0) {
        munmap(map, size);
        return -1;
    }
    g->map = map;
    return 0;
}

void gq_gguf_close(gq_gguf *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n_kv; i++)
        free(g->kv[i].key);
    free(g->kv);
    free(g->tensors);
    if (g->map)
        munmap(g->map, g->size);
    memset(g, 0, sizeof *g);
}
