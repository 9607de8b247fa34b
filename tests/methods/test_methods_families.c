/* Methods on the Hugging Face families' blocks: AWQ's folding (biases of scaled rows divided
 * with them, o_proj q_dim wide) keeps the FP function, every method but AffineQuant quantizes
 * blocks with biases, q/k norms and head_dim != dim / n_heads, and AffineQuant refuses them at
 * validation. Synthetic models, no assets. */
#include "test_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_rng.h"
#include "core/gq_threads.h"
#include "methods/awq_grid.h"
#include "methods/gq_awq.h"
#include "methods/gq_pipeline.h"
#include "model/gq_forward.h"
#include "model/gq_synth.h"

/* kv heads = heads, so AWQ's v->o scaling applies too. */
static gq_config family_cfg(bool qwen3)
{
    gq_config c = {.dim = 64, .hidden_dim = 96, .n_layers = 2, .n_heads = 4, .n_kv_heads = 4,
                   .vocab_size = 128, .seq_len = 64, .norm_eps = 1e-6f,
                   .rope_theta = 1000000.0f};
    if (qwen3) /* q/k norms, head_dim 32: q and o's input 128 wide */
        c.family = GQ_FAMILY_QWEN3, c.head_dim = 32, c.qk_norm = true;
    else /* every linear with a bias */
        c.family = GQ_FAMILY_LLAMA, c.bias_mask = (1u << GQ_N_LINEAR) - 1;
    return c;
}

static void logits(const gq_model *m, const int *tok, int T, float *out)
{
    gq_error err = {{0}};
    gq_forward_ws *ws = gq_forward_ws_new(&m->cfg, T, &err);
    assert_non_null(ws);
    assert_int_equal(gq_forward_prefill(m, tok, 1, T, ws, out, &err), 0);
    gq_forward_ws_free(ws);
}

static void fold_preserves(bool qwen3)
{
    gq_config c = family_cfg(qwen3);
    gq_model fp, m;
    gq_error err = {{0}};
    assert_int_equal(gq_model_synth_config(&c, 3, &fp, &err), 0);
    assert_int_equal(gq_model_clone(&fp, &m, &err), 0);
    gq_rng r;
    gq_rng_seed(&r, 5);
    float s[256];
    for (int l = 0; l < c.n_layers; l++) {
        gq_block_ctx ctx;
        memset(&ctx, 0, sizeof ctx);
        ctx.cfg = &c;
        ctx.layer = l;
        ctx.w = m.layers[l];
        int widths[GQ_AWQ_N_GROUPS] = {c.dim, gq_q_dim(&c), c.dim, c.hidden_dim};
        for (int g = 0; g < GQ_AWQ_N_GROUPS; g++) {
            for (int j = 0; j < widths[g]; j++)
                s[j] = (float)exp2(2.0 * gq_rng_uniform(&r) - 1.0); /* 0.5 .. 2 */
            gq_awq_fold(&ctx, (gq_awq_group)g, s);
        }
    }
    int T = 24, tok[24];
    for (int i = 0; i < T; i++)
        tok[i] = (i * 31 + 7) % c.vocab_size;
    float *a = malloc((size_t)T * c.vocab_size * 4), *b = malloc((size_t)T * c.vocab_size * 4);
    logits(&fp, tok, T, a);
    logits(&m, tok, T, b);
    double worst = 0;
    for (int i = 0; i < T * c.vocab_size; i++)
        worst = fmax(worst, fabs((double)a[i] - b[i]) / (1 + fabs((double)a[i])));
    assert_true(worst < 1e-5);
    if (!qwen3) /* v's and up's biases were scaled with their rows */
        assert_true(memcmp(m.layers[0].b[GQ_LIN_V], fp.layers[0].b[GQ_LIN_V], 4 * 64) != 0);
    free(a), free(b);
    gq_model_free(&m);
    gq_model_free(&fp);
}

static void test_awq_fold_families(void **state)
{
    (void)state;
    fold_preserves(false);
    fold_preserves(true);
}

/* A fixture of the synthetic family model with random calibration windows. */
static void family_fixture(bool qwen3, test_stories *f)
{
    memset(f, 0, sizeof *f);
    gq_config c = family_cfg(qwen3);
    gq_error err = {{0}};
    assert_int_equal(gq_model_synth_config(&c, 9, &f->fp, &err), 0);
    f->n_calib = 4, f->calib_ctx = 32;
    f->calib = malloc((size_t)f->n_calib * f->calib_ctx * sizeof *f->calib);
    gq_rng r;
    gq_rng_seed(&r, 1);
    for (int i = 0; i < f->n_calib * f->calib_ctx; i++)
        f->calib[i] = (int)gq_rng_below(&r, (uint64_t)c.vocab_size);
}

