#ifndef GQ_GGML_KQUANTS_H
#define GQ_GGML_KQUANTS_H
/* llama.cpp K-quants (Q2_K .. Q6_K): super-blocks of 256 values split into sub-blocks of 16 or
 * 32 that share one (scale, offset) pair, itself quantized against fp16 super-block scales.
 *
 * Every K-quant reconstructs element k of sub-block j as
 *     x^ = D[j] * q - M[j]          q: signed code in [qmin, qmax]
 * with D, M decoded from the block header exactly as ggml's to_float does (M = 0 for the
 * symmetric Q3_K and Q6_K). So one type is described by four small routines (fit, scales,
 * pack, unpack) and the shared code here does the rest: ggml's re-quantization of every
 * element against the fp16-rounded scales, dequantization, and the GPTQ group interface.
 *
 * Codes travel as "levels" L = q - qmin in [0, qmax - qmin] (what ggml keeps in its L[]). */
#include <stdint.h>

#include "formats/ggml_common.h"

#define GQ_KQ_MAX_SUB 16 /* sub-blocks per super-block: 16 of 16 or 8 of 32 */
/* Largest K-quant block (Q6_K, 210 bytes), rounded up: room for a scratch block. */
#define GQ_KQ_BLOCK_MAX 256

typedef struct gq_kquant {
    int sub_len;    /* 16 or 32 */
    int qmin, qmax; /* code range */
    /* Chooses the sub-block scales of one super-block x[256] and writes the block header
     * (d, dmin, scales); qw: 256 importance weights (ggml's _impl path) or NULL (_ref path).
     * L receives the levels found by the scale search: ggml keeps them for sub-blocks whose
     * decoded scale D is 0, all other levels are re-computed by gq_kq_quantize_block. */
    void (*fit)(const float *x, const float *qw, void *blk, uint8_t L[GQ_QK_K]);
    /* D[j], M[j] of each sub-block, decoded from the header. */
    void (*scales)(const void *blk, float *D, float *M);
    /* Levels <-> the code bit planes of the block. */
    void (*pack)(const uint8_t L[GQ_QK_K], void *blk);
    void (*unpack)(const void *blk, uint8_t L[GQ_QK_K]);
} gq_kquant;

extern const gq_kquant gq_kq_q2_K, gq_kq_q3_K, gq_kq_q4_K, gq_kq_q5_K, gq_kq_q6_K;

/* One super-block: fit, re-quantize against the decoded scales, pack. */
void gq_kq_quantize_block(const gq_kquant *kq, const float *x, const float *qw, void *blk);
/* One super-block to 256 floats (ggml's dequantize_row_<type>). */
void gq_kq_dequantize_block(const gq_kquant *kq, const void *blk, float *y);

/* Level of x in a sub-block (D, M) as ggml's re-quantization computes it:
 * clamp(nearest_int((x + M) / D), qmin, qmax) - qmin. The clamp comes first so that values
 * far outside the block (GPTQ updates, inf) stay well defined. Requires D != 0. */
static inline int gq_kq_level(float x, float D, float M, int qmin, int qmax)
{
    float v = (x + M) / D;
    if (!(v > (float)qmin)) /* also NaN */
        return 0;
    if (v >= (float)qmax)
        return qmax - qmin;
    return gq_nearest_int(v) - qmin;
}

/* ---- batched scale searches: nsub (a multiple of 8) sub-blocks of n <= 32 at once
 * (ggml_kquants_search.c) ----
 * Sub-block j is x + n*j (weights + n*j, L + n*j). Each returns, bit for bit, what the scalar
 * search of ggml_common.h returns for each sub-block on its own; AVX2 builds run 8 or 16
 * sub-blocks in the float lanes of one or two vectors, other builds call the scalar search.
 * gq_make_qkx2_quants (v3 false) or gq_make_qkx3_quants (v3 true); weights NULL means x^2. */
void gq_kq_qkx_quants_batch(int nsub, int n, int nmax, const float *x, const float *weights,
                            uint8_t *L, float *scale, float *the_min, float rmin, float rdelta,
                            int nstep, bool use_mad, bool v3);
/* gq_make_qx_quants(n, nmax, x + n*j, L + n*j, rmse_type 1, qw ? qw + n*j : NULL). */
void gq_kq_qx_quants_batch(int nsub, int n, int nmax, const float *x, const float *qw, int8_t *L,
                           float *scale);

/* L[i] = gq_kq_level(x[i], D, M, qmin, qmax) for i < n, n a multiple of 16 (AVX2: 8 at a time,
 * the same division and rounding; the range tests become selects). */
void gq_kq_levels(const float *x, int n, float D, float M, int qmin, int qmax, uint8_t *L);

/* ---- shared bit packing ---- */
/* Q4_K / Q5_K: 8 six-bit scales ls[] and mins lm[] into 12 bytes (ggml's get_scale_min_k4
 * order): j < 4 in the low 6 bits of bytes j and j+4, j >= 4 as nibbles of byte j+4 with the
 * top 2 bits in bits 6..7 of bytes j-4 and j. */
void gq_kq_pack_scale_min6(const uint8_t ls[8], const uint8_t lm[8], uint8_t out[12]);
void gq_kq_unpack_scale_min6(const uint8_t in[12], uint8_t ls[8], uint8_t lm[8]);
/* Q2_K / Q3_K: 2-bit levels (low 2 bits of L), 4 per byte: for each half of 128, byte l holds
 * elements l, l+32, l+64, l+96 at bits 0, 2, 4, 6. */
void gq_kq_pack_2bit(const uint8_t L[GQ_QK_K], uint8_t qs[GQ_QK_K / 4]);
void gq_kq_unpack_2bit(const uint8_t qs[GQ_QK_K / 4], uint8_t L[GQ_QK_K]);

/* ---- group interface (GPTQ): state of one fitted super-block ---- */
typedef struct gq_kq_group {
    int sub_len, qmin, qmax;
    float D[GQ_KQ_MAX_SUB], M[GQ_KQ_MAX_SUB]; /* decoded from blk's header */
    /* The block as fit() wrote it: its header (super-block d/dmin, sub-block scale and min
     * bytes) is what ggml stores; store_groups writes the codes after it. */
    _Alignas(16) uint8_t blk[GQ_KQ_BLOCK_MAX];
} gq_kq_group;

/* Fits x[0..n) (n <= 256, zero-padded like the last block of a row; imp: n importance weights
 * or NULL) exactly as quantize() would and keeps the header bytes and the decoded sub-block
 * scales. */
void gq_kq_fit_group(const gq_kquant *kq, const float *x, int n, const float *imp,
                     gq_kq_group *g);
/* Reconstruction of x as element k of the fitted super-block: D * (level + qmin) - M, as
 * dequantization computes it (level 0 in a sub-block whose D is 0). */
float gq_kq_quant_elem(const gq_kq_group *g, int k, float x);
/* store_groups (gq_format.h) for K-quant kq with blocks of block_bytes: per (row, super-block)
 * state, the fitted header bytes, then the levels of q's values recovered against its D, M
 * (each checked to reconstruct bit for bit), packed; padding columns take the level of 0. */
int gq_kq_store_groups(const gq_kquant *kq, size_t block_bytes, const gq_kq_group *states,
                       const float *q, int rows, int cols, uint8_t *codes, gq_error *err);

#endif
