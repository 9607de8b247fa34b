#ifndef GQ_HADAMARD_H
#define GQ_HADAMARD_H
/* Randomised Walsh-Hadamard rotations (QuaRot, arXiv:2404.00456) for power-of-two widths n:
 *     Q = D H / sqrt(n),   D = diag(signs) (each +1 or -1),  H the Sylvester Hadamard matrix
 * (symmetric, H H = n I), so Q is orthogonal. Rotating a row vector r is r Q = (r D) H / sqrt(n);
 * rotating a column vector c by Q^T is H (D c) / sqrt(n): both are "multiply by the signs, then
 * the fast transform", computed in double per vector and rounded once to float. Every vector is
 * independent, so the result is the same bits for any thread count. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Whether n is a power of two (n >= 1): the widths the fast transform supports. */
bool gq_hadamard_supported(int n);

/* signs (n) = +1 / -1 drawn from gq_rng seeded with seed. */
void gq_hadamard_signs(float *signs, int n, uint64_t seed);

/* v (n floats, `stride` apart) <- H (D v) / sqrt(n); tmp holds n doubles. */
void gq_hadamard_vec(float *v, size_t stride, int n, const float *signs, double *tmp);

/* a (rows, n) row-major <- a Q (every row rotated). Returns -1 only when out of memory. */
int gq_hadamard_rows(float *a, size_t rows, int n, const float *signs);

/* a (n, cols) row-major <- Q^T a (every column rotated). Returns -1 only when out of memory. */
int gq_hadamard_cols(float *a, int n, size_t cols, const float *signs);

#endif
