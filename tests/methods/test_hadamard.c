/* Hadamard blocks and the Kronecker fast transform (methods/gq_hadamard.h, model/gq_rotation.h):
 *   - the widths the real models need get the documented construction (Sylvester, Paley I and
 *     II, a random orthogonal block) and an odd part above 256 is refused, naming the width;
 *   - every Sylvester and Paley block up to order 256 is a Hadamard matrix: B B^T = m I in
 *     integers, and so is the whole H = B (x) H_p for widths up to 1024;
 *   - random blocks are orthogonal to rounding, the same bits for the same seed, others for
 *     another seed;
 *   - the fast transform (rows, columns, with and without signs) equals the dense product for
 *     every block order of every construction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "methods/gq_hadamard.h"

static void expect_plan(int n, gq_hadamard_kind kind, int m, int q)
{
    gq_hadamard_plan p;
    assert_int_equal(gq_hadamard_plan_for(n, &p), 0);
    assert_int_equal(p.kind, kind);
    assert_int_equal(p.m, m);
    assert_int_equal(p.m * p.p, n);
    if (kind == GQ_HAD_PALEY1 || kind == GQ_HAD_PALEY2)
        assert_int_equal(p.q, q);
}

static void test_plans(void **state)
{
    (void)state;
    expect_plan(64, GQ_HAD_SYLVESTER, 1, 0);       /* stories260K dim */
    expect_plan(256, GQ_HAD_SYLVESTER, 1, 0);      /* tinystories-3M dim */
    expect_plan(4096, GQ_HAD_SYLVESTER, 1, 0);     /* Llama-2-7B dim */
    expect_plan(768, GQ_HAD_PALEY1, 12, 11);       /* tinystories-3M hidden = 12 x 64 */
    expect_plan(172, GQ_HAD_RANDOM, 43, 0);        /* stories260K hidden = 43 x 4 */
    expect_plan(688, GQ_HAD_RANDOM, 43, 0);
    expect_plan(11008, GQ_HAD_RANDOM, 43, 0);      /* Llama-2-7B hidden = 43 x 256 */
    expect_plan(20 * 8, GQ_HAD_PALEY1, 20, 19);
    expect_plan(44 * 2, GQ_HAD_PALEY1, 44, 43);
    expect_plan(28, GQ_HAD_PALEY2, 28, 13);
    expect_plan(36 * 4, GQ_HAD_PALEY2, 36, 17);
    expect_plan(108, GQ_HAD_PALEY1, 108, 107);
    expect_plan(76 * 16, GQ_HAD_PALEY2, 76, 37);
    expect_plan(3 * 4 * 1024, GQ_HAD_PALEY1, 12, 11);
    expect_plan(6, GQ_HAD_RANDOM, 3, 0);           /* no Hadamard order 3 or 6 */
    expect_plan(52, GQ_HAD_RANDOM, 13, 0);         /* Paley II needs q = 25, not a prime */
    expect_plan(255, GQ_HAD_RANDOM, 255, 0);
    gq_hadamard_plan p;
    assert_int_equal(gq_hadamard_plan_for(257, &p), -1);
    assert_int_equal(gq_hadamard_plan_for(2 * 259, &p), -1);
    assert_int_equal(gq_hadamard_plan_for(0, &p), -1);
    assert_false(gq_hadamard_supported(514));
    gq_rotation r;
    gq_error err;
    assert_int_equal(gq_hadamard_build(&r, 514, 0, &err), -1);
    assert_non_null(strstr(err.msg, "width 514"));
}

/* (B (x) H_p)[i][j] for i = a p + b, j = a2 p + b2 of an integer block. */
static int kron_entry(const signed char *B, int m, int p, int i, int j)
{
    const int a = i / p, b = i % p, a2 = j / p, b2 = j % p;
    return B[(size_t)a * m + a2] * (__builtin_popcount((unsigned)(b & b2)) & 1 ? -1 : 1);
}

