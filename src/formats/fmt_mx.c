/* "mx": OCP Microscaling (MX v1.0) formats: blocks of 32 consecutive columns share an E8M0
 * scale X = 2^e (e in -127..127), elements are FP4 E2M1, FP6 E3M2/E2M3, FP8 E4M3/E5M2 or
 * INT8 (MXINT8: two's complement with an implicit 2^-6, so values -127/64..127/64).
 *
 * Shared exponent ("scale_rule"), with amax = max |x| of the block and emax the exponent of
 * the element's largest normal (2, 4, 2, 8, 15; 0 for int8), all exponents read from the
 * float's bits:
 *   floor  e = floor(log2 amax) - emax (spec §6.3, default; the block max may saturate)
 *   ceil   e = ceil(log2 amax) - emax
 *   even   amax first rounded to the element's mantissa width (half up in magnitude, may
 *          carry into the next binade), then floor
 *   rceil  e = ceil(log2(amax / max_normal)) (no element saturates)
 * clamped to -127..127. An all-zero block stores e = -127 (byte 0; E8M0 has no zero) and
 * zero elements. Elements: x / X rounded to nearest, ties to even, saturating at max normal
 * (minifloat.c; int8: rint(64 x/X) clamped to +-127).
 *
 * Storage (layout of grid.h): meta record per block = the E8M0 byte (e + 127); code = the
 * element bits (4, 6 or 8). Every row is stored as whole blocks: a partial last block is
 * zero-padded and its padding is counted. MXFP4 = 4.25 bits per weight, MXFP6 = 6.25,
 * MXFP8/MXINT8 = 8.25. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/gq_half.h"
#include "formats/gq_format.h"
#include "formats/grid.h"
#include "formats/grid_kernels.h"
#include "formats/minifloat.h"

#define MX_BLOCK 32

enum { EL_FP4, EL_FP6_E3M2, EL_FP6_E2M3, EL_FP8_E4M3, EL_FP8_E5M2, EL_INT8 };
enum { RULE_FLOOR, RULE_CEIL, RULE_EVEN, RULE_RCEIL };

typedef struct mx_params {
    int element;
    int scale_rule;
} mx_params;

typedef struct mx_state {
    int exp; /* unbiased shared exponent, -127..127 */
} mx_state;

static const char *const element_names[] = {"fp4_e2m1", "fp6_e3m2", "fp6_e2m3", "fp8_e4m3",
                                            "fp8_e5m2", "int8", NULL};
static const char *const element_labels[] = {"mxfp4", "mxfp6_e3m2", "mxfp6_e2m3",
                                             "mxfp8_e4m3", "mxfp8_e5m2", "mxint8"};
static const gq_minifloat *const elements[] = {&gq_mf_e2m1, &gq_mf_e3m2, &gq_mf_e2m3,
                                               &gq_mf_e4m3, &gq_mf_e5m2, NULL};
static const char *const rule_names[] = {"floor", "ceil", "even", "rceil", NULL};

static const gq_param_spec mx_specs[] = {
    {"element", GQ_PARAM_CHOICE, offsetof(mx_params, element), "fp4_e2m1", 0, 0, element_names,
     "element format of the 32-element blocks"},
    {"scale_rule", GQ_PARAM_CHOICE, offsetof(mx_params, scale_rule), "floor", 0, 0, rule_names,
     "shared exponent: floor (spec), ceil, even (round amax to element mantissa), rceil"},
    {0}};

#define INT8_MAX_VALUE (127.0f / 64.0f)

static int el_emax(const mx_params *p) { return p->element == EL_INT8 ? 0 : elements[p->element]->emax; }
static int el_mbits(const mx_params *p) { return p->element == EL_INT8 ? 6 : elements[p->element]->mbits; }
static float el_max(const mx_params *p)
{
    return p->element == EL_INT8 ? INT8_MAX_VALUE : elements[p->element]->max;
}

static int shared_exp(const mx_params *p, float amax)
{
    if (amax == 0.0f)
        return -127;
    int e;
    switch (p->scale_rule) {
    case RULE_CEIL:
        e = gq_ceil_log2f(amax) - el_emax(p);
        break;
    case RULE_EVEN: {
        int drop = 23 - el_mbits(p);
        uint32_t u = gq_f32_bits(amax);
        u = (u + (1u << (drop - 1))) & ~((1u << drop) - 1u);
        e = gq_floor_log2f(gq_f32_from_bits(u)) - el_emax(p);
        break;
    }
    case RULE_RCEIL: {
        float r = amax / el_max(p);
        e = r > 0.0f ? gq_ceil_log2f(r) : -127;
        break;
    }
    default:
        e = gq_floor_log2f(amax) - el_emax(p);
        break;
    }
    return e < -127 ? -127 : e > 127 ? 127 : e;
}

