/* Kernels of the grid formats' fast path (see grid_kernels.h). The AVX2 loops do the reference's
 * float operations in the reference's order, one IEEE operation per step (no FMA), so every
 * lane rounds as the scalar code does; min/max are the compare-and-select of grid_minf and
 * grid_maxf (vminps/vmaxps return the second operand unless the first compares less/greater). */
#include "formats/grid_kernels.h"

#include <stdalign.h>
#include <string.h>

#include "formats/grid.h"
#include "formats/grid_kernels_avx512.h"

#if GRID_K_AVX2 || defined(__BMI2__)
#include <immintrin.h>
#endif

#if GRID_K_AVX2
/* The low bytes of 8 int32 lanes stored as 8 bytes. */
static inline void store_bytes8(uint8_t *dst, __m256i c)
{
    const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          -1, -1, 0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1,
                                          -1, -1, -1, -1);
    const __m256i b = _mm256_shuffle_epi8(c, pick);
    _mm_storel_epi64((__m128i *)dst, _mm_unpacklo_epi32(_mm256_castsi256_si128(b),
                                                        _mm256_extracti128_si256(b, 1)));
}

/* 16 bytes of packed codes to memory past the caches where 16-byte aligned (grid_pack8). */
static inline void stream16(uint8_t *dst, __m128i v)
{
    if (((uintptr_t)dst & 15) == 0)
        _mm_stream_si128((__m128i *)dst, v);
    else
        _mm_storeu_si128((__m128i *)dst, v);
}

/* 32 codes (bytes, each < 16) as 16 bytes of pairs c[2j] | c[2j + 1] << 4: the pairs as 16-bit
 * sums c[2j] + 16 c[2j + 1], narrowed; streamed (stream16). */
static inline void store_nibbles32(uint8_t *dst, __m256i bytes)
{
    const __m256i p = _mm256_maddubs_epi16(bytes, _mm256_set1_epi16(0x1001));
    stream16(dst, _mm_packus_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1)));
}

/* 8 codes (dwords, each < 16) as 4 bytes of pairs. */
static inline void store_nibbles8(uint8_t *dst, __m256i c)
{
    uint8_t b[8];
    store_bytes8(b, c);
    for (int j = 0; j < 4; j++)
        dst[j] = (uint8_t)(b[2 * j] | b[2 * j + 1] << 4);
}

/* roundf: trunc, then one away from zero when the dropped part is at least 1/2. */
static inline __m256 round_away(__m256 v)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 d = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    const __m256 step = _mm256_or_ps(_mm256_and_ps(sign, v), _mm256_set1_ps(1.0f));
    return _mm256_blendv_ps(t, _mm256_add_ps(t, step),
                            _mm256_cmp_ps(d, _mm256_set1_ps(0.5f), _CMP_GE_OQ));
}

static inline float hmax_ps(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline float hmin_ps(__m256 v)
{
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    m = _mm_min_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}
#endif

static bool avx512_off;

void grid_k_allow_avx512(bool on) { avx512_off = !on; }

bool grid_k_avx512(void)
{
#if GRID_K_AVX512
    return !avx512_off && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#else
    return false;
#endif
}

void grid_k_fence(void)
{
#if GRID_K_AVX2
    _mm_sfence();
#endif
}

const char *grid_k_isa(void)
{
    return grid_k_avx512() ? "avx512" : GRID_K_AVX2 ? "avx2" : "scalar";
}

/* The largest |x[i]| bit pattern of best and x[i0 .. n) (the scalar tail of the vector scans). */
static inline uint32_t absmax_bits_from(const float *x, size_t i0, size_t n, uint32_t best)
{
    for (size_t i = i0; i < n; i++) {
        uint32_t u;
        memcpy(&u, x + i, sizeof u);
        u &= 0x7fffffffu;
        best = u > best ? u : best;
    }
    return best;
}

uint32_t grid_k_absmax_bits(const float *x, size_t n)
{
    size_t i = 0;
    uint32_t best = 0;
#if GRID_K_AVX2
    const __m256i mag = _mm256_set1_epi32(0x7fffffff);
    __m256i m0 = _mm256_setzero_si256(), m1 = m0;
    for (; i + 16 <= n; i += 16) {
        m0 = _mm256_max_epu32(m0, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i)), mag));
        m1 = _mm256_max_epu32(m1, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i + 8)), mag));
    }
    uint32_t lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, _mm256_max_epu32(m0, m1));
    for (int l = 0; l < 8; l++)
        best = lanes[l] > best ? lanes[l] : best;
