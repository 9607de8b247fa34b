/* Forward pass: batched prefill against the per-token reference (synthetic and real models,
 * several windows, explicit transforms), block traces, synthetic determinism, golden greedy
 * generation. Loader/saver tests are in test_model_io.c. */
#include "test_model_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_rng.h"
#include "model/gq_forward.h"
#include "model/gq_model.h"
#include "model/gq_synth.h"

static int *random_tokens(int n, int vocab, uint64_t seed)
{
    gq_rng r;
    gq_rng_seed(&r, seed);
    int *t = malloc((size_t)n * sizeof *t);
    for (int i = 0; i < n; i++)
        t[i] = (int)gq_rng_below(&r, (uint64_t)vocab);
    return t;
}

/* Prefill of B windows of T tokens against the reference, window by window. */
static double prefill_vs_ref(const gq_model *m, int B, int T, uint64_t seed)
{
    gq_error err = {{0}};
    int V = m->cfg.vocab_size;
    int *tok = random_tokens(B * T, V, seed);
    float *lb = malloc((size_t)B * T * V * sizeof(float));
    float *lr = malloc((size_t)T * V * sizeof(float));
    gq_forward_ws *ws = gq_forward_ws_new(&m->cfg, B * T, &err);
    assert_non_null(ws);
    assert_int_equal(gq_forward_prefill(m, tok, B, T, ws, lb, &err), 0);
    double worst = 0;
    for (int b = 0; b < B; b++) {
        assert_int_equal(gq_forward_ref(m, tok + (size_t)b * T, T, lr, &err), 0);
        double d = max_rel_diff(lb + (size_t)b * T * V, lr, (size_t)T * V);
        worst = d > worst ? d : worst;
    }
    gq_forward_ws_free(ws);
    free(tok);
    free(lb);
    free(lr);
    return worst;
}

/* Prefill agrees with the reference forward pass to 1e-4 (relative) on B random windows of T
 * tokens; prints the largest difference under `what`. */
static void expect_prefill_matches(const gq_model *m, const char *what, int B, int T,
                                   uint64_t seed)
{
    double d = prefill_vs_ref(m, B, T, seed);
    printf("%s: max rel diff %.3g\n", what, d);
    assert_true(d < 1e-4);
}

static void load_260k(gq_model *m)
{
    char path[4096];
    gq_error err = {{0}};
    if (!test_asset("models/stories260K/stories260K.bin", path, sizeof path))
        return;
    assert_int_equal(gq_model_load(path, m, &err), 0);
}

static void test_prefill_matches_reference_tiny(void **state)
{
    (void)state;
    gq_model m;
    gq_error err = {{0}};
    assert_int_equal(gq_model_synth("tiny", 7, &m, &err), 0);
    expect_prefill_matches(&m, "tiny", 3, 37, 1);
    gq_model_free(&m);
}

/* Heads of 72 (a whole 64-element run of the decode's value accumulation and the rest; nine
 * 8-dimension steps of its 8-position scores), GQA, and windows long enough for several
 * 8-position score blocks and a partial one. */
static void test_prefill_matches_reference_wide_heads(void **state)
{
    (void)state;
    gq_model m;
    gq_error err = {{0}};
    const gq_config c = {.dim = 144, .hidden_dim = 256, .n_layers = 2, .n_heads = 2,
                         .n_kv_heads = 1, .vocab_size = 96, .seq_len = 64,
                         .shared_classifier = true};
    assert_int_equal(gq_model_synth_config(&c, 9, &m, &err), 0);
    expect_prefill_matches(&m, "heads of 72", 2, 29, 2);
    gq_model_free(&m);
}

/* Heads of 16, 24 and 32 (the fused attention kernel's other widths), GQA, windows that end
 * in a partial group of 4 query rows and a partial 16-key vector. */
static void test_prefill_matches_reference_fused_heads(void **state)
{
    (void)state;
    const int heads[][2] = {{4, 2}, {3, 3}, {2, 1}}; /* n_heads, n_kv_heads at dim 64/72/64 */
    const int dims[] = {64, 72, 64};
    for (int i = 0; i < 3; i++) {
        gq_model m;
        gq_error err = {{0}};
        const gq_config c = {.dim = dims[i], .hidden_dim = 96, .n_layers = 2,
                             .n_heads = heads[i][0], .n_kv_heads = heads[i][1],
                             .vocab_size = 80, .seq_len = 64, .shared_classifier = true};
        assert_int_equal(gq_model_synth_config(&c, 13, &m, &err), 0);
        double d = prefill_vs_ref(&m, 2, 35, 3);
        printf("heads of %d: max rel diff %.3g\n", gq_head_size(&c), d);
        assert_true(d < 1e-4);
        gq_model_free(&m);
    }
}

