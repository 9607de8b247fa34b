#ifndef GQ_GGML_COMMON_H
#define GQ_GGML_COMMON_H
/* Shared pieces of the llama.cpp (ggml) block formats: block structs in ggml's exact byte
 * layout, ggml's rounding helper, the scale searches that both the legacy imatrix paths and the
 * K-quants use, and a row driver that turns a per-row block quantizer into a gq_format.
 *
 * Bit-exactness notes (reference: ggml-org/ggml d99724f2, ggml/src/ggml-quants.c):
 *   - all arithmetic is float, evaluated in source order, without FMA contraction (the project
 *     builds with -std=c11, where GCC keeps -ffp-contract=off);
 *   - fp16 scales go through core/gq_half.h, bit-identical to GGML_FP32_TO_FP16 (F16C);
 *   - the structs below are the on-disk layout on a little-endian machine (x86-64, aarch64):
 *     fp16 fields are stored as raw uint16_t, multi-byte fields are byte arrays. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/gq_error.h"
#include "core/gq_half.h"
#include "formats/gq_format.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ggml block layouts are defined for little-endian machines"
#endif

#define GQ_QK 32    /* elements per legacy block (Q4_0 .. Q8_0, MXFP4) */
#define GQ_QK_K 256 /* elements per K-quant super-block */

/* ---- legacy blocks: 32 elements ------------------------------------------------------------
 * Nibble order for the 4-bit codes: qs[j] low nibble = element j, high nibble = element j+16.
 * qh (Q5_*): bit j = 5th bit of element j, for j = 0..31 (little-endian uint32). */
typedef struct { uint16_t d; uint8_t qs[GQ_QK / 2]; } gq_block_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[GQ_QK / 2]; } gq_block_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[GQ_QK / 2]; } gq_block_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[GQ_QK / 2]; } gq_block_q5_1;
typedef struct { uint16_t d; int8_t qs[GQ_QK]; } gq_block_q8_0;
/* e: E8M0 shared exponent; qs: E2M1 codes (index into gq_kvalues_mxfp4), same nibble order. */
typedef struct { uint8_t e; uint8_t qs[GQ_QK / 2]; } gq_block_mxfp4;

/* ---- K-quant super-blocks: 256 elements ------------------------------------------------- */
typedef struct { /* 16 sub-blocks of 16: 4-bit scale (low nibble) and 4-bit min (high) */
    uint8_t scales[GQ_QK_K / 16];
    uint8_t qs[GQ_QK_K / 4]; /* 2-bit codes */
    uint16_t d, dmin;
} gq_block_q2_K;
typedef struct {
    uint8_t hmask[GQ_QK_K / 8]; /* high bit of each 3-bit code */
    uint8_t qs[GQ_QK_K / 4];    /* low 2 bits */
    uint8_t scales[12];         /* 16 x 6-bit scales, packed */
    uint16_t d;
} gq_block_q3_K;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12]; /* 8 x 6-bit scales and 8 x 6-bit mins, packed (get_scale_min_k4) */
    uint8_t qs[GQ_QK_K / 2];
} gq_block_q4_K;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[GQ_QK_K / 8]; /* 5th bits */
    uint8_t qs[GQ_QK_K / 2];
} gq_block_q5_K;
typedef struct {
    uint8_t ql[GQ_QK_K / 2]; /* low 4 bits */
    uint8_t qh[GQ_QK_K / 4]; /* high 2 bits */
    int8_t scales[GQ_QK_K / 16];
    uint16_t d;
} gq_block_q6_K;

