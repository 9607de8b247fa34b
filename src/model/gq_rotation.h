#ifndef GQ_ROTATION_H
#define GQ_ROTATION_H
/* Structured orthogonal rotations of width n = m * p, p a power of two:
 *     H = B (x) H_p   (Kronecker product; index i = a * p + b, a < m, b < p),
 * B an m x m block with B B^T = m I (a Hadamard matrix, or sqrt(m) times an orthogonal matrix)
 * and H_p the Sylvester Walsh-Hadamard matrix (symmetric, H_p H_p = p I), so H H^T = n I and
 * H / sqrt(n) is orthogonal. Applying H^T to a vector viewed as X (m, p) row-major is
 * B^T X H_p: the fast transform along each of the m rows, then B^T across them, O(n (log p + m))
 * per vector instead of n^2. The blocks themselves are built by methods/gq_hadamard.h; the
 * forward pass only applies them (gq_layer.down_in_rot). Every vector is computed on its own in
 * double and rounded once to float, so results are the same bits for any thread count. */
#include <stddef.h>

#include "core/gq_error.h"

typedef struct gq_rotation {
    int n;         /* width = m * p */
    int m;         /* order of the block B */
    int p;         /* power of two */
    double *base;  /* (m, m) row-major, B B^T = m I; owned */
    char what[96]; /* the construction, e.g. "Paley I (q = 11) of order 12 (x) WHT 64" */
} gq_rotation;

/* v (n floats, `stride` apart) <- H^T (D v) / sqrt(n), D = diag(signs) (signs NULL: D = I);
 * tmp holds 2n doubles. For a row vector r this is r <- r D H / sqrt(n). */
void gq_rotation_vec(const gq_rotation *r, float *v, size_t stride, const float *signs,
                     double *tmp);
/* a (rows, n) row-major <- a D H / sqrt(n) (every row). Returns -1 only when out of memory. */
int gq_rotation_rows(const gq_rotation *r, float *a, size_t rows, const float *signs);
/* a (n, cols) row-major <- (D H / sqrt(n))^T a (every column). -1 only when out of memory. */
int gq_rotation_cols(const gq_rotation *r, float *a, size_t cols, const float *signs);

/* The same as gq_rotation_rows without signs and without allocating: scratch holds 2n doubles
 * for each of n_scratch threads (at most n_scratch threads run). */
void gq_rotation_rows_scratch(const gq_rotation *r, float *a, size_t rows, double *scratch,
                              int n_scratch);

/* Deep copy of src into *dst (a fresh block). */
int gq_rotation_copy(gq_rotation *dst, const gq_rotation *src, gq_error *err);
void gq_rotation_free(gq_rotation *r);

#endif
