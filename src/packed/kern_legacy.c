/* Packed kernels of the llama.cpp 32-element blocks: Q4_0, Q4_1, Q8_0 and ggml's MXFP4.
 * The reference dequantization is the format's own (ggml's to_float); the AVX2 versions decode
 * 16 codes at a time to floats: Q4_0 w = d*(q-8), Q4_1 w = d*q + m (the offset folded through the
 * block sum of x in the dot), Q8_0 w = d*q, MXFP4 w = kvalue[q] * e8m0/2 (pshufb lookup). */
#include "formats/ggml_legacy.h"
#include "packed/packed_internal.h"
#include "packed/pk_simd.h"

static void ref_q4_0(const gq_packed_linear *P, int r, float *y)
{
    gq_ggml_q4_0.dequantize_row(pk_row(P, r), P->cols_pad, y);
}
static void ref_q4_1(const gq_packed_linear *P, int r, float *y)
{
    gq_ggml_q4_1.dequantize_row(pk_row(P, r), P->cols_pad, y);
}
static void ref_q8_0(const gq_packed_linear *P, int r, float *y)
{
    gq_ggml_q8_0.dequantize_row(pk_row(P, r), P->cols_pad, y);
}
static void ref_mxfp4(const gq_packed_linear *P, int r, float *y)
{
    gq_ggml_mxfp4.dequantize_row(pk_row(P, r), P->cols_pad, y);
}

#if PK_AVX2
/* Q4_0: signed codes q - 8 of one block, elements 0..15 and 16..31. */
static inline void q4_0_codes(const gq_block_q4_0 *b, __m128i *lo, __m128i *hi)
{
    const __m128i eight = _mm_set1_epi8(8);
    pk_nibbles16(b->qs, lo, hi);
    *lo = _mm_sub_epi8(*lo, eight);
    *hi = _mm_sub_epi8(*hi, eight);
}

static void fast_q4_0(const gq_packed_linear *P, int r, float *y)
{
    const gq_block_q4_0 *b = (const gq_block_q4_0 *)pk_row(P, r);
    for (int i = 0; i < P->cols_pad / 32; i++, y += 32) {
        __m128i lo, hi;
        q4_0_codes(&b[i], &lo, &hi);
        __m256 d = _mm256_set1_ps(pk_fp16(b[i].d));
        pk_store16_i8(lo, d, y);
        pk_store16_i8(hi, d, y + 16);
    }
}

static float dot_q4_0(const gq_packed_linear *P, int r, const float *x, const float *xs)
{
    (void)xs;
    const gq_block_q4_0 *b = (const gq_block_q4_0 *)pk_row(P, r);
    const __m128i eight = _mm_set1_epi8(8);
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < P->cols_pad / 32; i++, x += 32) {
        __m128i v[4];
        pk_nibbles4x8(b[i].qs, v);
        pk_sub4x8(v, eight);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(pk_fp16(b[i].d)), pk_dot4x8_i8(v, x), acc);
    }
    return pk_hsum(acc);
}

static void fast_q4_1(const gq_packed_linear *P, int r, float *y)
{
    const gq_block_q4_1 *b = (const gq_block_q4_1 *)pk_row(P, r);
    for (int i = 0; i < P->cols_pad / 32; i++, y += 32) {
        __m128i q[2];
        pk_nibbles16(b[i].qs, &q[0], &q[1]);
        __m256 d = _mm256_set1_ps(pk_fp16(b[i].d)), m = _mm256_set1_ps(pk_fp16(b[i].m));
        for (int h = 0; h < 2; h++) { /* ggml: x0*d + m, rounded product then sum */
            __m256 a, c;
            pk_i8x16_to_f32(q[h], &a, &c);
            _mm256_storeu_ps(y + 16 * h, _mm256_add_ps(_mm256_mul_ps(a, d), m));
            _mm256_storeu_ps(y + 16 * h + 8, _mm256_add_ps(_mm256_mul_ps(c, d), m));
        }
    }
}

