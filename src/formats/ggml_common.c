/* Shared ggml helpers: the scale searches of ggml-quants.c (re-derived, same float arithmetic
 * in the same order, so that results are bit-identical) and the row driver of the ggml formats. */
#include "formats/ggml_common.h"

#include <math.h>
#include <stdlib.h>

static inline int imax(int a, int b) { return a > b ? a : b; }
static inline int imin(int a, int b) { return a < b ? a : b; }

/* Weight of element i in make_qx_quants: qw if given, else by rmse_type. */
static inline float qx_weight(const float *x, const float *qw, int i, int rmse_type)
{
    if (qw)
        return qw[i];
    switch (rmse_type) {
    case 1: return x[i] * x[i];
    case 2: return 1;
    case 3: return fabsf(x[i]);
    default: return sqrtf(fabsf(x[i]));
    }
}

/* The value with the largest magnitude (first one on ties), with its sign. */
static float signed_absmax(int n, const float *x, float *amax_out)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    *amax_out = amax;
    return max;
}

/* Code l = clamp(nearest(iscale*x), -nmax, nmax-1). */
static inline int sym_code(float iscale, float x, int nmax)
{
    return imax(-nmax, imin(nmax - 1, gq_nearest_int(iscale * x)));
}

float gq_make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type,
                        const float *qw)
{
    float amax;
    float max = signed_absmax(n, x, &amax);
    if (amax < GQ_GGML_GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    if (rmse_type == 0) {
        for (int i = 0; i < n; ++i)
            L[i] = (int8_t)(nmax + sym_code(iscale, x[i], nmax));
        return 1 / iscale;
    }
    bool return_early = false;
    if (rmse_type < 0) {
        rmse_type = -rmse_type;
        return_early = true;
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = sym_code(iscale, x[i], nmax);
        L[i] = (int8_t)(l + nmax);
        float w = qx_weight(x, qw, i, rmse_type);
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    if (return_early)
        return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
    float best = scale * sumlx;
    /* Try inverse scales (nmax + 0.1*is)/max, is = -9..9, keeping the best weighted fit
     * sumlx^2/suml2 (the error reduction of the optimal scale for those codes). */
    for (int is = -9; is <= 9; ++is) {
        if (is == 0)
            continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = sym_code(iscale, x[i], nmax);
            float w = qx_weight(x, qw, i, rmse_type);
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i)
                L[i] = (int8_t)(nmax + sym_code(iscale, x[i], nmax));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

float gq_make_q3_quants(int n, int nmax, const float *x, int8_t *L, bool do_rmse)
{
    float amax;
    float max = signed_absmax(n, x, &amax);
    if (amax < GQ_GGML_GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    if (!do_rmse) {
        for (int i = 0; i < n; ++i)
            L[i] = (int8_t)(sym_code(iscale, x[i], nmax) + nmax);
        return 1 / iscale;
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = sym_code(iscale, x[i], nmax);
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    /* Coordinate descent: move one code at a time to its best value given the others. */
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = imax(-nmax, imin(nmax - 1, gq_nearest_int(x[i] * sl2 / slx)));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed)
            break;
    }
    for (int i = 0; i < n; ++i)
        L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* The weighted 2x2 least-squares refit shared by make_qkx2/3_quants: for fixed codes Laux, the
 * (scale, min) minimising sum w (scale*l + min - x)^2, with min forced to 0 when it comes out
 * positive. Returns 0 when the system is singular (D <= 0). */
static int refit_scale_min(int n, const float *x, const float *weights, const uint8_t *Laux,
                           float sum_w, float sum_x, float *scale, float *min)
{
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
        int l = Laux[i];
        float w = weights ? weights[i] : x[i] * x[i];
        sum_l += w * l;
        sum_l2 += w * l * l;
        sum_xl += w * l * x[i];
    }
    float D = sum_w * sum_l2 - sum_l * sum_l;
    if (!(D > 0))
        return 0;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
    if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
    }
    *scale = this_scale;
    *min = this_min;
    return 1;
}

/* sum w * err(scale*L + min - x), err = |.| (use_mad) or (.)^2; weights NULL means x^2. */
static float asym_error(int n, const float *x, const float *weights, const uint8_t *L,
                        float scale, float min, bool use_mad)
{
    float e = 0;
    for (int i = 0; i < n; ++i) {
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        float w = weights ? weights[i] : x[i] * x[i];
        e += w * diff;
    }
    return e;
}

/* Common body of make_qkx2_quants (clamped rounding, stops when max == min) and
 * make_qkx3_quants (guarded rounding that tolerates inf/nan, stops when max <= min). */
static float make_qkx_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                             float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                             bool use_mad, bool v3)
{
    float min = x[0], max = x[0];
    float sum_w = weights ? weights[0] : x[0] * x[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        float w = weights ? weights[i] : x[i] * x[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0)
        min = 0;
    if (v3 ? max <= min : max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    for (int i = 0; i < n; ++i)
        L[i] = (uint8_t)imax(0, imin(nmax, gq_nearest_int(iscale * (x[i] - min))));
    float best_error = asym_error(n, x, weights, L, scale, min, use_mad);
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        for (int i = 0; i < n; ++i) {
            if (v3) {
                /* min is the best fit so far and may sit near max: v can be huge or nan */
                const float v = iscale * (x[i] - min);
                Laux[i] = (uint8_t)(v > 0 ? gq_nearest_int(v < nmax ? v : (float)nmax) : 0);
            } else {
                Laux[i] = (uint8_t)imax(0, imin(nmax, gq_nearest_int(iscale * (x[i] - min))));
            }
        }
        float this_scale, this_min;
        if (!refit_scale_min(n, x, weights, Laux, sum_w, sum_x, &this_scale, &this_min))
            continue;
        float cur_error = asym_error(n, x, weights, Laux, this_scale, this_min, use_mad);
        if (cur_error < best_error) {
            memcpy(L, Laux, (size_t)n);
            best_error = cur_error;
            scale = this_scale;
            min = this_min;
        }
    }
    *the_min = -min;
    return scale;
}

float gq_make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                          float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                          bool use_mad)
{
    return make_qkx_quants(n, nmax, x, weights, L, the_min, Laux, rmin, rdelta, nstep, use_mad,
                           false);
}

float gq_make_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                          float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                          bool use_mad)
{
    return make_qkx_quants(n, nmax, x, weights, L, the_min, Laux, rmin, rdelta, nstep, use_mad,
                           true);
}