#endif
    return absmax_bits_from(x, i, n, best);
}

#if GRID_K_AVX2
static inline uint32_t hmax_epu32(__m256i v)
{
    __m128i m = _mm_max_epu32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    m = _mm_max_epu32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(1, 0, 3, 2)));
    m = _mm_max_epu32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(2, 3, 0, 1)));
    return (uint32_t)_mm_cvtsi128_si32(m);
}
#endif

uint32_t grid_k_group_absmax_bits(const float *x, size_t n, size_t gc, uint32_t *bits)
{
    uint32_t row = 0;
    for (size_t c0 = 0, g = 0; c0 < n; c0 += gc, g++) {
        const float *v = x + c0;
        const size_t m = n - c0 < gc ? n - c0 : gc;
        size_t i = 0;
        uint32_t best = 0;
#if GRID_K_AVX2
        const __m256i mag = _mm256_set1_epi32(0x7fffffff);
        __m256i acc = _mm256_setzero_si256();
        for (; i + 8 <= m; i += 8)
            acc = _mm256_max_epu32(acc, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(v + i)), mag));
        best = hmax_epu32(acc);
#endif
        best = absmax_bits_from(v, i, m, best);
        bits[g] = best;
        row = best > row ? best : row;
    }
    return row;
}

/* lo = min(0, min x), hi = max(0, max x) of x[0..n), and with bits also the largest magnitude's
 * bits (absmax_bits_from); bits is a constant where it is inlined. */
static inline __attribute__((always_inline)) void range_of(const float *x, size_t n, bool bits,
                                                           float *lo_out, float *hi_out,
                                                           uint32_t *bits_out)
{
    size_t i = 0;
    float lo = 0.0f, hi = 0.0f;
    uint32_t best = 0;
#if GRID_K_AVX2
    const __m256i mag = _mm256_set1_epi32(0x7fffffff);
    __m256 l0 = _mm256_setzero_ps(), l1 = l0, h0 = l0, h1 = l0;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0;
    for (; i + 16 <= n; i += 16) {
        const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        l0 = _mm256_min_ps(l0, a);
        l1 = _mm256_min_ps(l1, b);
        h0 = _mm256_max_ps(h0, a);
        h1 = _mm256_max_ps(h1, b);
        if (bits) {
            a0 = _mm256_max_epu32(a0, _mm256_and_si256(_mm256_castps_si256(a), mag));
            a1 = _mm256_max_epu32(a1, _mm256_and_si256(_mm256_castps_si256(b), mag));
        }
    }
    lo = hmin_ps(_mm256_min_ps(l0, l1));
    hi = hmax_ps(_mm256_max_ps(h0, h1));
    if (bits)
        best = hmax_epu32(_mm256_max_epu32(a0, a1));
#endif
    if (bits)
        *bits_out = absmax_bits_from(x, i, n, best);
    for (; i < n; i++) {
        lo = grid_minf(lo, x[i]);
        hi = grid_maxf(hi, x[i]);
    }
    *lo_out = lo;
    *hi_out = hi;
}

void grid_k_minmax(const float *x, size_t n, float *lo_out, float *hi_out)
{
    range_of(x, n, false, lo_out, hi_out, NULL);
}

