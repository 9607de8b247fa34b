/* Dense inverse in double precision and the diagonal-dominance test. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "grad/gq_grad.h"

int gq_mat_inverse(double *inv, const double *A, int n, const char *what, gq_error *err)
{
    /* Gauss-Jordan on [A | I] kept as two n x n arrays; partial pivoting by rows. */
    double *a = malloc((size_t)n * n * sizeof *a);
    if (!a) return gq_fail(err, "%s: out of memory inverting a %d x %d matrix", what, n, n);
    memcpy(a, A, (size_t)n * n * sizeof *a);
    double amax = 0;
    for (size_t i = 0; i < (size_t)n * n; i++) amax = fmax(amax, fabs(a[i]));
    memset(inv, 0, (size_t)n * n * sizeof *inv);
    for (int i = 0; i < n; i++) inv[(size_t)i * n + i] = 1;
    for (int c = 0; c < n; c++) {
        int piv = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(a[(size_t)r * n + c]) > fabs(a[(size_t)piv * n + c])) piv = r;
        double pv = a[(size_t)piv * n + c];
        if (!(fabs(pv) > 1e-13 * amax)) {
            free(a);
            return gq_fail(err, "%s: matrix (%d x %d) is singular (pivot %g at column %d)", what,
                           n, n, pv, c);
        }
        if (piv != c)
            for (int j = 0; j < n; j++) {
                double t = a[(size_t)c * n + j];
                a[(size_t)c * n + j] = a[(size_t)piv * n + j];
                a[(size_t)piv * n + j] = t;
                t = inv[(size_t)c * n + j];
                inv[(size_t)c * n + j] = inv[(size_t)piv * n + j];
                inv[(size_t)piv * n + j] = t;
            }
        double ip = 1.0 / pv;
        for (int j = 0; j < n; j++) {
            a[(size_t)c * n + j] *= ip;
            inv[(size_t)c * n + j] *= ip;
        }
#pragma omp parallel for schedule(static) if (n >= 256)
        for (int r = 0; r < n; r++) {
            if (r == c) continue;
            double f = a[(size_t)r * n + c];
            if (f == 0) continue;
            for (int j = 0; j < n; j++) {
                a[(size_t)r * n + j] -= f * a[(size_t)c * n + j];
                inv[(size_t)r * n + j] -= f * inv[(size_t)c * n + j];
            }
        }
    }
    free(a);
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
