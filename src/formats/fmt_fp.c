/* "fp": small-float elements (FP4 E2M1, FP8 E4M3, FP8 E5M2) with a scale per tensor, channel
 * or group.
 *
 * s = amax / max_normal (6, 448 or 57344), stored in fp16 (default) or fp32; the stored value
 * is the one used. Each element is x/s rounded to the element grid (minifloat.c: nearest,
 * ties to even, subnormals, saturating at max normal, never Inf/NaN) and x^ = s * e. A group
 * of zeros stores s = 0 and reconstructs to zeros.
 *
 * Storage (layout of grid.h): meta record per group = the scale (16 bits of fp16 or 32 of
 * fp32); code = the element's sign|exponent|mantissa bits (4 or 8). FP8 per channel on 4096
 * columns = 8 + 16/4096 bits per weight; FP4 g32 fp16 = 4.5. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>

#include "core/gq_half.h"
#include "formats/gq_format.h"
#include "formats/grid.h"
#include "formats/grid_kernels.h"
#include "formats/minifloat.h"

typedef struct fp_params {
    int element;
    int granularity;
    int group_size;
    int scale_dtype;
} fp_params;

typedef struct fp_state {
    float scale;
} fp_state;

static const char *const element_names[] = {"e2m1", "e4m3", "e5m2", NULL};
static const gq_minifloat *const elements[] = {&gq_mf_e2m1, &gq_mf_e4m3, &gq_mf_e5m2};
static const char *const element_labels[] = {"fp4_e2m1", "fp8_e4m3", "fp8_e5m2"};

static const gq_param_spec fp_specs[] = {
    {"element", GQ_PARAM_CHOICE, offsetof(fp_params, element), "e4m3", 0, 0, element_names,
     "element format: FP4 E2M1 (max 6), FP8 E4M3 (OCP, no Inf, max 448), FP8 E5M2 (max 57344)"},
    {"granularity", GQ_PARAM_CHOICE, offsetof(fp_params, granularity), "channel", 0, 0,
     grid_granularity_names, "one scale per tensor, per row (channel) or per group of columns"},
    {"group_size", GQ_PARAM_INT, offsetof(fp_params, group_size), "32", 1, 1 << 20, NULL,
     "columns per group (granularity group); a shorter last group is allowed"},
    {"scale_dtype", GQ_PARAM_CHOICE, offsetof(fp_params, scale_dtype), "fp16", 0, 0,
     grid_scale_dtype_names, "storage of the scales (the stored value is the one used)"},
    {0}};

static const gq_minifloat *elem(const void *pv)
{
    return elements[((const fp_params *)pv)->element];
}

static void fp_fit(const void *pv, const float *x, int n, const float *imp, void *sv)
{
    (void)imp;
    const fp_params *p = pv;
    float amax = 0.0f;
    for (int i = 0; i < n; i++)
        amax = grid_maxf(amax, fabsf(x[i]));
    ((fp_state *)sv)->scale = grid_scale_store(p->scale_dtype, amax / elem(pv)->max);
}

static void fp_encode(const void *pv, const void *sv, const float *x, int n, uint32_t *codes,
                      float *y)
{
    const gq_minifloat *f = elem(pv);
    const float s = ((const fp_state *)sv)->scale;
    for (int i = 0; i < n; i++) {
        float e;
        uint32_t c = gq_mf_encode(f, s > 0.0f ? x[i] / s : 0.0f, &e);
        if (codes)
            codes[i] = c;
        if (y)
            y[i] = e * s;
    }
}

static void fp_decode(const void *pv, const void *sv, const uint32_t *codes, int n, float *y)
{
    const gq_minifloat *f = elem(pv);
    const float s = ((const fp_state *)sv)->scale;
    for (int i = 0; i < n; i++)
        y[i] = gq_mf_decode(f, codes[i]) * s;
}

/* ---- fast path (grid_fast.c): elements through the table (mf_table.h) ------------------ */

static bool fp_fast_ok(const void *pv)
{
    (void)pv;
    return true;
}

static void fp_fit_fast(const void *pv, const float *x, size_t n, float amax, void *sv)
{
    (void)x, (void)n;
    const fp_params *p = pv;
    ((fp_state *)sv)->scale = grid_scale_store(p->scale_dtype, amax / elem(pv)->max);
}

static void fp_encode_fast(const void *pv, const void *sv, const float *x, int n, uint8_t *codes,
                           float *y)
{
    const float s = ((const fp_state *)sv)->scale;
    grid_k_mf_encode(gq_mf_table_of(elem(pv)), x, n, s, true, s, codes, y);
}

static int fp_meta_bits(const void *pv)
{
    return grid_scale_bits(((const fp_params *)pv)->scale_dtype);
}

static void fp_meta_write(const void *pv, const void *sv, uint8_t *buf, size_t pos)
{
    const float s = ((const fp_state *)sv)->scale;
    if (fp_meta_bits(pv) == 16)
        grid_put_record(buf, pos, grid_fp16_bits(s), 16);
    else
        grid_put_record(buf, pos, gq_f32_bits(s), 32);
}