#if GRID_K_AVX2
/* Floats ahead of the element being rounded that int's loop asks the cache for: a row batch of
 * weights (fmt_int.c) later, the next range pass (grid_k_group_range, the first to read them)
 * finds them there instead of waiting on memory while no arithmetic runs. A prefetch past the
 * end of the weights is harmless (it never faults). */
#define INT_PREFETCH_AHEAD 8192

/* int's rounding of 8 elements in the codes' domain: q' = clamp(round(x / scale) + zq, 0, top)
 * with zq = zero - lo and top = hi - lo is the reference's q - lo exactly (small integers), so
 * q' is the code and y = scale * (q' - zq) the reference's scale * (q - zero). */
static inline __attribute__((always_inline)) __m256 int_q8(const float *x, __m256 scale,
                                                          __m256 zq, __m256 top, bool away)
{
    const __m256 t = _mm256_div_ps(_mm256_loadu_ps(x), scale);
    const __m256 r = away ? round_away(t)
                          : _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(r, zq), _mm256_setzero_ps()), top);
}

static inline __attribute__((always_inline)) void int_y8(float *y, __m256 q, __m256 scale,
                                                        __m256 zq)
{
    _mm256_storeu_ps(y, _mm256_mul_ps(scale, _mm256_sub_ps(q, zq)));
}

/* int's rounding of the leading multiple of 8 of x[0..n) with a positive scale; away, codes,
 * packed4 and y are constants where it is inlined, so each combination is a loop without
 * branches. With codes, 32 at a time: four vectors of codes narrow to one of bytes (two packs,
 * whose 128-bit lanes interleave the sources' dwords, then one permute back to element order). */
static inline __attribute__((always_inline)) int int_lead8(const float *x, int n, __m256 scale,
                                                           __m256 zq, __m256 top, bool away,
                                                           uint8_t *codes, bool packed4, float *y)
{
    int i = 0;
    if (codes) {
        const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (; i + 32 <= n; i += 32) {
            _mm_prefetch((const char *)(x + i + INT_PREFETCH_AHEAD), _MM_HINT_T0);
            _mm_prefetch((const char *)(x + i + 16 + INT_PREFETCH_AHEAD), _MM_HINT_T0);
            __m256 q[4];
            for (int k = 0; k < 4; k++) {
                q[k] = int_q8(x + i + 8 * k, scale, zq, top, away);
                if (y)
                    int_y8(y + i + 8 * k, q[k], scale, zq);
            }
            const __m256i c01 = _mm256_packus_epi32(_mm256_cvttps_epi32(q[0]),
                                                    _mm256_cvttps_epi32(q[1]));
            const __m256i c23 = _mm256_packus_epi32(_mm256_cvttps_epi32(q[2]),
                                                    _mm256_cvttps_epi32(q[3]));
            const __m256i b = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(c01, c23), order);
            if (packed4)
                store_nibbles32(codes + i / 2, b);
            else
                _mm256_storeu_si256((__m256i *)(codes + i), b);
        }
    }
    for (; i + 8 <= n; i += 8) {
        _mm_prefetch((const char *)(x + i + INT_PREFETCH_AHEAD), _MM_HINT_T0);
        const __m256 q = int_q8(x + i, scale, zq, top, away);
        if (codes && packed4)
            store_nibbles8(codes + i / 2, _mm256_cvttps_epi32(q));
        else if (codes)
            store_bytes8(codes + i, _mm256_cvttps_epi32(q));
        if (y)
            int_y8(y + i, q, scale, zq);
    }
    return i;
}
#endif