static void mx_fit(const void *pv, const float *x, int n, const float *imp, void *sv)
{
    (void)imp;
    float amax = 0.0f;
    for (int i = 0; i < n; i++)
        amax = grid_maxf(amax, fabsf(x[i]));
    ((mx_state *)sv)->exp = shared_exp(pv, amax);
}

static void mx_encode(const void *pv, const void *sv, const float *x, int n, uint32_t *codes,
                      float *y)
{
    const mx_params *p = pv;
    int e = ((const mx_state *)sv)->exp;
    const float X = ldexpf(1.0f, e), inv = ldexpf(1.0f, -e);
    if (p->element == EL_INT8) {
        for (int i = 0; i < n; i++) {
            /* + 0.0f: -0 becomes +0, the value code 0 decodes to */
            float q = grid_clampf(rintf(x[i] * inv * 64.0f), -127.0f, 127.0f) + 0.0f;
            if (codes)
                codes[i] = (uint32_t)(uint8_t)(int8_t)q;
            if (y)
                y[i] = q * (1.0f / 64.0f) * X;
        }
        return;
    }
    const gq_minifloat *f = elements[p->element];
    for (int i = 0; i < n; i++) {
        float v;
        uint32_t c = gq_mf_encode(f, x[i] * inv, &v);
        if (codes)
            codes[i] = c;
        if (y)
            y[i] = v * X;
    }
}

static void mx_decode(const void *pv, const void *sv, const uint32_t *codes, int n, float *y)
{
    const mx_params *p = pv;
    const float X = ldexpf(1.0f, ((const mx_state *)sv)->exp);
    if (p->element == EL_INT8) {
        for (int i = 0; i < n; i++)
            y[i] = (float)(int8_t)(uint8_t)codes[i] * (1.0f / 64.0f) * X;
        return;
    }
    const gq_minifloat *f = elements[p->element];
    for (int i = 0; i < n; i++)
        y[i] = gq_mf_decode(f, codes[i]) * X;
}

/* ---- fast path (grid_fast.c): FP elements through the table (mf_table.h) --------------- */

static bool mx_fast_ok(const void *pv)
{
    (void)pv;
    return true;
}

static void mx_fit_fast(const void *pv, const float *x, size_t n, float amax, void *sv)
{
    (void)x, (void)n;
    ((mx_state *)sv)->exp = shared_exp(pv, amax);
}

/* X = 2^e and inv = 2^-e as mx_encode's ldexpf calls give them, without the calls; 2^-127 is
 * the one power below gq_pow2f's range. */
static inline void mx_scales(int e, float *X, float *inv)
{
    *X = e > -127 ? gq_pow2f(e) : ldexpf(1.0f, e);
    *inv = e < 127 ? gq_pow2f(-e) : ldexpf(1.0f, -e);
}

static void mx_encode_fast(const void *pv, const void *sv, const float *x, int n, uint8_t *codes,
                           float *y)
{
    const mx_params *p = pv;
    float X, inv;
    mx_scales(((const mx_state *)sv)->exp, &X, &inv);
    if (p->element == EL_INT8)
        grid_encode_tail(mx_encode, pv, sv, x, grid_k_mxint8_encode(x, n, inv, X, codes, y), n,
                         codes, y);
    else
        grid_k_mf_encode(gq_mf_table_of(elements[p->element]), x, n, inv, false, X, codes, y);
}

static int mx_meta_bits(const void *pv)
{
    (void)pv;
    return 8;
}

static void mx_meta_write(const void *pv, const void *sv, uint8_t *buf, size_t pos)
{
    (void)pv;
    grid_put_record(buf, pos, (uint64_t)(((const mx_state *)sv)->exp + 127), 8);
}

/* A row of blocks: the blocks' largest magnitudes, then the shared exponents and records of up
 * to ROW_BATCH blocks and their FP elements in one kernel call (INT8 elements block by
 * block). */