_Static_assert(sizeof(gq_block_q4_0) == 18, "Q4_0 block is 18 bytes");
_Static_assert(sizeof(gq_block_q4_1) == 20, "Q4_1 block is 20 bytes");
_Static_assert(sizeof(gq_block_q5_0) == 22, "Q5_0 block is 22 bytes");
_Static_assert(sizeof(gq_block_q5_1) == 24, "Q5_1 block is 24 bytes");
_Static_assert(sizeof(gq_block_q8_0) == 34, "Q8_0 block is 34 bytes");
_Static_assert(sizeof(gq_block_mxfp4) == 17, "MXFP4 block is 17 bytes");
_Static_assert(sizeof(gq_block_q2_K) == 84, "Q2_K block is 84 bytes");
_Static_assert(sizeof(gq_block_q3_K) == 110, "Q3_K block is 110 bytes");
_Static_assert(sizeof(gq_block_q4_K) == 144, "Q4_K block is 144 bytes");
_Static_assert(sizeof(gq_block_q5_K) == 176, "Q5_K block is 176 bytes");
_Static_assert(sizeof(gq_block_q6_K) == 210, "Q6_K block is 210 bytes");

/* ggml's GROUP_MAX_EPS: a group whose largest magnitude is below this is "all zero". */
#define GQ_GGML_GROUP_MAX_EPS 1e-15f

/* ggml's nearest_int: adding 1.5*2^23 puts the rounded integer in the low mantissa bits, so the
 * rounding is the FPU's round-half-to-even. Valid for |f| <= 4194303. */
static inline int gq_nearest_int(float f)
{
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static inline float gq_fp16(uint16_t h) { return gq_fp16_to_fp32(h); }

/* ---- scale searches (ggml's make_*_quants; same arguments and results) -------------------
 * Symmetric: L[i] in [0, 2*nmax) holds l + nmax for a code l in [-nmax, nmax-1]; the returned
 * scale d gives x ~ d * l (d has the sign that maps the extreme value to -nmax).
 *   rmse_type 0: plain rounding with d = max/-nmax; 1: weights x^2 (or qw), 2: 1, 3: |x|,
 *   4: sqrt|x|; negative: one refinement only. qw (n weights) overrides rmse_type's weights. */
float gq_make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type,
                        const float *qw);
/* Symmetric 3-bit style search (Q3_K reference): L[i] = l + nmax, weights x^2, coordinate
 * descent on single codes when do_rmse. */
float gq_make_q3_quants(int n, int nmax, const float *x, int8_t *L, bool do_rmse);
/* Asymmetric with a minimum <= 0: x ~ scale * L[i] - *the_min, L[i] in [0, nmax]. Tries
 * nstep+1 inverse scales (nmax + rmin + rdelta*is)/(max - min) and refits (scale, min) by
 * weighted least squares; use_mad: absolute instead of squared error. Laux: n scratch bytes. */
float gq_make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                          float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                          bool use_mad);
/* As make_qkx2_quants, with weights = x^2 when weights is NULL and a start from max <= min. */
float gq_make_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                          float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                          bool use_mad);
/* Positive values (sub-block scales) onto codes [0, nmax] with importance quant_weights. */
float gq_make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *quant_weights);

/* Importance weights of the imatrix paths: w[j] = qw[j] * sqrt(sigma2 + x[j]^2). */
void gq_ggml_imatrix_weights(int n, const float *x, const float *qw, float sigma2, float *w);

/* The same for a super-block of n_sub sub-blocks of `sub` values, with sigma2 = sigma2_scale *
 * mean x^2 over the super-block; sw[n_sub] gets each sub-block's sum of weights. */
void gq_ggml_superblock_weights(int n_sub, int sub, const float *x, const float *qw,
                                float sigma2_scale, float *w, float *sw);

/* ---- row driver ---------------------------------------------------------------------------
 * A ggml type as seen by the driver: how to quantize and dequantize one row of whole blocks.
 * Rows whose length is not a multiple of block_elems are zero-padded (importance 0 for the
 * padding); the padding is stored, as ggml would store a padded tensor. */
