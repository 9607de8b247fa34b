/* The codes a method chose reach the packed weights: for RTN, AWQ, PRAQ, GPTQ (act_order on
 * and off, static and dynamic groups) and AffineQuant on every format with a packed kernel,
 * the pipeline keeps each block linear's codes (gq_quant_report.linear_codes, with
 * linear_perm for GPTQ's permuted storage), and the packed linear built from them
 * dequantizes (SIMD and reference kernels) bit for bit to the weights that the quantized model
 * holds, i.e. the weights that were evaluated, and computes their products; a packed model
 * built from the codes gives the same fake-quant twin. stories260K, 4 calibration windows of
 * 64 tokens. */
#include "test_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_rng.h"
#include "methods/gq_gptq.h"
#include "packed/gq_packed.h"
#include "packed_products.h"

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

/* With int8 decode activations, the fused dots agree with the scalar reference on the same
 * quantized activations. */
static void check_q8_products(gq_packed_linear *P, const float *x, int rows, const char *what)
{
    gq_packed_linear_set_act_q8(P, true);
    float *y = malloc((size_t)rows * sizeof *y), *yr = malloc((size_t)rows * sizeof *yr);
    gq_packed_linear_apply(P, y, x, 1);
    gq_packed_linear_matvec_ref(P, yr, x);
    for (int r = 0; r < rows; r++)
        if (fabsf(y[r] - yr[r]) > 1e-4f * (fabsf(yr[r]) + 1.0f))
            fail_msg("%s row %d: int8-activation dot %g, reference %g", what, r, (double)y[r],
                     (double)yr[r]);
    gq_packed_linear_set_act_q8(P, false);
    free(y), free(yr);
}

/* The products of P against out_w (packed_products.h), and its int8-activation decode against
 * its reference. */
static void check_products(gq_packed_linear *P, const float *out_w, int rows, int cols,
                           const char *what)
{
    float *x = packed_check_products(P, out_w, rows, cols, what);
    check_q8_products(P, x, rows, what);
    free(x);
}

/* Every block linear of `out` against the packed linear of its codes (in their column order):
 * the dequantized packed weights equal the evaluated ones bit for bit, and the products match
 * them. Returns how many linears hold their columns permuted. */
static int check_codes(const test_stories *f, const char *fmt_json, const gq_model *out,
                       const gq_quant_report *rep)
{
    gq_quantizer q;
    gq_error err;
    json_t *j = json_loads(fmt_json, 0, NULL);
    assert_int_equal(gq_quantizer_from_json(j, NULL, &q, &err), 0);
    json_decref(j);
    const gq_config *c = &f->fp.cfg;
    assert_int_equal(rep->n_linear_codes, (size_t)c->n_layers * GQ_N_LINEAR);
    int permuted = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            int rows, cols;
            gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
            const size_t i = (size_t)l * GQ_N_LINEAR + k;
            const uint8_t *codes = rep->linear_codes[i];
            if (!codes)
                fail_msg("%s layers.%d.%s: no codes handed over", fmt_json, l,
                         gq_linear_name((gq_linear_kind)k));
            gq_packed_linear *P = gq_packed_linear_from_codes(&q, codes, rows, cols, &err);
            if (!P)
                fail_msg("%s: %s", fmt_json, err.msg);
            if (rep->linear_perm[i]) {
                permuted++;
                assert_int_equal(gq_packed_linear_set_in_perm(P, rep->linear_perm[i], &err), 0);
            }
            float *w = malloc((size_t)rows * cols * sizeof *w);
            for (int ref = 0; ref < 2; ref++) {
                gq_packed_linear_dequantize(P, w, ref);
                if (memcmp(w, out->layers[l].w[k], (size_t)rows * cols * sizeof *w))
                    fail_msg("%s layers.%d.%s: the packed weights differ from the evaluated "
                             "ones", fmt_json, l, gq_linear_name((gq_linear_kind)k));
            }
            if (l == 0)
                check_products(P, out->layers[l].w[k], rows, cols, fmt_json);
            free(w);
            gq_packed_linear_free(P);
        }
    gq_model twin;
    gq_packed_model pm;
    assert_int_equal(gq_model_clone(&f->fp, &twin, &err), 0);
    const gq_packed_codes pc = {(const uint8_t *const *)rep->linear_codes,
                                (const int32_t *const *)rep->linear_perm};
    if (gq_packed_model_build(&f->fp, &q, &pc, false, &twin, &pm, &err))
        fail_msg("%s", err.msg);
    test_assert_linears_equal(&twin, out);
    gq_packed_model_free(&pm);
    gq_model_free(&twin);
    gq_quantizer_free(&q);
    return permuted;
}

