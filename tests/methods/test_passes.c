/* The pipeline's pass economy and its reconstruction-error protocol.
 *
 * Trace reuse: the report (and FP propagation) take the method's own FP trace
 * (gq_block_trace_fp) only while the block `w` is unchanged. Each check quantizes the real
 * stories260K model twice, once as the method does it and once with the method's trace
 * forgotten (ctx->fp_trace_of = 0, so the pipeline traces again), and wants the same bits
 * everywhere: every block linear and every report entry (recon_err, metrics). A method that
 * changes its block after tracing (scale folding, as AWQ/SmoothQuant do) must get a fresh trace:
 * its report must equal the one of the same change made without a trace. The forward passes
 * per block are counted through the stage timer.
 *
 * The reconstruction error's token sample (gq_recon_token): exact indices, the value on a
 * small case against a double-precision reference, and the same bits for 1 and 2 threads. */
#include "test_quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_log.h"
#include "core/gq_rng.h"
#include "core/gq_threads.h"

#define N_CALIB 8
#define CALIB_CTX 320 /* 2560 calibration tokens: above GQ_RECON_TOKENS, so errors are sampled */

static const char INT3_G32[] =
    "{\"name\": \"int\", \"bits\": 3, \"granularity\": \"group\", \"group_size\": 32}";

/* ---- test methods: a registered method's block step, then something the pipeline must see */

/* Registered method `base`'s block step with its FP trace forgotten afterwards. */
static int forget_trace(const char *base, const void *p, gq_block_ctx *ctx, gq_error *err)
{
    if (gq_method_find(base)->quantize_block(p, ctx, err))
        return -1;
    ctx->fp_trace_of = 0;
    return 0;
}

static int forget_gptq_block(const void *p, gq_block_ctx *ctx, gq_error *err)
{
    return forget_trace("gptq", p, ctx, err);
}

static int forget_rtn_block(const void *p, gq_block_ctx *ctx, gq_error *err)
{
    return forget_trace("rtn", p, ctx, err);
}

/* Scales gate/up's input channels by 1.5 and the FFN norm by 1/1.5 (an AWQ-like fold: the
 * FP function is kept up to rounding, the weights' bits are not), then RTN. */
static void fold_ffn(gq_block_ctx *ctx)
{
    const gq_config *c = ctx->cfg;
    for (int j = 0; j < c->dim; j++)
        ctx->w.rms_ffn[j] /= 1.5f;
    const gq_linear_kind k2[2] = {GQ_LIN_GATE, GQ_LIN_UP};
    for (int i = 0; i < 2; i++)
        for (size_t r = 0; r < (size_t)c->hidden_dim; r++)
            for (int j = 0; j < c->dim; j++)
                ctx->w.w[k2[i]][r * c->dim + j] *= 1.5f;
}

static int round_all(gq_block_ctx *ctx, gq_error *err)
{
    for (int k = 0; k < GQ_N_LINEAR; k++)
        if (ctx->quant[k] && gq_block_quantize_rtn(ctx, (gq_linear_kind)k, NULL, NULL, err))
            return -1;
    return 0;
}

static int trace_fold_block(const void *p, gq_block_ctx *ctx, gq_error *err)
{
    (void)p;
    const gq_block_trace *tr;
    if (gq_block_trace_fp(ctx, &tr, err))
        return -1;
    fold_ffn(ctx);
    return round_all(ctx, err);
}

static int fold_block(const void *p, gq_block_ctx *ctx, gq_error *err)
{
    (void)p;
    fold_ffn(ctx);
    return round_all(ctx, err);
}

static gq_method forget_gptq, forget_rtn, trace_fold, fold;

/* A copy of registered method `base` (its parameters too) named `name` whose block step is
 * `block`. */
