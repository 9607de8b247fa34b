#include "methods/gq_linalg.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_gemm.h"

/* dpotrf on the (n, n) diagonal block at a (row stride lda), single-threaded. A row-major
 * upper triangle is LAPACK's column-major lower one, so no copy is needed. Returns LAPACK's
 * info (k > 0: the leading minor of order k is not positive definite). */
static int potrf_block(double *a, int n, int lda)
{
    int info = 0;
#pragma omp parallel num_threads(1)
    {
        gq_blas_single_threaded();
        info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', n, a, lda);
    }
    return info;
}

/* For each column tile [j0, j0 + nj) of X (fixed width GQ_GEMM_TILE_N): solves
 * op(R) X[0:m, tile] = X[0:m, tile] with R upper triangular, m = n, or m = j0 + nj when
 * `growing` (the rows a triangular inverse's tile has). One single-threaded dtrsm per tile. */
static void trsm_column_tiles(CBLAS_TRANSPOSE op, int growing, int n, int nrhs, const double *R,
                              int ldr, double *X, int ldx)
{
    const int tiles = (nrhs + GQ_GEMM_TILE_N - 1) / GQ_GEMM_TILE_N;
#pragma omp parallel if (tiles > 1 && (double)n * n * nrhs > 1e6)
    {
        gq_blas_single_threaded();
#pragma omp for schedule(dynamic, 1)
        for (int t = tiles - 1; t >= 0; t--) { /* the largest first */
            const int j0 = t * GQ_GEMM_TILE_N;
            const int nj = nrhs - j0 < GQ_GEMM_TILE_N ? nrhs - j0 : GQ_GEMM_TILE_N;
            const int m = growing ? j0 + nj : n;
            cblas_dtrsm(CblasRowMajor, CblasLeft, CblasUpper, op, CblasNonUnit, m, nj, 1.0, R,
                        ldr, X + j0, ldx);
        }
    }
}

int gq_cholesky_upper(double *a, int n, int *bad_col)
{
    for (int k = 0; k < n; k += GQ_LINALG_BLOCK) {
        const int kb = n - k < GQ_LINALG_BLOCK ? n - k : GQ_LINALG_BLOCK, m = n - k - kb;
        double *a11 = a + (size_t)k * n + k, *a12 = a11 + kb, *a22 = a11 + (size_t)kb * n + kb;
        int info = potrf_block(a11, kb, n);
        if (info != 0) {
            if (bad_col)
                *bad_col = k + (info > 0 ? info - 1 : 0);
            return -1;
        }
        if (m == 0)
            break;
        /* U12 = U11^-T A12, then A22 -= U12^T U12 (upper triangle) */
        trsm_column_tiles(CblasTrans, 0, kb, m, a11, n, a12, n);
        gq_dsyrk_upper_t(m, kb, -1.0, a12, n, 1.0, a22, n);
    }
    return 0;
}

void gq_triangular_inverse_upper(const double *r, int n, double *x)
{
    for (int i = 0; i < n; i++) {
        memset(x + (size_t)i * n, 0, (size_t)n * sizeof *x);
        x[(size_t)i * n + i] = 1.0;
    }
    trsm_column_tiles(CblasNoTrans, 1, n, n, r, n, x, n);
}

/* u = J x^T J in float for x (n, n) upper triangular: u[i][j] = x[n-1-j][n-1-i] (upper), zeros
 * below the diagonal; in square tiles so that the transposed reads stay in cache. */
static void reflect_to_float(const double *x, int n, float *u)
{
    enum { TS = 64 };
#pragma omp parallel for schedule(static) if ((size_t)n * n > 1 << 20)
    for (int i0 = 0; i0 < n; i0 += TS) {
        const int i1 = i0 + TS < n ? i0 + TS : n;
        for (int i = i0; i < i1; i++)
            memset(u + (size_t)i * n, 0, (size_t)i * sizeof *u);
        for (int j0 = i0; j0 < n; j0 += TS) {
            const int j1 = j0 + TS < n ? j0 + TS : n;
            for (int i = i0; i < i1; i++)
                for (int j = i > j0 ? i : j0; j < j1; j++)
                    u[(size_t)i * n + j] = (float)x[(size_t)(n - 1 - j) * n + (n - 1 - i)];
        }
    }
}

int gq_inverse_cholesky_upper(double *h, int n, const int *perm, double damp, float *u,
                              int *bad_col, gq_error *err)
{
    /* plain pages, not gq_alloc_big: only the upper triangle is touched */
    double *m = malloc((size_t)n * n * sizeof *m);
    if (!m)
        return gq_fail(err, "out of memory for a %d x %d factorisation", n, n);
    /* m = J (P^T h P + damp I) J, upper triangle: m[i][j] = h[p(n-1-i)][p(n-1-j)] */
    for (int i = 0; i < n; i++) {
        const int pi = perm ? perm[n - 1 - i] : n - 1 - i;
        for (int j = i; j < n; j++) {
            const int pj = perm ? perm[n - 1 - j] : n - 1 - j;
            m[(size_t)i * n + j] = pi <= pj ? h[(size_t)pi * n + pj] : h[(size_t)pj * n + pi];
        }
        m[(size_t)i * n + i] += damp;
    }
    int bad = 0;
    if (gq_cholesky_upper(m, n, &bad)) {
        free(m);
        if (bad_col)
            *bad_col = n - 1 - bad;
        return gq_fail(err, "Cholesky of H failed at column %d (H not positive definite)",
                       n - 1 - bad);
    }
    gq_triangular_inverse_upper(m, n, h); /* h = R^-1 */
    free(m);
    reflect_to_float(h, n, u);
    return 0;
}
