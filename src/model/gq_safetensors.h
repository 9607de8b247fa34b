#ifndef GQ_SAFETENSORS_H
#define GQ_SAFETENSORS_H
/* safetensors files: an 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [r, c], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {...}}, then the tensor bytes (offsets relative to the end of the header).
 *
 * Reading maps the file read-only and checks the whole header before any tensor is used: JSON
 * syntax, a header no larger than the file, known keys and types, supported dtypes (F32, F16,
 * BF16, and I32 or U8 for integer data; any other is refused naming the tensor and dtype), end - begin = product(shape) x
 * dtype size, offsets inside the file and no two tensors overlapping. Every message starts
 * with the file's path and names the tensor. */
#include <stddef.h>
#include <stdint.h>

#include "core/gq_error.h"

/* I32 and U8 hold integer data (packed GPTQ/AWQ codes, a format's storage bytes), never
 * weights: gq_st_to_f32 takes the float dtypes only, and the model loaders refuse an integer
 * weight. */
typedef enum { GQ_ST_F32, GQ_ST_F16, GQ_ST_BF16, GQ_ST_I32, GQ_ST_U8 } gq_st_dtype;
static inline int gq_st_dtype_is_float(gq_st_dtype d) { return d <= GQ_ST_BF16; }

#define GQ_ST_MAX_DIMS 4

typedef struct gq_st_tensor {
    char *name;
    gq_st_dtype dtype;
    int ndim;
    int64_t shape[GQ_ST_MAX_DIMS];
    size_t count;       /* product of the shape */
    const void *data;   /* count elements of dtype, inside the mapping */
    int used;           /* set by the loader when the tensor is consumed */
} gq_st_tensor;

typedef struct gq_st_file {
    char *path;
    void *map;
    size_t size;
    gq_st_tensor *t;
    int n;
    char *metadata;     /* "__metadata__" as compact JSON text, NULL when absent */
} gq_st_file;

/* Parses and checks the header of the bytes data (size) of file `path` (named in messages);
 * tensors point into data, which must outlive f. */
int gq_st_parse(const char *path, const void *data, size_t size, gq_st_file *f, gq_error *err);
/* Maps `path` read-only and parses it. */
int gq_st_open(const char *path, gq_st_file *f, gq_error *err);
void gq_st_close(gq_st_file *f);

const char *gq_st_dtype_name(gq_st_dtype d);
/* "f32", "f16" or "bf16" (the command-line names); anything else is F32. */
gq_st_dtype gq_st_dtype_parse(const char *s);
size_t gq_st_dtype_size(gq_st_dtype d);
/* Element i of tensor t as float (F16/BF16 widened exactly); t is F32, F16 or BF16. */
void gq_st_to_f32(const gq_st_tensor *t, float *out, size_t first, size_t n);

#endif
