#ifndef GQ_GGUF_H
#define GQ_GGUF_H
/* GGUF files (llama.cpp's model container, versions 2 and 3; little-endian).
 *
 * Layout: "GGUF", u32 version, u64 tensor count, u64 key/value count; the key/value pairs
 * (string key, u32 value type, value; strings are u64 length + bytes, arrays u32 element type +
 * u64 count + elements); the tensor infos (name, u32 n_dims, n_dims u64 sizes ne[] with ne[0]
 * the contiguous dimension, u32 ggml type, u64 offset); padding to `general.alignment` (default
 * 32); the tensor data, each tensor at its offset from the start of the data section, in order,
 * each padded to the alignment.
 *
 * The reader checks every count, length and offset against the bytes that remain before it
 * allocates or reads anything, so a hostile file gets one line naming the key or tensor (never a
 * huge allocation or an out-of-bounds read). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/gq_error.h"

/* Value types of the key/value section. */
enum {
    GQ_GGUF_U8 = 0, GQ_GGUF_I8 = 1, GQ_GGUF_U16 = 2, GQ_GGUF_I16 = 3, GQ_GGUF_U32 = 4,
    GQ_GGUF_I32 = 5, GQ_GGUF_F32 = 6, GQ_GGUF_BOOL = 7, GQ_GGUF_STRING = 8, GQ_GGUF_ARRAY = 9,
    GQ_GGUF_U64 = 10, GQ_GGUF_I64 = 11, GQ_GGUF_F64 = 12, GQ_GGUF_NTYPES = 13
};

/* ggml tensor types gq-bench reads and writes (ggml.h numbering). */
enum {
    GQ_GGML_F32 = 0, GQ_GGML_F16 = 1, GQ_GGML_Q4_0 = 2, GQ_GGML_Q4_1 = 3, GQ_GGML_Q5_0 = 6,
    GQ_GGML_Q5_1 = 7, GQ_GGML_Q8_0 = 8, GQ_GGML_Q2_K = 10, GQ_GGML_Q3_K = 11, GQ_GGML_Q4_K = 12,
    GQ_GGML_Q5_K = 13, GQ_GGML_Q6_K = 14, GQ_GGML_BF16 = 30, GQ_GGML_MXFP4 = 39
};

#define GQ_GGUF_MAX_NAME 64 /* ggml's tensor name limit, NUL included */
#define GQ_GGUF_DEFAULT_ALIGNMENT 32

/* One ggml type as gq-bench knows it: elements per block, bytes per block, and the gq-bench
 * format whose storage is exactly these blocks (NULL for F32, F16, BF16). */
typedef struct gq_gguf_dtype {
    int id;
    const char *name;   /* ggml's name: "f32", "q4_K", ... */
    int block_elems;
    size_t block_bytes;
    const char *format; /* gq-bench format name, NULL for the float types */
} gq_gguf_dtype;

/* The type with ggml id `id`, or NULL when gq-bench does not implement it. */
const gq_gguf_dtype *gq_gguf_dtype_by_id(uint32_t id);
/* The type whose gq-bench format is `format` ("q4_K"), or NULL. */
const gq_gguf_dtype *gq_gguf_dtype_by_format(const char *format);
/* ggml's name of any type id, implemented or not ("iq2_xxs"), or "unknown". */
const char *gq_gguf_dtype_name(uint32_t id);

typedef struct gq_gguf_kv {
    char *key;            /* NUL-terminated copy */
    uint32_t type;        /* GQ_GGUF_* */
    uint32_t elem_type;   /* arrays: element type */
    uint64_t n;           /* arrays: element count; strings: byte length; else 1 */
    const uint8_t *data;  /* the value's bytes in the file (arrays: the first element) */
} gq_gguf_kv;

typedef struct gq_gguf_tensor {
    char name[GQ_GGUF_MAX_NAME];
    uint32_t n_dims;
    uint64_t ne[4];       /* ne[0] contiguous; unused dimensions 1 */
    const gq_gguf_dtype *type;
    uint64_t offset;      /* from the start of the data section */
    const uint8_t *data;
    size_t nbytes;
} gq_gguf_tensor;

typedef struct gq_gguf {
    char path[4096];
    uint32_t version;
    size_t alignment;
    gq_gguf_kv *kv;
    size_t n_kv;
    gq_gguf_tensor *tensors;
    size_t n_tensors;
    const uint8_t *base;  /* the whole file */
    size_t size;
    void *map;            /* owned mapping (gq_gguf_open), NULL for gq_gguf_parse */
} gq_gguf;

/* True when the file starts with the GGUF magic (false when it cannot be read). */
bool gq_gguf_is_gguf(const char *path);
/* Maps and parses a file (read-only). */
int gq_gguf_open(const char *path, gq_gguf *g, gq_error *err);
/* Parses size bytes at base (borrowed: must outlive g); `what` names it in messages. */
int gq_gguf_parse(const char *what, const uint8_t *base, size_t size, gq_gguf *g,
                  gq_error *err);
void gq_gguf_close(gq_gguf *g);

const gq_gguf_kv *gq_gguf_find_kv(const gq_gguf *g, const char *key);
const gq_gguf_tensor *gq_gguf_find_tensor(const gq_gguf *g, const char *name);

/* Typed getters. They fail naming the file and key when it is missing (unless optional:
 * return 1 and leave *out), has another type, or does not fit. */
int gq_gguf_get_uint(const gq_gguf *g, const char *key, bool optional, uint64_t max,
                     uint64_t *out, gq_error *err);
int gq_gguf_get_f32(const gq_gguf *g, const char *key, bool optional, float *out,
                    gq_error *err);
/* A string value: *s points into the file (not NUL-terminated), *len bytes. */
int gq_gguf_get_str(const gq_gguf *g, const char *key, bool optional, const char **s,
                    size_t *len, gq_error *err);
/* An array of elem_type with exactly n elements (n 0: any count, returned in *count). */
int gq_gguf_get_array(const gq_gguf *g, const char *key, uint32_t elem_type, uint64_t n,
                      const gq_gguf_kv **out, gq_error *err);
/* Element i of a string array (walks from the start: use gq_gguf_str_iter for all). */
typedef struct gq_gguf_str_iter {
    const uint8_t *p;
} gq_gguf_str_iter;
void gq_gguf_str_next(gq_gguf_str_iter *it, const char **s, size_t *len);

#endif