/* X X^T == k I in integers for X (k, k) given entrywise. */
static void expect_hadamard(const signed char *B, int m, int p)
{
    const int n = m * p;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            long dot = 0;
            for (int t = 0; t < n; t++)
                dot += (long)kron_entry(B, m, p, i, t) * kron_entry(B, m, p, j, t);
            if (dot != (i == j ? n : 0))
                fail_msg("order %d x %d: row %d . row %d = %ld", m, p, i, j, dot);
        }
}

static bool is_prime(int q)
{
    for (int d = 2; d * d <= q; d++)
        if (q % d == 0)
            return false;
    return q >= 2;
}

/* Every Paley block of order <= GQ_HADAMARD_MAX_BLOCK: kinds and primes into plans (p = 1);
 * returns the count. */
static int paley_plans(gq_hadamard_plan *out)
{
    int n = 0;
    for (int q = 3; q < GQ_HADAMARD_MAX_BLOCK; q++) {
        if (!is_prime(q))
            continue;
        if (q % 4 == 3 && q + 1 <= GQ_HADAMARD_MAX_BLOCK)
            out[n++] = (gq_hadamard_plan){GQ_HAD_PALEY1, q + 1, 1, q};
        if (q % 4 == 1 && 2 * (q + 1) <= GQ_HADAMARD_MAX_BLOCK)
            out[n++] = (gq_hadamard_plan){GQ_HAD_PALEY2, 2 * (q + 1), 1, q};
    }
    return n;
}

static void test_hadamard_blocks_exact(void **state)
{
    (void)state;
    gq_hadamard_plan plans[128];
    const int np = paley_plans(plans);
    assert_int_equal(np, 29 + 14); /* primes 3 mod 4 up to 251; 1 mod 4 up to 127 */
    signed char *B = malloc(256 * 256);
    assert_non_null(B);
    B[0] = 0;
    const gq_hadamard_plan sylvester = {GQ_HAD_SYLVESTER, 1, 1, 0};
    assert_int_equal(gq_hadamard_block(&sylvester, B), 0);
    assert_int_equal(B[0], 1);
    expect_hadamard(B, 1, 256);
    for (int i = 0; i < np; i++) {
        const int m = plans[i].m;
        assert_int_equal(gq_hadamard_block(&plans[i], B), 0);
        for (int e = 0; e < m * m; e++)
            assert_true(B[e] == 1 || B[e] == -1);
        expect_hadamard(B, m, 1);
        if (m <= 64) /* and the Kronecker product with a Walsh-Hadamard factor */
            expect_hadamard(B, m, 4);
    }
    free(B);
}

static void test_random_blocks(void **state)
{
    (void)state;
    const int orders[] = {172, 6, 255};
    for (size_t o = 0; o < sizeof orders / sizeof orders[0]; o++) {
        gq_rotation a, b, c;
        gq_error err;
        assert_int_equal(gq_hadamard_build(&a, orders[o], 7, &err), 0);
        assert_int_equal(gq_hadamard_build(&b, orders[o], 7, &err), 0);
        assert_int_equal(gq_hadamard_build(&c, orders[o], 8, &err), 0);
        const int m = a.m;
        assert_non_null(strstr(a.what, "random orthogonal"));
        assert_memory_equal(a.base, b.base, (size_t)m * m * sizeof(double));
        assert_memory_not_equal(a.base, c.base, (size_t)m * m * sizeof(double));
        for (int i = 0; i < m; i++)
            for (int j = 0; j < m; j++) {
                double dot = 0.0;
                for (int t = 0; t < m; t++)
                    dot += a.base[(size_t)i * m + t] * a.base[(size_t)j * m + t];
                assert_true(fabs(dot - (i == j ? m : 0)) < 1e-10 * m);
            }
        gq_rotation_free(&a), gq_rotation_free(&b), gq_rotation_free(&c);
    }
}

