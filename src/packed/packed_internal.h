#ifndef GQ_PACKED_INTERNAL_H
#define GQ_PACKED_INTERNAL_H
/* Inside of a packed linear: the storage and the per-format kernels (see gq_packed.h).
 *
 * Every packed format stores each row as whole blocks of `block` columns (32, or 256 for the
 * K-quants); cols_pad = cols rounded up to the block, and the padding codes are the ones the
 * format's quantizer wrote for zero-padded input. Kernels read rows of cols_pad values and are
 * always given activations zero-padded to cols_pad, so the padding contributes exactly 0. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "packed/gq_packed.h"

typedef struct pk_type pk_type;

/* Activations of one decode product quantized per block of 32 (pk_prepare_act), cols_pad
 * values: x[j] ~ d[j/32] * q[j]; s[b] = d[b] * (the sum of q over block b): the kernels fold
 * code offsets and zero points through it; lanes[8b + i] = the sum of q[32b + 4i .. 32b + 4i +
 * 4) as a float (exact), what lane i of a maddubs + madd dot of block b against all-ones codes
 * holds (int8 rows). */
typedef struct pk_act {
    const int8_t *q;
    const float *d, *s, *lanes;
    /* Formats with act_k (Q4_K, as llama.cpp pairs it with Q8_K): q holds x quantized per
     * block of 256 instead (pk_prepare_act_k): x[j] ~ dk[j/256] * q[j]; bsk[b] = the sum of q
     * over block b of 32. d, s and lanes are then not filled. */
    const float *dk;
    const int16_t *bsk;
} pk_act;

struct gq_packed_linear {
    gq_linear_op op;        /* first member: the forward pass calls op.apply */
    const pk_type *type;
    int rows, cols, cols_pad;
    size_t row_bytes;       /* bytes per row (int4: a set's bytes / il, scales inline) */
    uint8_t *codes;         /* rows * row_bytes (int4: rows padded to whole sets): ggml blocks
                               (sets of rows for most, pk_blk_hdr), or int codes (kern_int.c) */
    /* int formats only: groups of `group` columns (a multiple of 32, or the whole padded row),
     * n_groups per row; scale s and zero point z per group: w = s * (code - z). */
    int group, n_groups;
    uint16_t *scales;       /* int8: rows * n_groups fp16 (int4: NULL, inline in codes) */
    uint8_t *zeros;         /* int8: rows * n_groups, or NULL when every group uses zconst */
    int zconst;
    /* ggml formats: bytes of a block and of its header (the scale fields before the codes);
     * rows 0..il_rows-1 are stored row-interleaved (see pk_blk_hdr), the rest plainly. int4:
     * hdr_bytes = a set's per-group header (pk_i4_group). */
    size_t blk_bytes, hdr_bytes;
    int il_rows;
    bool e8m0_normal;       /* mxfp4_ggml: every block exponent >= 2 (all scales normal floats) */
    size_t bytes;           /* codes + scales + zeros: the weight bytes one product reads */
    bool act_q8;            /* decode dots on int8-quantized activations (where available) */
    /* NULL, or (cols): the codes hold the weights' columns in this order (column j of a row
     * is input column in_perm[j]); products gather x[in_perm[j]] into place j first, so the
     * kernels run on the codes as they are (gq_packed_linear_set_in_perm). */
    int32_t *in_perm;
    /* format-decoded rows only (kern_rows.c): the format's entry and a copy of its parameters */
    const gq_packing *fmt_packing;
    void *fmt_params;
    char label[64];
};

/* The kernels of one packed format. Row r of P:
 *   dequant_ref:  y[0..cols_pad) exactly as the format's dequantize() reconstructs it
 *                 (scalar, the reference);
 *   dequant_fast: the same values, bit-identical (AVX2 where available, else the reference);
 *   dot_fast:     sum_j w[r][j] * x[j] over cols_pad values (AVX2 where available), with
 *                 xs[b] = sum of x[32b .. 32b+32) precomputed by the caller (the asymmetric
 *                 formats fold their offsets through it). Order of summation is the kernel's. */
struct pk_type {
    const char *name;
    int block;
    void (*dequant_ref)(const gq_packed_linear *P, int r, float *y);
    void (*dequant_fast)(const gq_packed_linear *P, int r, float *y);
    float (*dot_fast)(const gq_packed_linear *P, int r, const float *x, const float *xs);
    /* Optional (NULL: none): y[i] = the dots of rows r + i, i < nr (1..set_rows), against
     * the int8-quantized activations a. A decode pass is one set (a sequential stream; the
     * plain formats q8_0 and int8, set_rows 1, stream their wide rows best alone: `gq-bench
     * bench decode`), loading each activation block once for all its rows; a row's
     * arithmetic does not depend on nr. */
    void (*dot_q8)(const gq_packed_linear *P, int r, int nr, const pk_act *a, float *y);
    bool act_k; /* dot_q8 reads the per-256 activations of pk_act (q, dk, bsk) */
    /* Storage: rows in interleaved sets of set_rows (1: plain rows), code bytes in pieces of
     * `piece` bytes (pk_blk_hdr, pk_i4_group). */
    int set_rows, piece;
};