float gq_make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *quant_weights)
{
    float max = 0;
    for (int i = 0; i < n; ++i)
        max = max > x[i] ? max : x[i];
    if (max < GQ_GGML_GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    /* 1. pick the inverse scale (nmax + 0.1*is)/max, is = -4..4, with the lowest weighted MSE */
    float iscale = nmax / max;
    for (int i = 0; i < n; ++i)
        L[i] = (uint8_t)gq_nearest_int(iscale * x[i]);
    float scale = 1 / iscale;
    float best_mse = 0;
    for (int i = 0; i < n; ++i) {
        float diff = x[i] - scale * L[i];
        float w = quant_weights[i];
        best_mse += w * diff * diff;
    }
    for (int is = -4; is <= 4; ++is) {
        if (is == 0)
            continue;
        float iscale_is = (0.1f * is + nmax) / max;
        float scale_is = 1 / iscale_is;
        float mse = 0;
        for (int i = 0; i < n; ++i) {
            int l = imin(nmax, gq_nearest_int(iscale_is * x[i]));
            float diff = x[i] - scale_is * l;
            float w = quant_weights[i];
            mse += w * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    /* 2. codes for it, then coordinate descent on single codes as in make_q3_quants */
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = imin(nmax, gq_nearest_int(iscale * x[i]));
        L[i] = (uint8_t)l;
        float w = quant_weights[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            float w = quant_weights[i];
            float slx = sumlx - w * x[i] * L[i];
            float sl2 = suml2 - w * L[i] * L[i];
            if (slx > 0 && sl2 > 0) {
                int new_l = imin(nmax, gq_nearest_int(x[i] * sl2 / slx));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (uint8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed)
            break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

void gq_ggml_imatrix_weights(int n, const float *x, const float *qw, float sigma2, float *w)
{
    for (int j = 0; j < n; ++j)
        w[j] = qw[j] * sqrtf(sigma2 + x[j] * x[j]);
}

void gq_ggml_superblock_weights(int n_sub, int sub, const float *x, const float *qw,
                                float sigma2_scale, float *w, float *sw)
{
    const int n = n_sub * sub;
    float sumx2 = 0;
    for (int l = 0; l < n; l++)
        sumx2 += x[l] * x[l];
    float sigma2 = sigma2_scale * sumx2 / n;
    for (int j = 0; j < n_sub; j++) {
        gq_ggml_imatrix_weights(sub, x + sub * j, qw + sub * j, sigma2, w + sub * j);
        float sumw = 0;
        for (int l = 0; l < sub; l++)
            sumw += w[sub * j + l];
        sw[j] = sumw;
    }
}

/* ---- row driver ---------------------------------------------------------------------------- */

size_t gq_ggml_row_bytes(const gq_ggml_type *t, int cols)
{
    return (size_t)(gq_ggml_padded_cols(t, cols) / t->block_elems) * t->block_bytes;
}

size_t gq_ggml_storage_bytes(const gq_ggml_type *t, int rows, int cols)
{
    return (size_t)rows * gq_ggml_row_bytes(t, cols);
}

static int check_inputs(const gq_ggml_type *t, const float *w, int rows, int cols,
                        const float *imatrix, gq_error *err)
{
    if (rows <= 0 || cols <= 0)
        return gq_fail(err, "%s: empty matrix (%d x %d)", t->name, rows, cols);
    if (cols > INT32_MAX - t->block_elems)
        return gq_fail(err, "%s: %d columns is too many", t->name, cols);
    for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++)
        if (!isfinite(w[i]))
            return gq_fail(err, "%s: weight (row %zu, column %zu) is %g, not finite", t->name,
                           i / (size_t)cols, i % (size_t)cols, (double)w[i]);
    if (imatrix)
        for (int j = 0; j < cols; j++)
            if (!isfinite(imatrix[j]) || imatrix[j] < 0)
                return gq_fail(err, "%s: imatrix[%d] is %g (importance must be finite and >= 0)",
                               t->name, j, (double)imatrix[j]);
    return 0;
}

int gq_ggml_quantize(const gq_ggml_type *t, const float *w, int rows, int cols,
                     const float *imatrix, uint8_t *codes, float *deq, gq_error *err)
{
    if (check_inputs(t, w, rows, cols, imatrix, err))
        return -1;
    const int npad = gq_ggml_padded_cols(t, cols);
    const size_t row_bytes = gq_ggml_row_bytes(t, cols);
    const bool padded = npad != cols;

    /* Importance of the padding columns is 0: they are not weights of the model. */
    float *qw = NULL;
    if (imatrix) {
        qw = calloc((size_t)npad, sizeof *qw);
        if (!qw)
            return gq_fail(err, "%s: out of memory", t->name);
        memcpy(qw, imatrix, (size_t)cols * sizeof *qw);
    }

    int failed = 0;
#pragma omp parallel
    {
        /* per thread: a padded input row, a padded output row, a block row */
        float *xrow = padded ? calloc((size_t)npad, sizeof *xrow) : NULL;
        float *yrow = padded && deq ? malloc((size_t)npad * sizeof *yrow) : NULL;
        uint8_t *brow = codes ? NULL : malloc(row_bytes);
        if ((padded && !xrow) || (padded && deq && !yrow) || (!codes && !brow)) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp barrier
        if (!failed) {
#pragma omp for schedule(static)
            for (int r = 0; r < rows; r++) {
                const float *x = w + (size_t)r * cols;
                if (padded) {
                    memcpy(xrow, x, (size_t)cols * sizeof *xrow);
                    x = xrow; /* tail stays zero */
                }
                uint8_t *blocks = codes ? codes + (size_t)r * row_bytes : brow;
                t->quantize_row(x, qw, npad, blocks);
                if (deq) {
                    float *y = deq + (size_t)r * cols;
                    if (padded) {
                        t->dequantize_row(blocks, npad, yrow);
                        memcpy(y, yrow, (size_t)cols * sizeof *y);
                    } else {
                        t->dequantize_row(blocks, npad, y);
                    }
                }
            }
        }
        free(xrow);
        free(yrow);
        free(brow);
    }
    free(qw);
    if (failed)
        return gq_fail(err, "%s: out of memory for a %d x %d matrix", t->name, rows, cols);
    return 0;
}

int gq_ggml_dequantize(const gq_ggml_type *t, const uint8_t *codes, int rows, int cols,
                       float *out, gq_error *err)
{
    if (rows <= 0 || cols <= 0)
        return gq_fail(err, "%s: empty matrix (%d x %d)", t->name, rows, cols);
    const int npad = gq_ggml_padded_cols(t, cols);
    const size_t row_bytes = gq_ggml_row_bytes(t, cols);
    if (npad == cols) {
#pragma omp parallel for schedule(static)
        for (int r = 0; r < rows; r++)
            t->dequantize_row(codes + (size_t)r * row_bytes, npad, out + (size_t)r * cols);
        return 0;
    }
    int failed = 0;
#pragma omp parallel
    {
        float *yrow = malloc((size_t)npad * sizeof *yrow);
        if (!yrow) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp barrier
        if (!failed) {
#pragma omp for schedule(static)
            for (int r = 0; r < rows; r++) {
                t->dequantize_row(codes + (size_t)r * row_bytes, npad, yrow);
                memcpy(out + (size_t)r * cols, yrow, (size_t)cols * sizeof *out);
            }
        }
        free(yrow);
    }
    if (failed)
        return gq_fail(err, "%s: out of memory for a %d x %d matrix", t->name, rows, cols);
    return 0;
}