/* out = H^T (D v) / sqrt(n) by the dense matrix, in double. */
static void dense_reference(const gq_rotation *r, const float *v, const float *signs, double *out)
{
    const int n = r->n, p = r->p, m = r->m;
    for (int j = 0; j < n; j++) {
        double s = 0.0;
        for (int i = 0; i < n; i++) {
            const int a = i / p, b = i % p, a2 = j / p, b2 = j % p;
            const double h = r->base[(size_t)a * m + a2] *
                             (__builtin_popcount((unsigned)(b & b2)) & 1 ? -1.0 : 1.0);
            s += h * (signs ? signs[i] : 1.0f) * v[i];
        }
        out[j] = s / sqrt((double)n);
    }
}

/* Rows and columns of a (3, n) / (n, 3) matrix against the dense product. */
static void expect_fast_equals_dense(const gq_hadamard_plan *plan)
{
    gq_rotation r;
    gq_error err;
    if (gq_hadamard_build_plan(&r, plan, 3, &err))
        fail_msg("%s", err.msg);
    const int n = r.n;
    float *rows = malloc(3 * (size_t)n * sizeof *rows), *cols = malloc(3 * (size_t)n * sizeof *cols);
    float *signs = malloc((size_t)n * sizeof *signs);
    double *ref = malloc((size_t)n * sizeof *ref);
    gq_hadamard_signs(signs, n, 11);
    for (int i = 0; i < 3 * n; i++)
        rows[i] = (float)sin(0.37 * i + 1.0) * (i % 17 == 0 ? 20.0f : 1.0f);
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < n; i++)
            cols[(size_t)i * 3 + k] = rows[(size_t)k * n + i];
    float *orig = malloc(3 * (size_t)n * sizeof *orig);
    memcpy(orig, rows, 3 * (size_t)n * sizeof *orig);
    assert_int_equal(gq_rotation_rows(&r, rows, 3, signs), 0);
    assert_int_equal(gq_rotation_cols(&r, cols, 3, signs), 0);
    for (int k = 0; k < 3; k++) {
        dense_reference(&r, orig + (size_t)k * n, signs, ref);
        for (int j = 0; j < n; j++) {
            if (fabs(rows[(size_t)k * n + j] - ref[j]) > 1e-5 * (1.0 + fabs(ref[j])) ||
                cols[(size_t)j * 3 + k] != rows[(size_t)k * n + j])
                fail_msg("width %d (%s): vector %d, entry %d: %g vs %g", n, r.what, k, j,
                         rows[(size_t)k * n + j], ref[j]);
        }
    }
    memcpy(rows, orig, (size_t)n * sizeof *rows); /* without signs */
    double *ref2 = malloc(2 * (size_t)n * sizeof *ref2);
    gq_rotation_rows_scratch(&r, rows, 1, ref2, 1);
    dense_reference(&r, orig, NULL, ref2);
    for (int j = 0; j < n; j++)
        assert_true(fabs(rows[j] - ref2[j]) <= 1e-5 * (1.0 + fabs(ref2[j])));
    free(rows), free(cols), free(signs), free(ref), free(ref2), free(orig);
    gq_rotation_free(&r);
}

static void test_fast_transform(void **state)
{
    (void)state;
    gq_hadamard_plan plans[128 + 16];
    int np = paley_plans(plans);
    const int sylvester[] = {1, 2, 64, 512};
    for (size_t i = 0; i < sizeof sylvester / sizeof *sylvester; i++)
        plans[np++] = (gq_hadamard_plan){GQ_HAD_SYLVESTER, 1, sylvester[i], 0};
    const int random[] = {3, 43, 255};
    for (size_t i = 0; i < sizeof random / sizeof *random; i++)
        plans[np++] = (gq_hadamard_plan){GQ_HAD_RANDOM, random[i], 1, 0};
    for (int i = 0; i < np; i++) {
        const int ps[2] = {1, 4};
        for (int k = 0; k < (plans[i].kind == GQ_HAD_SYLVESTER ? 1 : 2); k++) {
            gq_hadamard_plan p = plans[i];
            if (p.kind != GQ_HAD_SYLVESTER)
                p.p = ps[k];
            expect_fast_equals_dense(&p);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plans),
        cmocka_unit_test(test_hadamard_blocks_exact),
        cmocka_unit_test(test_random_blocks),
        cmocka_unit_test(test_fast_transform),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
