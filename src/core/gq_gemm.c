#include "core/gq_gemm.h"

#include <assert.h>
#include <omp.h>
#include <stdlib.h>

/* Below this many multiply-adds a product runs on the calling thread: a fork/join would cost
 * more than the work. The choice depends on the shape only, and the tiles are the same. */
#define SERIAL_MACS (1L << 18)

void gq_blas_single_threaded(void) { omp_set_num_threads(1); }

static int ceil_div(int a, int b) { return (a + b - 1) / b; }

/* Threads for `tiles` independent tiles of `macs` multiply-adds in all. */
static int team_size(long tiles, double macs)
{
    int nt = omp_get_max_threads();
    if (macs < (double)SERIAL_MACS || tiles < 2)
        return 1;
    return tiles < nt ? (int)tiles : nt;
}

/* Order of the tiles of an (m, n) product with nrb row blocks and ntb column blocks: tile t is
 * (row block, column block) (*rb, *cb). When n > m the operand op(B) is the larger one (the
 * weights of a linear over fewer tokens than its width): the row blocks of one column block
 * come one after the other, so each panel of op(B) is read from memory once and the smaller
 * op(A) is re-read from cache; otherwise the column blocks of one row block do. The order does
 * not change any tile's value. */
static void tile_at(long t, int m, int n, int nrb, int ntb, int *rb, int *cb)
{
    if (n > m) {
        *cb = (int)(t / nrb);
        *rb = (int)(t % nrb);
    } else {
        *rb = (int)(t / ntb);
        *cb = (int)(t % ntb);
    }
}

/* The tile loop of gq_sgemm and gq_dgemm (T the element type, BLAS its gemm): tile t covers
 * rows [i0, i0 + TILE_M) and columns [j0, j0 + TILE_N) of C (in tile_at's order); op(A)'s rows
 * i0.. start at A + i0 * lda (NoTrans) or A + i0 (Trans), op(B)'s columns j0.. at B + j0
 * (NoTrans) or B + j0 * ldb (Trans). */
#define TILED_GEMM(T, BLAS)                                                                    \
    do {                                                                                       \
        assert(layout == CblasRowMajor);                                                       \
        if (m <= 0 || n <= 0)                                                                  \
            return;                                                                            \
        const int tn = ceil_div(n, GQ_GEMM_TILE_N), tm = ceil_div(m, GQ_GEMM_TILE_M);          \
        const long tiles = (long)tm * tn;                                                      \
        _Pragma("omp parallel num_threads(team_size(tiles, (double)m * n * k))")               \
        {                                                                                      \
            gq_blas_single_threaded();                                                         \
            _Pragma("omp for schedule(dynamic, 1)")                                            \
            for (long t = 0; t < tiles; t++) {                                                 \
                int rb, cb;                                                                    \
                tile_at(t, m, n, tm, tn, &rb, &cb);                                            \
                const int i0 = rb * GQ_GEMM_TILE_M, j0 = cb * GQ_GEMM_TILE_N;                  \
                const int mi = m - i0 < GQ_GEMM_TILE_M ? m - i0 : GQ_GEMM_TILE_M;              \
                const int nj = n - j0 < GQ_GEMM_TILE_N ? n - j0 : GQ_GEMM_TILE_N;              \
                const T *a = ta == CblasNoTrans ? A + (size_t)i0 * lda : A + i0;               \
                const T *b = tb == CblasNoTrans ? B + j0 : B + (size_t)j0 * ldb;               \
                BLAS(CblasRowMajor, ta, tb, mi, nj, k, alpha, a, lda, b, ldb, beta,            \
                     C + (size_t)i0 * ldc + j0, ldc);                                          \
            }                                                                                  \
        }                                                                                      \
    } while (0)

void gq_sgemm(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
              float alpha, const float *A, int lda, const float *B, int ldb, float beta, float *C,
              int ldc)
{
    TILED_GEMM(float, cblas_sgemm);
}

void gq_dgemm(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
              double alpha, const double *A, int lda, const double *B, int ldb, double beta,
              double *C, int ldc)
{
    TILED_GEMM(double, cblas_dgemm);
}

/* Tile t of the shared product, seen as one (m, sum of n) product whose per_rb column blocks are
 * the products' column tiles in product order (tn[p] each), in tile_at's order: row block rb,
 * product p, its column j0. */
