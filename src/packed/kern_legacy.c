/* Packed kernels of the llama.cpp 32-element blocks: Q4_0, Q4_1, Q8_0 and ggml's MXFP4 (the
 * 4-bit ones stored in sets of 4 rows, packed_internal.h). The reference dequantization is the
 * format's own (ggml's to_float) on the reassembled block; the AVX2 fp32 paths decode 16 codes
 * at a time to floats: Q4_0 w = d*(q-8), Q4_1 w = d*q + m (the offset folded through the block
 * sum of x in the dot), Q8_0 w = d*q, MXFP4 w = kvalue[q] * e8m0/2 (pshufb lookup); the int8-
 * activation dots are below. */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "formats/ggml_legacy.h"
#include "packed/packed_internal.h"
#include "packed/pk_simd.h"

static void ref_q4_0(const gq_packed_linear *P, int r, float *y)
{
    for (int i = 0; i < P->cols_pad / 32; i++) {
        gq_block_q4_0 b;
        pk_blk_copy(P, r, i, &b);
        gq_ggml_q4_0.dequantize_row(&b, 32, y + 32 * i);
    }
}
static void ref_q4_1(const gq_packed_linear *P, int r, float *y)
{
    for (int i = 0; i < P->cols_pad / 32; i++) {
        gq_block_q4_1 b;
        pk_blk_copy(P, r, i, &b);
        gq_ggml_q4_1.dequantize_row(&b, 32, y + 32 * i);
    }
}
static void ref_q8_0(const gq_packed_linear *P, int r, float *y)
{
    gq_ggml_q8_0.dequantize_row(pk_row(P, r), P->cols_pad, y);
}
static void ref_mxfp4(const gq_packed_linear *P, int r, float *y)
{
    for (int i = 0; i < P->cols_pad / 32; i++) {
        gq_block_mxfp4 b;
        pk_blk_copy(P, r, i, &b);
        gq_ggml_mxfp4.dequantize_row(&b, 32, y + 32 * i);
    }
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
    for (int i = 0; i < P->cols_pad / 32; i++, y += 32) {
        gq_block_q4_0 bi;
        pk_blk_copy(P, r, i, &bi);
        __m128i lo, hi;
        q4_0_codes(&bi, &lo, &hi);
        __m256 d = _mm256_set1_ps(pk_fp16(bi.d));
        pk_store16_i8(lo, d, y);
        pk_store16_i8(hi, d, y + 16);
    }
}

static float dot_q4_0(const gq_packed_linear *P, int r, const float *x, const float *xs)
{
    (void)xs;
    const __m128i eight = _mm_set1_epi8(8);
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < P->cols_pad / 32; i++, x += 32) {
        gq_block_q4_0 bi;
        pk_blk_copy(P, r, i, &bi);
        __m128i v[4];
        pk_nibbles4x8(bi.qs, v);
        pk_sub4x8(v, eight);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(pk_fp16(bi.d)), pk_dot4x8_i8(v, x), acc);
    }
    return pk_hsum(acc);
}

static void fast_q4_1(const gq_packed_linear *P, int r, float *y)
{
    for (int i = 0; i < P->cols_pad / 32; i++, y += 32) {
        gq_block_q4_1 bi;
        pk_blk_copy(P, r, i, &bi);
        __m128i q[2];
        pk_nibbles16(bi.qs, &q[0], &q[1]);
        __m256 d = _mm256_set1_ps(pk_fp16(bi.d)), m = _mm256_set1_ps(pk_fp16(bi.m));
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
    __m256 acc = _mm256_setzero_ps();
    float offs = 0.0f; /* sum of m * (block sum of x) */
    for (int i = 0; i < P->cols_pad / 32; i++, x += 32) {
        gq_block_q4_1 bi;
        pk_blk_copy(P, r, i, &bi);
        __m128i v[4];
        pk_nibbles4x8(bi.qs, v);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(pk_fp16(bi.d)), pk_dot4x8_i8(v, x), acc);
        offs += pk_fp16(bi.m) * xs[i];
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
    const __m128i lut = _mm_loadu_si128((const __m128i *)gq_kvalues_mxfp4);
    for (int i = 0; i < P->cols_pad / 32; i++, y += 32) {
        gq_block_mxfp4 bi;
        pk_blk_copy(P, r, i, &bi);
        __m128i lo, hi;
        mxfp4_values(&bi, lut, &lo, &hi);
        __m256 d = _mm256_set1_ps(pk_e8m0_half(bi.e));
        pk_store16_i8(lo, d, y);
        pk_store16_i8(hi, d, y + 16);
    }
}

static float dot_mxfp4(const gq_packed_linear *P, int r, const float *x, const float *xs)
{
    (void)xs;
    const __m128i lut = _mm_loadu_si128((const __m128i *)gq_kvalues_mxfp4);
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < P->cols_pad / 32; i++, x += 32) {
        gq_block_mxfp4 bi;
        pk_blk_copy(P, r, i, &bi);
        __m128i v[4];
        pk_nibbles4x8(bi.qs, v);
        for (int k = 0; k < 4; k++)
            v[k] = _mm_shuffle_epi8(lut, v[k]);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(pk_e8m0_half(bi.e)), pk_dot4x8_i8(v, x), acc);
    }
    return pk_hsum(acc);
}