static void test_prefill_matches_reference_260k(void **state)
{
    (void)state;
    gq_model m = {0};
    load_260k(&m);
    if (!m.layers) {
        skip();
        return;
    }
    expect_prefill_matches(&m, "stories260K", 2, 96, 2);
    /* a window of one token and a full-length window */
    assert_true(prefill_vs_ref(&m, 1, 1, 3) < 1e-4);
    assert_true(prefill_vs_ref(&m, 1, m.cfg.seq_len, 4) < 1e-4);
    gq_model_free(&m);
}

static void test_prefill_matches_reference_3m(void **state)
{
    (void)state;
    char path[4096];
    TEST_ASSET_OR_SKIP("models/tinystories-3M/tinystories-3M.bin", path);
    gq_model m;
    gq_error err = {{0}};
    assert_int_equal(gq_model_load(path, &m, &err), 0);
    expect_prefill_matches(&m, "tinystories-3M", 2, 80, 6);
    gq_model_free(&m);
}

/* Prefill logits of 2 windows of 24 tokens. */
static float *prefill_logits(const gq_model *m, const int *tok)
{
    gq_error err = {{0}};
    float *l = malloc((size_t)48 * m->cfg.vocab_size * sizeof(float));
    gq_forward_ws *ws = gq_forward_ws_new(&m->cfg, 48, &err);
    assert_non_null(ws);
    assert_int_equal(gq_forward_prefill(m, tok, 2, 24, ws, l, &err), 0);
    gq_forward_ws_free(ws);
    return l;
}

static void test_explicit_transforms(void **state)
{
    (void)state;
    gq_model m;
    gq_error err = {{0}};
    assert_int_equal(gq_model_synth("tiny", 11, &m, &err), 0);
    int d = m.cfg.dim, V = m.cfg.vocab_size;
    size_t n = (size_t)48 * V;
    int *tok = random_tokens(48, V, 5);
    float *plain = prefill_logits(&m, tok);

    /* identity transforms: exactly the same logits as none */
    float *I = calloc((size_t)d * d, sizeof(float));
    for (int i = 0; i < d; i++)
        I[(size_t)i * d + i] = 1.0f;
    gq_model t;
    assert_int_equal(gq_model_clone(&m, &t, &err), 0);
    for (int l = 0; l < m.cfg.n_layers; l++) {
        assert_int_equal(gq_model_set_in_transform(&t, l, false, I, &err), 0);
        assert_int_equal(gq_model_set_in_transform(&t, l, true, I, &err), 0);
    }
    float *ident = prefill_logits(&t, tok);
    assert_memory_equal(ident, plain, n * sizeof(float));
    free(ident);

    /* xn · D with D = diag(2^k), compensated by dividing the columns of q/k/v and gate/up by
     * 2^k: the same function (exact in binary floating point up to BLAS reassociation). This
     * pins the direction of the product (columns of xn are scaled). */
    for (int i = 0; i < d; i++)
        I[(size_t)i * d + i] = (float)(1 << (i % 4));
    gq_linear_kind scaled[] = {GQ_LIN_Q, GQ_LIN_K, GQ_LIN_V, GQ_LIN_GATE, GQ_LIN_UP};
    for (int l = 0; l < m.cfg.n_layers; l++) {
        assert_int_equal(gq_model_set_in_transform(&t, l, false, I, &err), 0);
        assert_int_equal(gq_model_set_in_transform(&t, l, true, I, &err), 0);
        for (size_t s = 0; s < sizeof scaled / sizeof scaled[0]; s++) {
            int rows, cols;
            gq_linear_shape(&t.cfg, scaled[s], &rows, &cols);
            float *W = t.layers[l].w[scaled[s]];
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++)
                    W[(size_t)r * cols + c] /= (float)(1 << (c % 4));
        }
    }
    float *diag = prefill_logits(&t, tok);
    assert_true(max_rel_diff(diag, plain, n) < 1e-5);
    free(diag);

    /* a random transform: batched and reference paths agree */
    gq_rng r;
    gq_rng_seed(&r, 3);
    for (size_t i = 0; i < (size_t)d * d; i++)
        I[i] = (float)(gq_rng_normal(&r) / 8.0) + ((i % (size_t)(d + 1)) == 0 ? 1.0f : 0.0f);
    assert_int_equal(gq_model_set_in_transform(&t, 1, true, I, &err), 0);
    float *rnd = prefill_logits(&t, tok);
    float *ref = malloc((size_t)24 * V * sizeof(float));
    assert_int_equal(gq_forward_ref(&t, tok + 24, 24, ref, &err), 0);
    assert_true(max_rel_diff(rnd + (size_t)24 * V, ref, (size_t)24 * V) < 1e-4);
    assert_true(max_rel_diff(rnd, plain, n) > 1e-3); /* the transform did change the function */

    /* clone copies transforms; saving refuses them */
    gq_model t2;
    assert_int_equal(gq_model_clone(&t, &t2, &err), 0);
    assert_non_null(t2.layers[1].ffn_in_transform);
    assert_ptr_not_equal(t2.layers[1].ffn_in_transform, t.layers[1].ffn_in_transform);
    assert_memory_equal(t2.layers[1].ffn_in_transform, I, (size_t)d * d * sizeof(float));
    assert_int_equal(gq_model_save(&t2, "/nonexistent/x.bin", &err), -1);
    assert_non_null(strstr(err.msg, "transform"));
    gq_model_free(&t2);
    free(rnd);
    free(ref);
    free(I);
    free(plain);
    free(tok);
    gq_model_free(&t);
    gq_model_free(&m);
}