/* Most rows of the row-by-row kernels' passes (PK_Q8_ENTRY: q6_K in its sets of 4). The
 * 4-bit formats' sets are 8 rows, one per 32-bit lane of a 256-bit vector (kern_legacy.c,
 * kern_int.c, kern_kquants.c). */
#define PK_ROWS 4

/* Activations for dot_q8 (act_q8.c): per block of 32, d = amax / 127, q = round-half-even(x *
 * (1/d)) (d = 0 and q = 0 for an all-zero block); n a multiple of 32. pk_prepare_act also
 * writes the sums of pk_act (s: n/32, lanes: n/4) and is AVX2 where available, with
 * values identical to pk_prepare_act_ref (tests/packed). */
void pk_quantize_act(const float *x, int n, int8_t *xq, float *xd);
void pk_prepare_act(const float *x, int n, int8_t *xq, float *xd, float *xs, float *xl);
void pk_prepare_act_ref(const float *x, int n, int8_t *xq, float *xd, float *xs, float *xl);
/* The per-256 activations of pk_act (n a multiple of 256): the same rule as pk_quantize_act
 * over blocks of 256, and the sums of the codes per 32; AVX2 where available, with values
 * identical to pk_prepare_act_k_ref (tests/packed). */
void pk_prepare_act_k(const float *x, int n, int8_t *qk, float *dk, int16_t *bsk);
void pk_prepare_act_k_ref(const float *x, int n, int8_t *qk, float *dk, int16_t *bsk);

extern const pk_type pk_q4_0, pk_q4_1, pk_q8_0, pk_mxfp4, pk_q4_K, pk_q6_K, pk_int4, pk_int8,
    pk_rows;

/* Scalar reference dot: dequant_ref of the row, then one sequential float sum. scratch holds
 * cols_pad floats. */
float pk_dot_ref(const gq_packed_linear *P, int r, const float *x, float *scratch);
/* dot_fast of machines without AVX2: pk_dot_ref with a stack scratch row. */
float pk_dot_generic(const gq_packed_linear *P, int r, const float *x, const float *xs);

/* Widest row a packed linear accepts (kernels keep a padded activation row on the stack). */
#define PK_MAX_COLS 65536

/* w (rows, cols) whose row columns are in the order perm (column j is column perm[j] of the
 * matrix, as gq_packed_linear.in_perm) -> the matrix in column order (packed_build.c). */
int pk_unpermute_cols(float *w, int rows, int cols, const int32_t *perm, gq_error *err);

/* Sets P->op to the packed product (packed_linear.c). */
void pk_linear_init_op(gq_packed_linear *P);

static inline const uint8_t *pk_row(const gq_packed_linear *P, int r)
{
    return P->codes + (size_t)r * P->row_bytes;
}

/* Row-interleaved storage (the 4-bit ggml formats, as llama.cpp's CPU backend repacks them):
 * rows in sets of il = P->type->set_rows; per block i of a set, the il rows' headers (the
 * fields before the codes), then the code bytes in pieces of P->type->piece: piece n of the il
 * rows, for n = 0, 1, ...; so a set's scales are one load and piece n of the set one run of
 * il * piece bytes. The bytes are the format's own, reordered. Rows from il_rows on (fewer
 * than il) stay plain. Q6_K takes its whole super-block as the header (interleaved block by
 * block). */
static inline const uint8_t *pk_il_base(const gq_packed_linear *P, int r, int i)
{
    const int il = P->type->set_rows;
    return P->codes + (size_t)(r / il * il) * P->row_bytes + (size_t)i * il * P->blk_bytes;
}

/* Where row r's blocks lie: block i's header at hdr + i * step, its code piece n at code +
 * i * step + n * piece_step (one division for the row, none per block). */
typedef struct pk_rowblocks {
    const uint8_t *hdr, *code;
    size_t step, piece_step;
    bool plain; /* a plain row: block i is one run of blk_bytes at hdr + i * step */
} pk_rowblocks;

static inline pk_rowblocks pk_rowblocks_of(const gq_packed_linear *P, int r)
{
    const int il = P->type->set_rows;
    const size_t pc = (size_t)P->type->piece;
    pk_rowblocks rb;
    if (r < P->il_rows) {
        const uint8_t *set = pk_il_base(P, r, 0);
        rb.hdr = set + (size_t)(r % il) * P->hdr_bytes;
        rb.code = set + il * P->hdr_bytes + (size_t)(r % il) * pc;
        rb.step = il * P->blk_bytes;
        rb.piece_step = il * pc;
        rb.plain = false;
    } else {
        rb.hdr = pk_row(P, r);
        rb.code = rb.hdr + P->hdr_bytes;
        rb.step = P->blk_bytes;
        rb.piece_step = pc;
        rb.plain = true;
    }
    return rb;
}

