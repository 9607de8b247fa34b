/* Q2_K and Q3_K: 16 sub-blocks of 16.
 *
 * Q2_K: asymmetric codes [0, 3]; x^ = d*s_j * q - dmin*m_j with 4-bit s_j, m_j (one byte per
 * sub-block: s low nibble, m high nibble) and fp16 d, dmin.
 *   ref:  weights |x|, make_qkx2_quants(16, 3, -0.5, 0.1, 15, use_mad = true); d = max
 *         scale / 15, s_j = nearest(15 * scale_j / max scale), the same for the mins.
 *   impl: weights qw * sqrt(sigma2 + x^2) with sigma2 = mean x^2 (no factor 2 here),
 *         make_qkx3_quants(-0.9, 0.05, 36); scales and mins to 4 bits by make_qp_quants.
 *
 * Q3_K: symmetric codes [-4, 3]; x^ = d*(s_j - 32) * q with 6-bit s_j and fp16 d.
 *   ref:  make_q3_quants(16, 4, do_rmse) per sub-block; d = -max/32 (signed scale of largest
 *         magnitude), s_j = clamp(nearest(scale_j / d), -32, 31) + 32.
 *   impl: weights qw * sqrt(2 * mean x^2 + x^2), make_qx_quants(16, 4, rmse 1); the 16 scales
 *         go through make_qx_quants(16, 32, rmse 1) weighted by the sub-block weight sums. */
#include <math.h>

#include "formats/ggml_kquants.h"

/* ---- Q2_K ---- */

static void fit_q2_K(const float *x, const float *qw, void *blk, uint8_t L[GQ_QK_K])
{
    gq_block_q2_K *b = blk;
    float scales[16], mins[16], weights[GQ_QK_K];

    if (!qw) {
        for (int l = 0; l < GQ_QK_K; l++)
            weights[l] = fabsf(x[l]);
        /* make_qkx2_quants(16, 3, ..., -0.5, 0.1, 15, use_mad) on the 16 sub-blocks */
        gq_kq_qkx_quants_batch(16, 16, 3, x, weights, L, scales, mins, -0.5f, 0.1f, 15, true,
                               false);
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 16; j++) {
            if (scales[j] > max_scale)
                max_scale = scales[j];
            if (mins[j] > max_min)
                max_min = mins[j];
        }
        memset(b->scales, 0, sizeof b->scales);
        b->d = b->dmin = gq_fp32_to_fp16(0.f);
        if (max_scale > 0) {
            float iscale = 15.f / max_scale;
            for (int j = 0; j < 16; j++)
                b->scales[j] = (uint8_t)gq_nearest_int(iscale * scales[j]);
            b->d = gq_fp32_to_fp16(max_scale / 15.f);
        }
        if (max_min > 0) {
            float iscale = 15.f / max_min;
            for (int j = 0; j < 16; j++)
                b->scales[j] |= (uint8_t)(gq_nearest_int(iscale * mins[j]) << 4);
            b->dmin = gq_fp32_to_fp16(max_min / 15.f);
        }
        return;
    }
    float sw[16];
    uint8_t Ls[16], Lm[16];
    gq_ggml_superblock_weights(16, 16, x, qw, 1, weights, sw);
    /* make_qkx3_quants(16, 3, ..., -0.9, 0.05, 36) */
    gq_kq_qkx_quants_batch(16, 16, 3, x, weights, L, scales, mins, -0.9f, 0.05f, 36, false,
                           true);
    b->d = gq_fp32_to_fp16(gq_make_qp_quants(16, 15, scales, Ls, sw));
    b->dmin = gq_fp32_to_fp16(gq_make_qp_quants(16, 15, mins, Lm, sw));
    for (int j = 0; j < 16; j++)
        b->scales[j] = (uint8_t)(Ls[j] | Lm[j] << 4);
}

static void scales_q2_K(const void *blk, float *D, float *M)
{
    const gq_block_q2_K *b = blk;
    const float d = gq_fp16(b->d), dmin = gq_fp16(b->dmin);
    for (int j = 0; j < 16; j++) {
        D[j] = d * (b->scales[j] & 0xF);
        M[j] = dmin * (b->scales[j] >> 4);
    }
}