/* One group: the elements grid_k_int_lead promises. */
static inline int int_group(const grid_k_int *k, const float *x, int n, uint8_t *codes, float *y)
{
    const int lead = grid_k_int_lead(k->scale, n);
#if GRID_K_AVX2
    if (lead == 0)
        return 0;
    const __m256 scale = _mm256_set1_ps(k->scale), zq = _mm256_set1_ps(k->zero - k->lo);
    const __m256 top = _mm256_set1_ps(k->hi - k->lo);
#define LEAD(away, c, p4, yy) int_lead8(x, lead, scale, zq, top, away, c, p4, yy)
#define CODES(away, yy) (k->packed4 ? LEAD(away, codes, true, yy) : LEAD(away, codes, false, yy))
    if (k->away)
        return codes && y ? CODES(true, y) : codes ? CODES(true, NULL)
                                                   : LEAD(true, NULL, false, y);
    return codes && y ? CODES(false, y) : codes ? CODES(false, NULL)
                                                : LEAD(false, NULL, false, y);
#undef CODES
#undef LEAD
#else
    (void)x, (void)codes, (void)y;
    return lead;
#endif
}

int grid_k_int_encode(const grid_k_int *k, const float *x, int n, uint8_t *codes, float *y)
{
#if GRID_K_AVX512
    if (grid_k_avx512())
        return grid_k512_int_group(k, x, n, codes, y);
#endif
    return codes || y ? int_group(k, x, n, codes, y) : grid_k_int_lead(k->scale, n);
}

int grid_k_int_states(const grid_k_int_rule *r, const float *lo, const float *hi, int n,
                      float *scale, float *zero)
{
    int g = 0;
#if GRID_K_AVX2
    const __m256 sign = _mm256_set1_ps(-0.0f), zero_v = _mm256_setzero_ps();
    const __m256 one = _mm256_set1_ps(1.0f), maxq = _mm256_set1_ps(r->maxq);
    for (; g + 8 <= n; g += 8) {
        __m256 l = _mm256_loadu_ps(lo + g), h = _mm256_loadu_ps(hi + g);
        const __m256 empty = _mm256_and_ps(_mm256_cmp_ps(l, zero_v, _CMP_EQ_OQ),
                                           _mm256_cmp_ps(h, zero_v, _CMP_EQ_OQ));
        l = _mm256_blendv_ps(l, _mm256_xor_ps(one, sign), empty);
        h = _mm256_blendv_ps(h, one, empty);
        const __m256 nl = _mm256_xor_ps(l, sign), amax = _mm256_max_ps(nl, h);
        __m256 s, z = zero_v;
        switch (r->zero_rule) {
        case GRID_K_INT_SYM:
            s = _mm256_div_ps(amax, _mm256_set1_ps(r->qs));
            break;
        case GRID_K_INT_SYM_GPTQ:
            s = _mm256_div_ps(_mm256_mul_ps(_mm256_set1_ps(2.0f), amax), maxq);
            z = _mm256_set1_ps(r->zconst);
            break;
        default:
            s = _mm256_div_ps(_mm256_sub_ps(h, l), maxq);
            break;
        }
        if (r->fp16)
            s = _mm256_cvtph_ps(_mm256_cvtps_ph(s, _MM_FROUND_TO_NEAREST_INT));
        if (r->zero_rule == GRID_K_INT_ASYM) {
            const __m256 t = _mm256_div_ps(nl, s);
            const __m256 q = r->away ? round_away(t)
                                     : _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT |
                                                              _MM_FROUND_NO_EXC);
            z = _mm256_and_ps(q, _mm256_cmp_ps(s, zero_v, _CMP_GT_OQ));
            z = _mm256_min_ps(_mm256_max_ps(z, zero_v), maxq);
        }
        _mm256_storeu_ps(scale + g, s);
        _mm256_storeu_ps(zero + g, z);
    }
#else
    (void)r, (void)lo, (void)hi, (void)n, (void)scale, (void)zero;
#endif
    return g;
}

