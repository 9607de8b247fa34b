/* Calibration statistics against direct formulas on random data. */
#include "test_support.h"

#include <math.h>
#include <stdlib.h>

#include "calib/gq_calib.h"
#include "core/gq_rng.h"

static float *random_matrix(size_t n, int d, uint64_t seed)
{
    gq_rng r;
    gq_rng_seed(&r, seed);
    float *x = malloc(n * d * sizeof *x);
    for (size_t i = 0; i < n * d; i++)
        x[i] = (float)gq_rng_normal(&r) * (1.0f + (float)(i % d) / 10.0f);
    return x;
}

static void test_column_means(void **state)
{
    (void)state;
    const size_t n = 300;
    const int d = 70; /* not a multiple of the 64-column blocks */
    float *x = random_matrix(n, d, 1);
    float am[70], sq[70];
    gq_calib_abs_mean(x, n, d, am);
    gq_calib_sq_mean(x, n, d, sq);
    for (int j = 0; j < d; j++) {
        double a = 0, s = 0;
        for (size_t t = 0; t < n; t++) {
            a += fabs(x[t * d + j]);
            s += (double)x[t * d + j] * x[t * d + j];
        }
        assert_true(fabs(am[j] - a / n) <= 1e-6 * (a / n));
        assert_true(fabs(sq[j] - s / n) <= 1e-6 * (s / n));
    }
    free(x);
}

static void test_hessian(void **state)
{
    (void)state;
    const size_t n = 600; /* more than one 256-row chunk, added in two calls */
    const int d = 19;
    float *x = random_matrix(n, d, 2);
    gq_hessian H;
    gq_error err;
    assert_int_equal(gq_hessian_init(&H, d, &err), 0);
    assert_int_equal(gq_hessian_add(&H, x, 257, &err), 0);
    assert_int_equal(gq_hessian_add(&H, x + 257 * d, n - 257, &err), 0);
    gq_hessian_finish(&H);
    assert_int_equal((int)H.n, (int)n);
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (size_t t = 0; t < n; t++)
                s += (double)x[t * d + i] * x[t * d + j];
            s *= 2.0 / n;
            assert_true(fabs(H.h[i * d + j] - s) <= 1e-12 * (fabs(s) + 1.0));
        }
    gq_hessian_free(&H);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_column_means),
        cmocka_unit_test(test_hessian),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