static void pack_q2_K(const uint8_t L[GQ_QK_K], void *blk)
{
    gq_kq_pack_2bit(L, ((gq_block_q2_K *)blk)->qs);
}

static void unpack_q2_K(const void *blk, uint8_t L[GQ_QK_K])
{
    gq_kq_unpack_2bit(((const gq_block_q2_K *)blk)->qs, L);
}

const gq_kquant gq_kq_q2_K = {16, 0, 3, fit_q2_K, scales_q2_K, pack_q2_K, unpack_q2_K};

/* ---- Q3_K ---- */

/* 16 six-bit scales in 12 bytes: the low nibble of scale j in byte j (j < 8, bits 0-3) or
 * j-8 (bits 4-7); its top 2 bits in byte 8 + j%4 at bits 2*(j/4). */
static void pack_scales_q3(const uint8_t s[16], uint8_t out[12])
{
    memset(out, 0, 12);
    for (int j = 0; j < 16; j++) {
        if (j < 8)
            out[j] = s[j] & 0xF;
        else
            out[j - 8] |= (uint8_t)((s[j] & 0xF) << 4);
        out[8 + j % 4] |= (uint8_t)((s[j] >> 4) << (2 * (j / 4)));
    }
}

static void fit_q3_K(const float *x, const float *qw, void *blk, uint8_t L[GQ_QK_K])
{
    gq_block_q3_K *b = blk;
    float scales[16];
    uint8_t s[16];
    /* levels 0..7 fit int8_t and uint8_t alike */
    int8_t *Ls = (int8_t *)L;

    if (!qw) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = gq_make_q3_quants(16, 4, x + 16 * j, Ls + 16 * j, true);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        if (!max_scale) {
            memset(b->scales, 0, sizeof b->scales);
            b->d = gq_fp32_to_fp16(0.f);
            return;
        }
        float iscale = -32.f / max_scale;
        for (int j = 0; j < 16; j++) {
            int l = (int8_t)gq_nearest_int(iscale * scales[j]);
            s[j] = (uint8_t)((l < -32 ? -32 : l > 31 ? 31 : l) + 32);
        }
        pack_scales_q3(s, b->scales);
        b->d = gq_fp32_to_fp16(1 / iscale);
        return;
    }
    float weights[GQ_QK_K], sw[16];
    gq_ggml_superblock_weights(16, 16, x, qw, 2, weights, sw);
    /* make_qx_quants(16, 4, ..., rmse 1, weights) */
    gq_kq_qx_quants_batch(16, 16, 4, x, weights, Ls, scales);
    int8_t ls[16];
    float d_block = gq_make_qx_quants(16, 32, scales, ls, 1, sw);
    for (int j = 0; j < 16; j++)
        s[j] = (uint8_t)ls[j];
    pack_scales_q3(s, b->scales);
    b->d = gq_fp32_to_fp16(d_block);
}

static void scales_q3_K(const void *blk, float *D, float *M)
{
    const gq_block_q3_K *b = blk;
    const float d = gq_fp16(b->d);
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? b->scales[j] & 0xF : b->scales[j - 8] >> 4;
        int hi = (b->scales[8 + j % 4] >> (2 * (j / 4))) & 3;
        D[j] = d * ((lo | hi << 4) - 32);
        M[j] = 0;
    }
}

/* Levels 0..7: the low 2 bits as in Q2_K, the high bit of element j in hmask[j % 32] at bit
 * j / 32. */
static void pack_q3_K(const uint8_t L[GQ_QK_K], void *blk)
{
    gq_block_q3_K *b = blk;
    memset(b->hmask, 0, sizeof b->hmask);
    for (int j = 0; j < GQ_QK_K; j++)
        b->hmask[j % 32] |= (uint8_t)((L[j] >> 2) << (j / 32));
    gq_kq_pack_2bit(L, b->qs);
}

static void unpack_q3_K(const void *blk, uint8_t L[GQ_QK_K])
{
    const gq_block_q3_K *b = blk;
    gq_kq_unpack_2bit(b->qs, L);
    for (int j = 0; j < GQ_QK_K; j++)
        L[j] |= (uint8_t)(((b->hmask[j % 32] >> (j / 32)) & 1) << 2);
}

const gq_kquant gq_kq_q3_K = {16, -4, 3, fit_q3_K, scales_q3_K, pack_q3_K, unpack_q3_K};
