/* AVX-512 forms of int's kernels (grid_kernels_avx512.h): the AVX2 loops of grid_kernels.c 16
 * lanes wide, with the same IEEE operations in the same order, so the bytes are the same. The
 * last elements of a lead or a group go through the same steps under a lane mask instead of a
 * scalar loop. Each function here is compiled for AVX-512 F/BW/VL (AVX512, a target attribute,
 * which GCC and clang both honour); grid_kernels.c calls them only on a CPU that has them. */
#include "formats/grid_kernels_avx512.h"

#if GRID_K_AVX512
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

/* As grid_kernels.c's INT_PREFETCH_AHEAD: the next row batch's weights. */
#define PREFETCH_AHEAD 8192

static inline AVX512 __mmask16 lanes(int n)
{
    return (__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1);
}

/* roundf: trunc, then one away from zero when the dropped part is at least 1/2. */
static inline AVX512 __m512 round_away(__m512 v)
{
    const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512 d = _mm512_abs_ps(_mm512_sub_ps(v, t));
    const __m512i sign = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(INT32_MIN));
    const __m512 step = _mm512_castsi512_ps(
        _mm512_or_si512(sign, _mm512_castps_si512(_mm512_set1_ps(1.0f))));
    const __mmask16 up = _mm512_cmp_ps_mask(d, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    return _mm512_mask_add_ps(t, up, t, step);
}

/* int's rounding of the lanes m of x in the codes' domain (grid_kernels.c int_q8): returns the
 * codes clamp(round(x / scale) + zq, 0, top) and stores y = scale * (code - zq). All 16 of y go
 * to memory past the caches (stream) when y is 64-byte aligned: the reconstruction of a large
 * matrix is read again only after much other data, and a streamed line is not first read for
 * ownership. The caller fences them (grid_k_fence). */
static inline AVX512 __attribute__((always_inline)) __m512 int_q16(const float *x, __mmask16 m,
                                                                    __m512 scale, __m512 zq,
                                                                    __m512 top, bool away,
                                                                    float *y)
{
    const __m512 t = _mm512_div_ps(_mm512_maskz_loadu_ps(m, x), scale);
    const __m512 r = away ? round_away(t)
                          : _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 q = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(r, zq), _mm512_setzero_ps()), top);
    if (y) {
        const __m512 v = _mm512_mul_ps(scale, _mm512_sub_ps(q, zq));
        if (m == 0xffff && ((uintptr_t)y & 63) == 0)
            _mm512_stream_ps(y, v);
        else
            _mm512_mask_storeu_ps(y, m, v);
    }
    return q;
}

/* The codes of the first k lanes of q (k even when packed4): one a byte, or two (low nibble
 * first), each 64-bit lane's pair c[2j] | c[2j + 1] << 4 in its low byte. */
static inline AVX512 __attribute__((always_inline)) void codes16(uint8_t *codes, int k, __m512 q,
                                                                  bool packed4)
{
    const __m512i c = _mm512_cvttps_epi32(q);
    if (packed4)
        _mm512_mask_cvtepi64_storeu_epi8(codes, (__mmask8)((1u << (k / 2)) - 1u),
                                         _mm512_or_si512(c, _mm512_srli_epi64(c, 28)));
    else
        _mm_mask_storeu_epi8(codes, lanes(k), _mm512_cvtepi32_epi8(c));
}

/* The codes of four vectors as 64 bytes in element order. The packs work per 128-bit lane, so
 * dword 4l + v of their result holds elements 4l..4l+3 of q[v]; one permute puts it at 4v + l. */
static inline AVX512 __attribute__((always_inline)) __m512i bytes64(const __m512 q[4])
{
    const __m512i w01 = _mm512_packus_epi32(_mm512_cvttps_epi32(q[0]), _mm512_cvttps_epi32(q[1]));
    const __m512i w23 = _mm512_packus_epi32(_mm512_cvttps_epi32(q[2]), _mm512_cvttps_epi32(q[3]));
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_epi32(order, _mm512_packus_epi16(w01, w23));
}

/* 64 codes (bytes, each < 16) as 32 bytes of pairs c[2j] | c[2j + 1] << 4, streamed past the
 * caches where 32-byte aligned (grid_pack8's reason); the caller fences them. */
static inline AVX512 __attribute__((always_inline)) void store_nibbles64(uint8_t *dst, __m512i b)
{
    const __m256i v = _mm512_cvtepi16_epi8(_mm512_maddubs_epi16(b, _mm512_set1_epi16(0x1001)));
    if (((uintptr_t)dst & 31) == 0)
        _mm256_stream_si256((__m256i *)dst, v);
    else
        _mm256_storeu_si256((__m256i *)dst, v);
}

