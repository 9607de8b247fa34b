/* A cell's coded model (runner/gq_coded_model.h) against the pipeline's fp32 output model of
 * the same plan on stories260K: logits and perplexity bit for bit, the same report (codes,
 * column orders, sizes, notes), for RTN, GPTQ with act_order (column orders), AWQ,
 * AffineQuant (explicit transforms) and rotate+RTN (online rotation), on 1 and 2 threads; the
 * coded linears exist in fp32 only while their block is acquired. */
#include <stdlib.h>
#include <string.h>

#include "core/gq_threads.h"
#include "model/gq_stream.h"
#include "runner/gq_coded_model.h"
#include "test_quant.h"

static int setup(void **state)
{
    test_stories_opts o = {.calib_first = 0, .n_calib = 4, .calib_ctx = 64, .calib_seed = 5};
    return test_stories_setup(state, &o);
}

static int teardown(void **state)
{
    return test_stories_teardown(state);
}

static const char *const INT4_G32 = "{\"name\": \"int\", \"bits\": 4, \"group_size\": 32}";

static void plan_for(const test_stories *f, const char *method, const char *const *sets,
                     gq_quant_plan *plan)
{
    test_plan_init(method, sets, INT4_G32, plan);
    plan->calib_tokens = f->calib;
    plan->n_calib = f->n_calib;
    plan->calib_ctx = f->calib_ctx;
}

static void plan_free(gq_quant_plan *plan)
{
    gq_quantizer_free(&plan->quantizer);
    gq_method_cfg_free(&plan->method);
}

/* The reports of the two runs describe one model: sizes, notes, tensors, codes, orders. */
static void assert_reports_equal(const gq_quant_report *a, const gq_quant_report *b,
                                 const gq_config *c)
{
    assert_int_equal(a->model_bytes, b->model_bytes);
    assert_int_equal(a->linear_bytes, b->linear_bytes);
    assert_int_equal(a->n_tensors, b->n_tensors);
    for (int i = 0; i < a->n_tensors; i++) {
        assert_string_equal(a->tensors[i].name, b->tensors[i].name);
        assert_int_equal(a->tensors[i].bytes, b->tensors[i].bytes);
        assert_memory_equal(&a->tensors[i].recon_err, &b->tensors[i].recon_err, sizeof(double));
    }
    assert_true(json_equal(a->notes, b->notes));
    assert_int_equal(a->n_linear_codes, b->n_linear_codes);
    for (size_t i = 0; i < a->n_linear_codes; i++) {
        int rows, cols;
        gq_linear_shape(c, (gq_linear_kind)(i % GQ_N_LINEAR), &rows, &cols);
        assert_int_equal(a->linear_codes[i] != NULL, b->linear_codes[i] != NULL);
        assert_int_equal(a->linear_perm[i] != NULL, b->linear_perm[i] != NULL);
        if (a->linear_perm[i])
            assert_memory_equal(a->linear_perm[i], b->linear_perm[i], cols * sizeof(int32_t));
    }
}

/* Coded linears are NULL outside acquire and equal the output model's inside. */
static void assert_blocks_equal(const gq_model *coded, const gq_model *out)
{
    const gq_config *c = &out->cfg;
    gq_error err;
    for (int l = 0; l < c->n_layers; l++) {
        for (int k = 0; k < GQ_N_LINEAR; k++)
            assert_null(coded->layers[l].w[k]); /* every linear of these plans has codes */
        assert_int_equal(gq_block_acquire(coded, l, &err), 0);
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            int rows, cols;
            gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
            assert_memory_equal(coded->layers[l].w[k], out->layers[l].w[k],
                                (size_t)rows * cols * sizeof(float));
        }
        gq_block_release(coded, l);
    }
}

/* Quantizes with `method` both ways at 1 and 2 threads; `what` checks the plan's feature
 * (column orders, transforms, rotation) is there, so each case tests what it names. */
typedef enum { HAS_NOTHING, HAS_PERM, HAS_TRANSFORMS, HAS_ROTATION } feature;

static bool has_perm(const gq_quant_report *r)
{
    for (size_t i = 0; i < r->n_linear_codes; i++)
        if (r->linear_perm[i])
            return true;
    return false;
}