static void register_variant(gq_method *m, const char *base, const char *name,
                             int (*block)(const void *, gq_block_ctx *, gq_error *))
{
    *m = *gq_method_find(base);
    m->name = name;
    m->quantize_block = block;
    gq_error err;
    if (gq_method_register(m, &err))
        fail_msg("register %s: %s", name, err.msg);
}

static int setup(void **state)
{
    gq_log_set_level(GQ_LOG_WARN);
    register_variant(&forget_gptq, "gptq", "test_forget_gptq", forget_gptq_block);
    register_variant(&forget_rtn, "rtn", "test_forget_rtn", forget_rtn_block);
    register_variant(&trace_fold, "rtn", "test_trace_fold", trace_fold_block);
    register_variant(&fold, "rtn", "test_fold", fold_block);
    const test_stories_opts o = {.n_calib = N_CALIB, .calib_ctx = CALIB_CTX, .calib_seed = 3};
    return test_stories_setup(state, &o);
}

/* ---- running and comparing */

typedef struct {
    int forward, fingerprint;
} pass_count;

static void count_stage(void *user, const char *stage, gq_stage_limit limit, double work,
                        double seconds)
{
    (void)limit, (void)work, (void)seconds;
    pass_count *n = user;
    n->forward += strcmp(stage, "forward") == 0;
    n->fingerprint += strcmp(stage, "fingerprint") == 0;
}

/* Quantizes the fixture with `method` (settings `sets`) and propagation `prop`; the forward
 * passes it ran go to *n. */
static void run(const test_stories *f, const char *method, const char *const *sets,
                gq_propagate prop, gq_model *out, gq_quant_report *rep, pass_count *n)
{
    gq_quant_plan plan;
    test_plan_init(method, sets, INT3_G32, &plan);
    memset(n, 0, sizeof *n);
    gq_stage_sink sink = {count_stage, n};
    plan.calib_tokens = f->calib;
    plan.n_calib = f->n_calib;
    plan.calib_ctx = f->calib_ctx;
    plan.propagate = prop;
    plan.stages = &sink;
    gq_error err;
    int rc = gq_quantize_model(&f->fp, &plan, out, rep, &err);
    gq_method_cfg_free(&plan.method);
    gq_quantizer_free(&plan.quantizer);
    if (rc)
        fail_msg("%s: %s", method, err.msg);
}

static void assert_same_result(const gq_model *a, const gq_quant_report *ra, const gq_model *b,
                               const gq_quant_report *rb)
{
    test_assert_linears_equal(a, b);
    assert_int_equal(ra->n_tensors, rb->n_tensors);
    for (int i = 0; i < ra->n_tensors; i++) {
        const gq_tensor_report *x = &ra->tensors[i], *y = &rb->tensors[i];
        if (memcmp(&x->recon_err, &y->recon_err, sizeof(double)))
            fail_msg("%s: recon_err %.17g vs %.17g", x->name, x->recon_err, y->recon_err);
        assert_true((x->extra == NULL) == (y->extra == NULL));
        if (x->extra && !json_equal(x->extra, y->extra))
            fail_msg("%s: method metrics differ", x->name);
    }
}

/* `method` and `other` give the same bits; their forward passes per block. */
static void check_same(const test_stories *f, const char *method, const char *other,
                       const char *const *sets, gq_propagate prop, int passes, int other_passes)
{
    gq_model a, b;
    gq_quant_report ra, rb;
    pass_count na, nb;
    run(f, method, sets, prop, &a, &ra, &na);
    run(f, other, sets, prop, &b, &rb, &nb);
    const int L = f->fp.cfg.n_layers;
    print_message("%s: %d passes, %s: %d passes (%d blocks)\n", method, na.forward, other,
                  nb.forward, L);
    assert_same_result(&a, &ra, &b, &rb);
    assert_int_equal(na.forward, passes * L);
    assert_int_equal(nb.forward, other_passes * L);
    gq_model_free(&a);
    gq_model_free(&b);
    gq_quant_report_free(&ra);
    gq_quant_report_free(&rb);
}

