/* The tiled products (core/gq_gemm.h) against plain loops, their bits across 1, 2 and 3
 * threads on shapes spanning several tiles, the shared-input products and their row callback,
 * and the repeated timed rounds (core/gq_steady.h). */
#include "test_support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "core/gq_gemm.h"
#include "core/gq_rng.h"
#include "core/gq_steady.h"
#include "core/gq_threads.h"

static float *random_floats(size_t n, uint64_t seed)
{
    gq_rng r;
    gq_rng_seed(&r, seed);
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)gq_rng_normal(&r);
    return x;
}

/* op(X)[i][j] of a row-major matrix with leading dimension ld. */
static double at(const float *X, int ld, bool trans, int i, int j)
{
    return trans ? X[(size_t)j * ld + i] : X[(size_t)i * ld + j];
}

/* C (m, n) = op(A) op(B) + 0.5 C for every transpose pair, against a double loop, and the same
 * bits with 1, 2 and 3 threads. m, n span 2 x 3 tiles with ragged edges. */
static void test_sgemm(void **state)
{
    (void)state;
    const int m = GQ_GEMM_TILE_M + 37, n = 2 * GQ_GEMM_TILE_N + 5, k = 70;
    const int saved = gq_threads_get();
    float *A = random_floats((size_t)m * k, 1), *B = random_floats((size_t)k * n, 2);
    float *C0 = random_floats((size_t)m * n, 3);
    float *C = malloc((size_t)m * n * sizeof *C), *ref = malloc((size_t)m * n * sizeof *ref);
    for (int t = 0; t < 4; t++) {
        const bool ta = t & 1, tb = t & 2;
        const int lda = ta ? m : k, ldb = tb ? k : n;
        for (int threads = 1; threads <= 3; threads++) {
            gq_threads_set(threads);
            memcpy(C, C0, (size_t)m * n * sizeof *C);
            gq_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                     m, n, k, 1.0f, A, lda, B, ldb, 0.5f, C, n);
            if (threads == 1)
                memcpy(ref, C, (size_t)m * n * sizeof *C);
            else
                assert_memory_equal(C, ref, (size_t)m * n * sizeof *C);
        }
        for (int i = 0; i < m; i += 7)
            for (int j = 0; j < n; j += 5) {
                double s = 0.5 * C0[(size_t)i * n + j];
                for (int p = 0; p < k; p++)
                    s += at(A, lda, ta, i, p) * at(B, ldb, tb, p, j);
                assert_true(fabs(C[(size_t)i * n + j] - s) < 1e-4 * (1.0 + fabs(s)));
            }
    }
    gq_threads_set(saved);
    free(A), free(B), free(C0), free(C), free(ref);
}

/* What the row callback of gq_sgemm_nt_shared saw: per row, how often it was called on it and
 * whether every product's row already held its final value (the reference) at that moment. */
typedef struct rows_seen {
    int n_prod, *calls;
    bool *complete;
    float *const *C, *const *ref;
    const int *n;
} rows_seen;

static void note_rows(void *ctx, int i0, int mi)
{
    rows_seen *s = ctx;
    for (int i = i0; i < i0 + mi; i++) {
        bool ok = true;
        for (int p = 0; p < s->n_prod; p++)
            ok = ok && memcmp(s->C[p] + (size_t)i * s->n[p], s->ref[p] + (size_t)i * s->n[p],
                              (size_t)s->n[p] * sizeof(float)) == 0;
        s->calls[i]++;
        s->complete[i] = ok;
    }
}

/* Three products sharing A (ragged row blocks, product widths of 1, 2 and 0 or 1 column tiles):
 * the bits of one gq_sgemm each for 1, 2 and 3 threads, and the row callback called once per
 * row, after the row is complete in every product. */
static void test_sgemm_shared(void **state)
{
    (void)state;
    const int m = 2 * GQ_GEMM_TILE_M + 19, k = 70, n[3] = {GQ_GEMM_TILE_N + 3,
                                                          2 * GQ_GEMM_TILE_N, 17};
    const int saved = gq_threads_get();
    float *A = random_floats((size_t)m * k, 4), *W[3], *C[3], *ref[3];
    for (int p = 0; p < 3; p++) {
        W[p] = random_floats((size_t)n[p] * k, 5 + (uint64_t)p);
        C[p] = malloc((size_t)m * n[p] * sizeof(float));
        ref[p] = malloc((size_t)m * n[p] * sizeof(float));
        gq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n[p], k, 1.0f, A, k, W[p], k, 0.0f,
                 ref[p], n[p]);
    }
    int *calls = malloc((size_t)m * sizeof *calls);
    bool *complete = malloc((size_t)m * sizeof *complete);
    for (int threads = 1; threads <= 3; threads++) {
        gq_threads_set(threads);
        rows_seen seen = {.n_prod = 3, .calls = calls, .complete = complete, .C = C,
                          .ref = ref, .n = n};
        memset(calls, 0, (size_t)m * sizeof *calls);
        for (int p = 0; p < 3; p++)
            memset(C[p], 0xff, (size_t)m * n[p] * sizeof(float)); /* NaN until written */
        gq_sgemm_nt_shared(m, k, A, k, 3, (const float *const *)W, n, C, note_rows, &seen);
        for (int p = 0; p < 3; p++)
            assert_memory_equal(C[p], ref[p], (size_t)m * n[p] * sizeof(float));
        for (int i = 0; i < m; i++) {
            assert_int_equal(calls[i], 1);
            assert_true(complete[i]);
        }
        gq_sgemm_nt_shared(m, k, A, k, 2, (const float *const *)W, n, C, NULL, NULL);
        for (int p = 0; p < 2; p++)
            assert_memory_equal(C[p], ref[p], (size_t)m * n[p] * sizeof(float));
    }
    gq_threads_set(saved);
    for (int p = 0; p < 3; p++)
        free(W[p]), free(C[p]), free(ref[p]);
    free(A), free(calls), free(complete);
}