uint32_t grid_k_group_range(const float *x, size_t n, size_t gc, float *lo, float *hi)
{
#if GRID_K_AVX512
    if (grid_k_avx512())
        return grid_k512_group_range(x, n, gc, lo, hi);
#endif
    uint32_t row = 0;
    for (size_t c0 = 0, g = 0; c0 < n; c0 += gc, g++) {
        uint32_t best;
        range_of(x + c0, n - c0 < gc ? n - c0 : gc, true, lo + g, hi + g, &best);
        row = best > row ? best : row;
    }
    return row;
}

void grid_k_int_encode_groups(const grid_k_int_groups *k, const float *x, int n, int gc,
                              uint8_t *codes, float *y)
{
    if (!codes && !y)
        return;
    int (*group)(const grid_k_int *, const float *, int, uint8_t *, float *) = int_group;
#if GRID_K_AVX512
    if (grid_k_avx512())
        group = grid_k512_int_group;
#endif
    for (int c0 = 0, g = 0; c0 < n; c0 += gc, g++) {
        const grid_k_int one = {k->scale[g], k->zero[g], k->lo, k->hi, k->away, k->packed4};
        group(&one, x + c0, n - c0 < gc ? n - c0 : gc,
              codes ? codes + (k->packed4 ? c0 / 2 : c0) : NULL, y ? y + c0 : NULL);
    }
}

int grid_k_mxint8_encode(const float *x, int n, float inv, float X, uint8_t *codes, float *y)
{
    int i = 0;
#if GRID_K_AVX2
    const __m256 vinv = _mm256_set1_ps(inv), vX = _mm256_set1_ps(X);
    const __m256 lim = _mm256_set1_ps(127.0f), nlim = _mm256_set1_ps(-127.0f);
    const __m256 s64 = _mm256_set1_ps(64.0f), r64 = _mm256_set1_ps(1.0f / 64.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv), s64);
        const __m256 r = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256 q = _mm256_add_ps(_mm256_min_ps(_mm256_max_ps(r, nlim), lim),
                                       _mm256_setzero_ps());
        if (codes)
            store_bytes8(codes + i, _mm256_cvttps_epi32(q));
        if (y)
            _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(q, r64), vX));
    }
#else
    (void)x, (void)n, (void)inv, (void)X, (void)codes, (void)y;
#endif
    return i;
}

#if GRID_K_AVX2
/* table[idx] per lane by 8 loads: vpgatherdd is several times slower on cores with the
 * gather-data-sampling microcode fix. */
static inline __m256i lookup8(const uint32_t *table, __m256i idx)
{
    alignas(32) uint32_t i[8];
    _mm256_store_si256((__m256i *)i, idx);
    return _mm256_setr_epi32((int)table[i[0]], (int)table[i[1]], (int)table[i[2]],
                             (int)table[i[3]], (int)table[i[4]], (int)table[i[5]],
                             (int)table[i[6]], (int)table[i[7]]);
}

/* 8 elements through the table: the lanes of xs, all finite. */
static inline void mf_table8(const gq_mf_table *t, __m256 xs, __m256i *code, __m256 *val)
{
    const gq_minifloat *f = t->f;
    const int low = 23 - t->top;
    const __m256i u = _mm256_castps_si256(xs);
    const __m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
    __m256i e = _mm256_srli_epi32(a, 23);
    e = _mm256_min_epi32(_mm256_max_epi32(e, _mm256_set1_epi32(t->e_lo)), _mm256_set1_epi32(t->e_hi));
    const __m256i topbits = _mm256_and_si256(_mm256_srl_epi32(a, _mm_cvtsi32_si128(low)),
                                             _mm256_set1_epi32((1 << t->top) - 1));
    const __m256i rest = _mm256_and_si256(a, _mm256_set1_epi32((1 << low) - 1));
    const __m256i sticky = _mm256_add_epi32(_mm256_cmpeq_epi32(rest, _mm256_setzero_si256()),
                                            _mm256_set1_epi32(1));
    const __m256i idx = _mm256_or_si256(
        _mm256_sll_epi32(_mm256_sub_epi32(e, _mm256_set1_epi32(t->e_lo)), _mm_cvtsi32_si128(t->top + 1)),
        _mm256_or_si256(_mm256_slli_epi32(topbits, 1), sticky));
    const __m256i ent = lookup8(t->entry, idx);
    const __m256i sign = _mm256_andnot_si256(_mm256_cmpeq_epi32(ent, _mm256_setzero_si256()),
                                             _mm256_srli_epi32(u, 31));
    *code = _mm256_or_si256(_mm256_and_si256(ent, _mm256_set1_epi32(0xffff)),
                            _mm256_sll_epi32(sign, _mm_cvtsi32_si128(f->ebits + f->mbits)));
    *val = _mm256_castsi256_ps(_mm256_or_si256(
        _mm256_sll_epi32(_mm256_srli_epi32(ent, 16), _mm_cvtsi32_si128(23 - f->mbits)),
        _mm256_slli_epi32(sign, 31)));
}
#endif

