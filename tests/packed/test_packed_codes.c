/* The codes a method chose reach the packed weights: for every method that rounds through its
 * format (RTN, AWQ, PRAQ, AffineQuant) and every format with a packed kernel, the pipeline
 * keeps each block linear's codes (gq_quant_report.linear_codes), and the packed linear built
 * from them dequantizes (SIMD and reference kernels) bit for bit to the weights that the
 * quantized model holds, i.e. the weights that were evaluated; a packed model built from the
 * codes gives the same fake-quant twin. stories260K, 4 calibration windows of 64 tokens. */
#include "test_quant.h"

#include <stdlib.h>
#include <string.h>

#include "packed/gq_packed.h"

static int setup(void **state)
{
    const test_stories_opts o = {.n_calib = 4, .calib_ctx = 64, .calib_seed = 3};
    return test_stories_setup(state, &o);
}

static const char *const packed_formats[] = {
    "{\"name\": \"int\", \"bits\": 4, \"group_size\": 32, \"zero\": \"asym\"}",
    "{\"name\": \"int\", \"bits\": 4, \"granularity\": \"channel\", \"zero\": \"sym_gptq\"}",
    "{\"name\": \"int\", \"bits\": 8, \"group_size\": 64, \"zero\": \"sym\"}",
    "{\"name\": \"q4_0\"}", "{\"name\": \"q4_1\"}", "{\"name\": \"q8_0\"}",
    "{\"name\": \"mxfp4_ggml\"}", "{\"name\": \"q4_K\"}", "{\"name\": \"q6_K\"}",
};

/* Every block linear of `out` against the packed linear of its codes. */
static void check_codes(const test_stories *f, const char *fmt_json, const gq_model *out,
                        const gq_quant_report *rep)
{
    gq_quantizer q;
    gq_error err;
    json_t *j = json_loads(fmt_json, 0, NULL);
    assert_int_equal(gq_quantizer_from_json(j, NULL, &q, &err), 0);
    json_decref(j);
    const gq_config *c = &f->fp.cfg;
    assert_int_equal(rep->n_linear_codes, (size_t)c->n_layers * GQ_N_LINEAR);
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            int rows, cols;
            gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
            const uint8_t *codes = rep->linear_codes[(size_t)l * GQ_N_LINEAR + k];
            assert_non_null(codes);
            gq_packed_linear *P = gq_packed_linear_from_codes(&q, codes, rows, cols, &err);
            if (!P)
                fail_msg("%s: %s", fmt_json, err.msg);
            float *w = malloc((size_t)rows * cols * sizeof *w);
            for (int ref = 0; ref < 2; ref++) {
                gq_packed_linear_dequantize(P, w, ref);
                if (memcmp(w, out->layers[l].w[k], (size_t)rows * cols * sizeof *w))
                    fail_msg("%s layers.%d.%s: the packed weights differ from the evaluated "
                             "ones", fmt_json, l, gq_linear_name((gq_linear_kind)k));
            }
            free(w);
            gq_packed_linear_free(P);
        }
    gq_model twin;
    gq_packed_model pm;
    assert_int_equal(gq_model_clone(&f->fp, &twin, &err), 0);
    if (gq_packed_model_build(&f->fp, &q, (const uint8_t *const *)rep->linear_codes, false,
                              &twin, &pm, &err))
        fail_msg("%s", err.msg);
    test_assert_linears_equal(&twin, out);
    gq_packed_model_free(&pm);
    gq_model_free(&twin);
    gq_quantizer_free(&q);
}

#define N_FORMATS (sizeof packed_formats / sizeof *packed_formats)

/* The method on the first n_formats packed formats. */
static void run_method(void **state, const char *method, const char *const *sets,
                       size_t n_formats)
{
    TEST_STORIES_OR_SKIP(f);
    for (size_t i = 0; i < n_formats; i++) {
        gq_model out;
        gq_quant_report rep;
        gq_error err;
        if (test_quantize(f, method, sets, packed_formats[i], NULL, GQ_PROPAGATE_METHOD_DEFAULT,
                          &out, &rep, &err))
            fail_msg("%s on %s: %s", method, packed_formats[i], err.msg);
        check_codes(f, packed_formats[i], &out, &rep);
        gq_model_free(&out);
        gq_quant_report_free(&rep);
    }
}

