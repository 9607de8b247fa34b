/* Writing the native format (gq_qmodel.h): tensors appended to a data temporary as they come,
 * then the safetensors file (length, header, data) written atomically by finish. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gq_fileio.h"
#include "model/gq_st_write.h"
#include "qmodel/native_internal.h"
#include "qmodel/gq_qmodel.h"

struct gq_native_writer {
    char path[4200], data_tmp[4300];
    FILE *data;       /* the tensor bytes so far */
    size_t offset;    /* their length */
    json_t *header;   /* name -> {dtype, shape, data_offsets}, in order */
    json_t *formats;  /* tensor -> quantizer JSON */
};

gq_native_writer *gq_native_writer_open(const char *path, gq_error *err)
{
    gq_native_writer *w = calloc(1, sizeof *w);
    if (!w) {
        gq_fail(err, "%s: out of memory", path);
        return NULL;
    }
    snprintf(w->path, sizeof w->path, "%s", path);
    w->header = json_object();
    w->formats = json_object();
    int fd = gq_tmp_create(path, w->data_tmp, sizeof w->data_tmp, err);
    if (fd >= 0 && !(w->data = fdopen(fd, "w+b")))
        close(fd);
    if (!w->data || !w->header || !w->formats) {
        if (fd >= 0)
            gq_fail(err, "%s: out of memory", path);
        gq_native_abort(w);
        return NULL;
    }
    return w;
}

void gq_native_abort(gq_native_writer *w)
{
    if (!w)
        return;
    if (w->data) {
        fclose(w->data);
        unlink(w->data_tmp);
    }
    json_decref(w->header);
    json_decref(w->formats);
    free(w);
}

int gq_native_add(gq_native_writer *w, const char *name, int dtype, int ndim, int64_t d0,
                  int64_t d1, const void *data, gq_error *err)
{
    size_t bytes = gq_st_dtype_size((gq_st_dtype)dtype) * (size_t)d0 * (ndim > 1 ? (size_t)d1 : 1);
    json_t *shape = ndim == 1 ? json_pack("[I]", (json_int_t)d0)
                              : json_pack("[I,I]", (json_int_t)d0, (json_int_t)d1);
    json_t *e = json_pack("{s:s,s:o,s:[I,I]}", "dtype", gq_st_dtype_name((gq_st_dtype)dtype),
                          "shape", shape, "data_offsets", (json_int_t)w->offset,
                          (json_int_t)(w->offset + bytes));
    if (json_object_get(w->header, name))
        return gq_fail(err, "%s: tensor %s added twice", w->path, name);
    if (!e || json_object_set_new(w->header, name, e))
        return gq_fail(err, "%s: out of memory", w->path);
    errno = 0;
    if (bytes && fwrite(data, 1, bytes, w->data) != bytes)
        return gq_fail(err, "%s: write failed: %s", w->data_tmp, strerror(errno ? errno : EIO));
    w->offset += bytes;
    return 0;
}

int gq_native_add_codes(gq_native_writer *w, const char *tensor, const gq_quantizer *q,
                        const uint8_t *codes, size_t bytes, const int32_t *perm, int cols,
                        gq_error *err)
{
    char name[160];
    snprintf(name, sizeof name, "%s.codes", tensor);
    if (gq_native_add(w, name, GQ_ST_U8, 1, (int64_t)bytes, 0, codes, err))
        return -1;
    snprintf(name, sizeof name, "%s.perm", tensor);
    if (perm && gq_native_add(w, name, GQ_ST_I32, 1, cols, 0, perm, err))
        return -1;
    if (json_object_set_new(w->formats, tensor, gq_quantizer_to_json(q)))
        return gq_fail(err, "%s: out of memory", w->path);
    return 0;
}

/* Copies the data temporary after the header into f; 0 or an errno value. */
static int copy_data(gq_native_writer *w, FILE *f)
{
    if (fflush(w->data) != 0 || fseek(w->data, 0, SEEK_SET) != 0)
        return errno ? errno : EIO;
    enum { CHUNK = 1 << 20 };
    char *buf = malloc(CHUNK);
    if (!buf)
        return ENOMEM;
    size_t n, total = 0;
    errno = 0;
    while ((n = fread(buf, 1, CHUNK, w->data)) > 0 && fwrite(buf, 1, n, f) == n)
        total += n;
    free(buf);
    if (total != w->offset)
        return errno ? errno : EIO;
    return fflush(f) != 0 || fsync(fileno(f)) != 0 ? (errno ? errno : EIO) : 0;
}

/* Length prefix, header and the data into a temporary, renamed onto the path. */
static int write_file(gq_native_writer *w, const char *header, size_t hlen, gq_error *err)
{
    char tmp[4300];
    int fd = gq_tmp_create(w->path, tmp, sizeof tmp, err);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "wb");
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    errno = 0;
    int rc = !f ? errno
             : fwrite(len8, 1, 8, f) != 8 || fwrite(header, 1, hlen, f) != hlen
                 ? (errno ? errno : EIO)
                 : copy_data(w, f);
    if (f && fclose(f) != 0 && !rc)
        rc = errno ? errno : EIO;
    if (!f)
        close(fd);
    if (rc) {
        unlink(tmp);
        return gq_fail(err, "%s: write failed: %s", w->path, strerror(rc));
    }
    return gq_tmp_commit(tmp, w->path, err);
}

int gq_native_finish(gq_native_writer *w, const gq_config *c, json_t *meta, gq_error *err)
{
    json_t *cfg = meta ? native_config_to_json(c) : NULL;
    int rc = 0;
    if (!cfg || json_object_set_new(meta, "version", json_integer(NATIVE_VERSION)) ||
        json_object_set_new(meta, "config", cfg) || /* takes cfg, even on failure */
        json_object_set(meta, "formats", w->formats))
        rc = gq_fail(err, "%s: out of memory", w->path);
    char *text = rc ? NULL : json_dumps(meta, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(meta);
    json_t *root = text ? json_pack("{s:{s:s,s:s}}", "__metadata__", "format", NATIVE_MAGIC,
                                    "gq_bench", text)
                        : NULL;
    free(text);
    const char *key;
    json_t *v;
    json_object_foreach(w->header, key, v) {
        if (root && json_object_set(root, key, v)) {
            json_decref(root);
            root = NULL;
        }
    }
    size_t hlen = 0;
    char *header = root ? gq_st_header_text(root, &hlen) : NULL;
    if (!rc && !header)
        rc = gq_fail(err, "%s: out of memory", w->path);
    if (!rc)
        rc = write_file(w, header, hlen, err);
    free(header);
    gq_native_abort(w);
    return rc;
}
