#ifndef GQ_GEMM_H
#define GQ_GEMM_H
/* Matrix products whose every output element is rounded the same way for any thread count.
 *
 * A multi-threaded BLAS call splits its output among its threads, and how it splits (and so
 * which kernel edge case or blocking computes a given element) depends on the thread count,
 * the CPU and the kernel OpenBLAS selects: the low bits of a result then follow --threads.
 * Here the output is cut into fixed tiles whose shapes depend only on the problem's shape;
 * each tile is one single-threaded BLAS call over the whole inner dimension, and the tiles are
 * spread over OpenMP threads. An element's value is thus a function of the operands, the shape
 * and the BLAS build, never of the thread count.
 *
 * Same arguments as the CBLAS routines; only CblasRowMajor is accepted. */
#include <cblas.h>

/* Output tile (rows x columns) of gq_sgemm / gq_dgemm and the square tile of gq_dsyrk_upper. */
#define GQ_GEMM_TILE_M 256
#define GQ_GEMM_TILE_N 256

void gq_sgemm(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
              float alpha, const float *A, int lda, const float *B, int ldb, float beta, float *C,
              int ldc);
void gq_dgemm(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
              double alpha, const double *A, int lda, const double *B, int ldb, double beta,
              double *C, int ldc);

/* Called once per block of rows [i0, i0 + mi) of a shared-input product, by the thread that
 * finished the block's last tile, when every product's rows i0 .. i0+mi-1 are written. */
typedef void (*gq_rows_done)(void *ctx, int i0, int mi);

/* Several products with one input, in one parallel region: C[p] (m, n[p]) = A (m, k) · W[p]^T
 * with W[p] (n[p], k) row-major, for p < n_prod <= GQ_SGEMM_MAX_SHARED (q/k/v, gate/up).
 * Every tile is the call gq_sgemm(RowMajor, NoTrans, Trans, m, n[p], k, 1, A, lda, W[p], k, 0,
 * C[p], n[p]) makes, so the results are those of n_prod gq_sgemm calls bit for bit; the tiles of
 * all products share one dynamic schedule (one fork/join instead of n_prod). When done is not NULL it runs on each block of rows as soon as
 * the block is complete, inside the same region: a row-wise pass that follows the product
 * (RoPE, SwiGLU, residual add and RMSNorm) costs no fork/join of its own and finds the rows in
 * cache. done must give each row a result that does not depend on the blocking. */
#define GQ_SGEMM_MAX_SHARED 4
void gq_sgemm_nt_shared(int m, int k, const float *A, int lda, int n_prod, const float *const *W,
                        const int *n, float *const *C, gq_rows_done done, void *ctx);

/* Upper triangle of C (n, n) = alpha A^T A + beta C, A (k, n) row-major (cblas_dsyrk with
 * CblasUpper, CblasTrans); the lower triangle is not touched. */
void gq_dsyrk_upper_t(int n, int k, double alpha, const double *A, int lda, double beta,
                      double *C, int ldc);

/* Makes the BLAS calls of the calling OpenMP task (thread) single-threaded: its nthreads ICV
 * becomes 1, which an OpenMP OpenBLAS reads before every call (other builds run BLAS on one
 * thread throughout, see gq_threads_set). Call it first thing inside a parallel region that
 * calls BLAS: a region of one thread (an `if` or num_threads clause) is not "in parallel" for
 * OpenBLAS, which would otherwise thread the call over the outer thread count. */
void gq_blas_single_threaded(void);

#endif
