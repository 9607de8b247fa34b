/* AVX2 dequantizers for Q4_0 and Q8_0, beside the scalar references in ggml_legacy.c.
 * Each output is one int->float conversion (exact) and one float multiply by the block scale, the
 * same single rounding as the scalar code, so results are bit-identical (tested). */
#include "formats/ggml_legacy.h"

#if GQ_HAVE_AVX2_DEQUANT
#include <immintrin.h>

static inline float block_scale(uint16_t h)
{
#if defined(__F16C__)
    return _cvtsh_ss(h); /* exact: every fp16 value is a float */
#else
    return gq_fp16(h);
#endif
}

/* 8 codes (bytes, zero-extended) minus `offset`, times d. */
static inline __m256 deq8_u8(__m128i bytes, __m256i offset, __m256 d)
{
    __m256i q = _mm256_sub_epi32(_mm256_cvtepu8_epi32(bytes), offset);
    return _mm256_mul_ps(_mm256_cvtepi32_ps(q), d);
}

void gq_dequant_row_q4_0_avx2(const void *blocks, int n, float *y)
{
    const gq_block_q4_0 *b = blocks;
    const __m128i low4 = _mm_set1_epi8(0x0F);
    const __m256i eight = _mm256_set1_epi32(8);
    for (int i = 0; i < n / GQ_QK; i++, y += GQ_QK) {
        const __m256 d = _mm256_set1_ps(block_scale(b[i].d));
        const __m128i qs = _mm_loadu_si128((const __m128i *)b[i].qs);
        const __m128i lo = _mm_and_si128(qs, low4);                    /* elements 0..15  */
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(qs, 4), low4); /* elements 16..31 */
        _mm256_storeu_ps(y + 0, deq8_u8(lo, eight, d));
        _mm256_storeu_ps(y + 8, deq8_u8(_mm_srli_si128(lo, 8), eight, d));
        _mm256_storeu_ps(y + 16, deq8_u8(hi, eight, d));
        _mm256_storeu_ps(y + 24, deq8_u8(_mm_srli_si128(hi, 8), eight, d));
    }
}

void gq_dequant_row_q8_0_avx2(const void *blocks, int n, float *y)
{
    const gq_block_q8_0 *b = blocks;
    for (int i = 0; i < n / GQ_QK; i++, y += GQ_QK) {
        const __m256 d = _mm256_set1_ps(block_scale(b[i].d));
        for (int k = 0; k < GQ_QK; k += 16) {
            const __m128i q = _mm_loadu_si128((const __m128i *)(b[i].qs + k));
            __m256 v0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
            __m256 v1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)));
            _mm256_storeu_ps(y + k, _mm256_mul_ps(v0, d));
            _mm256_storeu_ps(y + k + 8, _mm256_mul_ps(v1, d));
        }
    }
}
#else
/* Built without AVX2: the scalar references are used. */
typedef int gq_ggml_legacy_avx2_unused;
#endif
