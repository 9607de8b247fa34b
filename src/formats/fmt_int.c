/* "int": uniform integer grid of b bits with a scale per tensor, channel or group.
 *
 * Zero-point conventions ("zero"), with qs = 2^(b-1) - 1 and maxq = 2^b - 1:
 *   sym       AWQ's symmetric grid: s = amax / qs, q = clamp(round(x/s), -qs, qs), x^ = s*q
 *             (2^b - 1 levels, symmetric around 0).
 *   sym_gptq  GPTQ's "sym": range [lo, hi] forced to contain 0, amax = max(-lo, hi),
 *             s = 2*amax / maxq, z = 2^(b-1), q = clamp(round(x/s) + z, 0, maxq),
 *             x^ = s*(q - z) (levels -2^(b-1)..2^(b-1)-1; +amax lands on z + maxq/2 + 1/2,
 *             which rounds and clamps to maxq).
 *   asym      min-max with an integer zero point (GPTQ/AWQ): lo = min(min x, 0),
 *             hi = max(max x, 0), s = (hi - lo)/maxq, z = clamp(round(-lo/s), 0, maxq),
 *             q = clamp(round(x/s) + z, 0, maxq), x^ = s*(q - z).
 * A group of zeros uses the range [-1, 1] (GPTQ), so the scale is never 0 by construction; it
 * reconstructs to exact zeros. The scale is stored in fp16 (default) or fp32 and the stored
 * value is the one used: z is computed from the fp16-rounded scale. "round" is half to even
 * (torch.round, default) or half away from zero (C roundf); it applies to q and z.
 *
 * Clip search ("clip_search": "mse", GPTQ's Quantizer with mse=True): for i in
 * [0, floor(maxshrink*grid)), shrink the range to [p*lo, p*hi] with p = 1 - i/grid, and keep
 * the first candidate with the smallest sum of imp_k * |x^_k - x_k|^norm (imp = 1 without an
 * importance vector).
 *
 * Storage (layout of grid.h): meta record per group = scale (16 bits of fp16 or 32 bits of
 * fp32) followed, for asym only, by the zero point z (b bits); code = q + qs for sym, q for
 * sym_gptq and asym (b bits). Per tensor: one record. INT4 g128 asym fp16 = 4 + 20/128 =
 * 4.15625 bits per weight; sym g128 = 4.125. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_half.h"
#include "formats/gq_format.h"
#include "formats/gq_packing.h"
#include "formats/grid.h"
#include "formats/grid_kernels.h"

enum { ZERO_SYM = 0, ZERO_SYM_GPTQ = 1, ZERO_ASYM = 2 };
enum { CLIP_NONE = 0, CLIP_MSE = 1 };

typedef struct int_params {
    int bits;
    int granularity;
    int group_size;
    int zero;
    int rounding;
    int clip_search;
    int grid;
    double maxshrink;
    double norm;
    int scale_dtype;
} int_params;

typedef struct int_state {
    float scale;
    int zero;
} int_state;

static const char *const zero_names[] = {"sym", "sym_gptq", "asym", NULL};
static const char *const clip_names[] = {"none", "mse", NULL};

static const gq_param_spec int_specs[] = {
    {"bits", GQ_PARAM_INT, offsetof(int_params, bits), "4", 2, 8, NULL, "bits per weight"},
    {"granularity", GQ_PARAM_CHOICE, offsetof(int_params, granularity), "group", 0, 0,
     grid_granularity_names, "one scale per tensor, per row (channel) or per group of columns"},
    {"group_size", GQ_PARAM_INT, offsetof(int_params, group_size), "128", 1, 1 << 20, NULL,
     "columns per group (granularity group); a shorter last group is allowed"},
    {"zero", GQ_PARAM_CHOICE, offsetof(int_params, zero), "asym", 0, 0, zero_names,
     "sym: s=amax/(2^(b-1)-1); sym_gptq: GPTQ z=2^(b-1), s=2amax/(2^b-1); asym: min-max, integer z"},
    {"rounding", GQ_PARAM_CHOICE, offsetof(int_params, rounding), "even", 0, 0,
     grid_rounding_names, "ties: half to even (torch.round) or half away from zero (roundf)"},
    {"clip_search", GQ_PARAM_CHOICE, offsetof(int_params, clip_search), "none", 0, 0, clip_names,
     "mse: GPTQ's range-shrink grid search minimizing sum |q-x|^norm"},
    {"grid", GQ_PARAM_INT, offsetof(int_params, grid), "100", 1, 10000, NULL,
     "clip search: shrink step 1/grid"},
    {"maxshrink", GQ_PARAM_FLOAT, offsetof(int_params, maxshrink), "0.8", 0, 1, NULL,
     "clip search: candidates p = 1 - i/grid for i < maxshrink*grid"},
    {"norm", GQ_PARAM_FLOAT, offsetof(int_params, norm), "2.4", 0.1, 16, NULL,
     "clip search: error exponent"},
    {"scale_dtype", GQ_PARAM_CHOICE, offsetof(int_params, scale_dtype), "fp16", 0, 0,
     grid_scale_dtype_names, "storage of the scales (the stored value is the one used)"},
    {0}};

static inline float rnd(const int_params *p, float v)
{
    return p->rounding == GRID_ROUND_EVEN ? rintf(v) : roundf(v);
}

static int maxq(const int_params *p) { return (1 << p->bits) - 1; }
static int qsym(const int_params *p) { return (1 << (p->bits - 1)) - 1; }
static int qmin(const int_params *p) { return p->zero == ZERO_SYM ? -qsym(p) : 0; }
static int qmax(const int_params *p) { return p->zero == ZERO_SYM ? qsym(p) : maxq(p); }

/* State for the range [lo, hi] (lo <= 0 <= hi). */
static int_state state_from_range(const int_params *p, float lo, float hi)
{
    int_state s = {0.0f, 0};
    if (lo == 0.0f && hi == 0.0f) {
        lo = -1.0f;
        hi = 1.0f;
    }
    float amax = -lo > hi ? -lo : hi;
    switch (p->zero) {
    case ZERO_SYM:
        s.scale = grid_scale_store(p->scale_dtype, amax / (float)qsym(p));
        break;
    case ZERO_SYM_GPTQ:
        s.scale = grid_scale_store(p->scale_dtype, 2.0f * amax / (float)maxq(p));
        s.zero = 1 << (p->bits - 1);
        break;
    default: {
        s.scale = grid_scale_store(p->scale_dtype, (hi - lo) / (float)maxq(p));
        float z = s.scale > 0.0f ? rnd(p, -lo / s.scale) : 0.0f;
        s.zero = (int)grid_clampf(z, 0.0f, (float)maxq(p));
        break;
    }
    }
    return s;
}