#define N_FORMATS (sizeof packed_formats / sizeof *packed_formats)

/* The method on one packed format; returns the linears stored with permuted columns. */
static int run_format(const test_stories *f, const char *method, const char *const *sets,
                      const char *fmt_json)
{
    gq_model out;
    gq_quant_report rep;
    gq_error err;
    if (test_quantize(f, method, sets, fmt_json, NULL, GQ_PROPAGATE_METHOD_DEFAULT, &out, &rep,
                      &err))
        fail_msg("%s on %s: %s", method, fmt_json, err.msg);
    int permuted = check_codes(f, fmt_json, &out, &rep);
    gq_model_free(&out);
    gq_quant_report_free(&rep);
    return permuted;
}

/* The method on the first n_formats packed formats; returns the permuted linears in all. */
static int run_method(void **state, const char *method, const char *const *sets,
                      size_t n_formats)
{
    const test_stories *f = *state;
    if (!f)
        skip();
    int permuted = 0;
    for (size_t i = 0; i < n_formats; i++)
        permuted += run_format(f, method, sets, packed_formats[i]);
    return permuted;
}

static void test_rtn(void **state) { assert_int_equal(run_method(state, "rtn", NULL, N_FORMATS), 0); }
static void test_awq(void **state) { assert_int_equal(run_method(state, "awq", NULL, N_FORMATS), 0); }
static void test_praq(void **state) { assert_int_equal(run_method(state, "praq", NULL, N_FORMATS), 0); }

/* GPTQ stores its group states through the format's store_groups on every packed format (the
 * K-quants from the super-block header bytes of the fit), in column order except for dynamic
 * groups under act_order: those are runs of the permuted columns, stored permuted with the
 * column order beside them. stories260K's rows (64 and 172 wide) are one K-quant super-block,
 * so the K-quants see per-row groups only. */
static void test_gptq(void **state)
{
    static const char *const dyn[] = {NULL};
    static const char *const stat[] = {"static_groups=true", NULL};
    static const char *const act_dyn[] = {"act_order=true", NULL};
    static const char *const act_stat[] = {"act_order=true", "static_groups=true", NULL};
    assert_int_equal(run_method(state, "gptq", dyn, N_FORMATS), 0);
    assert_int_equal(run_method(state, "gptq", stat, N_FORMATS), 0);
    assert_int_equal(run_method(state, "gptq", act_stat, N_FORMATS), 0);
    assert_true(run_method(state, "gptq", act_dyn, N_FORMATS) > 0);
}

/* The permuted storage of dynamic groups under act_order, format by format: every linear that
 * has more than one group per row is stored permuted: with int4 groups of 32 (the int4
 * kernel) and q4_0 blocks all of them, with int8 groups of 64 only down_proj (172 wide; the
 * others are 64 wide), per-channel int4 none (one group per row is a run in any order). */
static void test_gptq_act_order_permuted(void **state)
{
    static const char *const act[] = {"act_order=true", NULL};
    const test_stories *f = *state;
    if (!f)
        skip();
    const int n_layers = f->fp.cfg.n_layers;
    assert_int_equal(run_format(f, "gptq", act, packed_formats[0]), n_layers * GQ_N_LINEAR);
    assert_int_equal(run_format(f, "gptq", act, packed_formats[3]), n_layers * GQ_N_LINEAR);
    assert_int_equal(run_format(f, "gptq", act, packed_formats[2]), n_layers);
    assert_int_equal(run_format(f, "gptq", act, packed_formats[1]), 0);
}

/* GPTQ's codes on rows of several K-quant super-blocks (768 columns: dynamic groups, which
 * stories260K's rows are too narrow for), act_order on and off, every K-quant and int4 g32: the
 * format's dequantize() of the codes, columns put back in order, is the solver's Q bit for bit;
 * for the packed ones the packed linear dequantizes to Q as well. */
