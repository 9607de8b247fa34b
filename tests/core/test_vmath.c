/* Vectorised exp, softmax and log-sum-exp (core/gq_vmath.h): the vector paths against their
 * scalar references bit for bit, and the references against libm. */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_rng.h"
#include "core/gq_vmath.h"

static uint32_t bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

/* Distance in units in the last place between two finite floats of the same sign. */
static double ulps(float a, double exact)
{
    float e = (float)exact;
    return fabs((double)a - exact) / (double)(nextafterf(e, INFINITY) - e);
}

static void test_expf_vector_matches_reference(void **state)
{
    (void)state;
    enum { N = 1 << 16 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    gq_rng r;
    gq_rng_seed(&r, 3);
    for (int i = 0; i < N; i++)
        x[i] = (float)(gq_rng_uniform(&r) * 200.0 - 110.0);
    const float special[] = {0.0f, -0.0f, NAN, INFINITY, -INFINITY, -87.33654f, -87.3365f,
                             -87.337f, 88.72f, 88.75f, 89.0f, 1e-30f, -1e-30f};
    memcpy(x, special, sizeof special);
    for (int n = N; n >= N - 7; n--) { /* tails of every length */
        gq_vexpf(y, x, n);
        for (int i = 0; i < n; i++) {
            float e = gq_expf_ref(x[i]);
            if (bits(y[i]) != bits(e) && !(isnan(y[i]) && isnan(e)))
                fail_msg("exp(%.9g): vector %.9g, reference %.9g", x[i], y[i], e);
        }
    }
    assert_true(isnan(gq_expf_ref(NAN)));
    assert_true(gq_expf_ref(-INFINITY) == 0.0f && gq_expf_ref(-88.0f) == 0.0f);
    assert_true(isinf(gq_expf_ref(INFINITY)) && gq_expf_ref(0.0f) == 1.0f);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        float v = x[i] < -87.3f ? -87.3f : x[i] > 88.5f ? 88.5f : x[i];
        double u = ulps(gq_expf_ref(v), exp((double)v));
        worst = u > worst ? u : worst;
    }
    printf("expf: worst %.3f ulp\n", worst);
    assert_true(worst <= 2.0);
    free(x);
    free(y);
}

static void test_exp_double_reference(void **state)
{
    (void)state;
    gq_rng r;
    gq_rng_seed(&r, 5);
    double worst = 0;
    for (int i = 0; i < 200000; i++) {
        double x = gq_rng_uniform(&r) * 1400.0 - 705.0, e = exp(x), g = gq_exp_ref(x);
        double u = fabs(g - e) / (nextafter(e, INFINITY) - e);
        worst = u > worst ? u : worst;
    }
    printf("exp: worst %.3f ulp\n", worst);
    assert_true(worst <= 1.5);
    assert_true(gq_exp_ref(-709.0) == 0.0 && gq_exp_ref(0.0) == 1.0 && isnan(gq_exp_ref(NAN)));
}

/* Rows of every length 1..70 with n valid entries: vector and reference agree bit for bit and
 * the probabilities sum to 1. */
static void test_softmax_rows(void **state)
{
    (void)state;
    gq_rng r;
    gq_rng_seed(&r, 7);
    float a[80], b[80], c[80];
    for (int len = 1; len <= 70; len++)
        for (int n = 1; n <= len; n += (len > 20 ? 7 : 1)) {
            for (int j = 0; j < len; j++)
                a[j] = (float)(gq_rng_normal(&r) * (n % 3 == 0 ? 40.0 : 3.0));
            memcpy(b, a, sizeof a);
            memcpy(c, a, sizeof a);
            float s1 = gq_exp_row(a, n, len), s2 = gq_exp_row_ref(b, n, len);
            assert_true(bits(s1) == bits(s2));
            assert_memory_equal(a, b, (size_t)len * sizeof(float));
            memcpy(a, c, sizeof a);
            memcpy(b, c, sizeof a);
            gq_softmax_row(a, n, len);
            gq_softmax_row_ref(b, n, len);
            assert_memory_equal(a, b, (size_t)len * sizeof(float));
            double sum = 0;
            for (int j = 0; j < n; j++)
                sum += a[j];
            assert_true(fabs(sum - 1.0) < 1e-5);
            for (int j = n; j < len; j++)
                assert_true(a[j] == 0.0f);
        }
}

/* Log-sum-exp of logit rows: vector against reference bit for bit, against a plain double sum
 * to 1e-14, and the first index of the max. */
static void test_lse_rows(void **state)
{
    (void)state;
    gq_rng r;
    gq_rng_seed(&r, 11);
    float x[600];
    for (int n = 1; n <= 600; n += (n < 40 ? 1 : 37)) {
        for (int j = 0; j < n; j++)
            x[j] = (float)(gq_rng_normal(&r) * 5.0);
        x[n / 2] = x[n - 1] = 30.0f; /* ties: the first index wins */
        int a1, a2;
        double l1 = gq_lse_row(x, n, &a1), l2 = gq_lse_row_ref(x, n, &a2);
        assert_memory_equal(&l1, &l2, sizeof l1);
        assert_int_equal(a1, n / 2);
        assert_int_equal(a2, n / 2);
        double s = 0;
        for (int j = 0; j < n; j++)
            s += exp((double)x[j] - 30.0);
        assert_true(fabs(l1 - (30.0 + log(s))) < 1e-14 * fabs(l1));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expf_vector_matches_reference),
        cmocka_unit_test(test_exp_double_reference),
        cmocka_unit_test(test_softmax_rows),
        cmocka_unit_test(test_lse_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