/* ---- the 4-bit blocks (q4_0, q4_1, mxfp4) on int8 activations: two rows per 256-bit vector.
 * The 16 code bytes of block i of rows A and B fill the two 128-bit lanes; their low nibbles
 * (elements 0..15) meet activations 0..15 broadcast to both lanes, the high nibbles (16..31)
 * activations 16..31, so lanes 0-3 of the maddubs + madd dot are row A's partial sums and lanes
 * 4-7 row B's, scaled by the one vector [dA xd (x4), dB xd (x4)]. The codes are unsigned:
 * q4_0 q (its -8 through 8 d * block sum of x), mxfp4 table value + 12 (the -12 likewise), q4_1
 * q (its m through m * block sum). maddubs pairs stay below 2 * 24 * 127, so adding the low and
 * high halves' int16 sums before madd cannot saturate. ---- */
/* LEG_MXFP4N: MXFP4 whose exponents are all >= 2 (P->e8m0_normal), so every scale is a normal
 * float and the subnormal case drops out of the conversion. */
enum { LEG_Q4_0, LEG_Q4_1, LEG_MXFP4, LEG_MXFP4N };

/* The headers of NR <= 4 rows as the low 32-bit lanes of a vector (bytes per header: hb <= 4,
 * zero-extended; lanes >= NR: 0). IL: the headers are consecutive, so one load of exactly their
 * bytes (no store-to-load round trip through memory). */
PK_ALWAYS_INLINE __m128i leg4_headers(const uint8_t *const hdr[4], const int NR, const int IL,
                                      const int hb)
{
    if (IL && NR * hb == 16)
        return _mm_loadu_si128((const __m128i *)hdr[0]);
    if (IL && NR * hb == 8)
        return _mm_loadl_epi64((const __m128i *)hdr[0]);
    if (IL && NR * hb == 4)
        return _mm_loadu_si32(hdr[0]);
    uint32_t w[4] = {0, 0, 0, 0};
    for (int k = 0; k < NR; k++)
        for (int j = 0; j < hb; j++)
            w[k] |= (uint32_t)hdr[k][j] << (8 * j);
    if (hb == 4)
        return _mm_setr_epi32((int)w[0], (int)w[1], (int)w[2], (int)w[3]);
    if (hb == 2) /* packed halves: lane k's 16 bits at word k */
        return _mm_setr_epi16((short)w[0], (short)w[1], (short)w[2], (short)w[3], 0, 0, 0, 0);
    return _mm_cvtsi32_si128((int)(w[0] | w[1] << 8 | w[2] << 16 | w[3] << 24));
}

/* Block i's scale (q4_1: and offset m) of the NR rows as lanes 0..NR-1 (the rest 0), from
 * their headers hdr[k]. */
