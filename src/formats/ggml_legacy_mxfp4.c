/* llama.cpp's MXFP4 block ("mxfp4_ggml"): 32 weights, one E8M0 exponent e, 4-bit E2M1 codes.
 *
 * This is ggml's variant, kept bit-exact with quantize_row_mxfp4_ref (the OCP "mx" format is a
 * separate plugin):
 *   - e = floor(log2f(amax)) - 2 + 127 (FLOOR rule, emax(E2M1) = 2) computed with log2f exactly
 *     as ggml does, so for amax just below a power of two e can be one above the exponent read
 *     from the float bits; e = 0 for an all-zero block. Blocks with amax < 2^-125 (where ggml's
 *     conversion is undefined) also get e = 0, the smallest scale.
 *   - element values are gq_kvalues_mxfp4 (doubled E2M1) times d = 2^(e-127)/2;
 *   - encoding is an exhaustive nearest-value search, the FIRST index winning ties (so 0.75
 *     goes to 0.5, 1.75 to 1.5, 3.5 to 3: not round-half-even); values beyond 6*2^(e-127)
 *     saturate to +-6 (codes 7 / 15). */
#include "formats/ggml_legacy.h"

#include <math.h>

const int8_t gq_kvalues_mxfp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

float gq_e8m0_to_fp32_half(uint8_t e)
{
    /* 2^(e-128): for e >= 2 a normal float with biased exponent e-1; below, the subnormals
     * 2^-128 (bit 21) and 2^-127 (bit 22). */
    uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    return gq_f32_from_bits(bits);
}

static uint8_t mxfp4_exponent(const float *x, int n)
{
    float amax = 0.0f;
    for (int j = 0; j < n; j++)
        if (amax < fabsf(x[j]))
            amax = fabsf(x[j]);
    if (!(amax > 0.0f))
        return 0;
    float e = floorf(log2f(amax)) - 2 + 127;
    return e > 0 ? (uint8_t)e : 0;
}

/* Index of the nearest element value kv[i]*d to x; the first index wins ties. */
static uint8_t mxfp4_best_index(float x, float d)
{
    int best = 0;
    float best_err = fabsf(gq_kvalues_mxfp4[0] * d - x);
    for (int i = 1; i < 16; i++) {
        float err = fabsf(gq_kvalues_mxfp4[i] * d - x);
        if (err < best_err) {
            best = i;
            best_err = err;
        }
    }
    return (uint8_t)best;
}

static void quantize_row_mxfp4(const float *x, const float *qw, int n, void *blocks)
{
    (void)qw; /* ggml's quantize_mxfp4 ignores importance weights */
    gq_block_mxfp4 *b = blocks;
    for (int i = 0; i < n / GQ_QK; i++) {
        const float *xb = x + GQ_QK * i;
        b[i].e = mxfp4_exponent(xb, GQ_QK);
        const float d = gq_e8m0_to_fp32_half(b[i].e);
        for (int j = 0; j < GQ_QK / 2; ++j)
            b[i].qs[j] = (uint8_t)(mxfp4_best_index(xb[j], d) |
                                   mxfp4_best_index(xb[j + GQ_QK / 2], d) << 4);
    }
}

static void dequant_row_mxfp4(const void *blocks, int n, float *y)
{
    const gq_block_mxfp4 *b = blocks;
    for (int i = 0; i < n / GQ_QK; i++) {
        const float d = gq_e8m0_to_fp32_half(b[i].e);
        for (int j = 0; j < GQ_QK / 2; ++j) {
            y[i * GQ_QK + j] = gq_kvalues_mxfp4[b[i].qs[j] & 0x0F] * d;
            y[i * GQ_QK + j + GQ_QK / 2] = gq_kvalues_mxfp4[b[i].qs[j] >> 4] * d;
        }
    }
}

const gq_ggml_type gq_ggml_mxfp4 = {"mxfp4_ggml", GQ_QK, sizeof(gq_block_mxfp4),
                                    quantize_row_mxfp4, dequant_row_mxfp4};

/* Group interface: the block exponent from a segment of n <= 32 values (zero padding cannot
 * change amax), then nearest element value. */
static int mxfp4_group_cols(const void *params, int cols)
{
    (void)params;
    (void)cols;
    return GQ_QK;
}

static void mxfp4_fit(const void *params, const float *x, int n, const float *imp, void *state)
{
    (void)params;
    (void)imp;
    float d = gq_e8m0_to_fp32_half(mxfp4_exponent(x, n < GQ_QK ? n : GQ_QK));
    memcpy(state, &d, sizeof d);
}

static float mxfp4_elem(const void *params, const void *state, int k, float x)
{
    (void)params;
    (void)k;
    float d;
    memcpy(&d, state, sizeof d);
    return gq_kvalues_mxfp4[mxfp4_best_index(x, d)] * d;
}

/* store_groups (gq_format.h): states (d = 2^(e-127)/2) per (row, 32-column block); the
 * exponent byte whose d it is, and each element's index of its reconstruction q = value * d
 * (exact: d is a power of two). Padding columns are stored as zeros. */
static int mxfp4_store(const void *params, const void *states, const float *q, int rows,
                       int cols, uint8_t *codes, gq_error *err)
{
    (void)params;
    const int nb = (cols + GQ_QK - 1) / GQ_QK;
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < nb; b++) {
            float d;
            memcpy(&d, (const float *)states + (size_t)r * nb + b, sizeof d);
            int e = 0;
            while (e < 256 && gq_e8m0_to_fp32_half((uint8_t)e) != d)
                e++;
            if (e == 256)
                return gq_fail(err, "mxfp4_ggml: group scale %g is no E8M0 value", (double)d);
            gq_block_mxfp4 *o = (gq_block_mxfp4 *)codes + (size_t)r * nb + b;
            o->e = (uint8_t)e;
            uint8_t idx[GQ_QK];
            for (int j = 0; j < GQ_QK; j++) {
                const int col = b * GQ_QK + j;
                idx[j] = mxfp4_best_index(col < cols ? q[(size_t)r * cols + col] : 0.0f, d);
            }
            for (int j = 0; j < GQ_QK / 2; j++)
                o->qs[j] = (uint8_t)(idx[j] | idx[j + GQ_QK / 2] << 4);
        }
    return 0;
}

GQ_GGML_PACKING(mxfp4_packing, GQ_PACK_MXFP4, gq_block_mxfp4, GQ_QK, offsetof(gq_block_mxfp4, qs));

GQ_GGML_FORMAT(gq_format_mxfp4_ggml, gq_ggml_mxfp4, "mxfp4_ggml",
               "llama.cpp MXFP4 block: 32 weights, E8M0 exponent, E2M1 codes, first-index ties "
               "(4.25 bpw)",
               .group_cols = mxfp4_group_cols, .group_state_bytes = sizeof(float),
               .fit_group = mxfp4_fit, .quant_elem = mxfp4_elem, .store_groups = mxfp4_store,
               .packing = &mxfp4_packing);
