/* Decode activations quantized to int8 per block of 32, or of 256 for the formats that pair
 * with llama.cpp's Q8_K (pk_act, packed_internal.h): the scalar references and AVX2 versions
 * with the same values (the same float operations; cvtps2dq rounds half to even under the
 * default MXCSR, as rintf does), which also produce the block and lane sums the kernels need
 * in the same pass. */
#include <math.h>

#include "packed/packed_internal.h"
#include "packed/pk_simd.h"

/* Per block of `block` values: d = amax / 127, q = round-half-even(x * (1/d)). */
static void quantize_blocks(const float *x, int n, int block, int8_t *xq, float *xd)
{
    for (int b = 0; b < n / block; b++) {
        const float *xb = x + (size_t)block * b;
        float amax = 0.0f;
        for (int k = 0; k < block; k++)
            amax = fmaxf(amax, fabsf(xb[k]));
        float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        xd[b] = d;
        for (int k = 0; k < block; k++)
            xq[(size_t)block * b + k] = (int8_t)rintf(xb[k] * id);
    }
}

void pk_prepare_act_k_ref(const float *x, int n, int8_t *qk, float *dk, int16_t *bsk)
{
    quantize_blocks(x, n, 256, qk, dk);
    for (int b = 0; b < n / 32; b++) {
        int sum = 0;
        for (int k = 0; k < 32; k++)
            sum += qk[32 * b + k];
        bsk[b] = (int16_t)sum;
    }
}

void pk_quantize_act(const float *x, int n, int8_t *xq, float *xd)
{
    quantize_blocks(x, n, 32, xq, xd);
}

static void sums_ref(int n, const int8_t *xq, const float *xd, float *xs, float *xl)
{
    for (int b = 0; b < n / 32; b++) {
        int sum = 0;
        for (int i = 0; i < 8; i++) {
            const int8_t *q4 = xq + 32 * b + 4 * i;
            int lane = q4[0] + q4[1] + q4[2] + q4[3];
            xl[8 * b + i] = (float)lane;
            sum += lane;
        }
        xs[b] = xd[b] * (float)sum;
    }
}

void pk_prepare_act_ref(const float *x, int n, int8_t *xq, float *xd, float *xs, float *xl)
{
    pk_quantize_act(x, n, xq, xd);
    sums_ref(n, xq, xd, xs, xl);
}

#if PK_AVX2
/* amax of nv vectors of 8 (max is exact in any order, so the reference's value). */
static inline float amax_v(const float *x, int nv)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < nv; k++)
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * k)));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* The codes of 32 values, round-half-even(x * id) (cvtps2dq under the default MXCSR, as
 * rintf), stored to q; returns them (in element order). */
static inline __m256i quantize32(const float *x, float id, int8_t *q)
{
    /* packs_epi32 / packs_epi16 interleave the 128-bit lanes; this restores element order */
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256 idv = _mm256_set1_ps(id);
    __m256i c[4];
    for (int k = 0; k < 4; k++)
        c[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), idv));
    __m256i q8 = _mm256_packs_epi16(_mm256_packs_epi32(c[0], c[1]), _mm256_packs_epi32(c[2], c[3]));
    q8 = _mm256_permutevar8x32_epi32(q8, order);
    _mm256_storeu_si256((__m256i *)q, q8);
    return q8;
}

/* The sums of each run of 4 codes (8 int32 lanes), and their total. */
static inline __m256i lane_sums(__m256i q8, int *total)
{
    const __m256i lanes = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q8),
                                            _mm256_set1_epi16(1));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(lanes), _mm256_extracti128_si256(lanes, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    *total = _mm_cvtsi128_si32(s);
    return lanes;
}

void pk_prepare_act(const float *x, int n, int8_t *xq, float *xd, float *xs, float *xl)
{
    for (int b = 0; b < n / 32; b++) {
        const float amax = amax_v(x + 32 * b, 4);
        const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        int sum;
        const __m256i lanes = lane_sums(quantize32(x + 32 * b, id, xq + 32 * b), &sum);
        _mm256_storeu_ps(xl + 8 * b, _mm256_cvtepi32_ps(lanes));
        xd[b] = d;
        xs[b] = d * (float)sum;
    }
}

void pk_prepare_act_k(const float *x, int n, int8_t *qk, float *dk, int16_t *bsk)
{
    for (int b = 0; b < n / 256; b++) {
        const float amax = amax_v(x + 256 * b, 32);
        const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        dk[b] = d;
        for (int s = 0; s < 8; s++) {
            int sum;
            lane_sums(quantize32(x + 256 * b + 32 * s, id, qk + 256 * b + 32 * s), &sum);
            bsk[8 * b + s] = (int16_t)sum;
        }
    }
}
#else
void pk_prepare_act(const float *x, int n, int8_t *xq, float *xd, float *xs, float *xl)
{
    pk_prepare_act_ref(x, n, xq, xd, xs, xl);
}

void pk_prepare_act_k(const float *x, int n, int8_t *qk, float *dk, int16_t *bsk)
{
    pk_prepare_act_k_ref(x, n, qk, dk, bsk);
}
#endif
