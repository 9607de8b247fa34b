/* The rotate method (QuaRot's residual-stream rotation and the online rotation of the down_proj
 * input) on stories260K (dim 64, hidden 172 = 43 x 4: a random orthogonal block; tied
 * classifier; 4 calibration windows of 64 tokens), on tinystories-3M (hidden 768 = Paley I 12 x
 * Walsh-Hadamard 64) and on a synthetic model with every bias and q/k norms:
 *   - the whole-model transform leaves the FP logits equal to 1e-5 of their largest magnitude,
 *     sets every RMSNorm weight to 1, unties the classifier, keeps each embedding row's norm
 *     (Q orthogonal) and moves the weights;
 *   - through the pipeline (rotate,rtn with every linear kept FP) the same, with the untied
 *     classifier counted in model_bytes and a note saying so;
 *   - rotate,rtn at 8 bits stays within 1% of the FP perplexity; at 4 bits it is finite;
 *   - the transform, and the rotated model's logits, are the same bits for 1 and 2 threads;
 *   - the per-token decode path (generate) and the packed fp32 view (throughput) carry the
 *     online rotation: their logits equal the FP model's;
 *   - saving or exporting a model with the online rotation is refused with the reason, and so
 *     are AWQ after it and a width with an odd part above 256, naming it. */
#include "test_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_threads.h"
#include "methods/method_chain.h"
#include "model/gq_forward.h"
#include "model/gq_hf.h"
#include "model/gq_rotation.h"
#include "model/gq_stream.h"
#include "packed/gq_packed.h"
#include "test_support.h"
#include "model/gq_synth.h"

static int setup(void **state)
{
    const test_stories_opts o = {.n_calib = 4, .calib_ctx = 64, .calib_seed = 5};
    return test_stories_setup(state, &o);
}

/* A copy of fp transformed by rotate's whole-model step (seed 0): its streamed view, cloned
 * (every block acquired once through the view). */
static void rotated(const gq_model *fp, gq_model *out)
{
    gq_method_cfg cfg;
    gq_error err;
    gq_model view;
    assert_int_equal(gq_method_cfg_init_member(&cfg, "rotate", NULL, "rotate", &err), 0);
    assert_non_null(cfg.method->transform_outer);
    if (gq_model_step_view(fp, &cfg, &view, &err) || gq_model_clone(&view, out, &err))
        fail_msg("%s", err.msg);
    gq_model_free(&view);
    gq_method_cfg_free(&cfg);
}

/* The per-token decode path's logits (T, vocab) of m. */
static float *decode_logits(const gq_model *m, const int *tok, int T)
{
    gq_error err;
    gq_decode *d = gq_decode_new_n(m, T, &err);
    float *l = malloc((size_t)T * m->cfg.vocab_size * sizeof *l);
    assert_non_null(d);
    assert_non_null(l);
    for (int t = 0; t < T; t++)
        assert_int_equal(gq_decode_step(d, tok[t], t, l + (size_t)t * m->cfg.vocab_size, &err), 0);
    gq_decode_free(d);
    return l;
}

static void expect_close(const float *la, const float *lb, size_t n, const char *what)
{
    double worst = 0.0, amax = 0.0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)la[i] - lb[i]));
        amax = fmax(amax, fabs((double)la[i]));
    }
    printf("%s: max diff %.3g of max |logit| %.3g\n", what, worst, amax);
    assert_true(amax > 0.0);
    assert_true(worst < 1e-5 * amax);
}

/* max |logit(a) - logit(b)| < 1e-5 max |logit(a)| over T tokens (prefill). */
static void expect_same_logits(const gq_model *a, const gq_model *b, const int *tok, int T)
{
    float *la = test_logits(a, tok, T), *lb = test_logits(b, tok, T);
    expect_close(la, lb, (size_t)T * a->cfg.vocab_size, "rotated vs FP logits");
    free(la), free(lb);
}

/* Generate's path and the throughput path's fp32 view of r agree with fp's decode path. */
static void expect_other_paths_same(const gq_model *fp, const gq_model *r, const int *tok, int T)
{
    const size_t n = (size_t)T * fp->cfg.vocab_size;
    float *la = decode_logits(fp, tok, T), *lb = decode_logits(r, tok, T);
    expect_close(la, lb, n, "decode path, rotated vs FP");
    gq_packed_model pm;
    gq_error err;
    assert_int_equal(gq_packed_model_fp32(r, &pm, &err), 0);
    assert_ptr_equal(pm.model.layers[0].down_in_rot, r->layers[0].down_in_rot);
    float *lp = test_logits(&pm.model, tok, T), *lf = test_logits(fp, tok, T);
    expect_close(lf, lp, n, "packed fp32 view, rotated vs FP");
    gq_packed_model_free(&pm);
    free(la), free(lb), free(lp), free(lf);
}