static void test_rtn(void **state) { run_method(state, "rtn", NULL, N_FORMATS); }
static void test_awq(void **state) { run_method(state, "awq", NULL, N_FORMATS); }
static void test_praq(void **state) { run_method(state, "praq", NULL, N_FORMATS); }

/* GPTQ stores its group states through the format's store_groups (the grid and the legacy
 * llama.cpp formats: all but the K-quants at the end of the list): groups without act_order,
 * static groups under act_order, per channel under act_order. */
static void test_gptq(void **state)
{
    static const char *const act_static[] = {"act_order=true", "static_groups=true", NULL};
    static const char *const act[] = {"act_order=true", NULL};
    run_method(state, "gptq", NULL, N_FORMATS - 2);
    run_method(state, "gptq", act_static, N_FORMATS - 2);
    TEST_STORIES_OR_SKIP(f);
    gq_model out;
    gq_quant_report rep;
    gq_error err;
    assert_int_equal(test_quantize(f, "gptq", act, packed_formats[1], NULL,
                                   GQ_PROPAGATE_METHOD_DEFAULT, &out, &rep, &err), 0);
    check_codes(f, packed_formats[1], &out, &rep);
    gq_model_free(&out);
    gq_quant_report_free(&rep);
}

/* Dynamic groups under act_order are runs of the permuted columns, which no storage here
 * expresses: no codes; and the K-quants (no store_groups) give none either. */
static void test_gptq_without_codes(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    static const char *const act[] = {"act_order=true", NULL};
    const char *const *sets[2] = {act, NULL};
    const char *fmts[2] = {packed_formats[0], packed_formats[N_FORMATS - 2]};
    for (int i = 0; i < 2; i++) {
        gq_model out;
        gq_quant_report rep;
        gq_error err;
        assert_int_equal(test_quantize(f, "gptq", sets[i], fmts[i], NULL,
                                       GQ_PROPAGATE_METHOD_DEFAULT, &out, &rep, &err), 0);
        for (size_t j = 0; j < rep.n_linear_codes; j++)
            assert_null(rep.linear_codes[j]);
        gq_model_free(&out);
        gq_quant_report_free(&rep);
    }
}

static void test_affinequant(void **state)
{
    static const char *const sets[] = {"epochs=1", "train_bits=4", NULL};
    /* not the K-quants: their 256-column groups do not divide this model's linears alike,
     * which AffineQuant's training refuses */
    run_method(state, "affinequant", sets, N_FORMATS - 2);
}

/* A linear kept FP by a rule has no codes; the others keep theirs. */
static void test_rule_keeps_fp(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    gq_tensor_rule rule;
    memset(&rule, 0, sizeof rule);
    rule.pattern = (char *)"layers.1.mlp.*";
    rule.keep_fp = true;
    gq_model out;
    gq_quant_report rep;
    gq_error err;
    assert_int_equal(test_quantize(f, "rtn", NULL, packed_formats[3], &rule,
                                   GQ_PROPAGATE_METHOD_DEFAULT, &out, &rep, &err), 0);
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        bool mlp = k == GQ_LIN_GATE || k == GQ_LIN_UP || k == GQ_LIN_DOWN;
        assert_true((rep.linear_codes[GQ_N_LINEAR + k] == NULL) == mlp);
        assert_non_null(rep.linear_codes[k]);
    }
    gq_model_free(&out);
    gq_quant_report_free(&rep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rtn),  cmocka_unit_test(test_awq),
        cmocka_unit_test(test_praq), cmocka_unit_test(test_affinequant),
        cmocka_unit_test(test_gptq), cmocka_unit_test(test_gptq_without_codes),
        cmocka_unit_test(test_rule_keeps_fp),
    };
    return cmocka_run_group_tests(tests, setup, test_stories_teardown);
}