/* GPTQ's report reuses its trace (2 passes per block: the trace, the quantized propagation),
 * and equals the report of a fresh trace; with FP propagation the trace's outputs are the next
 * block's inputs (1 pass). */
static void test_gptq_reuse(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    const char *const sets[] = {"act_order=true", NULL};
    check_same(f, "gptq", "test_forget_gptq", sets, GQ_PROPAGATE_QUANTIZED, 2, 3);
    check_same(f, "gptq", "test_forget_gptq", NULL, GQ_PROPAGATE_FP, 1, 2);
}

/* RTN with imatrix: one pass per block (its trace serves statistics, report and the next
 * block's inputs). */
static void test_rtn_imatrix_reuse(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    const char *const sets[] = {"imatrix=true", NULL};
    check_same(f, "rtn", "test_forget_rtn", sets, GQ_PROPAGATE_FP, 1, 2);
}

/* A block changed after its trace gets a fresh one: the report equals that of the same change
 * made without tracing first, and the stale trace would have given other errors. */
static void test_changed_block_retraced(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    check_same(f, "test_trace_fold", "test_fold", NULL, GQ_PROPAGATE_FP, 2, 1);
    check_same(f, "test_trace_fold", "test_fold", NULL, GQ_PROPAGATE_QUANTIZED, 3, 2);
}

/* One changed bit anywhere in the block changes its fingerprint. */
static void test_fingerprint(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    const gq_config *c = &f->fp.cfg;
    gq_block_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.cfg = c;
    ctx.layer = 1;
    gq_model m;
    gq_error err;
    assert_int_equal(gq_model_clone(&f->fp, &m, &err), 0);
    ctx.w = m.layers[1];
    const uint64_t h0 = gq_block_fingerprint(&ctx);
    assert_true(h0 != 0);
    assert_true(h0 == gq_block_fingerprint(&ctx));
    int rows, cols;
    gq_linear_shape(c, GQ_LIN_DOWN, &rows, &cols);
    float *probes[] = {&ctx.w.rms_att[0], &ctx.w.rms_ffn[c->dim - 1], &ctx.w.w[GQ_LIN_Q][7],
                       &ctx.w.w[GQ_LIN_DOWN][(size_t)rows * cols - 1]};
    for (size_t i = 0; i < sizeof probes / sizeof *probes; i++) {
        const float v = *probes[i];
        *probes[i] = nextafterf(v, INFINITY);
        assert_true(gq_block_fingerprint(&ctx) != h0);
        *probes[i] = v;
        assert_true(gq_block_fingerprint(&ctx) == h0);
    }
    gq_model_free(&m);
}

/* ---- the reconstruction error's token sample */

/* Indices from the protocol (gq_pipeline.h) computed independently. */
static void test_recon_sample_indices(void **state)
{
    (void)state;
    assert_int_equal(GQ_RECON_TOKENS, 1024);
    const size_t js[5] = {0, 1, 2, 500, 1023};
    const size_t want[3][5] = {{3, 4, 9, 2444, 4998}, {7, 9, 22, 4001, 8191}, {0, 1, 2, 500, 1024}};
    const size_t ns[3] = {5000, 8192, 1025};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(gq_recon_tokens(ns[i]), GQ_RECON_TOKENS);
        for (int j = 0; j < 5; j++)
            assert_int_equal(gq_recon_token(js[j], ns[i]), want[i][j]);
        for (size_t j = 0; j + 1 < GQ_RECON_TOKENS; j++) /* one token per stratum, in order */
            assert_true(gq_recon_token(j, ns[i]) < gq_recon_token(j + 1, ns[i]));
    }
    assert_int_equal(gq_recon_tokens(700), 700);
    assert_int_equal(gq_recon_token(699, 700), 699);
}