PK_ALWAYS_INLINE __m128 leg4_scales(const uint8_t *const hdr[4], const int NR, const int IL,
                                    const int kind, __m128 *m)
{
    if (kind == LEG_MXFP4N && NR == 4) /* 2^(e-128) as float bits (e - 1) << 23 */
        return _mm_castsi128_ps(_mm_slli_epi32(
            _mm_sub_epi32(_mm_cvtepu8_epi32(leg4_headers(hdr, NR, IL, 1)), _mm_set1_epi32(1)), 23));
    if (kind == LEG_MXFP4 || kind == LEG_MXFP4N) { /* E8M0 halved: 2^(e-128), subnormal below
                                                     e = 2 (pk_e8m0_half) */
        const __m128i e = _mm_cvtepu8_epi32(leg4_headers(hdr, NR, IL, 1));
        const __m128i normal = _mm_slli_epi32(_mm_sub_epi32(e, _mm_set1_epi32(1)), 23);
        const __m128i sub = _mm_sllv_epi32(_mm_set1_epi32(0x00200000), e);
        const __m128 s = _mm_castsi128_ps(
            _mm_blendv_epi8(normal, sub, _mm_cmpgt_epi32(_mm_set1_epi32(2), e)));
        if (NR == 4) /* else lanes >= NR (e = 0, a subnormal) are zeroed */
            return s;
        return _mm_and_ps(s, _mm_castsi128_ps(_mm_cmpgt_epi32(_mm_set1_epi32(NR),
                                                              _mm_setr_epi32(0, 1, 2, 3))));
    }
    if (kind == LEG_Q4_1) { /* d and m adjacent: 32 bits per row, then deinterleaved */
        const __m256 dm = _mm256_permutevar8x32_ps(_mm256_cvtph_ps(leg4_headers(hdr, NR, IL, 4)),
                                                   _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
        *m = _mm256_extractf128_ps(dm, 1);
        return _mm256_castps256_ps128(dm);
    }
    return _mm_cvtph_ps(leg4_headers(hdr, NR, IL, 2));
}

/* Rows r..r+NR-1 (NR <= 4; an odd last row is paired with itself and its copy dropped). IL:
 * the rows are one whole interleaved set (NR = 4), so a block's headers are one run and each
 * pair's code bytes are 32 consecutive bytes. */
PK_ALWAYS_INLINE void q8_leg4_rows(const gq_packed_linear *P, int r, const int NR,
                                   const int IL, const int kind, const pk_act *a, float *y)
{
    const bool mx = kind == LEG_MXFP4 || kind == LEG_MXFP4N;
    const float off_factor = kind == LEG_Q4_0 ? 8.0f : mx ? 12.0f : -1.0f;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i lut = _mm256_add_epi8(
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)gq_kvalues_mxfp4)),
        _mm256_set1_epi8(12));
    const __m256i pick[2] = {_mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1),
                             _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3)};
    const int np = (NR + 1) / 2;
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    __m128 offs = _mm_setzero_ps();
    for (int i = 0; i < P->cols_pad / 32; i++) {
        const __m256i xlo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(a->q + 32 * i)));
        const __m256i xhi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(a->q + 32 * i + 16)));
        const uint8_t *hdr[4], *codes[4];
        if (IL) { /* one set: its headers, then its 4 x 16 code bytes (packed_internal.h) */
            const uint8_t *set = pk_il_base(P, r, i);
            for (int k = 0; k < 4; k++) {
                hdr[k] = set + k * P->hdr_bytes;
                codes[k] = set + PK_IL * P->hdr_bytes + k * PK_PIECE;
            }
        } else {
            for (int k = 0; k < 4; k++) {
                const int rk = r + (k < NR ? k : NR - 1);
                hdr[k] = pk_blk_hdr(P, rk, i);
                codes[k] = pk_blk_piece(P, rk, i, 0);
            }
        }
        __m128 m = _mm_setzero_ps();
        const __m128 d = leg4_scales(hdr, NR, IL, kind, &m);
        offs = _mm_fmadd_ps(kind == LEG_Q4_1 ? m : d, _mm_set1_ps(a->s[i]), offs);
        const __m256 dx = _mm256_castps128_ps256(_mm_mul_ps(d, _mm_set1_ps(a->d[i])));
        for (int p = 0; p < np; p++) {
            const __m256i v = IL && 2 * p + 1 < NR
                ? _mm256_loadu_si256((const __m256i *)codes[2 * p])
                : _mm256_loadu2_m128i((const __m128i *)codes[2 * p + 1],
                                      (const __m128i *)codes[2 * p]);
            __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            if (mx) {
                lo = _mm256_shuffle_epi8(lut, lo);
                hi = _mm256_shuffle_epi8(lut, hi);
            }
            acc[p] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(dx, pick[p]),
                                     _mm256_cvtepi32_ps(pk_dot_halves(lo, hi, xlo, xhi)), acc[p]);
        }
    }
    pk_store_pairs(acc, _mm_mul_ps(_mm_set1_ps(off_factor), offs), NR, y);
}

