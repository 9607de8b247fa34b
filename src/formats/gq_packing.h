#ifndef GQ_PACKING_H
#define GQ_PACKING_H
/* How a format gets a packed kernel (src/packed): the format declares a gq_packing in
 * gq_format.packing, and the packed area reads nothing else of it. This header sits in formats
 * (below packed) and holds no packed internals: a format describes its storage in one of the
 * forms below, and packed lays that out for the kernel the form names.
 *
 *   ggml kernels (GQ_PACK_Q4_0 ... GQ_PACK_Q6_K): the storage is ggml's block bytes, rows of
 *       whole blocks of block_bytes; header_bytes = the fields before the code bytes that the
 *       packed layout interleaves across rows (the whole block when it moves as one piece);
 *   GQ_PACK_INT: integer codes, w = s * (code - z) with an fp16 scale s and an integer zero
 *       point z per group of `group` consecutive columns (0: the whole row); codes (rows, cols)
 *       one per byte, scales and zeros (rows, n_groups), n_groups = ceil(cols / group);
 *       bits 4 or 8;
 *   GQ_PACK_ROWS: the format's own storage, rows of row_bytes, decoded row by row by the
 *       format's dequant_row (a scalar kernel: decode dots dequantize the row, prefill tiles
 *       run on sgemm). Any format, in-tree or plugin, can take this form. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/gq_error.h"

typedef enum gq_pack_kernel {
    GQ_PACK_NONE = 0,
    GQ_PACK_Q4_0,
    GQ_PACK_Q4_1,
    GQ_PACK_Q8_0,
    GQ_PACK_MXFP4,
    GQ_PACK_Q4_K,
    GQ_PACK_Q6_K,
    GQ_PACK_INT,
    GQ_PACK_ROWS,
} gq_pack_kernel;

/* One (rows, cols) matrix as the format hands it to the packed kernels. */
typedef struct gq_pack_codes {
    gq_pack_kernel kernel;
    /* ggml kernels and ROWS: the storage quantize() wrote (borrowed, rows * row_bytes). */
    const uint8_t *storage;
    size_t row_bytes;
    size_t block_bytes, header_bytes; /* ggml kernels */
    /* INT: owned by this struct (gq_pack_codes_free). */
    int bits;
    int group;         /* columns per scale; 0 = the whole row */
    int zconst;        /* the zero point of every group when zeros is NULL */
    uint8_t *codes;    /* rows * cols */
    uint16_t *scales;  /* rows * n_groups, fp16 bits */
    uint8_t *zeros;    /* rows * n_groups, or NULL */
} gq_pack_codes;

typedef struct gq_packing {
    /* Optional (NULL: every parameter set and shape packs): false, with a one-line reason in
     * why, when these parameters or a (rows, cols) matrix (cols <= 0: any shape) cannot. */
    bool (*supported)(const void *params, int rows, int cols, char *why, size_t n);
    /* Describes `storage` (what quantize() wrote for a (rows, cols) matrix) in one of the
     * forms above. */
    int (*describe)(const void *params, const uint8_t *storage, int rows, int cols,
                    gq_pack_codes *out, gq_error *err);
    /* GQ_PACK_ROWS only: y[0..cols) = one row of storage (row_bytes), bit-identical to what
     * dequantize() writes for that row. Must be thread-safe. */
    void (*dequant_row)(const void *params, const uint8_t *row, int cols, float *y);
} gq_packing;

/* Frees the arrays an INT description owns; safe on any description. */
void gq_pack_codes_free(gq_pack_codes *c);

/* A ggml description: storage rows of ceil(cols / block_cols) blocks of block_bytes. */
void gq_pack_ggml(gq_pack_codes *out, gq_pack_kernel kernel, const uint8_t *storage, int cols,
                  int block_cols, size_t block_bytes, size_t header_bytes);

#endif
