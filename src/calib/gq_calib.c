#include "calib/gq_calib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_alloc.h"
#include "core/gq_gemm.h"

int gq_calib_windows(const gq_dataset *ds, size_t first, int n, int ctx, uint64_t seed,
                     int **tokens, gq_error *err)
{
    *tokens = NULL;
    if (n <= 0 || ctx <= 0)
        return gq_fail(err, "calibration: need n_calib > 0 and calib_ctx > 0 (got %d, %d)", n, ctx);
    size_t *off = NULL;
    if (gq_dataset_calib_offsets(ds, first, n, ctx, seed, &off, err))
        return -1;
    int *t = malloc((size_t)n * ctx * sizeof *t);
    if (!t) {
        free(off);
        return gq_fail(err, "calibration: out of memory for %d x %d tokens", n, ctx);
    }
    for (int i = 0; i < n; i++)
        memcpy(t + (size_t)i * ctx, ds->tokens + off[i], (size_t)ctx * sizeof *t);
    free(off);
    *tokens = t;
    return 0;
}

/* Column reduction out[j] = mean_t f(x[t, j]), threads over column blocks so the summation
 * order (and the result) does not depend on the thread count. */
static void column_mean(const float *x, size_t n, int d, float *out, int square)
{
#pragma omp parallel for schedule(static) if (n * (size_t)d > 65536)
    for (int j0 = 0; j0 < d; j0 += 64) {
        int j1 = j0 + 64 < d ? j0 + 64 : d;
        double acc[64] = {0};
        for (size_t t = 0; t < n; t++) {
            const float *row = x + t * (size_t)d;
            for (int j = j0; j < j1; j++) {
                double v = row[j];
                acc[j - j0] += square ? v * v : fabs(v);
            }
        }
        for (int j = j0; j < j1; j++)
            out[j] = n ? (float)(acc[j - j0] / (double)n) : 0.0f;
    }
}

void gq_calib_abs_mean(const float *x, size_t n, int d, float *out) { column_mean(x, n, d, out, 0); }
void gq_calib_sq_mean(const float *x, size_t n, int d, float *out) { column_mean(x, n, d, out, 1); }

int gq_hessian_init(gq_hessian *H, int d, gq_error *err)
{
    H->d = d;
    H->n = 0;
    H->h = gq_calloc_big((size_t)d * d, sizeof *H->h);
    if (!H->h)
        return gq_fail(err, "Hessian: out of memory for %d x %d doubles", d, d);
    return 0;
}

int gq_hessian_add(gq_hessian *H, const float *x, size_t n, gq_error *err)
{
    /* Chunks of rows converted to double, then a rank-k update of the upper triangle. */
    const size_t chunk = 256;
    const int d = H->d;
    double *xd = gq_alloc_big(chunk * (size_t)d * sizeof *xd);
    if (!xd)
        return gq_fail(err, "Hessian: out of memory");
    for (size_t t0 = 0; t0 < n; t0 += chunk) {
        size_t m = n - t0 < chunk ? n - t0 : chunk;
        for (size_t i = 0; i < m * (size_t)d; i++)
            xd[i] = x[t0 * (size_t)d + i];
        /* h (d, d) += xd^T (d, m) xd (m, d) */
        gq_dsyrk_upper_t(d, (int)m, 1.0, xd, d, 1.0, H->h, d);
    }
    H->n += n;
    free(xd);
    return 0;
}

void gq_hessian_finish(gq_hessian *H)
{
    const int d = H->d;
    double s = H->n ? 2.0 / (double)H->n : 0.0;
    for (int i = 0; i < d; i++)
        for (int j = i; j < d; j++) {
            double v = H->h[(size_t)i * d + j] * s;
            H->h[(size_t)i * d + j] = v;
            H->h[(size_t)j * d + i] = v;
        }
}

void gq_hessian_free(gq_hessian *H)
{
    free(H->h);
    H->h = NULL;
}
