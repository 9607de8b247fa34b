#include "methods/gq_linalg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_gemm.h"

/* Row-oriented (Cholesky-Crout) factorisation: row i of L needs rows 0..i-1, and every entry
 * is a dot product of two contiguous row prefixes, so the inner loop vectorises; the rows
 * below the current column are independent and run in parallel. */
int gq_cholesky_lower(double *a, int n, int *bad_col)
{
    for (int j = 0; j < n; j++) {
        double *rj = a + (size_t)j * n;
        double s = rj[j];
        for (int k = 0; k < j; k++)
            s -= rj[k] * rj[k];
        if (!(s > 0.0) || !isfinite(s)) {
            if (bad_col)
                *bad_col = j;
            return -1;
        }
        double djj = sqrt(s);
        rj[j] = djj;
        double inv = 1.0 / djj;
#pragma omp parallel for schedule(static) if ((size_t)(n - j) * j > 65536)
        for (int i = j + 1; i < n; i++) {
            double *ri = a + (size_t)i * n;
            double t = ri[j];
            for (int k = 0; k < j; k++)
                t -= ri[k] * rj[k];
            ri[j] = t * inv;
        }
    }
    for (int i = 0; i < n; i++)
        memset(a + (size_t)i * n + i + 1, 0, (size_t)(n - i - 1) * sizeof *a);
    return 0;
}

int gq_inverse_cholesky_upper(double *h, int n, gq_error *err)
{
    int bad = -1;
    if (gq_cholesky_lower(h, n, &bad))
        return gq_fail(err, "Cholesky of H failed at column %d (H not positive definite)", bad);
    /* X = L^-1 (lower): solve L X = I. */
    double *x = calloc((size_t)n * n, sizeof *x);
    if (!x)
        return gq_fail(err, "out of memory for a %d x %d inverse", n, n);
    for (int i = 0; i < n; i++)
        x[(size_t)i * n + i] = 1.0;
    gq_dtrsm_lower(n, n, h, n, x, n);
    /* h^-1 = L^-T L^-1 = X^T X (upper triangle, then mirrored). */
    gq_dsyrk_upper_t(n, n, 1.0, x, n, 0.0, h, n);
    free(x);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            h[(size_t)j * n + i] = h[(size_t)i * n + j];
    if (gq_cholesky_lower(h, n, &bad))
        return gq_fail(err, "Cholesky of H^-1 failed at column %d", bad);
    /* U = L2^T */
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            h[(size_t)i * n + j] = h[(size_t)j * n + i];
            h[(size_t)j * n + i] = 0.0;
        }
    return 0;
}