/* The upper triangle of A^T A (lower untouched), against loops; same bits across 1, 2 and 3
 * threads. */
static void test_dsyrk(void **state)
{
    (void)state;
    const int n = GQ_GEMM_TILE_M + 45, k = 60, saved = gq_threads_get();
    gq_rng r;
    gq_rng_seed(&r, 9);
    double *A = malloc((size_t)k * n * sizeof *A), *H = malloc((size_t)n * n * sizeof *H);
    double *ref_h = malloc((size_t)n * n * sizeof *H);
    for (size_t i = 0; i < (size_t)k * n; i++)
        A[i] = gq_rng_normal(&r);
    for (int threads = 1; threads <= 3; threads++) {
        gq_threads_set(threads);
        for (size_t i = 0; i < (size_t)n * n; i++)
            H[i] = -1.0;
        gq_dsyrk_upper_t(n, k, 1.0, A, n, 0.0, H, n);
        if (threads == 1)
            memcpy(ref_h, H, (size_t)n * n * sizeof *H);
        else
            assert_memory_equal(H, ref_h, (size_t)n * n * sizeof *H);
    }
    gq_threads_set(saved);
    for (int i = 0; i < n; i += 3)
        for (int j = 0; j < n; j += 5) {
            if (j < i) {
                assert_true(H[(size_t)i * n + j] == -1.0);
                continue;
            }
            double s = 0.0;
            for (int p = 0; p < k; p++)
                s += A[(size_t)p * n + i] * A[(size_t)p * n + j];
            assert_true(fabs(H[(size_t)i * n + j] - s) < 1e-9 * (1.0 + fabs(s)));
        }
    free(A), free(H), free(ref_h);
}

/* A BLAS call inside gq_blas_single_threaded's scope sees one OpenMP thread; outside, the
 * caller's count is untouched. */
static void test_single_threaded_scope(void **state)
{
    (void)state;
    const int saved = gq_threads_get();
    gq_threads_set(2);
    int inner = -1;
#pragma omp parallel num_threads(1)
    {
        gq_blas_single_threaded();
        inner = omp_get_max_threads();
    }
    assert_int_equal(inner, 1);
    assert_int_equal(omp_get_max_threads(), 2);
    gq_threads_set(saved);
}

typedef struct {
    const double *rates;
    int n, calls;
} fake_rounds;

static int fake_round(void *ctx, double *rate, gq_error *err)
{
    fake_rounds *f = ctx;
    if (f->calls >= f->n)
        return gq_fail(err, "round %d failed", f->calls + 1);
    *rate = f->rates[f->calls++];
    return 0;
}

static void test_steady_rounds(void **state)
{
    (void)state;
    gq_rate_spread s;
    gq_error err;
    /* a disturbed first round: three rounds, the median agrees with the best */
    const double calm[] = {10.0, 100.0, 98.0, 1.0};
    fake_rounds f = {calm, 4, 0};
    assert_int_equal(gq_measure_steady(fake_round, &f, &s, &err), 0);
    assert_int_equal(f.calls, 3);
    assert_true(s.best == 100.0 && s.median == 98.0 && s.min == 10.0 && s.steady);
    assert_int_equal(s.rounds, 3);
    /* a machine slowing down: the rounds never agree, the limit is reported as unsteady */
    double slowing[GQ_STEADY_MAX_ROUNDS];
    for (int i = 0; i < GQ_STEADY_MAX_ROUNDS; i++)
        slowing[i] = 100.0 - 8.0 * i;
    f = (fake_rounds){slowing, GQ_STEADY_MAX_ROUNDS, 0};
    assert_int_equal(gq_measure_steady(fake_round, &f, &s, &err), 0);
    assert_int_equal(s.rounds, GQ_STEADY_MAX_ROUNDS);
    assert_true(!s.steady && s.best == 100.0 && s.min == 28.0 && s.median == 64.0);
    /* a failing round or a rate that is not a rate is an error */
    f = (fake_rounds){calm, 1, 0};
    assert_int_equal(gq_measure_steady(fake_round, &f, &s, &err), -1);
    assert_non_null(strstr(err.msg, "round 2 failed"));
    const double zero[] = {5.0, 0.0};
    f = (fake_rounds){zero, 2, 0};
    assert_int_equal(gq_measure_steady(fake_round, &f, &s, &err), -1);
    assert_non_null(strstr(err.msg, "timed round 2 gave the rate 0"));
    assert_true(gq_load_average() >= 0.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgemm),
        cmocka_unit_test(test_sgemm_shared),
        cmocka_unit_test(test_dsyrk),
        cmocka_unit_test(test_single_threaded_scope),
        cmocka_unit_test(test_steady_rounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
