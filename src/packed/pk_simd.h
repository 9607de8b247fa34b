#ifndef GQ_PK_SIMD_H
#define GQ_PK_SIMD_H
/* AVX2/FMA building blocks shared by the packed kernels: int8 codes to floats, products with
 * fp32 activations, horizontal sums. Every dequantization helper multiplies without FMA so its
 * values are bit-identical to the scalar reconstruction. */
#if defined(__AVX2__) && defined(__FMA__)
#define PK_AVX2 1
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

/* fp16 -> fp32 by the F16C instruction (exact, like gq_fp16_to_fp32, without the call). */
static inline float pk_fp16(uint16_t h) { return _cvtsh_ss(h); }

/* ggml's E8M0 scale halved, 2^(e-128) (subnormal for e < 2), as gq_e8m0_to_fp32_half. */
static inline float pk_e8m0_half(uint8_t e)
{
    union { uint32_t u; float f; } v = {e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23};
    return v.f;
}

/* 16 signed bytes -> two vectors of 8 floats. */
static inline void pk_i8x16_to_f32(__m128i v, __m256 *lo, __m256 *hi)
{
    *lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
    *hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)));
}

/* 8-lane partial sums of v[i] * x[i], i < 16, v signed bytes. */
static inline __m256 pk_dot16_i8(__m128i v, const float *x)
{
    __m256 a, b;
    pk_i8x16_to_f32(v, &a, &b);
    return _mm256_fmadd_ps(b, _mm256_loadu_ps(x + 8), _mm256_mul_ps(a, _mm256_loadu_ps(x)));
}

/* y[i] = (float)v[i] * s for 16 signed bytes (exact float products). */
static inline void pk_store16_i8(__m128i v, __m256 s, float *y)
{
    __m256 a, b;
    pk_i8x16_to_f32(v, &a, &b);
    _mm256_storeu_ps(y, _mm256_mul_ps(a, s));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(b, s));
}

/* 16 bytes of nibbles -> low nibbles (lo) and high nibbles (hi), one byte each. */
static inline void pk_nibbles16(const uint8_t *qs, __m128i *lo, __m128i *hi)
{
    const __m128i m = _mm_set1_epi8(0x0F);
    __m128i b = _mm_loadu_si128((const __m128i *)qs);
    *lo = _mm_and_si128(b, m);
    *hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
}

/* Decode-side helpers that keep the shuffle port light: 8 codes per 64-bit lane, widened by one
 * vpmovsxbd each (no byte shifts across the register). */