/* The q/k/v search through stacked products on a Qwen3 block (q/k head norms, q_dim 128 !=
 * dim) chooses the scales of one attention forward per grid point (gq_awq_stacked_grid =
 * false), with the same losses up to the rounding of differently shaped BLAS products, at 1
 * and 2 threads; the stacked search gives the same bits at both. */
static void test_awq_stacked_qk_norm(void **state)
{
    (void)state;
    static const char *const sets[] = {"n_grid=6", "clip=false", NULL};
    static const char *const alpha[] = {"awq_alpha", NULL}, *const loss[] = {"awq_loss", NULL};
    static const char *const all[] = {"awq_alpha", "awq_loss", NULL};
    test_stories f;
    family_fixture(true, &f);
    gq_error err = {{0}};
    const int saved = gq_threads_get();
    gq_model m[2][2]; /* [threads - 1][stacked] */
    gq_quant_report rep[2][2];
    for (int threads = 1; threads <= 2; threads++) {
        gq_threads_set(threads);
        for (int stacked = 0; stacked < 2; stacked++) {
            gq_awq_stacked_grid = stacked;
            if (test_quantize(&f, "awq", sets, "{\"name\":\"int\",\"bits\":3,\"group_size\":32}",
                              NULL, GQ_PROPAGATE_METHOD_DEFAULT, &m[threads - 1][stacked],
                              &rep[threads - 1][stacked], &err))
                fail_msg("awq: %s", err.msg);
        }
        test_assert_linears_equal(&m[threads - 1][0], &m[threads - 1][1]);
        assert_true(test_assert_search_close(&rep[threads - 1][0], &rep[threads - 1][1], alpha,
                                             0.0, "per point vs stacked") > 0);
        test_assert_search_close(&rep[threads - 1][0], &rep[threads - 1][1], loss, 1e-6,
                                 "per point vs stacked");
    }
    test_assert_linears_equal(&m[0][1], &m[1][1]);
    test_assert_search_close(&rep[0][1], &rep[1][1], all, 0.0, "stacked, 1 vs 2 threads");
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 2; i++)
            gq_model_free(&m[t][i]), gq_quant_report_free(&rep[t][i]);
    gq_awq_stacked_grid = true;
    gq_threads_set(saved);
    gq_model_free(&f.fp);
    free(f.calib);
}

static void test_methods_on_families(void **state)
{
    (void)state;
    const char *methods[] = {"rtn", "gptq", "awq", "praq"};
    static const char *const quick[] = {"n_grid=4", "clip_grid=4", NULL}; /* AWQ, PRAQ */
    for (int fam = 0; fam < 2; fam++) {
        test_stories f;
        family_fixture(fam == 1, &f);
        gq_error err = {{0}};
        for (int i = 0; i < 4; i++) {
            gq_model m;
            gq_quant_report rep;
            if (test_quantize(&f, methods[i], i >= 2 ? quick : NULL, "{\"name\":\"int\",\"bits\":8}", NULL,
                              GQ_PROPAGATE_METHOD_DEFAULT, &m, &rep, &err))
                fail_msg("%s: %s", methods[i], err.msg);
            for (int t = 0; t < rep.n_tensors; t++)
                if (rep.tensors[t].quantized && !(rep.tensors[t].recon_err < 1e-3))
                    fail_msg("%s %s: reconstruction error %g", methods[i],
                             rep.tensors[t].name, rep.tensors[t].recon_err);
            /* sizes count the biases and q/k norms in fp32 */
            assert_true(rep.model_bytes > (gq_model_param_count(&f.fp.cfg) -
                                           rep.linear_weights) * 4);
            gq_model_free(&m);
            gq_quant_report_free(&rep);
        }
        gq_model m;
        gq_quant_report rep;
        assert_int_equal(test_quantize(&f, "affinequant", NULL, "{\"name\":\"int\",\"bits\":4}",
                                       NULL, GQ_PROPAGATE_METHOD_DEFAULT, &m, &rep, &err), -1);
        assert_non_null(strstr(err.msg, "affinequant"));
        assert_non_null(strstr(err.msg, gq_family_name(f.fp.cfg.family)));
        gq_model_free(&f.fp);
        free(f.calib);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_awq_fold_families),
        cmocka_unit_test(test_awq_stacked_qk_norm),
        cmocka_unit_test(test_methods_on_families),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