/* The first n elements (a multiple of 8) with a positive scale; away, codes, y and packed4 are
 * constants where it is inlined, so each combination is a loop without branches. With codes, 64
 * at a time. */
static inline AVX512 __attribute__((always_inline)) void int_lead(const float *x, int n,
                                                                   __m512 scale, __m512 zq,
                                                                   __m512 top, bool away,
                                                                   uint8_t *codes, bool packed4,
                                                                   float *y)
{
    int i = 0;
    for (; codes && i + 64 <= n; i += 64) {
        __m512 q[4];
        for (int v = 0; v < 4; v++) {
            _mm_prefetch((const char *)(x + i + 16 * v + PREFETCH_AHEAD), _MM_HINT_T0);
            q[v] = int_q16(x + i + 16 * v, 0xffff, scale, zq, top, away,
                           y ? y + i + 16 * v : NULL);
        }
        const __m512i b = bytes64(q);
        if (packed4)
            store_nibbles64(codes + i / 2, b);
        else
            _mm512_storeu_si512(codes + i, b);
    }
    for (; i < n; i += 16) {
        const int k = n - i < 16 ? n - i : 16;
        _mm_prefetch((const char *)(x + i + PREFETCH_AHEAD), _MM_HINT_T0);
        const __m512 q = int_q16(x + i, lanes(k), scale, zq, top, away, y ? y + i : NULL);
        if (codes)
            codes16(packed4 ? codes + i / 2 : codes + i, k, q, packed4);
    }
}

AVX512 int grid_k512_int_group(const grid_k_int *k, const float *x, int n, uint8_t *codes,
                               float *y)
{
    const int lead = grid_k_int_lead(k->scale, n);
    if (lead == 0 || (!codes && !y))
        return lead;
    const __m512 scale = _mm512_set1_ps(k->scale), zq = _mm512_set1_ps(k->zero - k->lo);
    const __m512 top = _mm512_set1_ps(k->hi - k->lo);
#define LEAD(away, c, p4, yy) int_lead(x, lead, scale, zq, top, away, c, p4, yy)
#define CODES(away, yy) (k->packed4 ? LEAD(away, codes, true, yy) : LEAD(away, codes, false, yy))
    if (k->away) {
        if (codes && y)
            CODES(true, y);
        else if (codes)
            CODES(true, NULL);
        else
            LEAD(true, NULL, false, y);
    } else if (codes && y) {
        CODES(false, y);
    } else if (codes) {
        CODES(false, NULL);
    } else {
        LEAD(false, NULL, false, y);
    }
#undef CODES
#undef LEAD
    return lead;
}


/* lo = min(0, min x), hi = max(0, max x) and the largest magnitude's bits of x[0..n), 32 lanes
 * a step, the last n % 16 under a mask (its zero lanes change neither: 0 is in every range). */
static AVX512 uint32_t range_of(const float *x, int n, float *lo, float *hi)
{
    const __m512i mag = _mm512_set1_epi32(0x7fffffff);
    __m512 l0 = _mm512_setzero_ps(), l1 = l0, h0 = l0, h1 = l0;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
        l0 = _mm512_min_ps(l0, a);
        l1 = _mm512_min_ps(l1, b);
        h0 = _mm512_max_ps(h0, a);
        h1 = _mm512_max_ps(h1, b);
        a0 = _mm512_max_epu32(a0, _mm512_and_si512(_mm512_castps_si512(a), mag));
        a1 = _mm512_max_epu32(a1, _mm512_and_si512(_mm512_castps_si512(b), mag));
    }
    for (; i < n; i += 16) {
        const __m512 a = _mm512_maskz_loadu_ps(lanes(n - i), x + i);
        l0 = _mm512_min_ps(l0, a);
        h0 = _mm512_max_ps(h0, a);
        a0 = _mm512_max_epu32(a0, _mm512_and_si512(_mm512_castps_si512(a), mag));
    }
    *lo = _mm512_reduce_min_ps(_mm512_min_ps(l0, l1));
    *hi = _mm512_reduce_max_ps(_mm512_max_ps(h0, h1));
    return _mm512_reduce_max_epu32(_mm512_max_epu32(a0, a1));
}

AVX512 uint32_t grid_k512_group_range(const float *x, size_t n, size_t gc, float *lo,
                                      float *hi)
{
    uint32_t row = 0;
    for (size_t c0 = 0, g = 0; c0 < n; c0 += gc, g++) {
        const uint32_t best = range_of(x + c0, (int)(n - c0 < gc ? n - c0 : gc), lo + g, hi + g);
        row = best > row ? best : row;
    }
    return row;
}

#endif
