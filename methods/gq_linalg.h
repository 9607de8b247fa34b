#ifndef GQ_LINALG_H
#define GQ_LINALG_H
/* Dense symmetric positive-definite algebra in double for the methods, through LAPACK and
 * BLAS. Matrices are row-major (n, n); n is a layer's input width (<= 11008).
 *
 * Every result is the same for any thread count: LAPACK runs single-threaded on diagonal
 * blocks of GQ_LINALG_BLOCK, and the large updates go through fixed column tiles
 * (core/gq_gemm.h), each one single-threaded BLAS call. */
#include "core/gq_error.h"

#define GQ_LINALG_BLOCK 256

/* Blocked right-looking Cholesky a = U^T U in place: the upper triangle of `a` receives U, the
 * strict lower triangle is not referenced. Returns 0, or -1 when a pivot is not positive (the
 * upper triangle is then partly overwritten); *bad_col (if non-NULL) receives the failing
 * column. */
int gq_cholesky_upper(double *a, int n, int *bad_col);

/* x = r^-1 for r (n, n) upper triangular with a nonzero diagonal (upper triangle read): the
 * upper triangle of x receives the inverse, the strict lower triangle zeros. */
void gq_triangular_inverse_upper(const double *r, int n, double *x);

/* GPTQ's "Hinv": with P the order perm (NULL: the identity), u = the upper Cholesky factor of
 * (P^T h P + damp I)^-1 in float (u^T u = that inverse; strict lower triangle zero), computed
 * as J R^-T J from the upper Cholesky factor R of the reversed matrix J (P^T h P + damp I) J
 * (J the reversal), so that one factorisation and one triangular inverse suffice. h (n, n)
 * symmetric, upper triangle read. On success h is overwritten (scratch); on failure (-1) it
 * is unchanged and *bad_col receives the failing column in processing order. */
int gq_inverse_cholesky_upper(double *h, int n, const int *perm, double damp, float *u,
                              int *bad_col, gq_error *err);

#endif