/* The grid level of x under state s: round(x / scale) + zero clamped to [lo, hi] (a float
 * holding an integer). */
static inline float int_level(const int_params *p, const int_state *s, float lo, float hi,
                              float x)
{
    float t = s->scale > 0.0f ? x / s->scale : 0.0f;
    return grid_clampf(rnd(p, t) + (float)s->zero, lo, hi);
}

static void int_encode(const void *pv, const void *sv, const float *x, int n, uint32_t *codes,
                       float *y)
{
    const int_params *p = pv;
    const int_state *s = sv;
    const float lo = (float)qmin(p), hi = (float)qmax(p), z = (float)s->zero, sc = s->scale;
    for (int i = 0; i < n; i++) {
        float q = int_level(p, s, lo, hi, x[i]);
        if (codes)
            codes[i] = (uint32_t)(int)(q - lo);
        if (y)
            y[i] = sc * (q - z);
    }
}

static void int_decode(const void *pv, const void *sv, const uint32_t *codes, int n, float *y)
{
    const int_params *p = pv;
    const int_state *s = sv;
    const float off = (float)qmin(p) - (float)s->zero;
    for (int i = 0; i < n; i++)
        y[i] = s->scale * ((float)codes[i] + off);
}

/* Weighted error sum imp_k * |x^_k - x_k|^norm of a candidate state. */
static double clip_error(const int_params *p, const int_state *s, const float *x, int n,
                         const float *imp)
{
    double e = 0.0;
    const float norm = (float)p->norm;
    for (int i0 = 0; i0 < n; i0 += 256) {
        float y[256];
        int m = n - i0 < 256 ? n - i0 : 256;
        int_encode(p, s, x + i0, m, NULL, y);
        for (int i = 0; i < m; i++) {
            float d = powf(fabsf(y[i] - x[i0 + i]), norm);
            e += imp ? (double)imp[i0 + i] * d : (double)d;
        }
    }
    return e;
}

