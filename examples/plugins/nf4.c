/* "nf4": QLoRA's 4-bit NormalFloat (Dettmers et al. 2023), as an out-of-tree format plugin.
 *
 * Each row is cut into groups of `group_size` consecutive columns (a shorter last group is
 * allowed). A group keeps its absmax a = max |x| as an fp16 scale (the stored, rounded value
 * is the one used) and every weight becomes the index of the NF4 level nearest to x / a:
 * x^ = a * NF4[code]. The 16 levels are the quantiles of N(0, 1) normalised to [-1, 1] with an
 * exact zero (8 positive, 7 negative levels plus 0), as published with the paper.
 * Nearest means nearest in x / a; ties (x / a exactly between two levels) go to the lower
 * level. An all-zero group stores a = 0 and reconstructs to zeros.
 *
 * Storage, per row: ceil(cols / group_size) little-endian fp16 scales, then ceil(cols / 2)
 * bytes of codes, column 2j in the low nibble of byte j and 2j+1 in the high nibble. Bits per
 * weight for cols a multiple of 2 * group_size: 4 + 16 / group_size (4.25 at the default 64).
 *
 * Built as a shared module that links against nothing but libm; gq_fail, gq_fp32_to_fp16 and
 * gq_fp16_to_fp32 resolve from gq-bench at load time (`gq-bench --plugin nf4.so ...`). */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/gq_half.h"
#include "formats/gq_format.h"
#include "plugin/gq_plugin.h"

static const float nf4_levels[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

typedef struct nf4_params {
    int group_size;
} nf4_params;

static const gq_param_spec nf4_specs[] = {
    {"group_size", GQ_PARAM_INT, offsetof(nf4_params, group_size), "64", 2, 1 << 20, NULL,
     "columns per absmax group (fp16 scale each); a shorter last group is allowed"},
    {0}};

/* Index of the level nearest to t (t in [-1, 1] up to the fp16 rounding of the scale):
 * the count of midpoints strictly below t, so ties go to the lower level. */
static int nf4_code(float t)
{
    int lo = 0, hi = 15; /* answer in [lo, hi] */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        float m = 0.5f * (nf4_levels[mid] + nf4_levels[mid + 1]);
        if (t > m)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int ngroups(const nf4_params *p, int cols) { return (cols + p->group_size - 1) / p->group_size; }

static size_t row_bytes(const nf4_params *p, int cols)
{
    return 2 * (size_t)ngroups(p, cols) + ((size_t)cols + 1) / 2;
}

static void nf4_label(const void *params, char *buf, size_t n)
{
    snprintf(buf, n, "nf4 g%d", ((const nf4_params *)params)->group_size);
}

static size_t nf4_storage_bytes(const void *params, int rows, int cols)
{
    return (size_t)rows * row_bytes(params, cols);
}

/* The fp16-stored scale of x[0..n); fails on a non-finite value or an absmax beyond fp16. */
static int group_scale(const float *x, int n, int row, int col0, float *scale, gq_error *err)
{
    float a = 0.0f;
    for (int k = 0; k < n; k++) {
        if (!isfinite(x[k]))
            return gq_fail(err, "nf4: non-finite weight at row %d, column %d", row, col0 + k);
        a = fmaxf(a, fabsf(x[k]));
    }
    float s = gq_fp16_to_fp32(gq_fp32_to_fp16(a));
    if (!isfinite(s))
        return gq_fail(err, "nf4: row %d, columns %d..%d: absmax %g exceeds the fp16 range of "
                            "the scale", row, col0, col0 + n - 1, (double)a);
    *scale = s;
    return 0;
}

static int nf4_quantize(const void *params, const float *w, int rows, int cols,
                        const float *imatrix, uint8_t *codes, float *deq, gq_error *err)
{
    (void)imatrix; /* absmax scaling has no importance-weighted choice */
    const nf4_params *p = params;
    const int g = p->group_size, ng = ngroups(p, cols);
    const size_t rb = row_bytes(p, cols);
    int failed_row = rows;
    gq_error first = {{0}};
    /* Rows are independent; the first failing row (by index) reports, whatever the threads. */
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *x = w + (size_t)r * cols;
        uint8_t *out = codes ? codes + (size_t)r * rb : NULL;
        if (out)
            memset(out, 0, rb);
        for (int gi = 0; gi < ng; gi++) {
            int c0 = gi * g, n = cols - c0 < g ? cols - c0 : g;
            float s = 0.0f;
            gq_error e;
            if (group_scale(x + c0, n, r, c0, &s, &e)) {
#pragma omp critical(nf4_err)
                if (r < failed_row) {
                    failed_row = r;
                    first = e;
                }
                break;
            }
            uint16_t h = gq_fp32_to_fp16(s);
            if (out) {
                out[2 * gi] = (uint8_t)(h & 0xff);
                out[2 * gi + 1] = (uint8_t)(h >> 8);
            }
            for (int k = 0; k < n; k++) {
                int c = c0 + k;
                int q = s > 0.0f ? nf4_code(x[c] / s) : 7;
                if (out)
                    out[2 * ng + c / 2] |= (uint8_t)(q << (4 * (c & 1)));
                if (deq)
                    deq[(size_t)r * cols + c] = s * nf4_levels[q];
            }
        }
    }
    if (failed_row < rows) {
        if (err)
            *err = first;
        return -1;
    }
    return 0;
}

/* Packed kernel (src/packed): the storage as is, one row decoded at a time. */
static void nf4_dequant_row(const void *params, const uint8_t *in, int cols, float *y)
{
    const nf4_params *p = params;
    const int g = p->group_size, ng = ngroups(p, cols);
    for (int c = 0; c < cols; c++) {
        int gi = c / g;
        float s = gq_fp16_to_fp32((uint16_t)(in[2 * gi] | in[2 * gi + 1] << 8));
        y[c] = s * nf4_levels[(in[2 * ng + c / 2] >> (4 * (c & 1))) & 15];
    }
}

static int nf4_describe(const void *params, const uint8_t *storage, int rows, int cols,
                        gq_pack_codes *out, gq_error *err)
{
    (void)rows;
    (void)err;
    memset(out, 0, sizeof *out);
    out->kernel = GQ_PACK_ROWS;
    out->storage = storage;
    out->row_bytes = row_bytes(params, cols);
    return 0;
}

static const gq_packing nf4_packing = {
    .describe = nf4_describe,
    .dequant_row = nf4_dequant_row,
};

static int nf4_dequantize(const void *params, const uint8_t *codes, int rows, int cols,
                          float *out, gq_error *err)
{
    (void)err;
    const size_t rb = row_bytes(params, cols);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++)
        nf4_dequant_row(params, codes + (size_t)r * rb, cols, out + (size_t)r * cols);
    return 0;
}

