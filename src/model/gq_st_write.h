#ifndef GQ_ST_WRITE_H
#define GQ_ST_WRITE_H
/* Writing a safetensors file (the layout of gq_safetensors.h) from tensors held in memory:
 * the header lists them in the given order with consecutive data offsets, padded with spaces
 * to a multiple of 8 bytes; "__metadata__" is {"format": "pt"}. */
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/gq_error.h"
#include "model/gq_safetensors.h"

typedef struct gq_st_blob {
    char name[128];
    gq_st_dtype dtype;
    int ndim;            /* 1 or 2 */
    int64_t shape[2];
    void *data;          /* product(shape) elements of dtype, little-endian, malloc'd */
} gq_st_blob;

/* Bytes of a blob's data. */
size_t gq_st_blob_bytes(const gq_st_blob *b);

/* The header text of a safetensors file from its JSON object (taken over, NULL allowed):
 * compact, padded with spaces to a multiple of 8 bytes (*len); NULL when out of memory. */
char *gq_st_header_text(json_t *root, size_t *len);

/* Writes the n blobs to `path` atomically (a temporary renamed into place). */
int gq_st_write(const char *path, const gq_st_blob *t, int n, gq_error *err);

#endif
