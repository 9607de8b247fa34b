/* Dense inverse in double precision and the diagonal-dominance test. */
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_gemm.h"
#include "grad/gq_grad.h"

int gq_mat_inverse(double *inv, const double *A, int n, const char *what, gq_error *err)
{
    /* LU with partial pivoting and the inverse from it (dgetrf, dgetri), single-threaded so
     * that the result does not depend on the thread count. LAPACK reads the row-major A as
     * Aᵀ and returns (Aᵀ)⁻¹ column-major, which is A⁻¹ row-major. */
    const size_t nn = (size_t)n * n;
    lapack_int *ipiv = malloc((size_t)n * sizeof *ipiv);
    if (!ipiv) return gq_fail(err, "%s: out of memory inverting a %d x %d matrix", what, n, n);
    memcpy(inv, A, nn * sizeof *inv);
    double amax = 0;
    for (size_t i = 0; i < nn; i++) amax = fmax(amax, fabs(A[i]));
    int info = 0, bad = -1;
#pragma omp parallel num_threads(1)
    {
        gq_blas_single_threaded();
        info = LAPACKE_dgetrf_work(LAPACK_COL_MAJOR, n, n, inv, n, ipiv);
        for (int c = 0; info >= 0 && c < n && bad < 0; c++)
            if (!(fabs(inv[(size_t)c * n + c]) > 1e-13 * amax)) bad = c;
        if (info == 0 && bad < 0) info = LAPACKE_dgetri(LAPACK_COL_MAJOR, n, inv, n, ipiv);
    }
    free(ipiv);
    if (bad >= 0)
        return gq_fail(err, "%s: matrix (%d x %d) is singular (pivot %g at column %d)", what, n,
                       n, inv[(size_t)bad * n + bad], bad);
    if (info != 0)
        return gq_fail(err, "%s: LAPACK failed inverting a %d x %d matrix (info %d)", what, n,
                       n, (int)info);
    return 0;
}

bool gq_diag_dominant_f(const float *A, int n)
{
    for (int i = 0; i < n; i++) {
        double off = 0;
        for (int j = 0; j < n; j++)
            if (j != i) off += fabs((double)A[(size_t)i * n + j]);
        if (!(fabs((double)A[(size_t)i * n + i]) > off)) return false;
    }
    return true;
}