static void test_gptq_codes_wide(void **state)
{
    (void)state;
    enum { R = 8, C = 768, N = 96 };
    static const char *const fmts[] = {"q2_K", "q3_K", "q4_K", "q5_K", "q6_K",
                                       "{\"name\": \"int\", \"bits\": 4, \"group_size\": 32}"};
    float *W = malloc(sizeof(float) * R * C), *X = malloc(sizeof(float) * N * C);
    float *Q = malloc(sizeof(float) * R * C), *D = malloc(sizeof(float) * R * C);
    double *H = malloc(sizeof(double) * C * C), *H0 = calloc((size_t)C * C, sizeof(double));
    gq_rng rng;
    gq_rng_seed(&rng, 11);
    for (int i = 0; i < R * C; i++)
        W[i] = (float)gq_rng_normal(&rng) * 0.05f;
    for (int i = 0; i < N * C; i++)
        X[i] = (float)gq_rng_normal(&rng) * (i % C < 8 ? 6.0f : 1.0f); /* outlier inputs */
    for (int t = 0; t < N; t++)
        for (int i = 0; i < C; i++)
            for (int j = 0; j < C; j++)
                H0[(size_t)i * C + j] += 2.0 / N * X[(size_t)t * C + i] * X[(size_t)t * C + j];
    for (size_t f = 0; f < sizeof fmts / sizeof *fmts; f++)
        for (int act = 0; act < 2; act++) {
            gq_quantizer q;
            gq_error err;
            json_t *j = fmts[f][0] == '{' ? json_loads(fmts[f], 0, NULL)
                                          : json_pack("{s:s}", "name", fmts[f]);
            assert_int_equal(gq_quantizer_from_json(j, NULL, &q, &err), 0);
            json_decref(j);
            uint8_t *codes = calloc(1, gq_quantizer_bytes(&q, R, C));
            memcpy(H, H0, sizeof(double) * C * C);
            const gq_gptq_opts o = {0.01, 0.01, 10, 128, act, false};
            gq_gptq_result res;
            if (gq_gptq_quantize_codes(&q, W, R, C, H, &o, Q, codes, &res, &err))
                fail_msg("%s: %s", fmts[f], err.msg);
            assert_true(res.has_codes);
            assert_true((res.in_perm != NULL) == (act == 1));
            assert_int_equal(q.fmt->dequantize(q.params, codes, R, C, D, &err), 0);
            float *back = malloc(sizeof(float) * R * C);
            for (int r = 0; r < R; r++)
                for (int c = 0; c < C; c++)
                    back[(size_t)r * C + (res.in_perm ? res.in_perm[c] : c)] = D[(size_t)r * C + c];
            if (memcmp(back, Q, sizeof(float) * R * C))
                fail_msg("%s act_order=%d: the codes do not dequantize to Q", fmts[f], act);
            gq_packed_linear *P = q.fmt->packing ? gq_packed_linear_from_codes(&q, codes, R, C, &err)
                                                 : NULL;
            if (P) {
                if (res.in_perm)
                    assert_int_equal(gq_packed_linear_set_in_perm(P, res.in_perm, &err), 0);
                gq_packed_linear_dequantize(P, back, true);
                assert_memory_equal(back, Q, sizeof(float) * R * C);
                check_products(P, Q, R, C, fmts[f]);
                gq_packed_linear_free(P);
            }
            free(back), free(codes), free(res.in_perm);
            gq_quantizer_free(&q);
        }
    free(W), free(X), free(Q), free(D), free(H), free(H0);
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
    gq_model out;
    gq_quant_report rep;
    test_quantize_keep_fp(f, "rtn", NULL, packed_formats[3], "layers.1.mlp.*", &out, &rep);
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
        cmocka_unit_test(test_gptq), cmocka_unit_test(test_gptq_act_order_permuted),
        cmocka_unit_test(test_gptq_codes_wide),
        cmocka_unit_test(test_rule_keeps_fp),
    };
    return cmocka_run_group_tests(tests, setup, test_stories_teardown);
}