static inline __m256 pk_cvt8_i8(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

/* 16 bytes of nibbles in ggml order (byte j: element j low, j+16 high) -> 4 runs of 8 codes in
 * the low 8 bytes of v[0..3]: elements 0-7, 8-15, 16-23, 24-31. */
static inline void pk_nibbles4x8(const uint8_t *qs, __m128i v[4])
{
    const __m128i m = _mm_set1_epi8(0x0F);
    __m128i a = _mm_loadl_epi64((const __m128i *)qs);
    __m128i b = _mm_loadl_epi64((const __m128i *)(qs + 8));
    v[0] = _mm_and_si128(a, m);
    v[1] = _mm_and_si128(b, m);
    v[2] = _mm_and_si128(_mm_srli_epi16(a, 4), m);
    v[3] = _mm_and_si128(_mm_srli_epi16(b, 4), m);
}

/* 8-lane partial sums of v[k][i] * x[8k + i] over 4 runs of 8 signed codes. */
static inline __m256 pk_dot4x8_i8(const __m128i v[4], const float *x)
{
    __m256 s0 = _mm256_mul_ps(pk_cvt8_i8(v[0]), _mm256_loadu_ps(x));
    __m256 s1 = _mm256_mul_ps(pk_cvt8_i8(v[1]), _mm256_loadu_ps(x + 8));
    s0 = _mm256_fmadd_ps(pk_cvt8_i8(v[2]), _mm256_loadu_ps(x + 16), s0);
    s1 = _mm256_fmadd_ps(pk_cvt8_i8(v[3]), _mm256_loadu_ps(x + 24), s1);
    return _mm256_add_ps(s0, s1);
}

/* The same for 32 consecutive bytes in memory (signed: 8-bit codes). */
static inline __m256 pk_dot32_i8_mem(const int8_t *q, const float *x)
{
    __m128i v[4];
    for (int k = 0; k < 4; k++)
        v[k] = _mm_loadl_epi64((const __m128i *)(q + 8 * k));
    return pk_dot4x8_i8(v, x);
}

static inline void pk_sub4x8(__m128i v[4], __m128i z)
{
    for (int k = 0; k < 4; k++)
        v[k] = _mm_sub_epi8(v[k], z);
}

/* int8 activations: 8 int32 lanes of sum w[i] * x[i] over 32 signed byte pairs (|w| <= 128,
 * |x| <= 127, so the pairwise int16 sums of maddubs cannot saturate). */
static inline __m256i pk_dot32_i8i8(__m256i w, __m256i x)
{
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* 8 pairs of fp16 values (a, b), one pair per 32-bit lane (a in the low half) -> the 8 a's
 * as floats (returned) and the 8 b's (*b): bytes regrouped a, b per 128-bit lane, then the
 * 64-bit quads reordered a, a, b, b. */
static inline __m256 pk_fp16_pairs(__m256i v, __m256 *b)
{
    const __m128i split = _mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
    const __m256i ab = _mm256_permute4x64_epi64(
        _mm256_shuffle_epi8(v, _mm256_broadcastsi128_si256(split)), _MM_SHUFFLE(3, 1, 2, 0));
    *b = _mm256_cvtph_ps(_mm256_extracti128_si256(ab, 1));
    return _mm256_cvtph_ps(_mm256_castsi256_si128(ab));
}

/* y[k] = lane k of v for k < nr (the set kernels: one row per lane). */
static inline void pk_store_lanes(__m256 v, int nr, float *y)
{
    float out[8];
    _mm256_storeu_ps(out, v);
    memcpy(y, out, (size_t)nr * sizeof(float));
}

/* Horizontal sums of 4 vectors: {hsum(a), hsum(b), hsum(c), hsum(d)}. */
static inline __m128 pk_hsum4(__m256 a, __m256 b, __m256 c, __m256 d)
{
    __m256 ab = _mm256_hadd_ps(a, b), cd = _mm256_hadd_ps(c, d);
    __m256 s = _mm256_hadd_ps(ab, cd); /* lanes: a b c d per 128-bit half */
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

/* y[k] = hsum(acc[k]) - off[k] for k < nr (off NULL: none), by pk_hsum4 whatever nr is, so a
 * row's sum is the same in a pass of PK_ROWS rows and alone. */
static inline void pk_store_rows(const __m256 *acc, const float *off, int nr, float *y)
{
    const __m256 z = _mm256_setzero_ps();
    float s[4];
    _mm_storeu_ps(s, pk_hsum4(acc[0], nr > 1 ? acc[1] : z, nr > 2 ? acc[2] : z,
                              nr > 3 ? acc[3] : z));
    for (int k = 0; k < nr; k++)
        y[k] = off ? s[k] - off[k] : s[k];
}

/* Kernels for int8 activations are written once as NAME_rows(P, r, NR, a, y) for a
 * compile-time row count NR (always inlined, so the NR accumulators live in registers); this
 * makes the dot_q8 entry NAME for a format whose passes are ROWS rows (its pk_type.set_rows,
 * 1 or PK_ROWS): whole passes of PK_ROWS, else one row at a time. */
#define PK_ALWAYS_INLINE static inline __attribute__((always_inline))
#define PK_Q8_ENTRY(name, ROWS)                                                               \
    static void name(const gq_packed_linear *P, int r, int nr, const pk_act *a, float *y)    \
    {                                                                                         \
        if ((ROWS) == PK_ROWS && nr == PK_ROWS)                                               \
            name##_rows(P, r, PK_ROWS, a, y);                                                 \
        else                                                                                  \
            for (int i_ = 0; i_ < nr; i_++)                                                   \
                name##_rows(P, r + i_, 1, a, y + i_);                                         \
    }

static inline float pk_hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#else
#define PK_AVX2 0
#endif

#endif
