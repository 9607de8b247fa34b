#ifndef GQ_PK_SIMD_H
#define GQ_PK_SIMD_H
/* AVX2/FMA building blocks shared by the packed kernels: int8 codes to floats, products with
 * fp32 activations, horizontal sums. Every dequantization helper multiplies without FMA so its
 * values are bit-identical to the scalar reconstruction. */
#if defined(__AVX2__) && defined(__FMA__)
#define PK_AVX2 1
#include <immintrin.h>
#include <stdint.h>

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

/* The same for unsigned bytes (8-bit codes 0..255). */
static inline __m256 pk_dot16_u8(__m128i v, const float *x)
{
    __m256 a = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
    __m256 b = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8)));
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
