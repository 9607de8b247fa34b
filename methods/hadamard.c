/* Randomised Walsh-Hadamard rotations (gq_hadamard.h): the in-place fast transform, O(n log n)
 * per vector, applied to the rows or the columns of a matrix. */
#include "methods/gq_hadamard.h"

#include <math.h>
#include <stdlib.h>

#include "core/gq_rng.h"

bool gq_hadamard_supported(int n) { return n >= 1 && (n & (n - 1)) == 0; }

void gq_hadamard_signs(float *signs, int n, uint64_t seed)
{
    gq_rng r;
    gq_rng_seed(&r, seed);
    for (int i = 0; i < n; i++)
        signs[i] = (gq_rng_u64(&r) >> 63) ? -1.0f : 1.0f;
}

/* t (n) <- H t, unnormalised butterflies over strides 1, 2, 4, ... */
static void fwht(double *t, int n)
{
    for (int h = 1; h < n; h *= 2)
        for (int i = 0; i < n; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                const double a = t[j], b = t[j + h];
                t[j] = a + b;
                t[j + h] = a - b;
            }
}

void gq_hadamard_vec(float *v, size_t stride, int n, const float *signs, double *tmp)
{
    for (int i = 0; i < n; i++)
        tmp[i] = (double)signs[i] * v[(size_t)i * stride];
    fwht(tmp, n);
    const double scale = 1.0 / sqrt((double)n);
    for (int i = 0; i < n; i++)
        v[(size_t)i * stride] = (float)(tmp[i] * scale);
}

/* count vectors of n floats, vector i at a + i * step, elements `stride` apart. */
static int rotate_many(float *a, size_t count, size_t step, size_t stride, int n,
                       const float *signs)
{
    int failed = 0;
#pragma omp parallel reduction(| : failed)
    {
        double *tmp = malloc((size_t)n * sizeof *tmp);
        failed = tmp == NULL;
#pragma omp for schedule(static)
        for (long i = 0; i < (long)count; i++)
            if (tmp)
                gq_hadamard_vec(a + (size_t)i * step, stride, n, signs, tmp);
        free(tmp);
    }
    return failed ? -1 : 0;
}

int gq_hadamard_rows(float *a, size_t rows, int n, const float *signs)
{
    return rotate_many(a, rows, (size_t)n, 1, n, signs);
}

int gq_hadamard_cols(float *a, int n, size_t cols, const float *signs)
{
    return rotate_many(a, cols, 1, cols, n, signs);
}