static float dot_q4_1(const gq_packed_linear *P, int r, const float *x, const float *xs)
{
    const gq_block_q4_1 *b = (const gq_block_q4_1 *)pk_row(P, r);
    __m256 acc = _mm256_setzero_ps();
    float offs = 0.0f; /* sum of m * (block sum of x) */
    for (int i = 0; i < P->cols_pad / 32; i++, x += 32) {
        __m128i v[4];
        pk_nibbles4x8(b[i].qs, v);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(pk_fp16(b[i].d)), pk_dot4x8_i8(v, x), acc);
        offs += pk_fp16(b[i].m) * xs[i];
    }
    return pk_hsum(acc) + offs;
}

static void fast_q8_0(const gq_packed_linear *P, int r, float *y)
{
    const gq_block_q8_0 *b = (const gq_block_q8_0 *)pk_row(P, r);
    for (int i = 0; i < P->cols_pad / 32; i++, y += 32) {
        __m256 d = _mm256_set1_ps(pk_fp16(b[i].d));
        pk_store16_i8(_mm_loadu_si128((const __m128i *)b[i].qs), d, y);
        pk_store16_i8(_mm_loadu_si128((const __m128i *)(b[i].qs + 16)), d, y + 16);
    }
}

static float dot_q8_0(const gq_packed_linear *P, int r, const float *x, const float *xs)
{
    (void)xs;
    const gq_block_q8_0 *b = (const gq_block_q8_0 *)pk_row(P, r);
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < P->cols_pad / 32; i++, x += 32)
        acc = _mm256_fmadd_ps(_mm256_set1_ps(pk_fp16(b[i].d)), pk_dot32_i8_mem(b[i].qs, x), acc);
    return pk_hsum(acc);
}

/* MXFP4: element values (doubled E2M1, signed) by table lookup of the nibbles. */
static inline void mxfp4_values(const gq_block_mxfp4 *b, __m128i lut, __m128i *lo, __m128i *hi)
{
    pk_nibbles16(b->qs, lo, hi);
    *lo = _mm_shuffle_epi8(lut, *lo);
    *hi = _mm_shuffle_epi8(lut, *hi);
}

static void fast_mxfp4(const gq_packed_linear *P, int r, float *y)
{
    const gq_block_mxfp4 *b = (const gq_block_mxfp4 *)pk_row(P, r);
    const __m128i lut = _mm_loadu_si128((const __m128i *)gq_kvalues_mxfp4);
    for (int i = 0; i < P->cols_pad / 32; i++, y += 32) {
        __m128i lo, hi;
        mxfp4_values(&b[i], lut, &lo, &hi);
        __m256 d = _mm256_set1_ps(pk_e8m0_half(b[i].e));
        pk_store16_i8(lo, d, y);
        pk_store16_i8(hi, d, y + 16);
    }
}

static float dot_mxfp4(const gq_packed_linear *P, int r, const float *x, const float *xs)
{
    (void)xs;
    const gq_block_mxfp4 *b = (const gq_block_mxfp4 *)pk_row(P, r);
    const __m128i lut = _mm_loadu_si128((const __m128i *)gq_kvalues_mxfp4);
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < P->cols_pad / 32; i++, x += 32) {
        __m128i v[4];
        pk_nibbles4x8(b[i].qs, v);
        for (int k = 0; k < 4; k++)
            v[k] = _mm_shuffle_epi8(lut, v[k]);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(pk_e8m0_half(b[i].e)), pk_dot4x8_i8(v, x), acc);
    }
    return pk_hsum(acc);
}

/* ---- int8 activations: integer dots per block, one float scale product per block; NR rows
 * per pass share each activation block's load (PK_Q8_ENTRY) ---- */

static inline __m256i xq_block(const int8_t *xq, int b)
{
    return _mm256_loadu_si256((const __m256i *)(xq + 32 * b));
}

/* The fp16 fields at byte offset `off` of block i of the NR rows as 4 floats (lanes >= NR: 0),
 * one conversion for the pass. */
