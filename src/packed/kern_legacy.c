/* Packed kernels of the llama.cpp 32-element blocks: Q4_0, Q4_1, Q8_0 and ggml's MXFP4.
 * The reference dequantization is the format's own (ggml's to_float); the AVX2 versions decode
 * 16 codes at a time to floats: Q4_0 w = d*(q-8), Q4_1 w = d*q + m (the offset folded through the
 * block sum of x in the dot), Q8_0 w = d*q, MXFP4 w = kvalue[q] * e8m0/2 (pshufb lookup). */
#include <stddef.h>
#include <string.h>

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

/* ---- the 4-bit blocks (q4_0, q4_1, mxfp4) on int8 activations: two rows per 256-bit vector.
 * The 16 code bytes of block i of rows A and B fill the two 128-bit lanes; their low nibbles
 * (elements 0..15) meet activations 0..15 broadcast to both lanes, the high nibbles (16..31)
 * activations 16..31, so lanes 0-3 of the maddubs + madd dot are row A's partial sums and lanes
 * 4-7 row B's, scaled by the one vector [dA xd (x4), dB xd (x4)]. The codes are unsigned:
 * q4_0 q (its -8 through 8 d * block sum of x), mxfp4 table value + 12 (the -12 likewise), q4_1
 * q (its m through m * block sum). maddubs pairs stay below 2 * 24 * 127, so adding the low and
 * high halves' int16 sums before madd cannot saturate. ---- */
enum { LEG_Q4_0, LEG_Q4_1, LEG_MXFP4 };

/* Block i's scale (q4_1: and offset m) of the 4 rows as 4 lanes, lane k row k. */
PK_ALWAYS_INLINE __m128 leg4_scales(const uint8_t *const row[4], size_t off, const int kind,
                                    __m128 *m)
{
    if (kind == LEG_MXFP4) { /* E8M0 halved: 2^(e-128), subnormal below e = 2 (pk_e8m0_half) */
        const __m128i e = _mm_setr_epi32(row[0][off], row[1][off], row[2][off], row[3][off]);
        const __m128i normal = _mm_slli_epi32(_mm_sub_epi32(e, _mm_set1_epi32(1)), 23);
        const __m128i sub = _mm_sllv_epi32(_mm_set1_epi32(0x00200000), e);
        return _mm_castsi128_ps(_mm_blendv_epi8(normal, sub, _mm_cmpgt_epi32(_mm_set1_epi32(2), e)));
    }
    if (kind == LEG_Q4_1) { /* d and m adjacent: one 32-bit word per row, then deinterleaved */
        uint32_t w[4];
        for (int k = 0; k < 4; k++)
            memcpy(&w[k], row[k] + off, 4);
        const __m256 dm = _mm256_permutevar8x32_ps(
            _mm256_cvtph_ps(_mm_setr_epi32((int)w[0], (int)w[1], (int)w[2], (int)w[3])),
            _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
        *m = _mm256_extractf128_ps(dm, 1);
        return _mm256_castps256_ps128(dm);
    }
    uint16_t h[4];
    for (int k = 0; k < 4; k++)
        memcpy(&h[k], row[k] + off, 2);
    return _mm_cvtph_ps(_mm_setr_epi16((short)h[0], (short)h[1], (short)h[2], (short)h[3], 0, 0, 0, 0));
}

/* Rows r..r+NR-1 (NR <= 4; an odd last row is paired with itself and its copy dropped).
 * PK_ROWS must be 4. */
PK_ALWAYS_INLINE void q8_leg4_rows(const gq_packed_linear *P, int r, const int NR,
                                   const int kind, const pk_act *a, float *y)
{
    const size_t bb = kind == LEG_Q4_0 ? sizeof(gq_block_q4_0)
                    : kind == LEG_Q4_1 ? sizeof(gq_block_q4_1) : sizeof(gq_block_mxfp4);
    const size_t qo = kind == LEG_Q4_0 ? offsetof(gq_block_q4_0, qs)
                    : kind == LEG_Q4_1 ? offsetof(gq_block_q4_1, qs) : offsetof(gq_block_mxfp4, qs);
    const float off_factor = kind == LEG_Q4_0 ? 8.0f : kind == LEG_MXFP4 ? 12.0f : -1.0f;
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    const __m256i lut = _mm256_add_epi8(
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)gq_kvalues_mxfp4)),
        _mm256_set1_epi8(12));
    const __m256i pick[2] = {_mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1),
                             _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3)};
    const int np = (NR + 1) / 2;
    const uint8_t *row[4];
    for (int k = 0; k < 4; k++)
        row[k] = pk_row(P, r + (k < NR ? k : NR - 1));
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    __m128 offs = _mm_setzero_ps();
    for (int i = 0; i < P->cols_pad / 32; i++) {
        const __m256i xlo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(a->q + 32 * i)));
        const __m256i xhi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(a->q + 32 * i + 16)));
        __m128 m = _mm_setzero_ps();
        const __m128 d = leg4_scales(row, (size_t)i * bb, kind, &m);
        offs = _mm_fmadd_ps(kind == LEG_Q4_1 ? m : d, _mm_set1_ps(a->s[i]), offs);
        const __m256 dx = _mm256_castps128_ps256(_mm_mul_ps(d, _mm_set1_ps(a->d[i])));
        for (int p = 0; p < np; p++) {
            const uint8_t *qa = row[2 * p] + (size_t)i * bb, *qb = row[2 * p + 1] + (size_t)i * bb;
            if (NR == PK_ROWS && !(i & 1)) {
                pk_prefetch_ahead(qa, PK_ROWS * P->row_bytes, 1);
                pk_prefetch_ahead(qb, PK_ROWS * P->row_bytes, 1);
            }
            const __m256i v = _mm256_loadu2_m128i((const __m128i *)(qb + qo),
                                                  (const __m128i *)(qa + qo));
            __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            if (kind == LEG_MXFP4) {
                lo = _mm256_shuffle_epi8(lut, lo);
                hi = _mm256_shuffle_epi8(lut, hi);
            }
            const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo),
                                                 _mm256_maddubs_epi16(hi, xhi));
            acc[p] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(dx, pick[p]),
                                     _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, ones)), acc[p]);
        }
    }
    /* row 2p: lanes 0-3 of acc[p], row 2p+1: lanes 4-7 */
    const __m128 h01 = _mm_hadd_ps(_mm256_castps256_ps128(acc[0]), _mm256_extractf128_ps(acc[0], 1));
    const __m128 h23 = _mm_hadd_ps(_mm256_castps256_ps128(acc[1]), _mm256_extractf128_ps(acc[1], 1));
    float sum[4];
    _mm_storeu_ps(sum, _mm_fnmadd_ps(_mm_set1_ps(off_factor), offs, _mm_hadd_ps(h01, h23)));
    for (int k = 0; k < NR; k++)
        y[k] = sum[k];
}

