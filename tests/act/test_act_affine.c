/* AffineQuant's weight-activation mode on the real stories260K model (W4 INT g32 asym):
 *   - W4A8 (INT8 sym per-token dynamic activations): trained through the activation
 *     quantizers, its perplexity is no worse than W4A8 RTN's;
 *   - W4A8 with static per-tensor scales (refitted during training, calibrated on the
 *     quantized model afterwards): the same weights, transforms and ranges at 1 and 2 threads. */
#include "test_quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act/gq_act.h"
#include "core/gq_log.h"
#include "core/gq_threads.h"

#define N_CALIB 8
#define CALIB_CTX 128

static const char W4[] =
    "{\"name\": \"int\", \"bits\": 4, \"granularity\": \"group\", \"group_size\": 32}";
static const char A8_TOKEN[] =
    "{\"format\": \"int\", \"bits\": 8, \"zero\": \"sym\", \"granularity\": \"token\"}";
static const char A8_STATIC[] =
    "{\"format\": \"int\", \"bits\": 8, \"zero\": \"sym\", \"granularity\": \"tensor\", "
    "\"scales\": \"static\"}";

static int setup(void **state)
{
    gq_log_set_level(GQ_LOG_WARN);
    const test_stories_opts o = {.calib_first = 32 * 256, .n_calib = N_CALIB,
                                 .calib_ctx = CALIB_CTX, .calib_seed = 2};
    return test_stories_setup(state, &o);
}

/* A cell: method with the activation quantizers `acts` in the plan, then the static scales
 * calibrated on the quantized model and the quantizers attached (as the runner does). */
typedef struct {
    gq_model q;
    gq_quant_report rep;
    gq_act_cfg a;
    gq_act_model am;
} act_cell;

static void cell_run(const test_stories *f, const char *method, const char *const *sets,
                     const char *acts, act_cell *c)
{
    gq_error err = {{0}};
    json_t *j = json_loads(acts, 0, NULL);
    assert_non_null(j);
    assert_int_equal(gq_act_cfg_parse(j, "$.activations", false, &c->a, &err), 0);
    json_decref(j);
    assert_int_equal(gq_act_model_init(&c->am, &f->fp.cfg, &c->a, NULL, &err), 0);
    int rc = test_quantize_act(f, method, sets, W4, NULL, GQ_PROPAGATE_METHOD_DEFAULT,
                               &c->am.hook, &c->q, &c->rep, &err);
    if (rc)
        fprintf(stderr, "%s: %s\n", method, err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(gq_act_calibrate(&c->am, &c->q, f->calib, f->n_calib, f->calib_ctx, &err),
                     0);
    c->q.act = &c->am.hook;
}

static void cell_free(act_cell *c)
{
    gq_model_free(&c->q);
    gq_quant_report_free(&c->rep);
    gq_act_model_free(&c->am);
    gq_act_cfg_free(&c->a);
}

static const char *const AQ_SETS[] = {"epochs=4", NULL};

static void test_w4a8_not_worse_than_rtn(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    act_cell rtn, aq;
    cell_run(f, "rtn", NULL, A8_TOKEN, &rtn);
    cell_run(f, "affinequant", AQ_SETS, A8_TOKEN, &aq);
    double p_rtn = test_stories_ppl(f, &rtn.q, 256, 16);
    double p_aq = test_stories_ppl(f, &aq.q, 256, 16);
    printf("stories260K W4A8 (int4 g32 asym, int8 sym per token, full ctx 256, 16 windows): "
           "rtn %.4f, affinequant %.4f\n", p_rtn, p_aq);
    assert_true(p_aq <= p_rtn);
    cell_free(&rtn);
    cell_free(&aq);
}

static void test_static_threads_same_bits(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    int saved = gq_threads_get();
    act_cell c[2];
    for (int t = 0; t < 2; t++) {
        gq_threads_set(t + 1);
        cell_run(f, "affinequant", (const char *const[]){"epochs=2", NULL}, A8_STATIC, &c[t]);
    }
    gq_threads_set(saved);
    test_assert_linears_equal(&c[0].q, &c[1].q);
    const gq_config *cf = &f->fp.cfg;
    size_t dd = (size_t)cf->dim * cf->dim * sizeof(float);
    for (int l = 0; l < cf->n_layers; l++) {
        assert_memory_equal(c[0].q.layers[l].att_in_transform, c[1].q.layers[l].att_in_transform,
                            dd);
        assert_memory_equal(c[0].q.layers[l].ffn_in_transform, c[1].q.layers[l].ffn_in_transform,
                            dd);
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            int nr = gq_act_n_ranges(&c[0].am, l, (gq_linear_kind)k);
            assert_int_equal(nr, 1);
            assert_memory_equal(c[0].am.ranges[l * GQ_N_LINEAR + k],
                                c[1].am.ranges[l * GQ_N_LINEAR + k], 2 * sizeof(float));
        }
    }
    double p = test_stories_ppl(f, &c[0].q, 256, 16);
    printf("stories260K W4A8 static per tensor, affinequant 2 epochs: ppl %.4f\n", p);
    cell_free(&c[0]);
    cell_free(&c[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_w4a8_not_worse_than_rtn),
        cmocka_unit_test(test_static_threads_same_bits),
    };
    return cmocka_run_group_tests_name("act_affine", tests, setup, test_stories_teardown);
}