#define PK_HALVES4(b, NR, i, field)                                                          \
    _mm_cvtph_ps(_mm_set_epi16(0, 0, 0, 0, NR > 3 ? (short)b[3][i].field : 0,                 \
                               NR > 2 ? (short)b[2][i].field : 0,                             \
                               NR > 1 ? (short)b[1][i].field : 0, (short)b[0][i].field))

/* Lane k of v in all 8 lanes. */
static inline __m256 pk_lane(__m128 v, int k)
{
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(v), _mm256_set1_epi32(k));
}

/* Q4_0 with the unsigned codes q: sum (q - 8) x = sum q x - 8 * (block sum of x). Per pass and
 * block: the NR scales converted together, the offsets d * xs summed in one 4-lane fmadd (lane
 * k: row k, the same arithmetic whatever NR), every other block prefetched (blocks < 32 bytes,
 * so every line is still touched). */
PK_ALWAYS_INLINE void q8_q4_0_rows(const gq_packed_linear *P, int r, const int NR,
                                   const pk_act *a, float *y)
{
    const int8_t *xq = a->q;
    const float *xd = a->d, *xs = a->s;
    const gq_block_q4_0 *b[PK_ROWS];
    __m256 acc[PK_ROWS];
    __m128 offs = _mm_setzero_ps();
    for (int k = 0; k < NR; k++) {
        b[k] = (const gq_block_q4_0 *)pk_row(P, r + k);
        acc[k] = _mm256_setzero_ps();
    }
    for (int i = 0; i < P->cols_pad / 32; i++) {
        const __m256i x = xq_block(xq, i);
        const __m128 d = PK_HALVES4(b, NR, i, d), dx = _mm_mul_ps(d, _mm_set1_ps(xd[i]));
        offs = _mm_fmadd_ps(d, _mm_set1_ps(xs[i]), offs);
        for (int k = 0; k < NR; k++) {
            if (NR == PK_ROWS && !(i & 1))
                pk_prefetch_ahead(&b[k][i], PK_ROWS * P->row_bytes, 1);
            __m256 p = _mm256_cvtepi32_ps(pk_dot32_u8i8(pk_nibbles32(b[k][i].qs), x));
            acc[k] = _mm256_fmadd_ps(pk_lane(dx, k), p, acc[k]);
        }
    }
    float o[4];
    _mm_storeu_ps(o, _mm_mul_ps(offs, _mm_set1_ps(8.0f)));
    pk_store_rows(acc, o, NR, y);
}
PK_Q8_ENTRY(q8_q4_0)

/* Q4_1: w = d q + m, codes unsigned; the offsets m through the block sums of x (as Q4_0). */
PK_ALWAYS_INLINE void q8_q4_1_rows(const gq_packed_linear *P, int r, const int NR,
                                   const pk_act *a, float *y)
{
    const int8_t *xq = a->q;
    const float *xd = a->d, *xs = a->s;
    const gq_block_q4_1 *b[PK_ROWS];
    __m256 acc[PK_ROWS];
    __m128 offs = _mm_setzero_ps();
    for (int k = 0; k < NR; k++) {
        b[k] = (const gq_block_q4_1 *)pk_row(P, r + k);
        acc[k] = _mm256_setzero_ps();
    }
    for (int i = 0; i < P->cols_pad / 32; i++) {
        const __m256i x = xq_block(xq, i);
        const __m128 dx = _mm_mul_ps(PK_HALVES4(b, NR, i, d), _mm_set1_ps(xd[i]));
        offs = _mm_fnmadd_ps(PK_HALVES4(b, NR, i, m), _mm_set1_ps(xs[i]), offs);
        for (int k = 0; k < NR; k++) {
            if (NR == PK_ROWS && !(i & 1))
                pk_prefetch_ahead(&b[k][i], PK_ROWS * P->row_bytes, 1);
            __m256 p = _mm256_cvtepi32_ps(pk_dot32_u8i8(pk_nibbles32(b[k][i].qs), x));
            acc[k] = _mm256_fmadd_ps(pk_lane(dx, k), p, acc[k]);
        }
    }
    float o[4];
    _mm_storeu_ps(o, offs);
    pk_store_rows(acc, o, NR, y);
}
PK_Q8_ENTRY(q8_q4_1)

