/* Shared K-quant machinery (see ggml_kquants.h): re-quantization, dequantization, bit packing,
 * the group interface, and the five registered formats. */
#include "formats/ggml_kquants.h"

#include <assert.h>
#include <string.h>

#if defined(__AVX2__)
#include <immintrin.h>

/* gq_kq_level of 8 values: v = (x + M) / D as floats; nearest_int by the same add-1.5*2^23
 * trick; then qmax - qmin where v >= qmax and 0 where !(v > qmin) (also nan). */
static inline __m256i levels8(const float *x, __m256 D, __m256 M, int qmin, int qmax)
{
    const __m256 v = _mm256_div_ps(_mm256_add_ps(_mm256_loadu_ps(x), M), D);
    const __m256i bits = _mm256_castps_si256(_mm256_add_ps(v, _mm256_set1_ps(12582912.f)));
    __m256i l = _mm256_sub_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)),
                                 _mm256_set1_epi32(0x00400000 + qmin));
    const __m256 hi = _mm256_cmp_ps(v, _mm256_set1_ps((float)qmax), _CMP_GE_OQ);
    const __m256 in = _mm256_cmp_ps(v, _mm256_set1_ps((float)qmin), _CMP_GT_OQ);
    l = _mm256_blendv_epi8(l, _mm256_set1_epi32(qmax - qmin), _mm256_castps_si256(hi));
    return _mm256_and_si256(l, _mm256_castps_si256(in));
}
#endif

void gq_kq_levels(const float *x, int n, float D, float M, int qmin, int qmax, uint8_t *L)
{
    assert(n % 16 == 0);
#if defined(__AVX2__)
    const __m256 Dv = _mm256_set1_ps(D), Mv = _mm256_set1_ps(M);
    for (int i = 0; i < n; i += 16) {
        /* 16 levels in [0, 63] -> bytes in order: packs interleaves the 128-bit halves */
        const __m256i w = _mm256_permute4x64_epi64(
            _mm256_packs_epi32(levels8(x + i, Dv, Mv, qmin, qmax),
                               levels8(x + i + 8, Dv, Mv, qmin, qmax)),
            0xD8);
        _mm_storeu_si128((__m128i *)(L + i), _mm_packus_epi16(_mm256_castsi256_si128(w),
                                                              _mm256_extracti128_si256(w, 1)));
    }
#else
    for (int i = 0; i < n; i++)
        L[i] = (uint8_t)gq_kq_level(x[i], D, M, qmin, qmax);
#endif
}

void gq_kq_quantize_block(const gq_kquant *kq, const float *x, const float *qw, void *blk)
{
    uint8_t L[GQ_QK_K];
    float D[GQ_KQ_MAX_SUB], M[GQ_KQ_MAX_SUB];
    kq->fit(x, qw, blk, L);
    /* ggml re-quantizes every element against the fp16-rounded scales it just stored;
     * a sub-block whose scale decodes to 0 keeps the levels of the search. */
    kq->scales(blk, D, M);
    for (int j = 0; j < GQ_QK_K / kq->sub_len; j++) {
        if (D[j] != 0)
            gq_kq_levels(x + j * kq->sub_len, kq->sub_len, D[j], M[j], kq->qmin, kq->qmax,
                         L + j * kq->sub_len);
    }
    kq->pack(L, blk);
}

void gq_kq_dequantize_block(const gq_kquant *kq, const void *blk, float *y)
{
    uint8_t L[GQ_QK_K];
    float D[GQ_KQ_MAX_SUB], M[GQ_KQ_MAX_SUB];
    kq->scales(blk, D, M);
    kq->unpack(blk, L);
    for (int j = 0; j < GQ_QK_K / kq->sub_len; j++) {
        const float d = D[j], m = M[j];
        const uint8_t *l = L + j * kq->sub_len;
        float *o = y + j * kq->sub_len;
        for (int i = 0; i < kq->sub_len; i++) /* vectorizes; same float ops as ggml */
            o[i] = d * (float)(l[i] + kq->qmin) - m;
    }
}

/* ---- bit packing ---- */

