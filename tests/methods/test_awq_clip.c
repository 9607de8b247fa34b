/* AWQ's clipping search (methods/awq_clip.h): the stacked search (all candidates of a block of
 * rows in one rounding and one product per group) and the one-candidate-at-a-time search choose
 * the same factors, with the same errors, bit for bit as a reference written out here (each
 * candidate rounds the whole clipped weight; per row and group the squared product elements
 * summed over the tokens in order), with 1 and 2 threads, on shapes with partial blocks of
 * rows, a shorter last group, several product tiles and one candidate, for int groups and
 * channels, q4_0 and MX (whose power-of-two scales tie candidates: the first must win); a
 * per-tensor format takes the per-candidate path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_gemm.h"
#include "core/gq_threads.h"
#include "methods/awq_clip.h"

typedef struct {
    int rows, cols, m, n_cand;
    const char *format; /* JSON of the format */
} clip_case;

/* Uniform in [0, 1): xorshift64*. */
static double uniform(uint64_t *s)
{
    *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
    return (double)((*s * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

/* Roughly normal values with a few large ones per row, so that clipping pays off somewhere. */
static void fill(float *x, size_t n, uint64_t seed)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        double v = uniform(&s) + uniform(&s) + uniform(&s) - 1.5;
        x[i] = (float)(uniform(&s) < 0.02 ? 6.0 * v : v);
    }
}

/* The search as stated: per candidate the whole weight clipped and rounded, then per group
 * E = Xs[:, group] · D[:, group]^T and per (row, group) the mean over the tokens (in order) of
 * E^2; the first candidate of least error wins. */
static void reference(const gq_awq_clip_problem *pb, float *best_f, double *best_e)
{
    const int rows = pb->rows, cols = pb->cols, gs = pb->gs, ng = (cols + gs - 1) / gs;
    const size_t size = (size_t)rows * cols, m = pb->m;
    float *D = malloc(size * sizeof *D), *E = malloc(m * rows * sizeof *E);
    gq_error err;
    assert_non_null(D), assert_non_null(E);
    for (size_t i = 0; i < (size_t)rows * ng; i++)
        best_e[i] = INFINITY, best_f[i] = 1.0f;
    for (int ci = 0; ci < pb->n_cand; ci++) {
        const float f = 1.0f - (float)ci / pb->clip_grid;
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < cols; j++) {
                float mv = pb->amax[(size_t)r * ng + j / gs] * f, w = pb->W[(size_t)r * cols + j];
                D[(size_t)r * cols + j] = w > mv ? mv : w < -mv ? -mv : w;
            }
        assert_int_equal(gq_quantizer_run(pb->q, D, rows, cols, NULL, NULL, D, &err), 0);
        for (size_t i = 0; i < size; i++)
            D[i] -= pb->W[i];
        for (int gi = 0; gi < ng; gi++) {
            int c0 = gi * gs, len = c0 + gs < cols ? gs : cols - c0;
            gq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, rows, len, 1.0f,
                     pb->Xs + c0, cols, D + c0, cols, 0.0f, E, rows);
            for (int r = 0; r < rows; r++) {
                double e = 0.0;
                for (size_t t = 0; t < m; t++)
                    e += (double)E[t * rows + r] * E[t * rows + r];
                if (e / (double)m < best_e[(size_t)r * ng + gi]) {
                    best_e[(size_t)r * ng + gi] = e / (double)m;
                    best_f[(size_t)r * ng + gi] = f;
                }
            }
        }
    }
    free(D), free(E);
}

typedef int (*search_fn)(const gq_awq_clip_problem *, float *, double *, gq_error *);

