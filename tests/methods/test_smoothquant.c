/* SmoothQuant and method chains on stories260K (4 calibration windows of 64 tokens):
 *   - the smoothed FP model (every linear kept FP by a rule, so the chain's weight method has
 *     nothing to round) computes the FP model's logits to 1e-5 of their largest magnitude (as
 *     AWQ's folding is tested), and each folded
 *     product g'_j W'[r, j] equals g_j W[r, j] (norm weight times column);
 *   - the scales of block 0's attention group are max|X_j|^a / max|W_j|^(1-a) recomputed here
 *     from the embedded calibration windows;
 *   - smoothquant+rtn is RTN applied to the smoothed model, bit for bit;
 *   - chains are refused when malformed (names the member), from JSON and from the CLI form. */
#include "test_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/gq_forward.h"

static int setup(void **state)
{
    const test_stories_opts o = {.n_calib = 4, .calib_ctx = 64, .calib_seed = 5};
    return test_stories_setup(state, &o);
}

static const char *const int4 = "{\"name\": \"int\", \"bits\": 4, \"group_size\": 32}";

/* The FP model smoothed with alpha: the chain smoothquant+rtn with every linear kept FP. */
static void smoothed(const test_stories *f, const char *alpha_set, gq_model *out)
{
    const char *const sets[] = {alpha_set, NULL};
    gq_quant_report rep;
    test_quantize_keep_fp(f, "smoothquant,rtn", sets, int4, "layers.*", out, &rep);
    gq_quant_report_free(&rep);
}

/* g'_j W'[r, j] == g_j W[r, j] to float rounding for the linears reading norm g. */
static void expect_products(const gq_model *a, const gq_model *b, int l, bool ffn)
{
    const gq_layer *A = &a->layers[l], *B = &b->layers[l];
    const float *ga = ffn ? A->rms_ffn : A->rms_att, *gb = ffn ? B->rms_ffn : B->rms_att;
    const gq_linear_kind att[3] = {GQ_LIN_Q, GQ_LIN_K, GQ_LIN_V}, mlp[2] = {GQ_LIN_GATE, GQ_LIN_UP};
    const gq_linear_kind *kinds = ffn ? mlp : att;
    for (int i = 0; i < (ffn ? 2 : 3); i++) {
        int rows, cols;
        gq_linear_shape(&a->cfg, kinds[i], &rows, &cols);
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < cols; j++) {
                const double pa = (double)ga[j] * A->w[kinds[i]][(size_t)r * cols + j];
                const double pb = (double)gb[j] * B->w[kinds[i]][(size_t)r * cols + j];
                if (fabs(pa - pb) > 1e-6 * fabs(pa) + 1e-12)
                    fail_msg("layers.%d.%s[%d, %d]: %g vs %g", l, gq_linear_name(kinds[i]), r,
                             j, pa, pb);
            }
    }
}

static void test_fp_invariance(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    gq_model s;
    smoothed(f, "alpha=0.5", &s);
    const int T = 64;
    float *la = test_logits(&f->fp, f->ds.tokens, T), *lb = test_logits(&s, f->ds.tokens, T);
    double worst = 0.0, amax = 0.0;
    for (size_t i = 0; i < (size_t)T * s.cfg.vocab_size; i++) {
        worst = fmax(worst, fabs((double)la[i] - lb[i]));
        amax = fmax(amax, fabs((double)la[i]));
    }
    printf("smoothed vs FP logits: max diff %.3g of max |logit| %.3g\n", worst, amax);
    assert_true(worst < 1e-5 * amax);
    int moved = 0;
    for (int l = 0; l < s.cfg.n_layers; l++) {
        expect_products(&f->fp, &s, l, false);
        expect_products(&f->fp, &s, l, true);
        for (int j = 0; j < s.cfg.dim; j++)
            moved += s.layers[l].rms_att[j] != f->fp.layers[l].rms_att[j];
    }
    assert_true(moved > s.cfg.n_layers * s.cfg.dim / 2); /* the scales are not all 1 */
    free(la), free(lb);
    gq_model_free(&s);
}

/* Block 0's attention scales from the calibration windows: X = RMSNorm(embed(tokens)). */
static void test_scales_formula(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    const double alpha = 0.75;
    gq_model s;
    smoothed(f, "alpha=0.75", &s);
    const gq_config *c = &f->fp.cfg;
    const int n = f->n_calib * f->calib_ctx, d = c->dim;
    float *x = malloc((size_t)n * d * sizeof *x), *xn = malloc((size_t)n * d * sizeof *xn);
    gq_embed(&f->fp, f->calib, n, x);
    gq_rmsnorm(xn, x, f->fp.layers[0].rms_att, n, d);
    const gq_linear_kind qkv[3] = {GQ_LIN_Q, GQ_LIN_K, GQ_LIN_V};
    for (int j = 0; j < d; j++) {
        double xm = 0.0, wm = 0.0;
        for (int t = 0; t < n; t++)
            xm = fmax(xm, fabs(xn[(size_t)t * d + j]));
        for (int i = 0; i < 3; i++) {
            int rows, cols;
            gq_linear_shape(c, qkv[i], &rows, &cols);
            for (int r = 0; r < rows; r++)
                wm = fmax(wm, fabs(f->fp.layers[0].w[qkv[i]][(size_t)r * cols + j]));
        }
        const double want = pow(fmax(xm, 1e-5), alpha) / pow(fmax(wm, 1e-5), 1.0 - alpha);
        const double got = (double)f->fp.layers[0].rms_att[j] / s.layers[0].rms_att[j];
        if (fabs(got - want) > 1e-5 * want)
            fail_msg("channel %d: scale %g, expected %g", j, got, want);
    }
    free(x), free(xn);
    gq_model_free(&s);
}