#define ROW_BATCH 64
static uint32_t mx_row_fast(const void *pv, const float *x, int cols, int gc,
                            uint32_t *amax_bits, uint8_t *codes, float *y, uint8_t *meta,
                            size_t rec0)
{
    const uint32_t row_max = grid_k_group_absmax_bits(x, (size_t)cols, (size_t)gc, amax_bits);
    if (row_max >= 0x7f800000u) /* a non-finite weight: the driver's group-by-group path */
        return row_max;
    const mx_params *p = pv;
    const gq_mf_table *t = p->element == EL_INT8 ? NULL : gq_mf_table_of(elements[p->element]);
    const int ngr = (cols + gc - 1) / gc;
    float X[ROW_BATCH], inv[ROW_BATCH];
    for (int g0 = 0; g0 < ngr; g0 += ROW_BATCH) {
        const int nb = ngr - g0 < ROW_BATCH ? ngr - g0 : ROW_BATCH, c0 = g0 * gc;
        const int n = cols - c0 < nb * gc ? cols - c0 : nb * gc;
        uint8_t *cb = codes ? codes + c0 : NULL;
        float *yb = y ? y + c0 : NULL;
        for (int j = 0; j < nb; j++) {
            const mx_state st = {shared_exp(p, gq_f32_from_bits(amax_bits[g0 + j]))};
            mx_scales(st.exp, &X[j], &inv[j]);
            if (meta)
                mx_meta_write(pv, &st, meta, (rec0 + (size_t)(g0 + j)) * 8u);
            if (!t)
                mx_encode_fast(pv, &st, x + c0 + j * gc, n - j * gc < gc ? n - j * gc : gc,
                               cb ? cb + j * gc : NULL, yb ? yb + j * gc : NULL);
        }
        if (t)
            grid_k_mf_encode_groups(t, x + c0, n, gc, inv, false, X, cb, yb);
    }
    return row_max;
}

static void mx_meta_read(const void *pv, const uint8_t *buf, size_t pos, void *sv)
{
    (void)pv;
    ((mx_state *)sv)->exp = (int)grid_get_bits(buf, pos, 8) - 127;
}

static int mx_group_cols(const void *pv, int cols)
{
    (void)pv;
    (void)cols;
    return MX_BLOCK;
}

static int mx_elem_bits(const void *pv)
{
    const mx_params *p = pv;
    return p->element == EL_INT8 ? 8 : gq_mf_bits(elements[p->element]);
}

static const grid_ops mx_ops = {
    .name = "mx",
    .fast_ok = mx_fast_ok,
    .fit_fast = mx_fit_fast,
    .encode_fast = mx_encode_fast,
    .row_fast = mx_row_fast,
    .group_cols = mx_group_cols,
    .elem_bits = mx_elem_bits,
    .meta_bits = mx_meta_bits,
    .pad_groups = true,
    .state_bytes = sizeof(mx_state),
    .fit = mx_fit,
    .encode = mx_encode,
    .decode = mx_decode,
    .meta_write = mx_meta_write,
    .meta_read = mx_meta_read,
};

static void mx_label(const void *pv, char *buf, size_t n)
{
    const mx_params *p = pv;
    snprintf(buf, n, "%s%s%s", element_labels[p->element], p->scale_rule ? " " : "",
             p->scale_rule ? rule_names[p->scale_rule] : "");
}

static size_t mx_storage_bytes(const void *p, int rows, int cols)
{
    return grid_storage_bytes(&mx_ops, p, rows, cols);
}

static int mx_quantize(const void *p, const float *w, int rows, int cols, const float *imatrix,
                       uint8_t *codes, float *deq, gq_error *err)
{
    return grid_quantize(&mx_ops, p, w, rows, cols, imatrix, codes, deq, err);
}

static int mx_dequantize(const void *p, const uint8_t *codes, int rows, int cols, float *out,
                         gq_error *err)
{
    return grid_dequantize(&mx_ops, p, codes, rows, cols, out, err);
}

static float mx_quant_elem(const void *p, const void *state, int k, float x)
{
    (void)k;
    return grid_quant_elem(&mx_ops, p, state, x);
}

static int mx_store_groups(const void *p, const void *states, const float *q, int rows,
                          int cols, uint8_t *codes, gq_error *err)
{
    return grid_store_groups(&mx_ops, p, states, q, rows, cols, codes, err);
}

const gq_format gq_format_mx = {
    .name = "mx",
    .summary = "OCP MX v1.0: 32-element blocks with an E8M0 scale; FP4/FP6/FP8/INT8 elements",
    .params = mx_specs,
    .params_size = sizeof(mx_params),
    .label = mx_label,
    .storage_bytes = mx_storage_bytes,
    .quantize = mx_quantize,
    .dequantize = mx_dequantize,
    .group_cols = mx_group_cols,
    .group_state_bytes = sizeof(mx_state),
    .fit_group = mx_fit,
    .quant_elem = mx_quant_elem,
    .store_groups = mx_store_groups,
};
