/* AffineQuant through the pipeline on the real stories260K model, INT3 g32, with a tiny
 * calibration set (N_CALIB windows x CALIB_CTX tokens of the TinyStories validation text):
 *   - degenerate setting (no transforms, no clipping, 0 epochs) = RTN bit for bit;
 *   - training: the block loss falls over epochs, explicit transforms are stored and counted,
 *     the llama2.c saver refuses them, the first block's output error is below AWQ's on the
 *     same windows, and perplexity (full protocol, a few windows) is below RTN's;
 *   - clear errors for formats without bits and for rules that keep a linear FP. */
#include "test_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/gq_forward.h"

#define N_CALIB 8
#define CALIB_CTX 64
#define EPOCHS "6"

static int setup(void **state)
{
    const test_stories_opts o = {.n_calib = N_CALIB, .calib_ctx = CALIB_CTX, .calib_seed = 11};
    return test_stories_setup(state, &o);
}

static const char INT3_G32[] =
    "{\"name\": \"int\", \"bits\": 3, \"granularity\": \"group\", \"group_size\": 32}";

static void run_ok(const test_stories *f, const char *name, const char *const *sets,
                   gq_model *out, gq_quant_report *rep)
{
    gq_error err;
    int rc = test_quantize(f, name, sets, INT3_G32, NULL, GQ_PROPAGATE_METHOD_DEFAULT, out, rep,
                           &err);
    if (rc)
        fprintf(stderr, "%s: %s\n", name, err.msg);
    assert_int_equal(rc, 0);
}

static void test_degenerate_equals_rtn(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    const char *const sets[] = {"let=false", "lwc=false", "epochs=0", NULL};
    gq_model aq, rtn;
    gq_quant_report ra, rr;
    run_ok(f, "affinequant", sets, &aq, &ra);
    run_ok(f, "rtn", NULL, &rtn, &rr);
    assert_false(gq_model_has_transforms(&aq));
    test_assert_linears_equal(&aq, &rtn);
    assert_int_equal(ra.model_bytes, rr.model_bytes);
    gq_model_free(&aq), gq_model_free(&rtn);
    gq_quant_report_free(&ra), gq_quant_report_free(&rr);
}

/* Mean squared error of block 0 of `q` against block 0 of `fp` on the embedded calibration
 * windows (the same inputs for every method: the embeddings stay FP). */
static double block0_mse(const test_stories *f, const gq_model *q)
{
    const gq_config *c = &f->fp.cfg;
    const int n = N_CALIB * CALIB_CTX;
    gq_error err;
    gq_forward_ws *ws = gq_forward_ws_new(c, n, &err);
    float *a = malloc((size_t)n * c->dim * sizeof *a), *b = malloc((size_t)n * c->dim * sizeof *b);
    assert_non_null(ws);
    gq_embed(&f->fp, f->calib, n, a);
    memcpy(b, a, (size_t)n * c->dim * sizeof *a);
    gq_block_forward(&f->fp, 0, a, N_CALIB, CALIB_CTX, ws, NULL);
    gq_block_forward(q, 0, b, N_CALIB, CALIB_CTX, ws, NULL);
    double s = 0;
    for (size_t i = 0; i < (size_t)n * c->dim; i++)
        s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    free(a), free(b), gq_forward_ws_free(ws);
    return s / ((double)n * c->dim);
}

/* Full protocol, ctx 256, the first 6 windows. */
static double ppl(const test_stories *f, const gq_model *m)
{
    return test_stories_ppl(f, m, 256, 6);
}