/* dot_q8 of the 4-bit formats: passes over one interleaved set (whatever the row width: a set
 * is one sequential stream, so no software prefetch either), then the plain rows after the
 * last full set. */
#define LEG4_ENTRY(name, kind)                                                                \
    static void name(const gq_packed_linear *P, int r, int nr, const pk_act *a, float *y)    \
    {                                                                                         \
        if (r < P->il_rows && nr == 4)                                                        \
            q8_leg4_rows(P, r, 4, 1, kind, a, y);                                             \
        else if (nr == 3)                                                                     \
            q8_leg4_rows(P, r, 3, 0, kind, a, y);                                             \
        else if (nr == 2)                                                                     \
            q8_leg4_rows(P, r, 2, 0, kind, a, y);                                             \
        else                                                                                  \
            for (int k_ = 0; k_ < nr; k_++)                                                   \
                q8_leg4_rows(P, r + k_, 1, 0, kind, a, y + k_);                               \
    }
LEG4_ENTRY(q8_q4_0, LEG_Q4_0)
LEG4_ENTRY(q8_q4_1, LEG_Q4_1)
LEG4_ENTRY(q8_mxfp4_any, LEG_MXFP4)
LEG4_ENTRY(q8_mxfp4_normal, LEG_MXFP4N)

static void q8_mxfp4(const gq_packed_linear *P, int r, int nr, const pk_act *a, float *y)
{
    (P->e8m0_normal ? q8_mxfp4_normal : q8_mxfp4_any)(P, r, nr, a, y);
}

/* ---- Q8_0 on int8 activations: one integer dot per block, one float scale product per block
 * (rows one at a time: its wide rows stream best alone, pk_type.q8_rows) ---- */
static inline __m256i xq_block(const int8_t *xq, int b)
{
    return _mm256_loadu_si256((const __m256i *)(xq + 32 * b));
}

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
            __m256i w = _mm256_loadu_si256((const __m256i *)b[k][i].qs);
            __m256 p = _mm256_cvtepi32_ps(pk_dot32_i8i8(w, x));
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(pk_fp16(b[k][i].d) * xd[i]), p, acc[k]);
        }
    }
    pk_store_rows(acc, NULL, NR, y);
}
PK_Q8_ENTRY(q8_q8_0, 1)


const pk_type pk_q4_0 = {"q4_0", 32, ref_q4_0, fast_q4_0, dot_q4_0, q8_q4_0, PK_ROWS, false};
const pk_type pk_q4_1 = {"q4_1", 32, ref_q4_1, fast_q4_1, dot_q4_1, q8_q4_1, PK_ROWS, false};
const pk_type pk_q8_0 = {"q8_0", 32, ref_q8_0, fast_q8_0, dot_q8_0, q8_q8_0, 1, false};
const pk_type pk_mxfp4 = {"mxfp4_ggml", 32, ref_mxfp4, fast_mxfp4, dot_mxfp4, q8_mxfp4, PK_ROWS, false};
#else
/* Without AVX2 the reference kernels are the fast ones. */
const pk_type pk_q4_0 = {"q4_0", 32, ref_q4_0, ref_q4_0, pk_dot_generic, NULL, 1, false};
const pk_type pk_q4_1 = {"q4_1", 32, ref_q4_1, ref_q4_1, pk_dot_generic, NULL, 1, false};
const pk_type pk_q8_0 = {"q8_0", 32, ref_q8_0, ref_q8_0, pk_dot_generic, NULL, 1, false};
const pk_type pk_mxfp4 = {"mxfp4_ggml", 32, ref_mxfp4, ref_mxfp4, pk_dot_generic, NULL, 1, false};
#endif