static void int_fit(const void *pv, const float *x, int n, const float *imp, void *sv)
{
    const int_params *p = pv;
    float lo = 0.0f, hi = 0.0f;
    for (int i = 0; i < n; i++) {
        lo = grid_minf(lo, x[i]);
        hi = grid_maxf(hi, x[i]);
    }
    int_state best = state_from_range(p, lo, hi);
    if (p->clip_search == CLIP_MSE && (lo != 0.0f || hi != 0.0f)) {
        double best_err = INFINITY;
        int steps = (int)(p->maxshrink * p->grid);
        for (int i = 0; i < steps; i++) {
            float sh = 1.0f - (float)i / (float)p->grid;
            int_state c = state_from_range(p, sh * lo, sh * hi);
            double e = clip_error(p, &c, x, n, imp);
            if (e < best_err) {
                best_err = e;
                best = c;
            }
        }
    }
    *(int_state *)sv = best;
}

/* ---- fast path (grid_fast.c): no clip search, so no importance ------------------------- */

static bool int_fast_ok(const void *pv) { return ((const int_params *)pv)->clip_search == CLIP_NONE; }

/* int_fit: the range [min(0, min x), max(0, max x)]; a whole tensor in parallel pieces (an
 * OpenMP construct costs more than a group's work, so groups stay outside one). */
static void int_fit_fast(const void *pv, const float *x, size_t n, float amax, void *sv)
{
    (void)amax;
    const size_t piece = (size_t)1 << 16;
    float lo = 0.0f, hi = 0.0f;
    if (n <= piece) {
        grid_k_minmax(x, n, &lo, &hi);
    } else {
#pragma omp parallel for reduction(min : lo) reduction(max : hi) schedule(static)
        for (size_t i0 = 0; i0 < n; i0 += piece) {
            float l, h;
            grid_k_minmax(x + i0, n - i0 < piece ? n - i0 : piece, &l, &h);
            lo = grid_minf(lo, l);
            hi = grid_maxf(hi, h);
        }
    }
    *(int_state *)sv = state_from_range(pv, lo, hi);
}

static void int_encode_fast(const void *pv, const void *sv, const float *x, int n,
                            uint8_t *codes, float *y)
{
    const int_params *p = pv;
    const int_state *s = sv;
    const grid_k_int k = {s->scale, (float)s->zero, (float)qmin(p), (float)qmax(p),
                          p->rounding == GRID_ROUND_AWAY, false};
    grid_encode_tail(int_encode, pv, sv, x, grid_k_int_encode(&k, x, n, codes, y), n, codes, y);
}

static int int_meta_bits(const void *pv)
{
    const int_params *p = pv;
    return grid_scale_bits(p->scale_dtype) + (p->zero == ZERO_ASYM ? p->bits : 0);
}

/* The meta records of n states (scale[j], zero[j]): the scale's bits, then the zero point's
 * where it is stored (asym); one loop per part, so that each vectorises. */
static void int_records(const int_params *p, const float *scale, const float *zero, int n,
                        int sb, uint64_t *rec)
{
    if (sb == 16)
        for (int j = 0; j < n; j++)
            rec[j] = grid_fp16_bits(scale[j]);
    else
        for (int j = 0; j < n; j++)
            rec[j] = gq_f32_bits(scale[j]);
    if (p->zero == ZERO_ASYM)
        for (int j = 0; j < n; j++)
            rec[j] |= (uint64_t)(uint32_t)zero[j] << sb;
}

static void int_meta_write(const void *pv, const void *sv, uint8_t *buf, size_t pos)
{
    const int_params *p = pv;
    const int_state *s = sv;
    const float zero = (float)s->zero;
    uint64_t rec;
    int_records(p, &s->scale, &zero, 1, grid_scale_bits(p->scale_dtype), &rec);
    grid_put_record(buf, pos, rec, int_meta_bits(pv));
}

/* Elements [from, m) of a group by the reference (int_encode), codes one a byte, or, packed4,
 * two a byte from the group's first byte (from even), through a few bytes at a time. */