static void check_case(const clip_case *cc, bool rowwise)
{
    gq_quantizer q;
    gq_error err;
    json_error_t jerr;
    json_t *spec = json_loads(cc->format, 0, &jerr);
    assert_non_null(spec);
    assert_int_equal(gq_quantizer_from_json(spec, "test", &q, &err), 0);
    json_decref(spec);
    assert_int_equal(gq_awq_clip_rowwise(&q, cc->cols), rowwise);
    int gs = q.fmt->group_cols(q.params, cc->cols);
    gs = gs > 0 && gs < cc->cols ? gs : cc->cols;
    const int ng = (cc->cols + gs - 1) / gs;
    const size_t groups = (size_t)cc->rows * ng;
    float *W = malloc((size_t)cc->rows * cc->cols * sizeof *W);
    float *Xs = malloc((size_t)cc->m * cc->cols * sizeof *Xs);
    float *amax = malloc(groups * sizeof *amax), *want = malloc(groups * sizeof *want);
    float *got = malloc(groups * sizeof *got);
    double *want_e = malloc(groups * sizeof *want_e), *got_e = malloc(groups * sizeof *got_e);
    assert_true(W && Xs && amax && want && got && want_e && got_e);
    fill(W, (size_t)cc->rows * cc->cols, 11 + cc->rows);
    fill(Xs, (size_t)cc->m * cc->cols, 23 + cc->cols);
    gq_awq_clip_amax(W, cc->rows, cc->cols, gs, amax);
    const gq_awq_clip_problem pb = {.q = &q, .W = W, .rows = cc->rows, .cols = cc->cols,
                                    .gs = gs, .amax = amax, .Xs = Xs, .m = (size_t)cc->m,
                                    .n_cand = cc->n_cand, .clip_grid = 20};
    reference(&pb, want, want_e);
    size_t clipped = 0; /* the test means something only if some group is clipped */
    for (size_t i = 0; i < groups; i++)
        clipped += want[i] != 1.0f;
    if (cc->n_cand > 1)
        assert_true(clipped > 0 && clipped < groups);
    const search_fn fns[3] = {gq_awq_clip_per_candidate, gq_awq_clip_factors,
                              gq_awq_clip_stacked};
    for (int threads = 1; threads <= 2; threads++) {
        gq_threads_set(threads);
        for (int i = 0; i < (rowwise ? 3 : 2); i++) {
            memset(got, 0, groups * sizeof *got);
            if (fns[i](&pb, got, got_e, &err))
                fail_msg("%s: %s", cc->format, err.msg);
            if (memcmp(got, want, groups * sizeof *got) ||
                memcmp(got_e, want_e, groups * sizeof *got_e))
                fail_msg("search %d, %d threads, %d x %d, %d candidates, %s: factors or errors "
                         "differ", i, threads, cc->rows, cc->cols, cc->n_cand, cc->format);
        }
    }
    gq_quantizer_free(&q);
    free(W), free(Xs), free(amax), free(want), free(got), free(want_e), free(got_e);
}

static const char INT4_G32[] =
    "{\"name\": \"int\", \"bits\": 4, \"granularity\": \"group\", \"group_size\": 32}";

/* Blocks of 256 rows (one product tile): 130 and 7 rows are one partial block, 300 rows a whole
 * block and a partial one, 512 two whole blocks; 100 columns end on a 4-wide group; 300 tokens
 * span two tiles of tokens. */
static void test_int_groups(void **state)
{
    (void)state;
    const clip_case cases[] = {
        {130, 100, 64, 10, INT4_G32}, {7, 100, 40, 10, INT4_G32}, {300, 256, 300, 10, INT4_G32},
        {512, 64, 40, 10, INT4_G32},  {60, 64, 50, 3, INT4_G32},     {45, 96, 33, 1, INT4_G32},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(&cases[i], true);
}

static void test_other_formats(void **state)
{
    (void)state;
    const clip_case rowwise[] = {
        {130, 64, 64, 10, "{\"name\": \"int\", \"bits\": 3, \"granularity\": \"channel\"}"},
        {75, 96, 48, 10, "{\"name\": \"q4_0\"}"},
        {300, 64, 48, 10, "{\"name\": \"mx\"}"},
    };
    for (size_t i = 0; i < sizeof rowwise / sizeof rowwise[0]; i++)
        check_case(&rowwise[i], true);
    const clip_case per_tensor = {
        70, 64, 48, 10, "{\"name\": \"int\", \"bits\": 3, \"granularity\": \"tensor\"}"};
    check_case(&per_tensor, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int_groups),
        cmocka_unit_test(test_other_formats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