static void shared_tile(long t, int m, int n_all, int nrb, int per_rb, int n_prod, const int *tn,
                        int *rb, int *p, int *j0)
{
    int u, q = 0;
    tile_at(t, m, n_all, nrb, per_rb, rb, &u);
    while (q < n_prod - 1 && u >= tn[q])
        u -= tn[q++];
    *p = q;
    *j0 = u * GQ_GEMM_TILE_N;
}

void gq_sgemm_nt_shared(int m, int k, const float *A, int lda, int n_prod, const float *const *W,
                        const int *n, float *const *C, gq_rows_done done, void *ctx)
{
    int tn[GQ_SGEMM_MAX_SHARED], per_rb = 0, n_all = 0;
    double macs = 0;
    assert(n_prod >= 1 && n_prod <= GQ_SGEMM_MAX_SHARED);
    if (m <= 0)
        return;
    for (int p = 0; p < n_prod; p++) {
        tn[p] = n[p] > 0 ? ceil_div(n[p], GQ_GEMM_TILE_N) : 0;
        per_rb += tn[p];
        n_all += n[p];
        macs += (double)m * n[p] * k;
    }
    const int nrb = ceil_div(m, GQ_GEMM_TILE_M);
    const long tiles = (long)nrb * per_rb;
    int *left = done ? malloc((size_t)nrb * sizeof *left) : NULL; /* tiles to go per block */
    if (done && !left) { /* no memory for the counters: the rows after the whole product */
        gq_sgemm_nt_shared(m, k, A, lda, n_prod, W, n, C, NULL, NULL);
        done(ctx, 0, m);
        return;
    }
    for (int b = 0; left && b < nrb; b++)
        left[b] = per_rb;
#pragma omp parallel num_threads(team_size(tiles, macs))
    {
        gq_blas_single_threaded();
#pragma omp for schedule(dynamic, 1)
        for (long t = 0; t < tiles; t++) {
            int rb, p, j0;
            shared_tile(t, m, n_all, nrb, per_rb, n_prod, tn, &rb, &p, &j0);
            const int i0 = rb * GQ_GEMM_TILE_M;
            const int mi = m - i0 < GQ_GEMM_TILE_M ? m - i0 : GQ_GEMM_TILE_M;
            const int nj = n[p] - j0 < GQ_GEMM_TILE_N ? n[p] - j0 : GQ_GEMM_TILE_N;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mi, nj, k, 1.0f,
                        A + (size_t)i0 * lda, lda, W[p] + (size_t)j0 * k, k, 0.0f,
                        C[p] + (size_t)i0 * n[p] + j0, n[p]);
            if (!left)
                continue;
            int to_go;
#pragma omp atomic capture seq_cst
            to_go = --left[rb];
            if (to_go == 0) /* the block's last tile: every tile of its rows is written */
                done(ctx, i0, mi);
        }
    }
    free(left);
}

/* Tiles (bi, bj) with bj >= bi of an nb x nb grid, in row order: tile t's coordinates. */
static void upper_tile(long t, int nb, int *bi, int *bj)
{
    int i = 0;
    while (t >= nb - i) {
        t -= nb - i;
        i++;
    }
    *bi = i;
    *bj = i + (int)t;
}

void gq_dsyrk_upper_t(int n, int k, double alpha, const double *A, int lda, double beta,
                      double *C, int ldc)
{
    const int ts = GQ_GEMM_TILE_M, nb = ceil_div(n, ts);
    const long tiles = (long)nb * (nb + 1) / 2;
    if (n <= 0)
        return;
#pragma omp parallel num_threads(team_size(tiles, (double)n * n * k / 2))
    {
        gq_blas_single_threaded();
#pragma omp for schedule(dynamic, 1)
        for (long t = 0; t < tiles; t++) {
            int bi, bj;
            upper_tile(t, nb, &bi, &bj);
            const int i0 = bi * ts, j0 = bj * ts;
            const int ni = n - i0 < ts ? n - i0 : ts, nj = n - j0 < ts ? n - j0 : ts;
            double *c = C + (size_t)i0 * ldc + j0;
            if (bi == bj) /* C_ii (upper) = alpha A_i^T A_i + beta C_ii */
                cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, ni, k, alpha, A + i0, lda,
                            beta, c, ldc);
            else /* C_ij = alpha A_i^T A_j + beta C_ij */
                cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ni, nj, k, alpha, A + i0,
                            lda, A + j0, lda, beta, c, ldc);
        }
    }
}
