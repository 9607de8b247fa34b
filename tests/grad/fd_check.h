#ifndef FD_CHECK_H
#define FD_CHECK_H
/* Finite-difference gradient checks in double precision for the grad tests. */
#include <stddef.h>

#include "core/gq_rng.h"

/* Loss as a function of whatever the context points to. */
typedef double (*fd_loss_fn)(void *ctx);

/* Compares the analytic gradient g (n) of f with respect to the parameters p (n) with central
 * differences of step h (p is perturbed in place and restored). Returns the relative error
 * ||g - g_fd||_2 / max(||g||_2, ||g_fd||_2, 1e-30). */
double fd_rel_error(fd_loss_fn f, void *ctx, double *p, const double *g, size_t n, double h);

/* p[i] = scale * N(0, 1). */
void fd_randn(gq_rng *r, double *p, size_t n, double scale);
/* sum_i a[i] b[i] */
double fd_dot(const double *a, const double *b, size_t n);
/* Fresh zeroed array (fails the test when out of memory). */
double *fd_zeros(size_t n);

/* The block-gradient checks of test_grad_block.c, run from test_grad.c: failures. */
int test_grad_block_main(void);

#endif