/* Group interface (GPTQ): the state of a segment is its fp16-rounded absmax. */
static int nf4_group_cols(const void *params, int cols)
{
    int g = ((const nf4_params *)params)->group_size;
    return g < cols ? g : cols;
}

static void nf4_fit_group(const void *params, const float *x, int n, const float *imp,
                          void *state)
{
    (void)params;
    (void)imp;
    float a = 0.0f;
    for (int k = 0; k < n; k++)
        a = fmaxf(a, fabsf(x[k]));
    /* Beyond fp16 the scale is inf and the reconstruction non-finite: the caller's
     * quantize of the same weights reports it. */
    *(float *)state = gq_fp16_to_fp32(gq_fp32_to_fp16(a));
}

static float nf4_quant_elem(const void *params, const void *state, int k, float x)
{
    (void)params;
    (void)k;
    float s = *(const float *)state;
    return s > 0.0f ? s * nf4_levels[nf4_code(x / s)] : 0.0f;
}

static const gq_format nf4_format = {
    .name = "nf4",
    .summary = "QLoRA NormalFloat4: 16 normal-quantile levels, fp16 absmax per group (plugin)",
    .params = nf4_specs,
    .params_size = sizeof(nf4_params),
    .label = nf4_label,
    .storage_bytes = nf4_storage_bytes,
    .quantize = nf4_quantize,
    .dequantize = nf4_dequantize,
    .packing = &nf4_packing,
    .group_cols = nf4_group_cols,
    .group_state_bytes = sizeof(float),
    .fit_group = nf4_fit_group,
    .quant_elem = nf4_quant_elem,
};

const int gq_plugin_abi = GQ_PLUGIN_ABI;

int gq_plugin_init(const gq_plugin_host *host, gq_error *err)
{
    return host->register_format(&nf4_format, err);
}