/* The trace buffers reproduce the block: x_mid = x0 + o_proj(attn_ctx),
 * x1 = x_mid + down(mlp_act), attn_in = norm(x0), mlp_in = norm(x_mid). */
static void test_block_trace_consistent(void **state)
{
    (void)state;
    gq_model m;
    gq_error err = {{0}};
    assert_int_equal(gq_model_synth("tiny", 5, &m, &err), 0);
    const gq_config *c = &m.cfg;
    int B = 2, T = 20, N = B * T, d = c->dim, h = c->hidden_dim;
    size_t nd = (size_t)N * d;
    int *tok = random_tokens(N, c->vocab_size, 9);
    gq_forward_ws *ws = gq_forward_ws_new(c, N, &err);
    float *x0 = malloc(nd * 4), *x1 = malloc(nd * 4), *xm = malloc(nd * 4), *tmp = malloc(nd * 4);
    gq_block_trace tr = {.attn_in = malloc(nd * 4), .attn_ctx = malloc(nd * 4),
                         .mlp_in = malloc(nd * 4), .mlp_act = malloc((size_t)N * h * 4)};
    gq_embed(&m, tok, N, x0);
    gq_block_forward(&m, 0, x0, B, T, ws, NULL); /* input of block 1: a realistic residual */
    memcpy(x1, x0, nd * 4);
    gq_block_forward(&m, 1, x1, B, T, ws, &tr);
    const gq_layer *L = &m.layers[1];

    gq_rmsnorm(tmp, x0, L->rms_att, N, d);
    assert_memory_equal(tmp, tr.attn_in, nd * 4);
    gq_linear(tmp, tr.attn_ctx, L->w[GQ_LIN_O], N, d, d);
    for (size_t i = 0; i < nd; i++)
        xm[i] = x0[i] + tmp[i];
    /* the attention sub-module alone gives the same delta */
    float *att = malloc(nd * 4), *ctx = malloc(nd * 4);
    gq_attention_forward(c, L, tr.attn_in, B, T, att, ws, ctx);
    assert_memory_equal(ctx, tr.attn_ctx, nd * 4);
    assert_true(max_rel_diff(att, tmp, nd) < 1e-6);
    gq_rmsnorm(tmp, xm, L->rms_ffn, N, d);
    assert_true(max_rel_diff(tmp, tr.mlp_in, nd) < 1e-5);
    gq_linear(tmp, tr.mlp_act, L->w[GQ_LIN_DOWN], N, h, d);
    for (size_t i = 0; i < nd; i++)
        tmp[i] += xm[i];
    assert_true(max_rel_diff(tmp, x1, nd) < 1e-5);
    /* mlp sub-module on the traced input: the same activations */
    float *act = malloc((size_t)N * h * 4);
    gq_mlp_forward(c, L, tr.mlp_in, N, att, ws, act);
    assert_memory_equal(act, tr.mlp_act, (size_t)N * h * 4);

    free(act);
    free(att);
    free(ctx);
    free(tr.attn_in);
    free(tr.attn_ctx);
    free(tr.mlp_in);
    free(tr.mlp_act);
    free(x0);
    free(x1);
    free(xm);
    free(tmp);
    free(tok);
    gq_forward_ws_free(ws);
    gq_model_free(&m);
}

static void test_prefill_rejects_bad_input(void **state)
{
    (void)state;
    gq_model m;
    gq_error err = {{0}};
    assert_int_equal(gq_model_synth("tiny", 1, &m, &err), 0);
    gq_forward_ws *ws = gq_forward_ws_new(&m.cfg, 8, &err);
    int tok[8] = {1, 2, 3, 512, 4, 5, 6, 7};
    float *l = malloc((size_t)8 * 512 * sizeof(float));
    assert_int_equal(gq_forward_prefill(&m, tok, 1, 8, ws, l, &err), -1);
    assert_non_null(strstr(err.msg, "token 512"));
    assert_int_equal(gq_forward_prefill(&m, tok, 3, 3, ws, l, &err), -1);
    assert_non_null(strstr(err.msg, "exceed"));
    free(l);
    gq_forward_ws_free(ws);
    gq_model_free(&m);
}