static void int_rest(const void *pv, const int_state *st, const float *x, int from, int m,
                     uint8_t *codes, bool packed4, float *y)
{
    if (!packed4 || !codes) {
        grid_encode_tail(int_encode, pv, st, x, from, m, codes, y);
        return;
    }
    uint8_t bytes[64];
    for (int i = from; i < m; i += 64) {
        const int k = m - i < 64 ? m - i : 64;
        grid_encode_tail(int_encode, pv, st, x + i, 0, k, bytes, y ? y + i : NULL);
        grid_pack8(codes, (size_t)i * 4, bytes, (size_t)k, 4);
    }
}

/* A row of groups (grid.h row_fast), ROW_BATCH groups at a time: their ranges (with the largest
 * magnitudes, in one pass), states (grid_k_int_states, the last few by state_from_range) and
 * records, then their elements in one kernel call; what the kernel leaves of a group (the last
 * few columns, or all of a group whose scale is 0) through int_rest. */
#define ROW_BATCH 64
static uint32_t int_row(const int_params *p, const float *x, int cols, int gc, uint8_t *codes,
                        bool packed4, float *y, uint8_t *meta, size_t rec0)
{
    const int sb = grid_scale_bits(p->scale_dtype), mb = int_meta_bits(p);
    const int ngr = (cols + gc - 1) / gc;
    const grid_k_int_rule rule = {p->zero == ZERO_SYM        ? GRID_K_INT_SYM
                                  : p->zero == ZERO_SYM_GPTQ ? GRID_K_INT_SYM_GPTQ
                                                             : GRID_K_INT_ASYM,
                                  (float)qsym(p), (float)maxq(p), (float)(1 << (p->bits - 1)),
                                  p->scale_dtype == GRID_SCALE_FP16,
                                  p->rounding == GRID_ROUND_AWAY};
    float lo[ROW_BATCH], hi[ROW_BATCH], s[ROW_BATCH], z[ROW_BATCH];
    uint64_t rec[ROW_BATCH];
    uint32_t row_max = 0;
    for (int g0 = 0; g0 < ngr; g0 += ROW_BATCH) {
        const int nb = ngr - g0 < ROW_BATCH ? ngr - g0 : ROW_BATCH, c0 = g0 * gc;
        const int n = cols - c0 < nb * gc ? cols - c0 : nb * gc;
        const uint32_t bmax = grid_k_group_range(x + c0, (size_t)n, (size_t)gc, lo, hi);
        row_max = bmax > row_max ? bmax : row_max;
        if (bmax >= 0x7f800000u) /* a non-finite weight: the driver's group-by-group path */
            return bmax;
        for (int j = grid_k_int_states(&rule, lo, hi, nb, s, z); j < nb; j++) {
            const int_state st = state_from_range(p, lo[j], hi[j]);
            s[j] = st.scale;
            z[j] = (float)st.zero;
        }
        if (meta) {
            int_records(p, s, z, nb, sb, rec);
            grid_put_records(meta, (rec0 + (size_t)g0) * (size_t)mb, rec, nb, mb);
        }
        const grid_k_int_groups k = {s, z, (float)qmin(p), (float)qmax(p),
                                     p->rounding == GRID_ROUND_AWAY, packed4};
        uint8_t *cb = codes ? codes + (packed4 ? c0 / 2 : c0) : NULL;
        float *yb = y ? y + c0 : NULL;
        grid_k_int_encode_groups(&k, x + c0, n, gc, cb, yb);
        for (int j = 0, o = 0; j < nb; j++, o += gc) {
            const int m = n - o < gc ? n - o : gc, lead = grid_k_int_lead(s[j], m);
            if (lead == m)
                continue;
            const int_state st = {s[j], (int)z[j]};
            int_rest(p, &st, x + c0 + o, lead, m, cb ? cb + (packed4 ? o / 2 : o) : NULL,
                     packed4, yb ? yb + o : NULL);
        }
    }
    return row_max;
}

static uint32_t int_row_fast(const void *pv, const float *x, int cols, int gc, uint32_t *gbits,
                             uint8_t *codes, float *y, uint8_t *meta, size_t rec0)
{
    (void)gbits;
    return int_row(pv, x, cols, gc, codes, false, y, meta, rec0);
}