PK_ALWAYS_INLINE void q8_q8_0_rows(const gq_packed_linear *P, int r, const int NR,
                                   const pk_act *a, float *y)
{
    const int8_t *xq = a->q;
    const float *xd = a->d, *xs = a->s;
    (void)xs;
    const gq_block_q8_0 *b[PK_ROWS];
    __m256 acc[PK_ROWS];
    for (int k = 0; k < NR; k++) {
        b[k] = (const gq_block_q8_0 *)pk_row(P, r + k);
        acc[k] = _mm256_setzero_ps();
    }
    for (int i = 0; i < P->cols_pad / 32; i++) {
        const __m256i x = xq_block(xq, i);
        for (int k = 0; k < NR; k++) {
            if (NR == PK_ROWS)
                pk_prefetch_ahead(&b[k][i], PK_ROWS * P->row_bytes, 1);
            __m256i w = _mm256_loadu_si256((const __m256i *)b[k][i].qs);
            __m256 p = _mm256_cvtepi32_ps(pk_dot32_i8i8(w, x));
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(pk_fp16(b[k][i].d) * xd[i]), p, acc[k]);
        }
    }
    pk_store_rows(acc, NULL, NR, y);
}
PK_Q8_ENTRY(q8_q8_0)

PK_ALWAYS_INLINE void q8_mxfp4_rows(const gq_packed_linear *P, int r, const int NR,
                                    const pk_act *a, float *y)
{
    const int8_t *xq = a->q;
    const float *xd = a->d, *xs = a->s;
    (void)xs;
    const __m256i lut = _mm256_broadcastsi128_si256(
        _mm_loadu_si128((const __m128i *)gq_kvalues_mxfp4));
    const gq_block_mxfp4 *b[PK_ROWS];
    __m256 acc[PK_ROWS];
    for (int k = 0; k < NR; k++) {
        b[k] = (const gq_block_mxfp4 *)pk_row(P, r + k);
        acc[k] = _mm256_setzero_ps();
    }
    for (int i = 0; i < P->cols_pad / 32; i++) {
        const __m256i x = xq_block(xq, i);
        for (int k = 0; k < NR; k++) {
            if (NR == PK_ROWS)
                pk_prefetch_ahead(&b[k][i], PK_ROWS * P->row_bytes, 1);
            __m256i w = _mm256_shuffle_epi8(lut, pk_nibbles32(b[k][i].qs));
            __m256 p = _mm256_cvtepi32_ps(pk_dot32_i8i8(w, x));
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(pk_e8m0_half(b[k][i].e) * xd[i]), p,
                                     acc[k]);
        }
    }
    pk_store_rows(acc, NULL, NR, y);
}
PK_Q8_ENTRY(q8_mxfp4)

const pk_type pk_q4_0 = {"q4_0", 32, ref_q4_0, fast_q4_0, dot_q4_0, q8_q4_0, PK_ROWS};
const pk_type pk_q4_1 = {"q4_1", 32, ref_q4_1, fast_q4_1, dot_q4_1, q8_q4_1, PK_ROWS};
const pk_type pk_q8_0 = {"q8_0", 32, ref_q8_0, fast_q8_0, dot_q8_0, q8_q8_0, 1};
const pk_type pk_mxfp4 = {"mxfp4_ggml", 32, ref_mxfp4, fast_mxfp4, dot_mxfp4, q8_mxfp4, PK_ROWS};
#else
/* Without AVX2 the reference kernels are the fast ones. */
const pk_type pk_q4_0 = {"q4_0", 32, ref_q4_0, ref_q4_0, pk_dot_generic, NULL, 1};
const pk_type pk_q4_1 = {"q4_1", 32, ref_q4_1, ref_q4_1, pk_dot_generic, NULL, 1};
const pk_type pk_q8_0 = {"q8_0", 32, ref_q8_0, ref_q8_0, pk_dot_generic, NULL, 1};
const pk_type pk_mxfp4 = {"mxfp4_ggml", 32, ref_mxfp4, ref_mxfp4, pk_dot_generic, NULL, 1};
#endif
