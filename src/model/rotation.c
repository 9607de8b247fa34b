/* Kronecker-structured rotations (gq_rotation.h): the fast Walsh-Hadamard transform along the
 * rows of X (m, p), then the dense block B^T across them. */
#include "model/gq_rotation.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* t (p) <- H_p t, unnormalised butterflies over strides 1, 2, 4, ... */
static void fwht(double *t, int p)
{
    for (int h = 1; h < p; h *= 2)
        for (int i = 0; i < p; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                const double a = t[j], b = t[j + h];
                t[j] = a + b;
                t[j + h] = a - b;
            }
}

/* y (m, p) = B^T x (m, p): y[a', :] = sum_a B[a][a'] x[a, :]. */
static void block_t(const double *B, int m, int p, const double *x, double *y)
{
    memset(y, 0, (size_t)m * p * sizeof *y);
    for (int a = 0; a < m; a++)
        for (int a2 = 0; a2 < m; a2++) {
            const double coef = B[(size_t)a * m + a2];
            const double *xa = x + (size_t)a * p;
            double *ya = y + (size_t)a2 * p;
            for (int b = 0; b < p; b++)
                ya[b] += coef * xa[b];
        }
}

void gq_rotation_vec(const gq_rotation *r, float *v, size_t stride, const float *signs,
                     double *tmp)
{
    const int n = r->n, m = r->m, p = r->p;
    double *x = tmp, *y = tmp + n;
    for (int i = 0; i < n; i++)
        x[i] = (signs ? (double)signs[i] : 1.0) * v[(size_t)i * stride];
    for (int a = 0; a < m; a++)
        fwht(x + (size_t)a * p, p);
    const double *out = x;
    if (m > 1) {
        block_t(r->base, m, p, x, y);
        out = y;
    }
    const double scale = 1.0 / sqrt((double)n);
    for (int i = 0; i < n; i++)
        v[(size_t)i * stride] = (float)(out[i] * scale);
}

/* count vectors, vector i at a + i * step, elements `stride` apart; scratch: 2n doubles per
 * thread of n_scratch, or NULL to allocate them per thread. */
static int rotate_many(const gq_rotation *r, float *a, size_t count, size_t step, size_t stride,
                       const float *signs, double *scratch, int n_scratch)
{
    const size_t per = 2 * (size_t)r->n;
    int failed = 0;
    const int threads = scratch ? n_scratch : omp_get_max_threads();
#pragma omp parallel num_threads(threads) reduction(| : failed) if (count > 1)
    {
        double *tmp = scratch ? scratch + per * (size_t)omp_get_thread_num()
                              : malloc(per * sizeof *tmp);
        failed = tmp == NULL;
#pragma omp for schedule(static)
        for (long i = 0; i < (long)count; i++)
            if (tmp)
                gq_rotation_vec(r, a + (size_t)i * step, stride, signs, tmp);
        if (!scratch)
            free(tmp);
    }
    return failed ? -1 : 0;
}

int gq_rotation_rows(const gq_rotation *r, float *a, size_t rows, const float *signs)
{
    return rotate_many(r, a, rows, (size_t)r->n, 1, signs, NULL, 0);
}

int gq_rotation_cols(const gq_rotation *r, float *a, size_t cols, const float *signs)
{
    return rotate_many(r, a, cols, 1, cols, signs, NULL, 0);
}

void gq_rotation_rows_scratch(const gq_rotation *r, float *a, size_t rows, double *scratch,
                              int n_scratch)
{
    rotate_many(r, a, rows, (size_t)r->n, 1, NULL, scratch, n_scratch);
}

int gq_rotation_copy(gq_rotation *dst, const gq_rotation *src, gq_error *err)
{
    const size_t mm = (size_t)src->m * src->m;
    double *base = malloc(mm * sizeof *base);
    if (!base)
        return gq_fail(err, "rotation: out of memory");
    memcpy(base, src->base, mm * sizeof *base);
    *dst = *src;
    dst->base = base;
    return 0;
}

void gq_rotation_free(gq_rotation *r)
{
    if (!r)
        return;
    free(r->base);
    memset(r, 0, sizeof *r);
}