#if GRID_K_AVX2
/* 8 E2M1 elements by counting the midpoints below |xs|, all lanes finite. The magnitudes
 * 0, 0.5, 1, 1.5, 2, 3, 4, 6 have codes 0..7 in order, so the code of the nearest one is the
 * number of midpoints 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5 that |xs| passes; at a midpoint the
 * even code wins (ties to even): >= where the upper neighbour's code is even (0.75, 1.75,
 * 3.5), > elsewhere. Past 5 it saturates at 6 (code 7). Subnormal and zero |xs| count 0.
 * Zero drops the sign, as gq_mf_encode does. */
static inline void e2m1_count8(__m256 xs, __m256i *code, __m256 *val)
{
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    const __m256 a = _mm256_andnot_ps(sign_bit, xs);
    __m256i c = _mm256_castps_si256(_mm256_cmp_ps(a, _mm256_set1_ps(0.25f), _CMP_GT_OQ));
    c = _mm256_add_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(a, _mm256_set1_ps(0.75f), _CMP_GE_OQ)));
    c = _mm256_add_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(a, _mm256_set1_ps(1.25f), _CMP_GT_OQ)));
    c = _mm256_add_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(a, _mm256_set1_ps(1.75f), _CMP_GE_OQ)));
    c = _mm256_add_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(a, _mm256_set1_ps(2.5f), _CMP_GT_OQ)));
    c = _mm256_add_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(a, _mm256_set1_ps(3.5f), _CMP_GE_OQ)));
    c = _mm256_add_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(a, _mm256_set1_ps(5.0f), _CMP_GT_OQ)));
    const __m256i mag = _mm256_sub_epi32(_mm256_setzero_si256(), c); /* each pass counted -1 */
    const __m256 values = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
    const __m256i nonzero = _mm256_cmpgt_epi32(mag, _mm256_setzero_si256());
    const __m256 sign = _mm256_and_ps(_mm256_and_ps(xs, sign_bit), _mm256_castsi256_ps(nonzero));
    *code = _mm256_or_si256(mag, _mm256_srli_epi32(_mm256_castps_si256(sign), 28));
    *val = _mm256_or_ps(_mm256_permutevar8x32_ps(values, mag), sign);
}
#endif

static inline void mf_encode(const gq_mf_table *t, const float *x, int n, float k, bool divide,
                             float post, uint8_t *codes, float *y)
{
    const bool zero = divide && !(k > 0.0f);
    int i = 0;
#if GRID_K_AVX2
    const __m256 vk = _mm256_set1_ps(k), vpost = _mm256_set1_ps(post);
    const __m256i inf = _mm256_set1_epi32(0x7f800000), mag = _mm256_set1_epi32(0x7fffffff);
    const bool e2m1 = t->f == &gq_mf_e2m1;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 xs = zero ? _mm256_setzero_ps()
                               : divide ? _mm256_div_ps(v, vk) : _mm256_mul_ps(v, vk);
        const __m256i a = _mm256_and_si256(_mm256_castps_si256(xs), mag);
        if (!_mm256_testz_si256(_mm256_cmpgt_epi32(a, _mm256_sub_epi32(inf, _mm256_set1_epi32(1))),
                                _mm256_set1_epi32(-1)))
            break; /* a non-finite scaled value: the scalar loop below from here */
        __m256i code;
        __m256 e;
        if (e2m1)
            e2m1_count8(xs, &code, &e);
        else
            mf_table8(t, xs, &code, &e);
        if (codes)
            store_bytes8(codes + i, code);
        if (y)
            _mm256_storeu_ps(y + i, _mm256_mul_ps(e, vpost));
    }
