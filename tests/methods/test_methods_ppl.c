/* The quality checks on the real stories260K model: at INT3 and INT4 with groups of 32
 * (asymmetric), GPTQ, AWQ and PRAQ reach a lower perplexity than RTN.
 *
 * Protocol: full, ctx 256, the first 8 windows of the TinyStories validation text; calibration:
 * 16 windows of 128 tokens drawn (seed 0) after those evaluated windows, so no method sees the
 * text it is scored on. Every method runs with its reference defaults. */
#include "test_quant.h"

#include <stdio.h>

#include "core/gq_log.h"

#define EVAL_CTX 256
#define EVAL_WINDOWS 8
#define N_CALIB 16
#define CALIB_CTX 128

static int setup(void **state)
{
    gq_log_set_level(GQ_LOG_WARN); /* the pipeline's per-block progress would bury the table */
    const test_stories_opts o = {.calib_first = (size_t)EVAL_WINDOWS * EVAL_CTX,
                                 .n_calib = N_CALIB, .calib_ctx = CALIB_CTX, .calib_seed = 0};
    return test_stories_setup(state, &o);
}

static double perplexity(const test_stories *f, const gq_model *m)
{
    return test_stories_ppl(f, m, EVAL_CTX, EVAL_WINDOWS);
}

/* Perplexity of the model quantized by `method` (reference defaults) to INT`bits` g32 asym. */
static double quantized_ppl(const test_stories *f, const char *method, int bits)
{
    char js[128];
    snprintf(js, sizeof js, "{\"name\": \"int\", \"bits\": %d, \"group_size\": 32, \"zero\": \"asym\"}",
             bits);
    gq_model q;
    gq_quant_report rep;
    gq_error err;
    if (test_quantize(f, method, NULL, js, NULL, GQ_PROPAGATE_METHOD_DEFAULT, &q, &rep, &err))
        fail_msg("%s int%d: %s", method, bits, err.msg);
    double p = perplexity(f, &q);
    gq_model_free(&q);
    gq_quant_report_free(&rep);
    return p;
}

static void check_bits(void **state, int bits)
{
    TEST_STORIES_OR_SKIP(f);
    double fp = perplexity(f, &f->fp);
    double rtn = quantized_ppl(f, "rtn", bits);
    print_message("INT%d g32 asym, full protocol ctx %d, %d windows: fp %.4f, rtn %.4f\n", bits,
                  EVAL_CTX, EVAL_WINDOWS, fp, rtn);
    static const char *const methods[] = {"gptq", "awq", "praq"};
    for (int i = 0; i < 3; i++) {
        double p = quantized_ppl(f, methods[i], bits);
        print_message("  %-5s %.4f\n", methods[i], p);
        if (!(p < rtn))
            fail_msg("%s INT%d g32: perplexity %.4f is not below RTN's %.4f", methods[i], bits, p,
                     rtn);
    }
    assert_true(rtn > fp);
}

static void test_int3_g32(void **state) { check_bits(state, 3); }
static void test_int4_g32(void **state) { check_bits(state, 4); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int3_g32),
        cmocka_unit_test(test_int4_g32),
    };
    return cmocka_run_group_tests_name("methods_ppl", tests, setup, test_stories_teardown);
}