PK_ALWAYS_INLINE void q8_q4_0_rows(const gq_packed_linear *P, int r, const int NR,
                                   const pk_act *a, float *y)
{
    q8_leg4_rows(P, r, NR, LEG_Q4_0, a, y);
}
PK_Q8_ENTRY_ANY(q8_q4_0)

PK_ALWAYS_INLINE void q8_q4_1_rows(const gq_packed_linear *P, int r, const int NR,
                                   const pk_act *a, float *y)
{
    q8_leg4_rows(P, r, NR, LEG_Q4_1, a, y);
}
PK_Q8_ENTRY_ANY(q8_q4_1)

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
    q8_leg4_rows(P, r, NR, LEG_MXFP4, a, y);
}
PK_Q8_ENTRY_ANY(q8_mxfp4)

const pk_type pk_q4_0 = {"q4_0", 32, ref_q4_0, fast_q4_0, dot_q4_0, q8_q4_0, PK_ROWS, 2};
const pk_type pk_q4_1 = {"q4_1", 32, ref_q4_1, fast_q4_1, dot_q4_1, q8_q4_1, PK_ROWS, 2};
const pk_type pk_q8_0 = {"q8_0", 32, ref_q8_0, fast_q8_0, dot_q8_0, q8_q8_0, 1, 1};
const pk_type pk_mxfp4 = {"mxfp4_ggml", 32, ref_mxfp4, fast_mxfp4, dot_mxfp4, q8_mxfp4, PK_ROWS, 2};
#else
/* Without AVX2 the reference kernels are the fast ones. */
const pk_type pk_q4_0 = {"q4_0", 32, ref_q4_0, ref_q4_0, pk_dot_generic, NULL, 1, 1};
const pk_type pk_q4_1 = {"q4_1", 32, ref_q4_1, ref_q4_1, pk_dot_generic, NULL, 1, 1};
const pk_type pk_q8_0 = {"q8_0", 32, ref_q8_0, ref_q8_0, pk_dot_generic, NULL, 1, 1};
const pk_type pk_mxfp4 = {"mxfp4_ggml", 32, ref_mxfp4, ref_mxfp4, pk_dot_generic, NULL, 1, 1};
#endif