static void test_training(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    const gq_config *c = &f->fp.cfg;
    const char *const sets[] = {"epochs=" EPOCHS, "lr=0.01", "lwc_lr=0.05", NULL};
    gq_model aq, awq, rtn;
    gq_quant_report ra, rw, rr;
    run_ok(f, "affinequant", sets, &aq, &ra);
    run_ok(f, "awq", NULL, &awq, &rw);
    run_ok(f, "rtn", NULL, &rtn, &rr);

    /* the loss falls over the epochs of every block */
    for (int l = 0; l < c->n_layers; l++) {
        json_t *x = ra.tensors[ra.n_tensors - c->n_layers * GQ_N_LINEAR + l * GQ_N_LINEAR].extra;
        json_t *ep = json_object_get(x, "block_loss_epochs");
        assert_int_equal(json_array_size(ep), atoi(EPOCHS));
        double first = json_real_value(json_array_get(ep, 0));
        double last = json_real_value(json_array_get(ep, json_array_size(ep) - 1));
        print_message("layer %d: loss init %.4g, epochs %.4g -> %.4g, repairs %lld\n", l,
                      json_real_value(json_object_get(x, "block_loss_init")), first, last,
                      json_integer_value(json_object_get(x, "dominance_repairs")));
        assert_true(last < first);
    }
    /* explicit transforms: stored, counted, named, and refused by the llama2.c saver */
    assert_true(gq_model_has_transforms(&aq));
    for (int l = 0; l < c->n_layers; l++)
        assert_true(aq.layers[l].att_in_transform && aq.layers[l].ffn_in_transform);
    assert_int_equal(ra.model_bytes,
                     rr.model_bytes + 2 * (size_t)c->n_layers * c->dim * c->dim * sizeof(float));
    bool noted = false;
    for (size_t i = 0; i < json_array_size(ra.notes); i++)
        noted |= strstr(json_string_value(json_array_get(ra.notes, i)),
                        "explicit input transforms stay fp32") != NULL;
    assert_true(noted);
    char *dir = test_tmpdir("affinequant");
    char path[1200];
    snprintf(path, sizeof path, "%s/q.bin", dir);
    gq_error err;
    assert_int_equal(gq_model_save(&aq, path, &err), -1);
    assert_non_null(strstr(err.msg, "explicit input transforms"));
    free(dir);

    /* better than AWQ on the first block's output, better than RTN in perplexity */
    double e_aq = block0_mse(f, &aq), e_awq = block0_mse(f, &awq), e_rtn = block0_mse(f, &rtn);
    double p_aq = ppl(f, &aq), p_rtn = ppl(f, &rtn), p_fp = ppl(f, &f->fp);
    print_message("block 0 output MSE: affinequant %.4g, awq %.4g, rtn %.4g\n", e_aq, e_awq, e_rtn);
    print_message("ppl (full, ctx 256, 6 windows): fp %.4f, rtn %.4f, affinequant %.4f\n", p_fp,
                  p_rtn, p_aq);
    assert_true(e_aq < e_awq);
    assert_true(p_aq < p_rtn);

    gq_model_free(&aq), gq_model_free(&awq), gq_model_free(&rtn);
    gq_quant_report_free(&ra), gq_quant_report_free(&rw), gq_quant_report_free(&rr);
}

static void test_errors(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    gq_model m;
    gq_quant_report r;
    gq_error err;
    const char *const sets[] = {"epochs=0", NULL};
    /* a format without an integer bit width needs train_bits */
    assert_int_equal(test_quantize(f, "affinequant", sets, "{\"name\": \"q4_0\"}", NULL,
                                   GQ_PROPAGATE_METHOD_DEFAULT, &m, &r, &err), -1);
    assert_non_null(strstr(err.msg, "train_bits"));
    /* every linear must be quantized */
    gq_tensor_rule keep = {.pattern = "layers.*.mlp.down_proj", .keep_fp = true};
    assert_int_equal(test_quantize(f, "affinequant", sets, INT3_G32, &keep,
                                   GQ_PROPAGATE_METHOD_DEFAULT, &m, &r, &err), -1);
    assert_non_null(strstr(err.msg, "layers.0.mlp.down_proj"));
    /* unknown parameters are rejected by the table */
    gq_method_cfg cfg;
    json_t *p = json_pack("{s:i}", "epoch", 3);
    assert_int_equal(gq_method_cfg_init(&cfg, "affinequant", p, "$.m", &err), -1);
    assert_non_null(strstr(err.msg, "epoch"));
    json_decref(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_degenerate_equals_rtn),
        cmocka_unit_test(test_training),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("affinequant", tests, setup, test_stories_teardown);
}