void gq_kq_pack_scale_min6(const uint8_t ls[8], const uint8_t lm[8], uint8_t out[12])
{
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            out[j] = ls[j];
            out[j + 4] = lm[j];
        } else {
            out[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            out[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            out[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

void gq_kq_unpack_scale_min6(const uint8_t in[12], uint8_t ls[8], uint8_t lm[8])
{
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            ls[j] = in[j] & 63;
            lm[j] = in[j + 4] & 63;
        } else {
            ls[j] = (uint8_t)((in[j + 4] & 0xF) | ((in[j - 4] >> 6) << 4));
            lm[j] = (uint8_t)((in[j + 4] >> 4) | ((in[j] >> 6) << 4));
        }
    }
}

void gq_kq_pack_2bit(const uint8_t L[GQ_QK_K], uint8_t qs[GQ_QK_K / 4])
{
    for (int h = 0; h < GQ_QK_K; h += 128)
        for (int l = 0; l < 32; l++)
            qs[h / 4 + l] = (uint8_t)((L[h + l] & 3) | (L[h + l + 32] & 3) << 2 |
                                      (L[h + l + 64] & 3) << 4 | (L[h + l + 96] & 3) << 6);
}

void gq_kq_unpack_2bit(const uint8_t qs[GQ_QK_K / 4], uint8_t L[GQ_QK_K])
{
    for (int h = 0; h < GQ_QK_K; h += 128)
        for (int l = 0; l < 32; l++)
            for (int s = 0; s < 4; s++)
                L[h + l + 32 * s] = (qs[h / 4 + l] >> (2 * s)) & 3;
}

/* ---- group interface ---- */

void gq_kq_fit_group(const gq_kquant *kq, const float *x, int n, const float *imp,
                     gq_kq_group *g)
{
    /* the same zero padding (value 0, importance 0) as the row driver */
    float xb[GQ_QK_K] = {0}, qw[GQ_QK_K] = {0};
    uint8_t L[GQ_QK_K];
    assert(n > 0 && n <= GQ_QK_K); /* a span of at most group_cols() columns */
    memcpy(xb, x, (size_t)n * sizeof *xb);
    if (imp)
        memcpy(qw, imp, (size_t)n * sizeof *qw);
    memset(g->blk, 0, sizeof g->blk);
    kq->fit(xb, imp ? qw : NULL, g->blk, L);
    kq->scales(g->blk, g->D, g->M);
    g->sub_len = kq->sub_len;
    g->qmin = kq->qmin;
    g->qmax = kq->qmax;
}

float gq_kq_quant_elem(const gq_kq_group *g, int k, float x)
{
    const int j = k / g->sub_len;
    const float D = g->D[j], M = g->M[j];
    const int level = D == 0 ? 0 : gq_kq_level(x, D, M, g->qmin, g->qmax);
    return D * (float)(level + g->qmin) - M;
}

/* Whether level l of sub-block j reconstructs q bit for bit. */
static bool is_level(const gq_kq_group *g, int j, int l, float q)
{
    const float y = g->D[j] * (float)(l + g->qmin) - g->M[j];
    return memcmp(&y, &q, sizeof y) == 0;
}

/* The level whose reconstruction in sub-block j is q bit for bit (-1: none): the nearest one,
 * else (cancellation in q + M) the first that is. */
static int level_of(const gq_kq_group *g, int j, float q)
{
    const int l = g->D[j] == 0 ? 0 : gq_kq_level(q, g->D[j], g->M[j], g->qmin, g->qmax);
    if (is_level(g, j, l, q))
        return l;
    for (int k = 0; k <= g->qmax - g->qmin; k++)
        if (is_level(g, j, k, q))
            return k;
    return -1;
}

int gq_kq_store_groups(const gq_kquant *kq, size_t block_bytes, const gq_kq_group *states,
                       const float *q, int rows, int cols, uint8_t *codes, gq_error *err)
{
    const int nb = (cols + GQ_QK_K - 1) / GQ_QK_K;
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < nb; b++) {
            const gq_kq_group *g = states + (size_t)r * nb + b;
            uint8_t L[GQ_QK_K], *blk = codes + ((size_t)r * nb + b) * block_bytes;
            for (int i = 0; i < GQ_QK_K; i++) {
                const int col = b * GQ_QK_K + i, j = i / kq->sub_len;
                if (col >= cols) { /* padding: the level quantize() gives a zero */
                    L[i] = g->D[j] == 0 ? 0
                                        : (uint8_t)gq_kq_level(0.0f, g->D[j], g->M[j], kq->qmin,
                                                               kq->qmax);
                    continue;
                }
                const int l = level_of(g, j, q[(size_t)r * cols + col]);
                if (l < 0)
                    return gq_fail(err, "row %d column %d: %g is no level of its super-block",
                                   r, col, (double)q[(size_t)r * cols + col]);
                L[i] = (uint8_t)l;
            }
            memcpy(blk, g->blk, block_bytes);
            kq->pack(L, blk);
        }
    return 0;
}

/* ---- the formats ---- */

static int kq_group_cols(const void *params, int cols)
{
    (void)params;
    (void)cols;
    return GQ_QK_K;
}

static float kq_quant_elem(const void *params, const void *state, int k, float x)
{
    (void)params;
    return gq_kq_quant_elem(state, k, x);
}

/* Row callbacks of the ggml row driver and the group fit, for one K-quant `t`. */
#define KQ_FORMAT(t, name_text, summary, packing_ptr)                                                     \
    static void t##_qrow(const float *x, const float *qw, int n, void *blocks)               \
    {                                                                                        \
        for (int b = 0; b < n / GQ_QK_K; b++)                                                \
            gq_kq_quantize_block(&gq_kq_##t, x + (size_t)b * GQ_QK_K,                        \
                                 qw ? qw + (size_t)b * GQ_QK_K : NULL,                       \
                                 (uint8_t *)blocks + (size_t)b * sizeof(gq_block_##t));      \
    }                                                                                        \
    static void t##_drow(const void *blocks, int n, float *y)                                \
    {                                                                                        \
        for (int b = 0; b < n / GQ_QK_K; b++)                                                \
            gq_kq_dequantize_block(&gq_kq_##t,                                               \
                                   (const uint8_t *)blocks + (size_t)b * sizeof(gq_block_##t), \
                                   y + (size_t)b * GQ_QK_K);                                 \
    }                                                                                        \
    static void t##_fit_group(const void *p, const float *x, int n, const float *imp,        \
                              void *state)                                                   \
    {                                                                                        \
        (void)p;                                                                             \
        gq_kq_fit_group(&gq_kq_##t, x, n, imp, state);                                       \
    }                                                                                        \
    static int t##_store(const void *p, const void *states, const float *q, int rows,        \
                         int cols, uint8_t *codes, gq_error *err)                            \
    {                                                                                        \
        (void)p;                                                                             \
        return gq_kq_store_groups(&gq_kq_##t, sizeof(gq_block_##t), states, q, rows, cols,   \
                                  codes, err);                                               \
    }                                                                                        \
    const gq_ggml_type gq_ggml_##t = {name_text, GQ_QK_K, sizeof(gq_block_##t), t##_qrow,    \
                                      t##_drow};                                             \
    GQ_GGML_FORMAT(gq_format_##t, gq_ggml_##t, name_text, summary,                           \
                   .group_cols = kq_group_cols, .group_state_bytes = sizeof(gq_kq_group),     \
                   .fit_group = t##_fit_group, .quant_elem = kq_quant_elem,                   \
                   .store_groups = t##_store,                                                 \
                   .packing = packing_ptr)

GQ_GGML_PACKING(q4_K_packing, GQ_PACK_Q4_K, gq_block_q4_K, GQ_QK_K, offsetof(gq_block_q4_K, qs));
/* Q6_K's scales follow its codes: the packed layout moves each super-block as one piece. */
GQ_GGML_PACKING(q6_K_packing, GQ_PACK_Q6_K, gq_block_q6_K, GQ_QK_K, sizeof(gq_block_q6_K));

KQ_FORMAT(q2_K, "q2_K",
          "llama.cpp Q2_K: 256-blocks, 2-bit codes, 16x(4-bit scale, 4-bit min), 2.625 bpw", NULL);
KQ_FORMAT(q3_K, "q3_K", "llama.cpp Q3_K: 256-blocks, 3-bit codes, 16 x 6-bit scales, 3.4375 bpw",
          NULL);
KQ_FORMAT(q4_K, "q4_K",
          "llama.cpp Q4_K: 256-blocks, 4-bit codes, 8x(6-bit scale, 6-bit min), 4.5 bpw",
          &q4_K_packing);
KQ_FORMAT(q5_K, "q5_K",
          "llama.cpp Q5_K: 256-blocks, 5-bit codes, 8x(6-bit scale, 6-bit min), 5.5 bpw", NULL);
KQ_FORMAT(q6_K, "q6_K", "llama.cpp Q6_K: 256-blocks, 6-bit codes, 16 x int8 scales, 6.5625 bpw",
          &q6_K_packing);
