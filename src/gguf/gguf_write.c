/* The GGUF container writer (gq_gguf_write.h): key/value bytes accumulate in one growing
 * buffer, tensor infos in a list; commit lays out header, infos, padding and data. */
#include "gguf/gq_gguf_write.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gq_fileio.h"
#include "gguf/gq_gguf.h"

typedef struct {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} byte_buf;

typedef struct {
    char name[GQ_GGUF_MAX_NAME];
    uint32_t n_dims, type;
    uint64_t ne[2];
    const void *data;
    size_t nbytes;
    bool owned;
} out_tensor;

struct gq_gguf_writer {
    byte_buf kv;
    uint64_t n_kv;
    out_tensor *t;
    size_t n_t, cap_t;
};

static void buf_put(byte_buf *b, const void *src, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void buf_u32(byte_buf *b, uint32_t v) { buf_put(b, &v, 4); }
static void buf_u64(byte_buf *b, uint64_t v) { buf_put(b, &v, 8); }

static void buf_str(byte_buf *b, const char *s, size_t len)
{
    buf_u64(b, len);
    buf_put(b, s, len);
}

gq_gguf_writer *gq_gguf_writer_new(gq_error *err)
{
    gq_gguf_writer *w = calloc(1, sizeof *w);
    if (!w)
        gq_fail(err, "out of memory for a GGUF writer");
    return w;
}

void gq_gguf_writer_free(gq_gguf_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_t; i++)
        if (w->t[i].owned)
            free((void *)w->t[i].data);
    free(w->t);
    free(w->kv.p);
    free(w);
}

static void put_key(gq_gguf_writer *w, const char *key, uint32_t type)
{
    buf_str(&w->kv, key, strlen(key));
    buf_u32(&w->kv, type);
    w->n_kv++;
}

void gq_gguf_put_str(gq_gguf_writer *w, const char *key, const char *value)
{
    put_key(w, key, GQ_GGUF_STRING);
    buf_str(&w->kv, value, strlen(value));
}

void gq_gguf_put_u32(gq_gguf_writer *w, const char *key, uint32_t value)
{
    put_key(w, key, GQ_GGUF_U32);
    buf_u32(&w->kv, value);
}

void gq_gguf_put_bool(gq_gguf_writer *w, const char *key, bool value)
{
    uint8_t b = value ? 1 : 0;
    put_key(w, key, GQ_GGUF_BOOL);
    buf_put(&w->kv, &b, 1);
}

void gq_gguf_put_f32(gq_gguf_writer *w, const char *key, float value)
{
    put_key(w, key, GQ_GGUF_F32);
    buf_put(&w->kv, &value, 4);
}

static void put_array_head(gq_gguf_writer *w, const char *key, uint32_t elem, size_t n)
{
    put_key(w, key, GQ_GGUF_ARRAY);
    buf_u32(&w->kv, elem);
    buf_u64(&w->kv, n);
}

void gq_gguf_put_str_array(gq_gguf_writer *w, const char *key, size_t n,
                           const char *(*get)(void *ctx, size_t i, size_t *len), void *ctx)
{
    put_array_head(w, key, GQ_GGUF_STRING, n);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *s = get(ctx, i, &len);
        buf_str(&w->kv, s, len);
    }
}

void gq_gguf_put_f32_array(gq_gguf_writer *w, const char *key, const float *v, size_t n)
{
    put_array_head(w, key, GQ_GGUF_F32, n);
    buf_put(&w->kv, v, 4 * n);
}

void gq_gguf_put_i32_array(gq_gguf_writer *w, const char *key, const int32_t *v, size_t n)
{
    put_array_head(w, key, GQ_GGUF_I32, n);
    buf_put(&w->kv, v, 4 * n);
}

int gq_gguf_add_tensor(gq_gguf_writer *w, const char *name, int cols, int rows, uint32_t type,
                       const void *data, size_t nbytes, bool owned, gq_error *err)
{
    if (strlen(name) >= GQ_GGUF_MAX_NAME)
        return gq_fail(err, "GGUF tensor name %s is longer than %d bytes", name,
                       GQ_GGUF_MAX_NAME - 1);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        out_tensor *t = realloc(w->t, cap * sizeof *t);
        if (!t)
            return gq_fail(err, "out of memory for GGUF tensor %s", name);
        w->t = t;
        w->cap_t = cap;
    }
    out_tensor *t = &w->t[w->n_t++];
    memset(t, 0, sizeof *t);
    strcpy(t->name, name);
    t->n_dims = rows ? 2 : 1;
    t->ne[0] = (uint64_t)cols;
    t->ne[1] = rows ? (uint64_t)rows : 1;
    t->type = type;
    t->data = data;
    t->nbytes = nbytes;
    t->owned = owned;
    return 0;
}

static size_t pad_to(size_t x)
{
    return (x + GQ_GGUF_DEFAULT_ALIGNMENT - 1) / GQ_GGUF_DEFAULT_ALIGNMENT *
           GQ_GGUF_DEFAULT_ALIGNMENT;
}

/* Magic, version, counts, the pairs, the tensor infos and the padding before the data. */
static void build_header(const gq_gguf_writer *w, byte_buf *h)
{
    buf_put(h, "GGUF", 4);
    buf_u32(h, 3);
    buf_u64(h, w->n_t);
    buf_u64(h, w->n_kv + 1);
    buf_put(h, w->kv.p, w->kv.n);
    buf_str(h, "general.alignment", strlen("general.alignment"));
    buf_u32(h, GQ_GGUF_U32);
    buf_u32(h, GQ_GGUF_DEFAULT_ALIGNMENT);
    size_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const out_tensor *t = &w->t[i];
        buf_str(h, t->name, strlen(t->name));
        buf_u32(h, t->n_dims);
        buf_put(h, t->ne, 8 * t->n_dims);
        buf_u32(h, t->type);
        buf_u64(h, off);
        off = pad_to(off + t->nbytes);
    }
    static const uint8_t zeros[GQ_GGUF_DEFAULT_ALIGNMENT];
    buf_put(h, zeros, pad_to(h->n) - h->n);
}

static int write_full(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t r = write(fd, b, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_body(int fd, const gq_gguf_writer *w, const byte_buf *h)
{
    static const uint8_t zeros[GQ_GGUF_DEFAULT_ALIGNMENT];
    if (write_full(fd, h->p, h->n))
        return -1;
    for (size_t i = 0; i < w->n_t; i++) {
        size_t n = w->t[i].nbytes;
        if (write_full(fd, w->t[i].data, n) || write_full(fd, zeros, pad_to(n) - n))
            return -1;
    }
    return fsync(fd);
}

int gq_gguf_writer_commit(gq_gguf_writer *w, const char *path, gq_error *err)
{
    byte_buf h = {0};
    build_header(w, &h);
    if (w->kv.oom || h.oom) {
        free(h.p);
        return gq_fail(err, "%s: out of memory for the GGUF header", path);
    }
    char tmp[4200];
    int fd = gq_check_output(path, err) ? -1 : gq_tmp_create(path, tmp, sizeof tmp, err);
    if (fd < 0) {
        free(h.p);
        return -1;
    }
    int rc = write_body(fd, w, &h);
    int e = errno;
    free(h.p);
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        e = errno;
    }
    if (rc) {
        unlink(tmp);
        return gq_fail(err, "%s: write failed: %s", path, strerror(e ? e : EIO));
    }
    return gq_tmp_commit(tmp, path, err);
}