static void test_fp_invariance(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    const gq_config *c = &f->fp.cfg;
    assert_true(c->shared_classifier);
    gq_model r;
    rotated(&f->fp, &r);
    expect_same_logits(&f->fp, &r, f->ds.tokens, 64);
    expect_other_paths_same(&f->fp, &r, f->ds.tokens, 32);
    assert_non_null(r.rotation);
    assert_int_equal(r.rotation->m, 43);
    assert_int_equal(r.rotation->p, 4);
    assert_non_null(strstr(r.rotation->what, "random orthogonal"));
    for (int l = 0; l < c->n_layers; l++)
        assert_ptr_equal(r.layers[l].down_in_rot, r.rotation);
    assert_false(r.cfg.shared_classifier);
    assert_ptr_not_equal(r.wcls, r.tok_embeddings);
    for (int l = 0; l < c->n_layers; l++)
        for (int j = 0; j < c->dim; j++) {
            assert_true(r.layers[l].rms_att[j] == 1.0f);
            assert_true(r.layers[l].rms_ffn[j] == 1.0f);
        }
    for (int j = 0; j < c->dim; j++)
        assert_true(r.rms_final[j] == 1.0f);
    double moved = 0.0;
    for (int v = 0; v < c->vocab_size; v++) {
        double na = 0.0, nb = 0.0;
        for (int j = 0; j < c->dim; j++) {
            const size_t i = (size_t)v * c->dim + j;
            na += (double)f->fp.tok_embeddings[i] * f->fp.tok_embeddings[i];
            nb += (double)r.tok_embeddings[i] * r.tok_embeddings[i];
            moved += fabs((double)f->fp.tok_embeddings[i] - r.tok_embeddings[i]);
        }
        assert_true(fabs(na - nb) <= 1e-5 * na + 1e-12);
    }
    assert_true(moved > 0.0);
    gq_model_free(&r);
}

static const char *const int4 = "{\"name\": \"int\", \"bits\": 4, \"group_size\": 32}";
static const char *const int8 = "{\"name\": \"int\", \"bits\": 8, \"group_size\": 32}";

/* rotate,rtn through the pipeline with every block linear kept FP: the rotated FP model. */
static void test_pipeline_keeps_function(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    gq_model q;
    gq_quant_report rep;
    test_quantize_keep_fp(f, "rotate,rtn", NULL, int4, "layers.*", &q, &rep);
    expect_same_logits(&f->fp, &q, f->ds.tokens, 64);
    const gq_config *c = &f->fp.cfg;
    const size_t cls = (size_t)c->vocab_size * c->dim;
    assert_int_equal(rep.model_bytes, (gq_model_param_count(c) + cls) * sizeof(float));
    assert_non_null(strstr(json_string_value(json_array_get(rep.notes, 0)), "untied"));
    gq_model_free(&q);
    gq_quant_report_free(&rep);
}

static double ppl_of(const test_stories *f, const char *method, const char *fmt)
{
    gq_model q;
    gq_quant_report rep;
    gq_error err;
    if (test_quantize(f, method, NULL, fmt, NULL, GQ_PROPAGATE_METHOD_DEFAULT, &q, &rep, &err))
        fail_msg("%s: %s", method, err.msg);
    const double ppl = test_stories_ppl(f, &q, 256, 8);
    gq_model_free(&q);
    gq_quant_report_free(&rep);
    return ppl;
}

static void test_rotate_rtn_ppl(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    const double fp = test_stories_ppl(f, &f->fp, 256, 8);
    const double w8 = ppl_of(f, "rotate,rtn", int8), w4 = ppl_of(f, "rotate,rtn", int4);
    const double rtn4 = ppl_of(f, "rtn", int4);
    printf("ppl: fp %.4f, rotate+rtn int8 %.4f, int4 %.4f (rtn int4 %.4f)\n", fp, w8, w4, rtn4);
    assert_true(isfinite(w4) && w4 > 1.0);
    assert_true(fabs(w8 - fp) < 0.01 * fp);
}