typedef struct gq_ggml_type {
    const char *name;  /* "q4_0", "q4_K", ... */
    int block_elems;   /* 32 or 256 */
    size_t block_bytes;
    /* x: n values (n a multiple of block_elems); qw: n importance weights or NULL (then the
     * type's _ref path). Writes n/block_elems blocks. */
    void (*quantize_row)(const float *x, const float *qw, int n, void *blocks);
    /* Writes n floats from n/block_elems blocks (ggml's to_float). */
    void (*dequantize_row)(const void *blocks, int n, float *y);
} gq_ggml_type;

static inline int gq_ggml_padded_cols(const gq_ggml_type *t, int cols)
{
    return (cols + t->block_elems - 1) / t->block_elems * t->block_elems;
}
size_t gq_ggml_row_bytes(const gq_ggml_type *t, int cols);
size_t gq_ggml_storage_bytes(const gq_ggml_type *t, int rows, int cols);
/* gq_format.quantize / .dequantize for a ggml type (rows in parallel, deterministic). */
int gq_ggml_quantize(const gq_ggml_type *t, const float *w, int rows, int cols,
                     const float *imatrix, uint8_t *codes, float *deq, gq_error *err);
int gq_ggml_dequantize(const gq_ggml_type *t, const uint8_t *codes, int rows, int cols,
                       float *out, gq_error *err);

/* Defines the parameterless gq_format `sym` for the gq_ggml_type `type`; name_text is the registry
 * name and label (the same string as type.name). The variable part is the summary string,
 * optionally followed by designated initializers (the group interface). */
#define GQ_GGML_FORMAT(sym, type, name_text, ...)                                             \
    static void sym##_label(const void *p, char *buf, size_t n)                               \
    {                                                                                         \
        (void)p;                                                                              \
        snprintf(buf, n, "%s", name_text);                                                    \
    }                                                                                         \
    static size_t sym##_bytes(const void *p, int rows, int cols)                              \
    {                                                                                         \
        (void)p;                                                                              \
        return gq_ggml_storage_bytes(&(type), rows, cols);                                    \
    }                                                                                         \
    static int sym##_quantize(const void *p, const float *w, int rows, int cols,              \
                              const float *imatrix, uint8_t *codes, float *deq, gq_error *err) \
    {                                                                                         \
        (void)p;                                                                              \
        return gq_ggml_quantize(&(type), w, rows, cols, imatrix, codes, deq, err);            \
    }                                                                                         \
    static int sym##_dequantize(const void *p, const uint8_t *codes, int rows, int cols,      \
                                float *out, gq_error *err)                                    \
    {                                                                                         \
        (void)p;                                                                              \
        return gq_ggml_dequantize(&(type), codes, rows, cols, out, err);                      \
    }                                                                                         \
    static const gq_param_spec sym##_params[] = {{0}};                                        \
    const gq_format sym = {                                                                   \
        .params = sym##_params,                                                               \
        .params_size = 0,                                                                     \
        .label = sym##_label,                                                                 \
        .storage_bytes = sym##_bytes,                                                         \
        .quantize = sym##_quantize,                                                           \
        .dequantize = sym##_dequantize,                                                       \
        .name = name_text,                                                                    \
        .summary = __VA_ARGS__}


/* Defines the gq_packing `sym` of a ggml format whose storage the packed kernel `kernel` reads
 * as is: blocks of block_type (block_cols columns), header = the bytes before the codes that
 * the packed layout interleaves (gq_packing.h). Use as `.packing = &sym` in GQ_GGML_FORMAT. */
#define GQ_GGML_PACKING(sym, kernel, block_type, block_cols, header)                         \
    static int sym##_describe(const void *p, const uint8_t *st, int rows, int cols,          \
                              gq_pack_codes *out, gq_error *err)                             \
    {                                                                                        \
        (void)p;                                                                             \
        (void)rows;                                                                          \
        (void)err;                                                                           \
        gq_pack_ggml(out, kernel, st, cols, block_cols, sizeof(block_type), header);         \
        return 0;                                                                            \
    }                                                                                        \
    static const gq_packing sym = {.describe = sym##_describe}

#endif