/* smoothquant+rtn = rtn on the smoothed model; its report says the chain. */
static void test_chain_composes(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    test_stories g = *f;
    smoothed(f, "alpha=0.5", &g.fp);
    gq_model a, b;
    gq_quant_report ra, rb;
    gq_error err;
    assert_int_equal(test_quantize(f, "smoothquant,rtn", NULL, int4, NULL,
                                   GQ_PROPAGATE_METHOD_DEFAULT, &a, &ra, &err), 0);
    assert_int_equal(test_quantize(&g, "rtn", NULL, int4, NULL, GQ_PROPAGATE_METHOD_DEFAULT, &b,
                                   &rb, &err), 0);
    test_assert_linears_equal(&a, &b);
    for (int l = 0; l < a.cfg.n_layers; l++)
        assert_memory_equal(a.layers[l].rms_ffn, b.layers[l].rms_ffn, a.cfg.dim * sizeof(float));
    for (size_t i = 0; i < ra.n_linear_codes; i++)
        assert_non_null(ra.linear_codes[i]);
    gq_model_free(&a), gq_model_free(&b), gq_model_free(&g.fp);
    gq_quant_report_free(&ra), gq_quant_report_free(&rb);
}

static void expect_refused(const char *json, const char *msg)
{
    json_t *j = json_loads(json, JSON_DECODE_ANY, NULL);
    assert_non_null(j);
    gq_method_cfg cfg;
    gq_error err;
    if (gq_method_cfg_from_json(j, "$.m", &cfg, &err) == 0)
        fail_msg("%s was accepted", json);
    if (!strstr(err.msg, msg))
        fail_msg("%s: \"%s\" does not say \"%s\"", json, err.msg, msg);
    json_decref(j);
}

static void test_chain_validation(void **state)
{
    (void)state;
    expect_refused("[]", "$.m: an empty method chain");
    expect_refused("[{\"name\": \"smoothquant\"}, {\"name\": \"rtm\"}]",
                   "$.m[1].name: unknown method \"rtm\"");
    expect_refused("[{\"name\": \"rtn\"}, {\"name\": \"smoothquant\"}]",
                   "$.m[1]: \"smoothquant\" only transforms the FP weights and must come before "
                   "the weight method \"rtn\"");
    expect_refused("[{\"name\": \"smoothquant\"}, {\"name\": \"rtn\"}, {\"name\": \"gptq\"}]",
                   "$.m[2]: a second weight method \"gptq\" after \"rtn\"");
    expect_refused("[{\"name\": \"smoothquant\"}]", "$.m: no weight method in the chain");
    expect_refused("[{\"name\": \"smoothquant\"}, [{\"name\": \"rtn\"}]]",
                   "$.m[1]: expected a method name or an object");
    expect_refused("[{\"name\": \"smoothquant\", \"alpha\": 2}, {\"name\": \"rtn\"}]",
                   "$.m[0].alpha");
    expect_refused("{\"name\": \"smoothquant\"}", "only transforms the weights: list it before");

    gq_method_cfg cfg;
    gq_error err;
    json_t *p = json_pack("{s:f, s:b}", "alpha", 0.25, "act_order", 1);
    assert_int_equal(gq_method_cfg_init(&cfg, "smoothquant,gptq", p, "--method", &err), 0);
    assert_string_equal(gq_method_name(cfg.method), "smoothquant+gptq");
    assert_true(gq_method_cfg_needs_calibration(&cfg));
    json_t *back = gq_method_cfg_to_json(&cfg);
    assert_true(json_real_value(json_object_get(json_array_get(back, 0), "alpha")) == 0.25);
    assert_true(json_is_true(json_object_get(json_array_get(back, 1), "act_order")));
    json_decref(back);
    gq_method_cfg_free(&cfg);
    json_object_set_new(p, "damp", json_real(0.1));
    assert_int_equal(gq_method_cfg_init(&cfg, "smoothquant,gptq", p, "--method-set", &err), -1);
    assert_non_null(strstr(err.msg, "--method-set.damp: no method of the chain"));
    json_decref(p);
    /* a one-member list is the method itself */
    json_t *one = json_loads("[\"rtn\"]", 0, NULL);
    assert_int_equal(gq_method_cfg_from_json(one, "$", &cfg, &err), 0);
    assert_string_equal(gq_method_name(cfg.method), "rtn");
    gq_method_cfg_free(&cfg);
    json_decref(one);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp_invariance), cmocka_unit_test(test_scales_formula),
        cmocka_unit_test(test_chain_composes), cmocka_unit_test(test_chain_validation),
    };
    return cmocka_run_group_tests(tests, setup, test_stories_teardown);
}
