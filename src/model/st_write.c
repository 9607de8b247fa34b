/* Writing safetensors files from tensors in memory (gq_st_write.h). */
#include "model/gq_st_write.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gq_fileio.h"

size_t gq_st_blob_bytes(const gq_st_blob *b)
{
    size_t n = gq_st_dtype_size(b->dtype);
    for (int d = 0; d < b->ndim; d++)
        n *= (size_t)b->shape[d];
    return n;
}

char *gq_st_header_text(json_t *root, size_t *len)
{
    char *text = root ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (!text)
        return NULL;
    size_t n0 = strlen(text), padded = (n0 + 7) / 8 * 8;
    char *out = realloc(text, padded + 1);
    if (!out) {
        free(text);
        return NULL;
    }
    memset(out + n0, ' ', padded - n0);
    out[padded] = '\0';
    *len = padded;
    return out;
}

/* The JSON header of the blobs (gq_st_header_text). */
static char *header_text(const gq_st_blob *t, int n, size_t *len)
{
    json_t *root = json_pack("{s:{s:s}}", "__metadata__", "format", "pt");
    size_t off = 0;
    for (int i = 0; root && i < n; i++) {
        size_t bytes = gq_st_blob_bytes(&t[i]);
        json_t *shape = t[i].ndim == 1 ? json_pack("[I]", (json_int_t)t[i].shape[0])
                                       : json_pack("[I,I]", (json_int_t)t[i].shape[0],
                                                   (json_int_t)t[i].shape[1]);
        json_t *e = json_pack("{s:s,s:o,s:[I,I]}", "dtype", gq_st_dtype_name(t[i].dtype),
                              "shape", shape, "data_offsets", (json_int_t)off,
                              (json_int_t)(off + bytes));
        if (!e || json_object_set_new(root, t[i].name, e)) {
            json_decref(root);
            return NULL;
        }
        off += bytes;
    }
    return gq_st_header_text(root, len);
}

/* Length prefix, header and data to f; 0 or an errno value. */
static int write_all(FILE *f, const char *header, size_t hlen, const gq_st_blob *t, int n)
{
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    errno = 0;
    if (fwrite(len8, 1, 8, f) != 8 || fwrite(header, 1, hlen, f) != hlen)
        return errno ? errno : EIO;
    for (int i = 0; i < n; i++) {
        size_t bytes = gq_st_blob_bytes(&t[i]);
        if (bytes && fwrite(t[i].data, 1, bytes, f) != bytes)
            return errno ? errno : EIO;
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        return errno ? errno : EIO;
    return 0;
}

int gq_st_write(const char *path, const gq_st_blob *t, int n, gq_error *err)
{
    size_t hlen = 0;
    char *header = header_text(t, n, &hlen);
    if (!header)
        return gq_fail(err, "%s: out of memory", path);
    char tmp[4300];
    int fd = gq_tmp_create(path, tmp, sizeof tmp, err);
    if (fd < 0) {
        free(header);
        return -1;
    }
    FILE *f = fdopen(fd, "wb");
    int rc = f ? write_all(f, header, hlen, t, n) : errno;
    if (f && fclose(f) != 0 && !rc)
        rc = errno ? errno : EIO;
    if (!f)
        close(fd);
    free(header);
    if (rc) {
        unlink(tmp);
        return gq_fail(err, "%s: write failed: %s", path, strerror(rc));
    }
    return gq_tmp_commit(tmp, path, err);
}