static uint32_t int_row_fast_packed4(const void *pv, const float *x, int cols, int gc,
                                     uint32_t *gbits, uint8_t *codes, float *y, uint8_t *meta,
                                     size_t rec0)
{
    (void)gbits;
    return int_row(pv, x, cols, gc, codes, true, y, meta, rec0);
}

static void int_meta_read(const void *pv, const uint8_t *buf, size_t pos, void *sv)
{
    const int_params *p = pv;
    int_state *s = sv;
    int sb = grid_scale_bits(p->scale_dtype);
    uint32_t v = grid_get_bits(buf, pos, sb);
    s->scale = sb == 16 ? gq_fp16_to_fp32((uint16_t)v) : gq_f32_from_bits(v);
    s->zero = p->zero == ZERO_ASYM    ? (int)grid_get_bits(buf, pos + (size_t)sb, p->bits)
              : p->zero == ZERO_SYM_GPTQ ? 1 << (p->bits - 1)
                                       : 0;
}

static int int_check_amax(const void *pv, float amax, gq_error *err)
{
    const int_params *p = pv;
    double a = amax > 0.0f ? amax : 1.0;
    double smax = p->zero == ZERO_SYM ? a / qsym(p) : 2.0 * a / maxq(p);
    return grid_scale_check(p->scale_dtype, smax, "int", err);
}

static int int_group_cols(const void *pv, int cols)
{
    const int_params *p = pv;
    return grid_group_cols(p->granularity, p->group_size, cols);
}

static int int_elem_bits(const void *pv) { return ((const int_params *)pv)->bits; }

static const grid_ops int_ops = {
    .name = "int",
    .fast_ok = int_fast_ok,
    .fit_fast = int_fit_fast,
    .encode_fast = int_encode_fast,
    .row_fast = int_row_fast,
    .row_fast_packed4 = int_row_fast_packed4,
    .group_cols = int_group_cols,
    .elem_bits = int_elem_bits,
    .meta_bits = int_meta_bits,
    .pad_groups = false,
    .state_bytes = sizeof(int_state),
    .check_amax = int_check_amax,
    .fit = int_fit,
    .encode = int_encode,
    .decode = int_decode,
    .meta_write = int_meta_write,
    .meta_read = int_meta_read,
};

static int int_validate(const void *pv, const char *path, gq_error *err)
{
    const int_params *p = pv;
    if (p->clip_search == CLIP_MSE && (int)(p->maxshrink * p->grid) < 1)
        return gq_fail(err, "%s.maxshrink: maxshrink * grid = %g leaves no clipping candidate "
                       "(needs >= 1)", path, p->maxshrink * p->grid);
    return 0;
}

static void int_label(const void *pv, char *buf, size_t n)
{
    const int_params *p = pv;
    char gran[32];
    grid_granularity_label(p->granularity, p->group_size, gran, sizeof gran);
    snprintf(buf, n, "int%d %s %s%s%s%s", p->bits, gran, zero_names[p->zero],
             p->clip_search == CLIP_MSE ? " mse" : "",
             p->scale_dtype == GRID_SCALE_FP32 ? " fp32scale" : "",
             p->rounding == GRID_ROUND_AWAY ? " away" : "");
}

static size_t int_storage_bytes(const void *p, int rows, int cols)
{
    return grid_storage_bytes(&int_ops, p, rows, cols);
}

static int int_quantize(const void *p, const float *w, int rows, int cols, const float *imatrix,
                        uint8_t *codes, float *deq, gq_error *err)
{
    return grid_quantize(&int_ops, p, w, rows, cols, imatrix, codes, deq, err);
}

static int int_dequantize(const void *p, const uint8_t *codes, int rows, int cols, float *out,
                          gq_error *err)
{
    return grid_dequantize(&int_ops, p, codes, rows, cols, out, err);
}

/* One element as int_encode reconstructs it, without the call through the grid's encode (this
 * is GPTQ's inner loop). */
static float int_quant_elem(const void *pv, const void *state, int k, float x)
{
    (void)k;
    const int_params *p = pv;
    const int_state *s = state;
    return s->scale * (int_level(p, s, (float)qmin(p), (float)qmax(p), x) - (float)s->zero);
}