static void fp_meta_read(const void *pv, const uint8_t *buf, size_t pos, void *sv)
{
    uint32_t v = grid_get_bits(buf, pos, fp_meta_bits(pv));
    ((fp_state *)sv)->scale =
        fp_meta_bits(pv) == 16 ? gq_fp16_to_fp32((uint16_t)v) : gq_f32_from_bits(v);
}

/* A row of groups: the groups' largest magnitudes, then the scales and records of up to
 * ROW_BATCH groups and their elements in one kernel call. */
#define ROW_BATCH 64
static uint32_t fp_row_fast(const void *pv, const float *x, int cols, int gc,
                            uint32_t *amax_bits, uint8_t *codes, float *y, uint8_t *meta,
                            size_t rec0)
{
    const uint32_t row_max = grid_k_group_absmax_bits(x, (size_t)cols, (size_t)gc, amax_bits);
    if (row_max >= 0x7f800000u) /* a non-finite weight: the driver's group-by-group path */
        return row_max;
    const fp_params *p = pv;
    const gq_mf_table *t = gq_mf_table_of(elem(pv));
    const float max = elem(pv)->max;
    const size_t mb = (size_t)fp_meta_bits(pv);
    const int ngr = (cols + gc - 1) / gc;
    float s[ROW_BATCH];
    for (int g0 = 0; g0 < ngr; g0 += ROW_BATCH) {
        const int nb = ngr - g0 < ROW_BATCH ? ngr - g0 : ROW_BATCH, c0 = g0 * gc;
        for (int j = 0; j < nb; j++) {
            const fp_state st = {grid_scale_store(p->scale_dtype,
                                                  gq_f32_from_bits(amax_bits[g0 + j]) / max)};
            s[j] = st.scale;
            if (meta)
                fp_meta_write(pv, &st, meta, (rec0 + (size_t)(g0 + j)) * mb);
        }
        const int n = cols - c0 < nb * gc ? cols - c0 : nb * gc;
        grid_k_mf_encode_groups(t, x + c0, n, gc, s, true, s, codes ? codes + c0 : NULL,
                                y ? y + c0 : NULL);
    }
    return row_max;
}

static int fp_check_amax(const void *pv, float amax, gq_error *err)
{
    return grid_scale_check(((const fp_params *)pv)->scale_dtype, amax / elem(pv)->max, "fp",
                            err);
}

static int fp_group_cols(const void *pv, int cols)
{
    const fp_params *p = pv;
    return grid_group_cols(p->granularity, p->group_size, cols);
}

static int fp_elem_bits(const void *pv) { return gq_mf_bits(elem(pv)); }

static const grid_ops fp_ops = {
    .name = "fp",
    .fast_ok = fp_fast_ok,
    .fit_fast = fp_fit_fast,
    .encode_fast = fp_encode_fast,
    .row_fast = fp_row_fast,
    .group_cols = fp_group_cols,
    .elem_bits = fp_elem_bits,
    .meta_bits = fp_meta_bits,
    .pad_groups = false,
    .state_bytes = sizeof(fp_state),
    .check_amax = fp_check_amax,
    .fit = fp_fit,
    .encode = fp_encode,
    .decode = fp_decode,
    .meta_write = fp_meta_write,
    .meta_read = fp_meta_read,
};

static void fp_label(const void *pv, char *buf, size_t n)
{
    const fp_params *p = pv;
    char gran[32];
    grid_granularity_label(p->granularity, p->group_size, gran, sizeof gran);
    snprintf(buf, n, "%s %s%s", element_labels[p->element], gran,
             p->scale_dtype == GRID_SCALE_FP32 ? " fp32scale" : "");
}

static size_t fp_storage_bytes(const void *p, int rows, int cols)
{
    return grid_storage_bytes(&fp_ops, p, rows, cols);
}

static int fp_quantize(const void *p, const float *w, int rows, int cols, const float *imatrix,
                       uint8_t *codes, float *deq, gq_error *err)
{
    return grid_quantize(&fp_ops, p, w, rows, cols, imatrix, codes, deq, err);
}

static int fp_dequantize(const void *p, const uint8_t *codes, int rows, int cols, float *out,
                         gq_error *err)
{
    return grid_dequantize(&fp_ops, p, codes, rows, cols, out, err);
}

static float fp_quant_elem(const void *p, const void *state, int k, float x)
{
    (void)k;
    return grid_quant_elem(&fp_ops, p, state, x);
}

static int fp_store_groups(const void *p, const void *states, const float *q, int rows,
                          int cols, uint8_t *codes, gq_error *err)
{
    return grid_store_groups(&fp_ops, p, states, q, rows, cols, codes, err);
}

const gq_format gq_format_fp = {
    .name = "fp",
    .summary = "FP4 E2M1 / FP8 E4M3 / FP8 E5M2 elements, scale amax/max_normal per tensor/channel/group",
    .params = fp_specs,
    .params_size = sizeof(fp_params),
    .label = fp_label,
    .storage_bytes = fp_storage_bytes,
    .quantize = fp_quantize,
    .dequantize = fp_dequantize,
    .group_cols = fp_group_cols,
    .group_state_bytes = sizeof(fp_state),
    .fit_group = fp_fit,
    .quant_elem = fp_quant_elem,
    .store_groups = fp_store_groups,
};