/* Every tensor the transform writes, same bits. */
static void expect_models_equal(const gq_model *a, const gq_model *b)
{
    const gq_config *c = &a->cfg;
    const size_t table = (size_t)c->vocab_size * c->dim * sizeof(float);
    assert_memory_equal(a->tok_embeddings, b->tok_embeddings, table);
    assert_memory_equal(a->wcls, b->wcls, table);
    test_assert_linears_equal(a, b);
    assert_non_null(a->rotation);
    assert_memory_equal(a->rotation->base, b->rotation->base,
                        (size_t)a->rotation->m * a->rotation->m * sizeof(double));
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < GQ_N_LINEAR; k++)
            if (a->layers[l].b[k]) {
                int rows, cols;
                gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
                assert_memory_equal(a->layers[l].b[k], b->layers[l].b[k], rows * sizeof(float));
            }
}

static void test_threads_same_bits(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    const int saved = gq_threads_get();
    gq_model a, b;
    gq_threads_set(1);
    rotated(&f->fp, &a);
    gq_threads_set(2);
    rotated(&f->fp, &b);
    gq_threads_set(saved);
    expect_models_equal(&a, &b);
    gq_model_free(&a), gq_model_free(&b);
}

/* The view of a streamed source (blocks acquired from the mapping as the view's blocks are)
 * is the view of the in-memory model, bit for bit; nothing of the source stays acquired. */
static void test_view_of_streamed_source(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    gq_model streamed, a, b;
    gq_error err;
    assert_int_equal(gq_model_load_streamed(f->fp.path, &streamed, &err), 0);
    assert_true(gq_model_streamed(&streamed));
    rotated(&f->fp, &a);
    rotated(&streamed, &b);
    expect_models_equal(&a, &b);
    assert_false(b.cfg.shared_classifier);
    gq_model_free(&a), gq_model_free(&b), gq_model_free(&streamed);
}

/* tinystories-3M (hidden 768: Paley I 12 x 64): logits unchanged on every path, and the
 * rotated model's logits are the same bits for 1 and 2 threads. */
static void test_fp_invariance_3m(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    char path[4096];
    TEST_ASSET_OR_SKIP("models/tinystories-3M/tinystories-3M.bin", path);
    gq_model fp, r;
    gq_error err;
    assert_int_equal(gq_model_load(path, &fp, &err), 0);
    rotated(&fp, &r);
    assert_int_equal(r.rotation->m, 12);
    assert_non_null(strstr(r.rotation->what, "Paley I (q = 11)"));
    expect_same_logits(&fp, &r, f->ds.tokens, 64);
    expect_other_paths_same(&fp, &r, f->ds.tokens, 16);
    const int saved = gq_threads_get();
    gq_threads_set(1);
    float *l1 = test_logits(&r, f->ds.tokens, 64);
    gq_threads_set(2);
    float *l2 = test_logits(&r, f->ds.tokens, 64);
    gq_threads_set(saved);
    assert_memory_equal(l1, l2, (size_t)64 * r.cfg.vocab_size * sizeof(float));
    free(l1), free(l2);
    gq_model_free(&fp), gq_model_free(&r);
}

/* A model with the online rotation cannot be saved as llama2.c or HF files; the plan says so
 * up front (adds_transforms); AWQ refuses a block whose down_proj input is rotated. */
static void test_refuses_exports_and_awq(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    gq_model r;
    gq_error err;
    rotated(&f->fp, &r);
    char *dir = test_tmpdir("rotate-export");
    char bin[4300];
    snprintf(bin, sizeof bin, "%s/m.bin", dir);
    assert_int_equal(gq_model_save(&r, bin, &err), -1);
    assert_non_null(strstr(err.msg, "an online rotation of the down_proj input (rotate)"));
    assert_non_null(strstr(err.msg, "llama2.c checkpoint cannot hold"));
    assert_int_equal(gq_model_save_hf(&r, dir, GQ_ST_F32, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "an online rotation of the down_proj input"));
    assert_non_null(strstr(err.msg, "HF directory cannot hold"));
    gq_model_free(&r);
    free(dir);
    gq_method_cfg cfg;
    assert_int_equal(gq_method_cfg_init(&cfg, "rotate,rtn", NULL, "--method", &err), 0);
    assert_true(gq_method_cfg_adds_transforms(&cfg));
    gq_method_cfg_free(&cfg);
    json_t *off = json_pack("{s:b}", "online", 0);
    assert_int_equal(gq_method_cfg_init(&cfg, "rotate,rtn", off, "--method", &err), 0);
    assert_false(gq_method_cfg_adds_transforms(&cfg));
    gq_method_cfg_free(&cfg);
    json_decref(off);
    gq_model q;
    gq_quant_report rep;
    assert_int_equal(test_quantize(f, "rotate,awq", NULL, int4, NULL,
                                   GQ_PROPAGATE_METHOD_DEFAULT, &q, &rep, &err), -1);
    assert_non_null(strstr(err.msg, "online rotation of the down_proj input"));
}