/* ||W X - Q X||^2 / ||W X||^2 in double over tokens idx(j), j < m, of X (n, cols). */
static double recon_reference(const float *W, const float *Q, const float *X, size_t n,
                              int rows, int cols)
{
    double num = 0, den = 0;
    for (size_t j = 0; j < gq_recon_tokens(n); j++) {
        const float *x = X + gq_recon_token(j, n) * cols;
        for (int r = 0; r < rows; r++) {
            double y = 0, e = 0;
            for (int i = 0; i < cols; i++) {
                y += (double)W[(size_t)r * cols + i] * x[i];
                e += ((double)W[(size_t)r * cols + i] - Q[(size_t)r * cols + i]) * x[i];
            }
            num += e * e;
            den += y * y;
        }
    }
    return num / den;
}

static float *random_matrix(gq_rng *r, size_t n, float scale)
{
    float *a = malloc(n * sizeof *a);
    for (size_t i = 0; i < n; i++)
        a[i] = scale * (float)(2.0 * gq_rng_uniform(r) - 1.0);
    return a;
}

/* The sampled error against its double reference (and the full one for few tokens), equal
 * bits at 1 and 2 threads; a sample that ignored the protocol would miss the reference. */
static void test_recon_error_sampled(void **state)
{
    (void)state;
    const int rows = 48, cols = 80;
    gq_rng r;
    gq_rng_seed(&r, 9);
    float *W = random_matrix(&r, (size_t)rows * cols, 1.0f);
    float *Q = malloc((size_t)rows * cols * sizeof *Q);
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        Q[i] = roundf(W[i] * 4.0f) / 4.0f;
    const size_t ns[2] = {5000, 700};
    const int saved = gq_threads_get();
    for (int c = 0; c < 2; c++) {
        const size_t n = ns[c];
        float *X = random_matrix(&r, n * cols, 1.0f);
        for (size_t t = 0; t < n; t += 7) /* uneven tokens, so the sample matters */
            for (int i = 0; i < cols; i++)
                X[t * cols + i] *= 1.0f + (float)(t % 13);
        gq_error err;
        gq_threads_set(1);
        const double e1 = gq_recon_error(W, Q, X, n, rows, cols, &err);
        gq_threads_set(2);
        const double e2 = gq_recon_error(W, Q, X, n, rows, cols, &err);
        const double want = recon_reference(W, Q, X, n, rows, cols);
        print_message("n %zu: %.9g (reference %.9g)\n", n, e1, want);
        assert_memory_equal(&e1, &e2, sizeof e1);
        assert_true(fabs(e1 - want) <= 1e-5 * want);
        free(X);
    }
    gq_threads_set(saved);
    free(W);
    free(Q);
}

/* A whole quantization with sampled errors gives the same report at 1 and 2 threads. */
static void test_recon_threads(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    const int saved = gq_threads_get();
    gq_model a, b;
    gq_quant_report ra, rb;
    pass_count n;
    gq_threads_set(1);
    run(f, "rtn", NULL, GQ_PROPAGATE_METHOD_DEFAULT, &a, &ra, &n);
    gq_threads_set(2);
    run(f, "rtn", NULL, GQ_PROPAGATE_METHOD_DEFAULT, &b, &rb, &n);
    gq_threads_set(saved);
    assert_same_result(&a, &ra, &b, &rb);
    for (int i = 0; i < ra.n_tensors; i++)
        assert_true(!ra.tensors[i].quantized || ra.tensors[i].recon_err > 0);
    gq_model_free(&a);
    gq_model_free(&b);
    gq_quant_report_free(&ra);
    gq_quant_report_free(&rb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recon_sample_indices), cmocka_unit_test(test_recon_error_sampled),
        cmocka_unit_test(test_fingerprint),          cmocka_unit_test(test_gptq_reuse),
        cmocka_unit_test(test_rtn_imatrix_reuse),    cmocka_unit_test(test_changed_block_retraced),
        cmocka_unit_test(test_recon_threads),
    };
    return cmocka_run_group_tests_name("passes", tests, setup, test_stories_teardown);
}