static void test_synth_deterministic(void **state)
{
    (void)state;
    gq_model a, b, c;
    gq_error err = {{0}};
    assert_int_equal(gq_model_synth("tiny", 42, &a, &err), 0);
    assert_int_equal(gq_model_synth("tiny", 42, &b, &err), 0);
    assert_int_equal(gq_model_synth("tiny", 43, &c, &err), 0);
    assert_int_equal(a.heap_floats, gq_model_param_count(&a.cfg));
    assert_memory_equal(a.heap, b.heap, a.heap_floats * sizeof(float));
    assert_memory_not_equal(a.heap, c.heap, a.heap_floats * sizeof(float));
    /* linear weights are heavy-tailed and scaled ~ 1/sqrt(fan_in); norms near 1 */
    const float *W = a.layers[0].w[GQ_LIN_GATE];
    size_t n = (size_t)a.cfg.hidden_dim * a.cfg.dim;
    double s2 = 0, s4 = 0;
    for (size_t i = 0; i < n; i++) {
        s2 += (double)W[i] * W[i];
        s4 += (double)W[i] * W[i] * W[i] * W[i];
    }
    double var = s2 / n, kurt = s4 / n / (var * var);
    assert_true(var * a.cfg.dim > 0.8 && var * a.cfg.dim < 3.0);
    assert_true(kurt > 4.0); /* a Gaussian has 3 */
    int near1 = 0;
    for (int j = 0; j < a.cfg.dim; j++)
        near1 += fabsf(a.layers[0].rms_att[j] - 1.0f) < 0.3f;
    assert_true(near1 >= a.cfg.dim - 2);
    assert_int_equal(gq_model_synth("nope", 1, &c, &err) == 0, 0);
    assert_non_null(strstr(err.msg, "nope"));
    gq_model_free(&a);
    gq_model_free(&b);
    gq_model_free(&c);
}

static void check_golden(const char *model_rel, const char *golden_rel)
{
    /* The expected outputs are test data (tests/data/golden); the model and tokenizer are
     * assets. */
    char model[4096], tok[4096];
    char tok_rel[512];
    snprintf(tok_rel, sizeof tok_rel, "%.*s/tok512.bin",
             (int)(strrchr(model_rel, '/') - model_rel), model_rel);
    if (!test_asset(model_rel, model, sizeof model) || !test_asset(tok_rel, tok, sizeof tok)) {
        skip();
        return;
    }
    size_t glen;
    char *want = test_read_file(test_data_path(golden_rel), &glen);
    char args[12288], out[8192], errb[4096];
    snprintf(args, sizeof args,
             "generate --model '%s' --tokenizer '%s' --prompt 'Once upon a time' --steps 256",
             model, tok);
    int st = test_run_cli(args, out, sizeof out, errb, sizeof errb);
    if (st != 0)
        fail_msg("generate exited %d: %s", st, errb);
    assert_string_equal(out, want);
    free(want);
}

static void test_golden_greedy_260k(void **state)
{
    (void)state;
    check_golden("models/stories260K/stories260K.bin",
                 "golden/stories260K_greedy_once_upon_a_time_n256.txt");
}

static void test_golden_greedy_3m(void **state)
{
    (void)state;
    check_golden("models/tinystories-3M/tinystories-3M.bin",
                 "golden/tinystories-3M_greedy_once_upon_a_time_n256.txt");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefill_matches_reference_tiny),
        cmocka_unit_test(test_prefill_matches_reference_wide_heads),
        cmocka_unit_test(test_prefill_matches_reference_fused_heads),
        cmocka_unit_test(test_prefill_matches_reference_260k),
        cmocka_unit_test(test_prefill_matches_reference_3m),
        cmocka_unit_test(test_explicit_transforms),
        cmocka_unit_test(test_block_trace_consistent),
        cmocka_unit_test(test_prefill_rejects_bad_input),
        cmocka_unit_test(test_synth_deterministic),
        cmocka_unit_test(test_golden_greedy_260k),
        cmocka_unit_test(test_golden_greedy_3m),
    };
    int failed = cmocka_run_group_tests_name("model", tests, NULL, NULL);
    failed += _cmocka_run_group_tests("model_io", model_io_tests, model_io_tests_n, NULL, NULL);
    failed += _cmocka_run_group_tests("model_cli", model_cli_tests, model_cli_tests_n, NULL, NULL);
    failed += _cmocka_run_group_tests("model_hf", model_hf_tests, model_hf_tests_n, NULL, NULL);
    return failed;
}