/* Synthetic model with a bias on every linear (o/down biases write the residual) and q/k
 * norms, untied: logits unchanged. */
static void test_biases_and_qk_norms(void **state)
{
    (void)state;
    gq_config c;
    gq_error err;
    assert_int_equal(gq_synth_preset("tiny", &c, &err), 0);
    c.bias_mask = (1u << GQ_N_LINEAR) - 1;
    c.qk_norm = true;
    c.shared_classifier = false;
    gq_model fp, r;
    if (gq_model_synth_config(&c, 3, &fp, &err))
        fail_msg("%s", err.msg);
    for (int l = 0; l < c.n_layers; l++) {
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            int rows, cols;
            gq_linear_shape(&c, (gq_linear_kind)k, &rows, &cols);
            assert_non_null(fp.layers[l].b[k]);
            for (int i = 0; i < rows; i++)
                fp.layers[l].b[k][i] = 0.05f * (float)((i * 7 + k * 3 + l) % 11 - 5);
        }
        for (int i = 0; i < gq_head_size(&c); i++) {
            fp.layers[l].q_norm[i] = 0.5f + 0.1f * (float)(i % 7);
            fp.layers[l].k_norm[i] = 1.5f - 0.1f * (float)(i % 5);
        }
    }
    int tok[32];
    for (int t = 0; t < 32; t++)
        tok[t] = (t * 37 + 11) % c.vocab_size;
    rotated(&fp, &r);
    expect_same_logits(&fp, &r, tok, 32);
    gq_model_free(&fp), gq_model_free(&r);
}

static void test_refuses_other_widths(void **state)
{
    (void)state;
    gq_method_cfg cfg;
    gq_error err;
    assert_int_equal(gq_method_cfg_init(&cfg, "rotate,gptq", NULL, "--method", &err), 0);
    assert_string_equal(gq_method_name(cfg.method), "rotate+gptq");
    gq_config c;
    assert_int_equal(gq_synth_preset("tiny", &c, &err), 0);
    const gq_quantizer *q[GQ_N_LINEAR] = {0};
    assert_int_equal(gq_method_cfg_check_layer(&cfg, &c, 0, q, &err), 0);
    c.dim = 96; /* Paley I 12 x 8 */
    c.hidden_dim = 172; /* random orthogonal 43 x 4 */
    assert_int_equal(gq_method_cfg_check_layer(&cfg, &c, 0, q, &err), 0);
    c.dim = 2 * 257;
    assert_int_equal(gq_method_cfg_check_layer(&cfg, &c, 0, q, &err), -1);
    assert_non_null(strstr(err.msg, "residual width dim 514 = 2^k x 257"));
    c.dim = 96;
    c.hidden_dim = 4 * 259;
    assert_int_equal(gq_method_cfg_check_layer(&cfg, &c, 0, q, &err), -1);
    assert_non_null(strstr(err.msg, "hidden width (down_proj input) 1036"));
    gq_method_cfg_free(&cfg);
    json_t *off = json_pack("{s:b}", "online", 0); /* the hidden width is not rotated */
    assert_int_equal(gq_method_cfg_init(&cfg, "rotate,gptq", off, "--method", &err), 0);
    assert_int_equal(gq_method_cfg_check_layer(&cfg, &c, 0, q, &err), 0);
    gq_method_cfg_free(&cfg);
    json_decref(off);
    /* alone it is refused like every transform-only method */
    assert_int_equal(gq_method_cfg_init(&cfg, "rotate", NULL, "--method", &err), -1);
    assert_non_null(strstr(err.msg, "only transforms the weights"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp_invariance),       cmocka_unit_test(test_pipeline_keeps_function),
        cmocka_unit_test(test_rotate_rtn_ppl),      cmocka_unit_test(test_threads_same_bits),
        cmocka_unit_test(test_biases_and_qk_norms), cmocka_unit_test(test_refuses_other_widths),
        cmocka_unit_test(test_view_of_streamed_source),
        cmocka_unit_test(test_fp_invariance_3m),    cmocka_unit_test(test_refuses_exports_and_awq),
    };
    return cmocka_run_group_tests(tests, setup, test_stories_teardown);
}
