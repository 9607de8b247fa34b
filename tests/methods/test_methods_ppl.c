/* The quality checks on the real stories260K model: at INT3 and INT4 with groups of 32
 * (asymmetric), GPTQ, AWQ and PRAQ reach a lower perplexity than RTN.
 *
 * Protocol: full, ctx 256, the first 8 windows of the TinyStories validation text; calibration:
 * 16 windows of 128 tokens drawn (seed 0) after those evaluated windows, so no method sees the
 * text it is scored on. Every method runs with its reference defaults. */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/gq_calib.h"
#include "core/gq_log.h"
#include "eval/gq_eval.h"
#include "methods/gq_method.h"
#include "model/gq_model.h"
#include "text/gq_dataset.h"
#include "text/gq_tokenizer.h"

#define EVAL_CTX 256
#define EVAL_WINDOWS 8
#define N_CALIB 16
#define CALIB_CTX 128

typedef struct {
    gq_model fp;
    gq_dataset ds;
    int *calib;
} fixture;

static int setup(void **state)
{
    char model[1024], tok[1024], text[1024];
    *state = NULL;
    gq_log_set_level(GQ_LOG_WARN); /* the pipeline's per-block progress would bury the table */
    if (!test_asset("models/stories260K/stories260K.bin", model, sizeof model) ||
        !test_asset("models/stories260K/tok512.bin", tok, sizeof tok) ||
        !test_asset("text/tinystories/tinystories_val.txt", text, sizeof text))
        return 0;
    fixture *f = calloc(1, sizeof *f);
    gq_error err;
    gq_tokenizer *t = NULL;
    if (gq_model_load(model, &f->fp, &err) ||
        gq_tokenizer_load(tok, f->fp.cfg.vocab_size, &t, &err) ||
        gq_dataset_load(text, t, &f->ds, &err) ||
        gq_calib_windows(&f->ds, (size_t)EVAL_WINDOWS * EVAL_CTX, N_CALIB, CALIB_CTX, 0,
                         &f->calib, &err)) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return -1;
    }
    gq_tokenizer_free(t);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f) {
        gq_model_free(&f->fp);
        gq_dataset_free(&f->ds);
        free(f->calib);
        free(f);
    }
    return 0;
}

static double perplexity(const fixture *f, const gq_model *m)
{
    gq_eval_opts o = gq_eval_opts_default(EVAL_CTX);
    o.max_windows = EVAL_WINDOWS;
    o.progress = false;
    gq_eval_result r;
    gq_error err;
    assert_int_equal(gq_eval_perplexity(m, &f->ds, &o, NULL, NULL, &r, &err), 0);
    return r.ppl;
}

/* Perplexity of the model quantized by `method` (reference defaults) to INT`bits` g32 asym. */
static double quantized_ppl(const fixture *f, const char *method, int bits)
{
    char js[128];
    snprintf(js, sizeof js, "{\"name\": \"int\", \"bits\": %d, \"group_size\": 32, \"zero\": \"asym\"}",
             bits);
    json_t *fmt = json_loads(js, 0, NULL);
    gq_quant_plan plan;
    memset(&plan, 0, sizeof plan);
    gq_error err;
    assert_int_equal(gq_method_cfg_init(&plan.method, method, NULL, NULL, &err), 0);
    assert_int_equal(gq_quantizer_from_json(fmt, NULL, &plan.quantizer, &err), 0);
    json_decref(fmt);
    plan.calib_tokens = f->calib;
    plan.n_calib = N_CALIB;
    plan.calib_ctx = CALIB_CTX;
    gq_model q;
    gq_quant_report rep;
    int rc = gq_quantize_model(&f->fp, &plan, &q, &rep, &err);
    if (rc)
        fail_msg("%s int%d: %s", method, bits, err.msg);
    double p = perplexity(f, &q);
    gq_model_free(&q);
    gq_quant_report_free(&rep);
    gq_quantizer_free(&plan.quantizer);
    gq_method_cfg_free(&plan.method);
    return p;
}

static void check_bits(void **state, int bits)
{
    fixture *f = *state;
    if (!f) {
        skip();
        return;
    }
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
    return cmocka_run_group_tests_name("methods_ppl", tests, setup, teardown);
}
