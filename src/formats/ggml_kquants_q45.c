/* Q4_K and Q5_K: 8 sub-blocks of 32 with asymmetric codes [0, 15] / [0, 31];
 * x^ = d*ls_j * q - dmin*lm_j with 6-bit ls_j, lm_j and fp16 d, dmin.
 *
 * Scale search (ggml quantize_row_q{4,5}_K_ref / _impl):
 *   ref:  per sub-block weights av_x + |x| (av_x = rms of the sub-block), make_qkx2_quants with
 *         (rmin, rdelta, nstep) = (-1, 0.1, 20) for Q4_K, (-0.5, 0.1, 15) for Q5_K; then
 *         d = max scale / 63, dmin = max min / 63, ls = nearest(63 * scale / max scale).
 *   impl: weights qw * sqrt(sigma2 + x^2) with sigma2 = 2 * mean x^2 of the super-block,
 *         make_qkx3_quants (-0.9, 0.05, 36); the 8 scales and the 8 mins are then quantized to
 *         6 bits by make_qp_quants weighted by each sub-block's weight sum. */
#include <math.h>

#include "formats/ggml_kquants.h"

/* Shared header of Q4_K and Q5_K blocks (d, dmin, scales[12] come first in both). */
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
} k45_head;
_Static_assert(offsetof(gq_block_q4_K, scales) == offsetof(k45_head, scales), "Q4_K header");
_Static_assert(offsetof(gq_block_q5_K, scales) == offsetof(k45_head, scales), "Q5_K header");

static inline uint8_t min63(uint8_t v) { return v < 63 ? v : 63; }

static void fit_k45(const float *x, const float *qw, int nmax, float rmin, float rdelta,
                    int nstep, k45_head *h, uint8_t L[GQ_QK_K])
{
    float scales[8], mins[8], weights[GQ_QK_K];
    uint8_t ls[8], lm[8];

    if (!qw) {
        for (int j = 0; j < 8; j++) {
            const float *xs = x + 32 * j;
            float sum_x2 = 0;
            for (int l = 0; l < 32; l++)
                sum_x2 += xs[l] * xs[l];
            float av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; l++)
                weights[32 * j + l] = av_x + fabsf(xs[l]);
        }
        /* make_qkx2_quants(32, nmax, ..., rmin, rdelta, nstep) on the 8 sub-blocks at once */
        gq_kq_qkx_quants_batch(8, 32, nmax, x, weights, L, scales, mins, rmin, rdelta, nstep,
                               false, false);
        float max_scale = 0, max_min = 0; /* scales and mins are >= 0 */
        for (int j = 0; j < 8; j++) {
            if (scales[j] > max_scale)
                max_scale = scales[j];
            if (mins[j] > max_min)
                max_min = mins[j];
        }
        float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        for (int j = 0; j < 8; j++) {
            ls[j] = min63((uint8_t)gq_nearest_int(inv_scale * scales[j]));
            lm[j] = min63((uint8_t)gq_nearest_int(inv_min * mins[j]));
        }
        h->d = gq_fp32_to_fp16(max_scale / 63.f);
        h->dmin = gq_fp32_to_fp16(max_min / 63.f);
    } else {
        float sw[8];
        gq_ggml_superblock_weights(8, 32, x, qw, 2, weights, sw);
        /* make_qkx3_quants(32, nmax, ..., -0.9, 0.05, 36) */
        gq_kq_qkx_quants_batch(8, 32, nmax, x, weights, L, scales, mins, -0.9f, 0.05f, 36,
                               false, true);
        float d_block = gq_make_qp_quants(8, 63, scales, ls, sw);
        float m_block = gq_make_qp_quants(8, 63, mins, lm, sw);
        for (int j = 0; j < 8; j++) {
            ls[j] = min63(ls[j]);
            lm[j] = min63(lm[j]);
        }
        h->d = gq_fp32_to_fp16(d_block);
        h->dmin = gq_fp32_to_fp16(m_block);
    }
    gq_kq_pack_scale_min6(ls, lm, h->scales);
}

static void scales_k45(const void *blk, float *D, float *M)
{
    const k45_head *h = blk;
    uint8_t ls[8], lm[8];
    gq_kq_unpack_scale_min6(h->scales, ls, lm);
    const float d = gq_fp16(h->d), dmin = gq_fp16(h->dmin);
    for (int j = 0; j < 8; j++) {
        D[j] = d * ls[j];
        M[j] = dmin * lm[j];
    }
}

/* 4-bit levels: for each 64-element chunk c, byte qs[32c + l] holds element 64c + l in the low
 * nibble and element 64c + l + 32 in the high nibble. */
static void pack_nibbles(const uint8_t L[GQ_QK_K], uint8_t qs[GQ_QK_K / 2])
{
    for (int c = 0; c < GQ_QK_K; c += 64)
        for (int l = 0; l < 32; l++)
            qs[c / 2 + l] = (uint8_t)((L[c + l] & 0xF) | (L[c + l + 32] & 0xF) << 4);
}

static void unpack_nibbles(const uint8_t qs[GQ_QK_K / 2], uint8_t L[GQ_QK_K])
{
    for (int c = 0; c < GQ_QK_K; c += 64)
        for (int l = 0; l < 32; l++) {
            L[c + l] = qs[c / 2 + l] & 0xF;
            L[c + l + 32] = qs[c / 2 + l] >> 4;
        }
}

/* ---- Q4_K ---- */

static void fit_q4_K(const float *x, const float *qw, void *blk, uint8_t L[GQ_QK_K])
{
    fit_k45(x, qw, 15, -1.f, 0.1f, 20, blk, L);
}

static void pack_q4_K(const uint8_t L[GQ_QK_K], void *blk)
{
    pack_nibbles(L, ((gq_block_q4_K *)blk)->qs);
}

static void unpack_q4_K(const void *blk, uint8_t L[GQ_QK_K])
{
    unpack_nibbles(((const gq_block_q4_K *)blk)->qs, L);
}

const gq_kquant gq_kq_q4_K = {32, 0, 15, fit_q4_K, scales_k45, pack_q4_K, unpack_q4_K};

/* ---- Q5_K: Q4_K's nibbles plus a 5th bit; chunk c's two halves use bits 2c and 2c+1 of
 * qh[l] ---- */

static void fit_q5_K(const float *x, const float *qw, void *blk, uint8_t L[GQ_QK_K])
{
    fit_k45(x, qw, 31, -0.5f, 0.1f, 15, blk, L);
}

static void pack_q5_K(const uint8_t L[GQ_QK_K], void *blk)
{
    gq_block_q5_K *b = blk;
    pack_nibbles(L, b->qs);
    memset(b->qh, 0, sizeof b->qh);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            b->qh[l] |= (uint8_t)((L[64 * c + l] >> 4) << (2 * c) |
                                  (L[64 * c + l + 32] >> 4) << (2 * c + 1));
}

static void unpack_q5_K(const void *blk, uint8_t L[GQ_QK_K])
{
    const gq_block_q5_K *b = blk;
    unpack_nibbles(b->qs, L);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            L[64 * c + l] |= (uint8_t)(((b->qh[l] >> (2 * c)) & 1) << 4);
            L[64 * c + l + 32] |= (uint8_t)(((b->qh[l] >> (2 * c + 1)) & 1) << 4);
        }
}

const gq_kquant gq_kq_q5_K = {32, 0, 31, fit_q5_K, scales_k45, pack_q5_K, unpack_q5_K};