/* Block i of a row as the format's contiguous block (blk: hb + pieces * piece bytes, the
 * row's header and piece sizes; constants from the caller make the copies plain moves). */
static inline __attribute__((always_inline)) void pk_rb_copy(const pk_rowblocks *rb, int i,
                                                             void *blk, size_t hb, size_t piece,
                                                             int pieces)
{
    memcpy(blk, rb->hdr + (size_t)i * rb->step, hb);
    for (int n = 0; n < pieces; n++)
        memcpy((uint8_t *)blk + hb + n * piece, rb->code + (size_t)i * rb->step + n * rb->piece_step,
               piece);
}

/* Header (scale fields) of block i of row r. */
static inline const uint8_t *pk_blk_hdr(const gq_packed_linear *P, int r, int i)
{
    const pk_rowblocks rb = pk_rowblocks_of(P, r);
    return rb.hdr + (size_t)i * rb.step;
}

/* Code bytes [piece n, piece (n + 1)) of block i of row r. */
static inline const uint8_t *pk_blk_piece(const gq_packed_linear *P, int r, int i, int n)
{
    const pk_rowblocks rb = pk_rowblocks_of(P, r);
    return rb.code + (size_t)i * rb.step + n * rb.piece_step;
}

/* int4 storage (kern_int.c): rows in sets of il = P->type->set_rows (rows padded to whole
 * sets, row_bytes = a set's bytes / il); per set and group g of P->group columns, a header of
 * hdr_bytes: the il rows' fp16 scales, then (asym) their uint8 zero points; then the group's
 * 32-column blocks, each il x 16 code bytes in pieces as above (a row's 16 bytes in ggml
 * order: byte j holds element j in the low nibble, element j+16 in the high one). A decode
 * pass over a set is one sequential stream. */
static inline const uint8_t *pk_i4_group(const gq_packed_linear *P, int r, int g)
{
    const int il = P->type->set_rows;
    const size_t group_bytes = P->hdr_bytes + (size_t)(P->group / 32) * il * 16;
    return P->codes + (size_t)(r / il * il) * P->row_bytes + (size_t)g * group_bytes;
}

/* Code byte j (0..15) of block b of row r. */
static inline uint8_t *pk_i4_byte(const gq_packed_linear *P, int r, int b, int j)
{
    const int bpg = P->group / 32, il = P->type->set_rows, pc = P->type->piece;
    return (uint8_t *)pk_i4_group(P, r, b / bpg) + P->hdr_bytes + (size_t)(b % bpg) * il * 16 +
           (size_t)(j / pc * il + r % il) * pc + j % pc;
}

static inline uint16_t pk_i4_scale(const gq_packed_linear *P, int r, int g)
{
    uint16_t h;
    memcpy(&h, pk_i4_group(P, r, g) + 2 * (r % P->type->set_rows), 2);
    return h;
}

static inline int pk_i4_zero(const gq_packed_linear *P, int r, int g)
{
    const int il = P->type->set_rows;
    return P->hdr_bytes == 3 * (size_t)il ? pk_i4_group(P, r, g)[2 * il + r % il] : P->zconst;
}

/* Block i of row r as the format's contiguous block (blk: blk_bytes). */
static inline void pk_blk_copy(const gq_packed_linear *P, int r, int i, void *blk)
{
    const pk_rowblocks rb = pk_rowblocks_of(P, r);
    pk_rb_copy(&rb, i, blk, P->hdr_bytes, (size_t)P->type->piece,
               (int)((P->blk_bytes - P->hdr_bytes) / P->type->piece));
}

/* Block i of rows r..r+nr-1 (nr <= il) as one interleaved set block (set: il * blk_bytes, the
 * layout above), the last row repeated in the missing places: the set kernels run on it for
 * the plain rows after the last whole set. */
static inline void pk_set_gather(const gq_packed_linear *P, int r, int nr, int i, uint8_t *set)
{
    const int il = P->type->set_rows, pc = P->type->piece;
    const int pieces = (int)((P->blk_bytes - P->hdr_bytes) / pc);
    for (int k = 0; k < il; k++) {
        const int rk = r + (k < nr ? k : nr - 1);
        memcpy(set + k * P->hdr_bytes, pk_blk_hdr(P, rk, i), P->hdr_bytes);
        for (int n = 0; n < pieces; n++)
            memcpy(set + il * P->hdr_bytes + (size_t)(n * il + k) * pc, pk_blk_piece(P, rk, i, n),
                   pc);
    }
}

#endif