#endif
    for (; i < n; i++) {
        float e;
        const float xs = zero ? 0.0f : divide ? x[i] / k : x[i] * k;
        const uint32_t c = gq_mf_table_encode(t, xs, &e);
        if (codes)
            codes[i] = (uint8_t)c;
        if (y)
            y[i] = e * post;
    }
}

void grid_k_mf_encode(const gq_mf_table *t, const float *x, int n, float k, bool divide,
                      float post, uint8_t *codes, float *y)
{
    mf_encode(t, x, n, k, divide, post, codes, y);
}

void grid_k_mf_encode_groups(const gq_mf_table *t, const float *x, int n, int gc, const float *k,
                             bool divide, const float *post, uint8_t *codes, float *y)
{
    for (int c0 = 0, g = 0; c0 < n; c0 += gc, g++)
        mf_encode(t, x + c0, n - c0 < gc ? n - c0 : gc, k[g], divide, post[g],
                  codes ? codes + c0 : NULL, y ? y + c0 : NULL);
}

void grid_pack8(uint8_t *buf, size_t pos, const uint8_t *codes, size_t n, int w)
{
    const uint64_t mask = (1u << w) - 1u;
    uint8_t *b = buf + pos / 8;
    unsigned nacc = (unsigned)(pos % 8);
    uint64_t acc = nacc ? *b & ((1u << nacc) - 1u) : 0; /* the earlier fields of the first byte */
    size_t i = 0;
    /* Fields until the stream is byte-aligned (pos is a multiple of w for rows, so it gets
     * there within 8 fields), then 8 fields = w whole bytes at a time. */
    for (; i < n && nacc && i < 8; i++) {
        acc |= ((uint64_t)codes[i] & mask) << nacc;
        nacc += (unsigned)w;
        for (; nacc >= 8; nacc -= 8, acc >>= 8)
            *b++ = (uint8_t)acc;
    }
    if (nacc == 0) {
#if GRID_K_AVX2
        if (w == 4) { /* 32 fields = 16 bytes */
            const __m256i mask4 = _mm256_set1_epi8(0x0f);
            for (; i + 32 <= n; i += 32, b += 16)
                store_nibbles32(b, _mm256_and_si256(
                                       _mm256_loadu_si256((const __m256i *)(codes + i)), mask4));
        }
#endif
#if defined(__BMI2__)
        /* Whole 8-byte stores while later fields of this call overwrite the excess. */
        const uint64_t lanes = 0x0101010101010101ull * mask;
        for (; i + 8 + 64 / (size_t)w <= n; i += 8, b += w) {
            uint64_t v;
            memcpy(&v, codes + i, sizeof v);
            v = _pext_u64(v, lanes);
            memcpy(b, &v, sizeof v);
        }
#else
        if (w == 8) {
            memcpy(b, codes + i, n - i);
            b += n - i;
            i = n;
        }
#endif
    }
    for (; i < n; i++) {
        acc |= ((uint64_t)codes[i] & mask) << nacc;
        nacc += (unsigned)w;
        for (; nacc >= 8; nacc -= 8, acc >>= 8)
            *b++ = (uint8_t)acc;
    }
    if (nacc)
        *b = (uint8_t)acc;
}
