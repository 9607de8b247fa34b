#ifndef GQ_LINALG_H
#define GQ_LINALG_H
/* Dense symmetric positive-definite algebra in double for the methods (no LAPACK needed).
 * Matrices are row-major (n, n). O(n^3); n is a layer's input width (<= 11008). */
#include "core/gq_error.h"

/* In-place Cholesky a = L L^T: the lower triangle of `a` receives L, the strict upper triangle
 * is zeroed. Returns 0, or -1 (a unchanged in its upper part is not promised) when a pivot is
 * not positive; *bad_col (if non-NULL) receives the failing column. */
int gq_cholesky_lower(double *a, int n, int *bad_col);

/* GPTQ's "Hinv": given SPD h (n, n), overwrites it with the upper Cholesky factor U of h^-1
 * (h^-1 = U^T U). Returns -1 with a message naming the failing column when h is not SPD. */
int gq_inverse_cholesky_upper(double *h, int n, gq_error *err);

#endif