static void check_method(const test_stories *f, const char *method, const char *const *sets,
                         feature what)
{
    int threads = gq_threads_get();
    for (int t = 1; t <= 2; t++) {
        gq_threads_set(t);
        gq_quant_plan pa, pb;
        plan_for(f, method, sets, &pa);
        plan_for(f, method, sets, &pb);
        gq_model out;
        gq_quant_report ra, rb;
        gq_coded_model cm;
        gq_error err;
        if (gq_quantize_model(&f->fp, &pa, &out, &ra, &err))
            fail_msg("%s: %s", method, err.msg);
        assert_int_equal(gq_coded_init(&cm, &pb, &f->fp, &err), 0);
        pb.sink = &cm.sink;
        if (gq_quantize_model(&f->fp, &pb, NULL, &rb, &err) || gq_coded_finish(&cm, &rb, &err))
            fail_msg("%s, coded: %s", method, err.msg);
        assert_true(gq_model_streamed(&cm.model));
        assert_reports_equal(&ra, &rb, &out.cfg);
        assert_blocks_equal(&cm.model, &out);
        float *la = test_logits(&out, f->ds.tokens, 64), *lb = test_logits(&cm.model,
                                                                           f->ds.tokens, 64);
        assert_memory_equal(la, lb, 64 * (size_t)out.cfg.vocab_size * sizeof(float));
        double pa_ppl = test_stories_ppl(f, &out, 64, 6), pb_ppl = test_stories_ppl(f, &cm.model,
                                                                                    64, 6);
        if (pa_ppl != pb_ppl)
            fail_msg("%s, %d threads: ppl %.17g fp32, %.17g coded", method, t, pa_ppl, pb_ppl);
        assert_true(what != HAS_PERM || has_perm(&rb));
        assert_true(what != HAS_TRANSFORMS || cm.model.layers[0].att_in_transform);
        assert_true(what != HAS_ROTATION || cm.model.layers[0].down_in_rot);
        gq_coded_bytes b;
        gq_coded_model_bytes(&cm, &b);
        assert_int_equal(b.n_coded, out.cfg.n_layers * GQ_N_LINEAR);
        free(la);
        free(lb);
        gq_model_free(&out);
        gq_coded_free(&cm);
        gq_quant_report_free(&ra);
        gq_quant_report_free(&rb);
        plan_free(&pa);
        plan_free(&pb);
    }
    gq_threads_set(threads);
}

static void test_rtn(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    check_method(f, "rtn", NULL, HAS_NOTHING);
}

static void test_gptq_act_order(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    const char *const sets[] = {"act_order=true", NULL};
    check_method(f, "gptq", sets, HAS_PERM);
}

static void test_awq(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    check_method(f, "awq", NULL, HAS_NOTHING);
}

static void test_affinequant(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    const char *const sets[] = {"epochs=1", NULL};
    check_method(f, "affinequant", sets, HAS_TRANSFORMS);
}

static void test_rotate_rtn(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    check_method(f, "rotate,rtn", NULL, HAS_ROTATION);
}

/* Linears kept in full precision by a rule stay resident in fp32 beside the coded ones. */
static void test_kept_linears_resident(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    gq_quant_plan plan;
    plan_for(f, "rtn", NULL, &plan);
    gq_tensor_rule keep = {.pattern = "layers.*.mlp.down_proj", .keep_fp = true};
    plan.rules = &keep;
    plan.n_rules = 1;
    gq_coded_model cm;
    gq_quant_report rep;
    gq_error err;
    assert_int_equal(gq_coded_init(&cm, &plan, &f->fp, &err), 0);
    plan.sink = &cm.sink;
    assert_int_equal(gq_quantize_model(&f->fp, &plan, NULL, &rep, &err), 0);
    assert_int_equal(gq_coded_finish(&cm, &rep, &err), 0);
    const gq_config *c = &cm.model.cfg;
    for (int l = 0; l < c->n_layers; l++) {
        int rows, cols;
        gq_linear_shape(c, GQ_LIN_DOWN, &rows, &cols);
        assert_non_null(cm.model.layers[l].w[GQ_LIN_DOWN]);
        assert_memory_equal(cm.model.layers[l].w[GQ_LIN_DOWN], f->fp.layers[l].w[GQ_LIN_DOWN],
                            (size_t)rows * cols * sizeof(float));
        assert_null(cm.model.layers[l].w[GQ_LIN_UP]);
    }
    gq_coded_bytes b;
    gq_coded_model_bytes(&cm, &b);
    assert_int_equal(b.n_fp32, c->n_layers);
    assert_int_equal(b.n_coded, c->n_layers * (GQ_N_LINEAR - 1));
    gq_coded_free(&cm);
    gq_quant_report_free(&rep);
    plan_free(&plan);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rtn),
        cmocka_unit_test(test_gptq_act_order),
        cmocka_unit_test(test_awq),
        cmocka_unit_test(test_affinequant),
        cmocka_unit_test(test_rotate_rtn),
        cmocka_unit_test(test_kept_linears_resident),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
