/* Q6_K: 16 sub-blocks of 16 with symmetric codes [-32, 31]; x^ = d*sc_j * q with int8 sc_j
 * and fp16 d.
 *
 * Scale search (ggml quantize_row_q6_K_ref / _impl): make_qx_quants(16, 32, rmse_type 1) per
 * sub-block, weights x^2 (ref) or the importance weights themselves (impl: ggml passes qw
 * unmodified here, unlike the other K-quants); the sub-block scales are quantized to int8 with
 * d = -max/128 where max is the signed scale of largest magnitude. A super-block whose scales
 * are all below GROUP_MAX_EPS is stored as zeros. */
#include <math.h>

#include "formats/ggml_kquants.h"

static void fit_q6_K(const float *x, const float *qw, void *blk, uint8_t L[GQ_QK_K])
{
    gq_block_q6_K *b = blk;
    float scales[16];
    /* make_qx_quants(16, 32, ..., rmse 1, qw) on the 16 sub-blocks; levels 0..63 fit int8_t
     * and uint8_t alike */
    gq_kq_qx_quants_batch(16, 16, 32, x, qw, (int8_t *)L, scales);
    float max_scale = 0, max_abs_scale = 0;
    for (int j = 0; j < 16; j++) {
        float abs_scale = fabsf(scales[j]);
        if (abs_scale > max_abs_scale) {
            max_abs_scale = abs_scale;
            max_scale = scales[j];
        }
    }
    if (max_abs_scale < GQ_GGML_GROUP_MAX_EPS) { /* all-zero block: every byte 0 */
        memset(L, 0, GQ_QK_K);
        memset(b->scales, 0, sizeof b->scales);
        b->d = gq_fp32_to_fp16(0.f);
        return;
    }
    float iscale = -128.f / max_scale;
    b->d = gq_fp32_to_fp16(1 / iscale);
    for (int j = 0; j < 16; j++) {
        int l = gq_nearest_int(iscale * scales[j]);
        b->scales[j] = (int8_t)(l < 127 ? l : 127);
    }
}

static void scales_q6_K(const void *blk, float *D, float *M)
{
    const gq_block_q6_K *b = blk;
    const float d = gq_fp16(b->d);
    for (int j = 0; j < 16; j++) {
        D[j] = d * b->scales[j];
        M[j] = 0;
    }
}

/* For each half of 128: ql[l] = low nibbles of elements l (bits 0-3) and l+64 (bits 4-7),
 * ql[l+32] = those of l+32 and l+96; qh[l] = the top 2 bits of l, l+32, l+64, l+96 at bits
 * 0, 2, 4, 6. */
static void pack_q6_K(const uint8_t L[GQ_QK_K], void *blk)
{
    gq_block_q6_K *b = blk;
    for (int h = 0; h < 2; h++) {
        const uint8_t *l8 = L + 128 * h;
        uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        for (int l = 0; l < 32; l++) {
            ql[l] = (uint8_t)((l8[l] & 0xF) | (l8[l + 64] & 0xF) << 4);
            ql[l + 32] = (uint8_t)((l8[l + 32] & 0xF) | (l8[l + 96] & 0xF) << 4);
            qh[l] = (uint8_t)((l8[l] >> 4) | (l8[l + 32] >> 4) << 2 | (l8[l + 64] >> 4) << 4 |
                              (l8[l + 96] >> 4) << 6);
        }
    }
}

static void unpack_q6_K(const void *blk, uint8_t L[GQ_QK_K])
{
    const gq_block_q6_K *b = blk;
    for (int h = 0; h < 2; h++) {
        uint8_t *l8 = L + 128 * h;
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        for (int l = 0; l < 32; l++) {
            l8[l] = (uint8_t)((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4);
            l8[l + 32] = (uint8_t)((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4);
            l8[l + 64] = (uint8_t)((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4);
            l8[l + 96] = (uint8_t)((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4);
        }
    }
}

const gq_kquant gq_kq_q6_K = {16, -32, 31, fit_q6_K, scales_q6_K, pack_q6_K, unpack_q6_K};
