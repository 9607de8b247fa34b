/* Every method's output is the same bit for bit whatever the thread count: RTN, GPTQ, AWQ,
 * PRAQ and AffineQuant quantize the real stories260K model (INT3 g32, 8 calibration windows of
 * 64 tokens, so the calibration forward passes and Hessians span several BLAS tiles) with 1, 2
 * and 3 threads; every block linear, every explicit transform, the classifier and the report's
 * per-tensor errors and metrics must be equal. Whatever kernel OpenBLAS selects for this CPU: the products
 * run in fixed single-threaded tiles (core/gq_gemm.h). */
#include "test_quant.h"

#include <stdio.h>
#include <string.h>

#include "core/gq_log.h"
#include "core/gq_threads.h"

#define N_CALIB 8
#define CALIB_CTX 64

static int setup(void **state)
{
    gq_log_set_level(GQ_LOG_WARN);
    const test_stories_opts o = {.n_calib = N_CALIB, .calib_ctx = CALIB_CTX, .calib_seed = 5};
    return test_stories_setup(state, &o);
}

static const char INT3_G32[] =
    "{\"name\": \"int\", \"bits\": 3, \"granularity\": \"group\", \"group_size\": 32}";

static void quantize_ok(const test_stories *f, const char *method, const char *const *sets,
                        int threads, gq_model *out, gq_quant_report *rep)
{
    gq_error err;
    gq_threads_set(threads);
    if (test_quantize(f, method, sets, INT3_G32, NULL, GQ_PROPAGATE_METHOD_DEFAULT, out, rep,
                      &err))
        fail_msg("%s with %d threads: %s", method, threads, err.msg);
}

/* The explicit transforms (dim x dim, or NULL) of every layer are equal bit for bit. */
static void assert_transforms_equal(const gq_model *a, const gq_model *b)
{
    const size_t bytes = (size_t)a->cfg.dim * a->cfg.dim * sizeof(float);
    for (int l = 0; l < a->cfg.n_layers; l++) {
        const float *ta[2] = {a->layers[l].att_in_transform, a->layers[l].ffn_in_transform};
        const float *tb[2] = {b->layers[l].att_in_transform, b->layers[l].ffn_in_transform};
        for (int i = 0; i < 2; i++) {
            assert_true((ta[i] == NULL) == (tb[i] == NULL));
            if (ta[i])
                assert_memory_equal(ta[i], tb[i], bytes);
        }
    }
}

static void assert_reports_equal(const gq_quant_report *a, const gq_quant_report *b)
{
    assert_int_equal(a->n_tensors, b->n_tensors);
    for (int i = 0; i < a->n_tensors; i++) {
        const gq_tensor_report *x = &a->tensors[i], *y = &b->tensors[i];
        assert_string_equal(x->name, y->name);
        assert_memory_equal(&x->recon_err, &y->recon_err, sizeof(double));
        assert_true((x->extra == NULL) == (y->extra == NULL));
        if (x->extra && !json_equal(x->extra, y->extra))
            fail_msg("%s: method metrics differ between thread counts", x->name);
    }
}

static void check_method(const test_stories *f, const char *method, const char *const *sets)
{
    const int saved = gq_threads_get();
    gq_model ref;
    gq_quant_report ref_rep;
    quantize_ok(f, method, sets, 1, &ref, &ref_rep);
    for (int t = 2; t <= 3; t++) {
        gq_model q;
        gq_quant_report rep;
        quantize_ok(f, method, sets, t, &q, &rep);
        print_message("%-11s 1 vs %d threads\n", method, t);
        test_assert_linears_equal(&ref, &q);
        assert_transforms_equal(&ref, &q);
        assert_memory_equal(ref.wcls, q.wcls,
                            (size_t)ref.cfg.vocab_size * ref.cfg.dim * sizeof(float));
        assert_reports_equal(&ref_rep, &rep);
        gq_model_free(&q);
        gq_quant_report_free(&rep);
    }
    gq_threads_set(saved);
    gq_model_free(&ref);
    gq_quant_report_free(&ref_rep);
}

/* test_<method>: the method with the given settings (NULL for none) at 1, 2 and 3 threads. */
#define THREADS_TEST(method, ...)                                 \
    static void test_##method(void **state)                       \
    {                                                             \
        TEST_STORIES_OR_SKIP(f);                                  \
        static const char *const sets[] = {__VA_ARGS__, NULL};    \
        check_method(f, #method, sets);                           \
    }

THREADS_TEST(rtn, NULL)
THREADS_TEST(gptq, "act_order=true")
THREADS_TEST(awq, NULL)
THREADS_TEST(praq, NULL)
THREADS_TEST(affinequant, "epochs=2")

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rtn),  cmocka_unit_test(test_gptq),
        cmocka_unit_test(test_awq),  cmocka_unit_test(test_praq),
        cmocka_unit_test(test_affinequant),
    };
    return cmocka_run_group_tests_name("threads", tests, setup, test_stories_teardown);
}