/* ---- packed kernels: int4 and int8 with fp16 scales (GQ_PACK_INT) ---------------------- */

static bool int_pack_supported(const void *pv, int rows, int cols, char *why, size_t n)
{
    (void)rows;
    const int_params *p = pv;
    if (p->bits != 4 && p->bits != 8)
        return snprintf(why, n, "int%d: packed kernels exist for 4 and 8 bits only", p->bits),
               false;
    if (p->scale_dtype != GRID_SCALE_FP16)
        return snprintf(why, n, "int%d: the packed layout stores fp16 scales (scale_dtype %s)",
                        p->bits, grid_scale_dtype_names[p->scale_dtype]), false;
    if (p->granularity == GRID_GROUP && p->group_size % 32 != 0 &&
        (cols <= 0 || p->group_size < cols))
        return snprintf(why, n, "int%d g%d: packed groups must be a multiple of 32 columns",
                        p->bits, p->group_size), false;
    return true;
}

/* The grid storage (meta records of fp16 scale [+ zero point], then the codes) as codes,
 * scales and zero points per (row, group); one group per row when the storage group spans
 * the row (per channel) or the tensor (one record, repeated on every row). */
static int int_pack_describe(const void *pv, const uint8_t *st, int rows, int cols,
                             gq_pack_codes *out, gq_error *err)
{
    const int_params *p = pv;
    const bool asym = p->zero == ZERO_ASYM, tensor = p->granularity == GRID_TENSOR;
    const int gc = int_group_cols(pv, cols), sg = tensor ? 1 : (cols + gc - 1) / gc;
    const int meta_bits = int_meta_bits(pv);
    const size_t n_records = tensor ? 1 : (size_t)rows * sg;
    const size_t code_pos = (n_records * meta_bits + 7) / 8 * 8;
    memset(out, 0, sizeof *out);
    out->kernel = GQ_PACK_INT;
    out->bits = p->bits;
    out->group = !tensor && gc < cols ? gc : 0;
    out->zconst = p->zero == ZERO_SYM ? qsym(p) : 1 << (p->bits - 1);
    const int ng = out->group ? sg : 1;
    out->codes = malloc((size_t)rows * cols);
    out->scales = malloc((size_t)rows * ng * sizeof *out->scales);
    out->zeros = asym ? malloc((size_t)rows * ng) : NULL;
    if (!out->codes || !out->scales || (asym && !out->zeros)) {
        gq_pack_codes_free(out);
        return gq_fail(err, "int: out of memory for the packed codes of %d x %d", rows, cols);
    }
    for (int r = 0; r < rows; r++) {
        for (int g = 0; g < ng; g++) {
            size_t pos = (tensor ? 0 : (size_t)r * sg + (size_t)g) * (size_t)meta_bits;
            out->scales[(size_t)r * ng + g] = (uint16_t)grid_get_bits(st, pos, 16);
            if (asym)
                out->zeros[(size_t)r * ng + g] = (uint8_t)grid_get_bits(st, pos + 16, p->bits);
        }
        for (int j = 0; j < cols; j++)
            out->codes[(size_t)r * cols + j] =
                (uint8_t)grid_get_bits(st, code_pos + ((size_t)r * cols + j) * p->bits, p->bits);
    }
    return 0;
}

static const gq_packing int_packing = {
    .supported = int_pack_supported,
    .describe = int_pack_describe,
};

static int int_store_groups(const void *p, const void *states, const float *q, int rows,
                          int cols, uint8_t *codes, gq_error *err)
{
    return grid_store_groups(&int_ops, p, states, q, rows, cols, codes, err);
}

const gq_format gq_format_int = {
    .name = "int",
    .summary = "uniform INT2..8 grid, per tensor/channel/group, sym/sym_gptq/asym zero point",
    .params = int_specs,
    .params_size = sizeof(int_params),
    .validate = int_validate,
    .label = int_label,
    .storage_bytes = int_storage_bytes,
    .quantize = int_quantize,
    .dequantize = int_dequantize,
    .packing = &int_packing,
    .group_cols = int_group_cols,
    .group_state_bytes = sizeof(int_state),
    .fit_group = int_fit,
    .quant_elem = int_quant_elem,
    .store_groups = int_store_groups,
};
