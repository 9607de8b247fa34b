/* The product check the packed tests share (packed_products.h). */
#include "packed_products.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

float *packed_check_products(const gq_packed_linear *P, const float *w, int rows, int cols,
                             const char *what)
{
    enum { N = PACKED_CHECK_N };
    float *x = malloc((size_t)N * cols * sizeof *x), *y = malloc((size_t)N * rows * sizeof *y);
    float *yr = malloc((size_t)rows * sizeof *yr), *y1 = malloc((size_t)rows * sizeof *y1);
    uint32_t s = 12345;
    for (int i = 0; i < N * cols; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((int)(s >> 8) % 2001 - 1000) / 1000.0f;
    }
    gq_packed_linear_apply(P, y, x, N);
    for (int t = 0; t < N; t++) {
        const float *xt = x + (size_t)t * cols;
        gq_packed_linear_apply(P, y1, xt, 1);
        gq_packed_linear_matvec_ref(P, yr, xt);
        for (int r = 0; r < rows; r++) {
            double want = 0.0, mag = 0.0;
            for (int j = 0; j < cols; j++) {
                want += (double)w[(size_t)r * cols + j] * xt[j];
                mag += fabs((double)w[(size_t)r * cols + j] * xt[j]);
            }
            const double tol = 1e-5 * mag + 1e-6;
            const float got[3] = {y[(size_t)t * rows + r], y1[r], yr[r]};
            for (int i = 0; i < 3; i++)
                if (fabs(got[i] - want) > tol)
                    fail_msg("%s row %d: product %d gives %g, the evaluated weights %g", what, r,
                             i, (double)got[i], want);
        }
    }
    free(y), free(yr), free(y1);
    return x;
}
