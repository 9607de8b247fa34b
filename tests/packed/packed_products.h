#ifndef GQ_TEST_PACKED_PRODUCTS_H
#define GQ_TEST_PACKED_PRODUCTS_H
/* The product check the packed tests share. */
#include "packed/gq_packed.h"

/* Asserts that the packed linear P computes w (rows, cols) · x: decode (fused dots and the
 * scalar reference) and prefill (tiles + sgemm) on PACKED_CHECK_N seeded inputs, within float
 * summation error (1e-5 of the sum of |w x| in double). Returns the inputs (PACKED_CHECK_N x
 * cols, malloc'd) for further checks. */
enum { PACKED_CHECK_N = 8 }; /* > GQ_PACKED_MATVEC_MAX_N: the prefill path */
float *packed_check_products(const gq_packed_linear *P, const float *w, int rows, int cols,
                             const char *what);

#endif
