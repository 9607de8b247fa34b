/* Perplexity / KL evaluation on the real stories260K model and TinyStories text. */
#include "test_stories.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/gq_threads.h"
#include "eval/eval_baseline.h"
#include "eval/gq_eval.h"
#include "model/gq_forward.h"
#include "text/gq_dataset.h"

static const test_stories *S; /* the group's fixture; NULL when the assets are missing */

static int setup(void **state)
{
    const test_stories_opts no_calib = {0};
    int rc = test_stories_setup(state, &no_calib);
    S = *state;
    return rc;
}

#define NEED_ASSETS()                                                              \
    do {                                                                           \
        if (!S) {                                                                  \
            char b_[4096];                                                         \
            TEST_ASSET_OR_SKIP("models/stories260K/stories260K.bin", b_);          \
            skip();                                                                \
        }                                                                          \
    } while (0)

static gq_eval_opts opts(int ctx, gq_ppl_protocol p, long windows)
{
    gq_eval_opts o = gq_eval_opts_default(ctx);
    o.protocol = p;
    o.max_windows = windows;
    o.progress = false;
    return o;
}

static gq_eval_result eval_ok(const gq_model *m, const gq_eval_opts *o,
                              const gq_eval_baseline *in, gq_eval_baseline **out)
{
    gq_eval_result r;
    gq_error err = {{0}};
    if (gq_eval_perplexity(m, &S->ds, o, in, out, &r, &err) != 0)
        fail_msg("%s", err.msg);
    return r;
}

/* Mean NLL of windows 0..nw-1 computed independently: the per-token reference forward pass
 * and a direct log-softmax, with the protocol's first-token and scored-range rules. */
static double reference_nll(int ctx, gq_ppl_protocol p, int nw, size_t *count)
{
    int V = S->fp.cfg.vocab_size;
    float *logits = malloc((size_t)ctx * V * sizeof *logits);
    int *win = malloc((size_t)ctx * sizeof *win);
    double sum = 0.0;
    *count = 0;
    gq_error err = {{0}};
    for (int w = 0; w < nw; w++) {
        memcpy(win, S->ds.tokens + (size_t)w * ctx, (size_t)ctx * sizeof *win);
        if (p == GQ_PPL_LLAMACPP)
            win[0] = 1;
        if (gq_forward_ref(&S->fp, win, ctx, logits, &err) != 0)
            fail_msg("%s", err.msg);
        for (int t = (p == GQ_PPL_LLAMACPP ? ctx / 2 : 0); t < ctx - 1; t++) {
            const float *x = logits + (size_t)t * V;
            double mx = x[0], s = 0.0;
            for (int v = 1; v < V; v++)
                mx = fmax(mx, x[v]);
            for (int v = 0; v < V; v++)
                s += exp(x[v] - mx);
            sum += mx + log(s) - x[win[t + 1]];
            (*count)++;
        }
    }
    free(logits);
    free(win);
    return sum / (double)*count;
}

static void test_protocols_match_reference(void **state)
{
    (void)state;
    NEED_ASSETS();
    const int ctx = 128, nw = 3;
    for (int p = GQ_PPL_FULL; p <= GQ_PPL_LLAMACPP; p++) {
        gq_eval_opts o = opts(ctx, (gq_ppl_protocol)p, nw);
        o.batch = 2; /* a full batch and a partial one */
        gq_eval_result r = eval_ok(&S->fp, &o, NULL, NULL);
        size_t n;
        double ref = reference_nll(ctx, (gq_ppl_protocol)p, nw, &n);
        assert_int_equal(r.windows, nw);
        assert_int_equal(r.tokens, nw * ctx);
        assert_int_equal(r.scored, n);
        assert_int_equal(r.scored, p == GQ_PPL_FULL ? nw * (ctx - 1) : nw * (ctx - 1 - ctx / 2));
        if (fabs(r.mean_nll - ref) > 1e-4 * ref)
            fail_msg("%s: mean NLL %.8f, reference %.8f", gq_ppl_protocol_name(r.protocol),
                     r.mean_nll, ref);
        assert_true(fabs(r.ppl - exp(r.mean_nll)) < 1e-12 * r.ppl);
        assert_true(r.ppl_se > 0 && r.ppl_se < r.ppl);
    }
}

/* The numbers of two runs are the same bit for bit (NaN-safe: compared as bytes). */
static bool same_bits(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

static void assert_same_numbers(const gq_eval_result *a, const gq_eval_result *b,
                                const char *what)
{
    const double x[] = {a->mean_nll, a->nll_se, a->ppl, a->ppl_se, a->kl_mean,
                        a->kl_se,    a->top1_pct, a->top1_se_pct, a->base_ppl, a->delta_ppl};
    const double y[] = {b->mean_nll, b->nll_se, b->ppl, b->ppl_se, b->kl_mean,
                        b->kl_se,    b->top1_pct, b->top1_se_pct, b->base_ppl, b->delta_ppl};
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        if (!same_bits(x[i], y[i]))
            fail_msg("%s: number %zu differs between %d and %d threads: %.17g vs %.17g", what, i,
                     a->threads, b->threads, x[i], y[i]);
}

/* Batches of 5 windows of 256 tokens: 1280 rows, five row tiles of the products. */
static void test_plausible_and_thread_stable(void **state)
{
    (void)state;
    NEED_ASSETS();
    int saved = gq_threads_get();
    for (int p = GQ_PPL_FULL; p <= GQ_PPL_LLAMACPP; p++) {
        gq_eval_opts o = opts(256, (gq_ppl_protocol)p, 8);
        o.batch = 5;
        gq_threads_set(1);
        gq_eval_result r1 = eval_ok(&S->fp, &o, NULL, NULL);
        fprintf(stderr, "stories260K %s ctx 256, 8 windows: PPL %.4f +/- %.4f\n",
                gq_ppl_protocol_name(r1.protocol), r1.ppl, r1.ppl_se);
        assert_true(isfinite(r1.ppl));
        assert_true(r1.ppl > 3.0 && r1.ppl < 8.0);
        assert_int_equal(r1.threads, 1);
        for (int t = 2; t <= 3; t++) {
            gq_threads_set(t);
            gq_eval_result rt = eval_ok(&S->fp, &o, NULL, NULL);
            assert_int_equal(rt.threads, t);
            assert_same_numbers(&r1, &rt, gq_ppl_protocol_name(r1.protocol));
        }
    }
    gq_threads_set(saved);
}

/* A perturbed copy of the model: noise on one layer's wq and w2. */
static void perturbed_clone(gq_model *q)
{
    gq_error err = {{0}};
    assert_int_equal(gq_model_clone(&S->fp, q, &err), 0);
    unsigned s = 12345;
    const gq_config *c = &q->cfg;
    for (int i = 0; i < c->dim * c->dim; i++) {
        s = s * 1103515245u + 12345u;
        q->layers[1].w[GQ_LIN_Q][i] += 0.05f * ((float)(s >> 16 & 0x7fff) / 32768.0f - 0.5f);
    }
    for (int i = 0; i < c->dim * c->hidden_dim; i++) {
        s = s * 1103515245u + 12345u;
        q->layers[2].w[GQ_LIN_DOWN][i] *=
            1.0f + 0.3f * ((float)(s >> 16 & 0x7fff) / 32768.0f - 0.5f);
    }
}

static gq_eval_result eval_ref_ok(const gq_model *m, const gq_eval_opts *o,
                                  gq_eval_reference ref)
{
    gq_eval_result r;
    gq_error err = {{0}};
    if (gq_eval_run(m, &S->ds, o, &ref, NULL, &r, &err) != 0)
        fail_msg("%s", err.msg);
    return r;
}

/* Paired mode (the baseline model run beside the evaluated one, batch by batch) gives the
 * stored mode's numbers bit for bit, for both protocols and a partial last batch; a model
 * paired with itself has KL exactly 0 and 100% top-1; the numbers do not depend on threads. */
static void test_paired_matches_stored(void **state)
{
    (void)state;
    NEED_ASSETS();
    gq_model q;
    perturbed_clone(&q);
    int saved = gq_threads_get();
    for (int p = GQ_PPL_FULL; p <= GQ_PPL_LLAMACPP; p++) {
        gq_eval_opts o = opts(128, (gq_ppl_protocol)p, 3);
        o.batch = 2;
        gq_eval_baseline *base = NULL;
        gq_eval_result r0 = eval_ok(&S->fp, &o, NULL, &base);
        gq_eval_result st = eval_ref_ok(&q, &o, gq_eval_ref_stored(base));
        gq_eval_result pa = eval_ref_ok(&q, &o, gq_eval_ref_model(&S->fp));
        fprintf(stderr, "%s: stored KL %.17g top-1 %.17g base PPL %.17g; paired KL %.17g "
                "top-1 %.17g base PPL %.17g\n", gq_ppl_protocol_name(o.protocol), st.kl_mean,
                st.top1_pct, st.base_ppl, pa.kl_mean, pa.top1_pct, pa.base_ppl);
        assert_int_equal(st.reference, GQ_EVAL_REF_STORED);
        assert_int_equal(pa.reference, GQ_EVAL_REF_MODEL);
        assert_string_equal(gq_eval_ref_kind_name(pa.reference), "paired");
        assert_true(pa.has_baseline && pa.kl_mean > 0.0 && pa.top1_pct < 100.0);
        assert_true(pa.ref_seconds > 0.0);
        assert_true(st.mean_nll == pa.mean_nll && st.nll_se == pa.nll_se);
        assert_true(st.kl_mean == pa.kl_mean && st.kl_se == pa.kl_se);
        assert_true(st.top1_pct == pa.top1_pct && st.top1_se_pct == pa.top1_se_pct);
        assert_true(st.base_ppl == pa.base_ppl && pa.base_ppl == r0.ppl);
        assert_true(st.delta_ppl == pa.delta_ppl);

        gq_eval_result self = eval_ref_ok(&S->fp, &o, gq_eval_ref_model(&S->fp));
        assert_true(self.kl_mean == 0.0 && self.kl_se == 0.0);
        assert_true(self.top1_pct == 100.0 && self.delta_ppl == 0.0);

        gq_threads_set(1);
        gq_eval_result t1 = eval_ref_ok(&q, &o, gq_eval_ref_model(&S->fp));
        for (int t = 2; t <= 3; t++) {
            gq_threads_set(t);
            gq_eval_result tt = eval_ref_ok(&q, &o, gq_eval_ref_model(&S->fp));
            assert_same_numbers(&t1, &tt, "paired");
        }
        gq_threads_set(saved);
        gq_eval_baseline_free(base);
    }
    /* a reference model of another vocabulary or a shorter context is refused */
    gq_eval_opts o = opts(128, GQ_PPL_FULL, 1);
    gq_error err = {{0}};
    gq_eval_result bad;
    gq_eval_reference ref = gq_eval_ref_model(&S->fp);
    q.cfg.seq_len = 64;
    assert_int_equal(gq_eval_check_ref(&S->fp, &S->ds, &o, &ref, &err), 0);
    ref.model = &q;
    assert_int_equal(gq_eval_run(&S->fp, &S->ds, &o, &ref, NULL, &bad, &err), -1);
    assert_non_null(strstr(err.msg, "baseline model's seq_len 64"));
    q.cfg.seq_len = S->fp.cfg.seq_len;
    q.cfg.vocab_size--;
    assert_int_equal(gq_eval_check_ref(&S->fp, &S->ds, &o, &ref, &err), -1);
    assert_non_null(strstr(err.msg, "vocabulary"));
    q.cfg.vocab_size++;
    /* the stored size the runner budgets: 192 + scored * (vocab * 4 + 12) */
    o = opts(128, GQ_PPL_LLAMACPP, 3);
    assert_int_equal(gq_eval_stored_bytes(&S->fp, &S->ds, &o, &err),
                     192 + 3 * (127 - 64) * ((size_t)S->fp.cfg.vocab_size * 4 + 12));
    gq_model_free(&q);
}

static void test_kl_self_and_perturbed(void **state)
{
    (void)state;
    NEED_ASSETS();
    gq_eval_opts o = opts(256, GQ_PPL_FULL, 4);
    gq_eval_baseline *base = NULL;
    gq_eval_result r0 = eval_ok(&S->fp, &o, NULL, &base);
    assert_non_null(base);
    assert_false(r0.has_baseline);
    assert_true(fabs(gq_eval_baseline_ppl(base) - r0.ppl) < 1e-12 * r0.ppl);

    gq_eval_result self = eval_ok(&S->fp, &o, base, NULL);
    assert_true(self.has_baseline);
    assert_true(self.kl_mean == 0.0);
    assert_true(self.top1_pct == 100.0);
    assert_true(self.delta_ppl == 0.0);

    /* Save and load the baseline: the same numbers. */
    char *dir = test_tmpdir("eval");
    char path[4200];
    snprintf(path, sizeof path, "%s/base.bin", dir);
    gq_error err = {{0}};
    assert_int_equal(gq_eval_baseline_save(base, path, &err), 0);
    gq_eval_baseline *loaded = NULL;
    if (gq_eval_baseline_load(path, &loaded, &err) != 0)
        fail_msg("%s", err.msg);

    gq_model q;
    perturbed_clone(&q);
    gq_eval_result rq = eval_ok(&q, &o, loaded, NULL);
    fprintf(stderr, "perturbed: PPL %.4f (base %.4f), KL %.6f +/- %.6f, top-1 %.2f%%\n", rq.ppl,
            rq.base_ppl, rq.kl_mean, rq.kl_se, rq.top1_pct);
    assert_true(rq.kl_mean > 0.0 && rq.kl_se > 0.0 && rq.kl_se < rq.kl_mean);
    assert_true(rq.top1_pct < 100.0 && rq.top1_pct > 10.0);
    assert_true(fabs(rq.delta_ppl - (rq.ppl - r0.ppl)) < 1e-9);
    assert_true(rq.ppl != r0.ppl);

    /* A baseline of other windows is refused with a message naming the mismatch. */
    gq_eval_opts o2 = opts(128, GQ_PPL_FULL, 4);
    gq_eval_result bad;
    assert_int_equal(gq_eval_perplexity(&q, &S->ds, &o2, loaded, NULL, &bad, &err), -1);
    assert_non_null(strstr(err.msg, "baseline does not match"));

    /* A baseline whose header matches in everything but its number of scored positions (and
     * whose size fits that number): refused, KL never reads past its rows. */
    gq_eval_baseline *few = NULL;
    assert_int_equal(gq_baseline_new(GQ_PPL_FULL, 256, S->fp.cfg.vocab_size, 4, 3 * 255,
                                     S->ds.sha256, &few, &err), 0);
    assert_int_equal(gq_eval_baseline_save(few, path, &err), 0);
    gq_eval_baseline_free(few);
    assert_int_equal(gq_eval_baseline_load(path, &few, &err), 0);
    assert_int_equal(gq_eval_perplexity(&q, &S->ds, &o, few, NULL, &bad, &err), -1);
    assert_non_null(strstr(err.msg, "765 scored positions"));
    gq_eval_baseline_free(few);
    assert_int_equal(gq_eval_baseline_save(loaded, path, &err), 0);

    /* Truncated baseline files are refused. */
    size_t len;
    char *bytes = test_read_file(path, &len);
    FILE *f = fopen(path, "wb");
    fwrite(bytes, 1, len - 4, f);
    fclose(f);
    gq_eval_baseline *trunc = NULL;
    assert_int_equal(gq_eval_baseline_load(path, &trunc, &err), -1);
    assert_non_null(strstr(err.msg, path));
    free(bytes);
    remove(path);
    remove(dir);
    free(dir);

    gq_model_free(&q);
    gq_eval_baseline_free(loaded);
    gq_eval_baseline_free(base);
}

static void test_bad_options(void **state)
{
    (void)state;
    NEED_ASSETS();
    gq_eval_result r;
    gq_error err = {{0}};
    gq_eval_opts o = opts(S->fp.cfg.seq_len + 1, GQ_PPL_FULL, 1);
    assert_int_equal(gq_eval_perplexity(&S->fp, &S->ds, &o, NULL, NULL, &r, &err), -1);
    assert_non_null(strstr(err.msg, "seq_len"));
    o = opts(3, GQ_PPL_LLAMACPP, 1);
    assert_int_equal(gq_eval_perplexity(&S->fp, &S->ds, &o, NULL, NULL, &r, &err), -1);
    gq_ppl_protocol p;
    assert_int_equal(gq_ppl_protocol_parse("wiki", &p, &err), -1);
    assert_non_null(strstr(err.msg, "wiki"));
}

static void expect_cli_status(const char *args, int status, const char *needle)
{
    char out[4096], errb[4096];
    int st = test_run_cli(args, out, sizeof out, errb, sizeof errb);
    if ((status >= 0 ? st != status : st == 0) || !strstr(errb, needle))
        fail_msg("'gq-bench %s' exited %d with stderr '%s' (expected '%s')", args, st, errb,
                 needle);
}

static void expect_cli_error(const char *args, const char *needle)
{
    expect_cli_status(args, -1, needle);
}

/* `eval --json` prints the same numbers (17 digits: exact doubles) with 1, 2 and 3 threads, and
 * names the BLAS kernel; batches of 3 windows of 256 tokens span several product tiles. */
static void test_cli_threads(void **state)
{
    (void)state;
    NEED_ASSETS();
    char args[16384], out[3][8192], errb[8192];
    for (int t = 1; t <= 3; t++) {
        snprintf(args, sizeof args, "eval --model %s --tokenizer %s --data %s --ctx 256 "
                 "--max-windows 6 --batch 3 --threads %d --json", S->model_path, S->tok_path,
                 S->text_path, t);
        if (test_run_cli(args, out[t - 1], sizeof out[0], errb, sizeof errb) != 0)
            fail_msg("%s: %s", args, errb);
        json_t *j = json_loads(out[t - 1], 0, NULL);
        assert_non_null(j);
        assert_int_equal(json_integer_value(json_object_get(j, "threads")), t);
        assert_string_equal(json_string_value(json_object_get(j, "blas_kernel")),
                            gq_blas_kernel());
        const char *timing[] = {"threads", "t_eval", "eval_tok_s", "revision"};
        for (size_t k = 0; k < sizeof timing / sizeof timing[0]; k++)
            json_object_del(j, timing[k]);
        char *s = json_dumps(j, JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
        snprintf(out[t - 1], sizeof out[0], "%s", s);
        free(s);
        json_decref(j);
    }
    assert_string_equal(out[0], out[1]);
    assert_string_equal(out[0], out[2]);
}

static void test_cli(void **state)
{
    (void)state;
    NEED_ASSETS();
    char args[32768], out[8192], errb[8192];
    snprintf(args, sizeof args, "eval --model %s --tokenizer %s --data %s --ctx 64 "
             "--max-windows 4 --protocol llamacpp --threads 1 --json", S->model_path, S->tok_path,
             S->text_path);
    int st = test_run_cli(args, out, sizeof out, errb, sizeof errb);
    if (st != 0)
        fail_msg("eval failed: %s", errb);
    test_contains_all(out, "\"protocol\":\"llamacpp\"", "\"ctx\":64", "\"eval_windows\":4",
                      "\"scored\":124", S->ds.sha256, NULL);

    /* --baseline-model (paired) prints the numbers of --baseline (stored) */
    char base[512], kl[2][256];
    char *dir = test_tmpdir_file("eval-cli", "base.bin", base, sizeof base);
    snprintf(args, sizeof args, "eval --model %s --tokenizer %s --data %s --ctx 64 "
             "--max-windows 4 --threads 1 --json --save-baseline %s", S->model_path, S->tok_path,
             S->text_path, base);
    assert_int_equal(test_run_cli(args, out, sizeof out, errb, sizeof errb), 0);
    for (int k = 0; k < 2; k++) {
        snprintf(args, sizeof args, "eval --model %s --tokenizer %s --data %s --ctx 64 "
                 "--max-windows 4 --threads 1 --json --%s %s", S->model_path, S->tok_path, S->text_path,
                 k ? "baseline-model" : "baseline", k ? S->model_path : base);
        if (test_run_cli(args, out, sizeof out, errb, sizeof errb) != 0)
            fail_msg("%s: %s", args, errb);
        assert_non_null(strstr(out, k ? "\"kl_reference\":\"paired\"" : "\"kl_reference\":\"stored\""));
        /* the comparison columns, without the timings */
        json_t *j = json_loads(out, 0, NULL);
        if (!j || !json_object_get(j, "base_ppl"))
            fail_msg("no base_ppl in the --json output: %s", out);
        json_t *cmp = json_object();
        static const char *const keys[] = {"base_ppl", "delta_ppl", "kl_div", "kl_stderr",
                                           "top1_pct", "top1_stderr_pct"};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            json_object_set(cmp, keys[i], json_object_get(j, keys[i]));
        char *c = json_dumps(cmp, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
        snprintf(kl[k], sizeof kl[k], "%s", c);
        free(c);
        json_decref(cmp);
        json_decref(j);
    }
    assert_string_equal(kl[0], kl[1]);
    assert_non_null(strstr(kl[1], "\"delta_ppl\":0.0,\"kl_div\":0.0,\"kl_stderr\":0.0,\"top1_pct\":100.0,"));
    snprintf(args, sizeof args, "eval --model %s --tokenizer %s --data %s --baseline %s "
             "--baseline-model %s", S->model_path, S->tok_path, S->text_path, base, S->model_path);
    expect_cli_status(args, 2, "--baseline and --baseline-model are alternatives");
    remove(base);
    remove(dir);
    free(dir);

    snprintf(args, sizeof args, "eval --model %s --tokenizer %s --data /nonexistent/x.txt",
             S->model_path, S->tok_path);
    expect_cli_error(args, "/nonexistent/x.txt");
    snprintf(args, sizeof args, "eval --model %s --tokenizer %s --data %s --protocol wiki",
             S->model_path, S->tok_path, S->text_path);
    expect_cli_error(args, "unknown perplexity protocol 'wiki'");
    snprintf(args, sizeof args, "eval --model %s --tokenizer %s --data %s --ctx 1024",
             S->model_path, S->tok_path, S->text_path);
    expect_cli_error(args, "exceeds the model's seq_len 512");
    snprintf(args, sizeof args, "eval --model %s --tokenizer %s --data %s --max-windows 0",
             S->model_path, S->tok_path, S->text_path);
    expect_cli_error(args, "--max-windows");
    /* invalid input is refused (status 2) before any evaluation */
    snprintf(args, sizeof args, "eval --model %s --tokenizer %s --data %s --ctx 3 "
             "--protocol llamacpp", S->model_path, S->tok_path, S->text_path);
    expect_cli_status(args, 2, "ctx 3 is outside 4..512");
    snprintf(args, sizeof args, "eval --model %s --tokenizer %s --data %s --ctx 64 "
             "--save-baseline /nonexistent/b.bin", S->model_path, S->tok_path, S->text_path);
    expect_cli_status(args, 2, "--save-baseline /nonexistent/b.bin: directory /nonexistent");
    snprintf(args, sizeof args, "eval --model %s --tokenizer %s --data /", S->model_path, S->tok_path);
    expect_cli_status(args, 2, "/: not a regular file (it is a directory)");
    snprintf(args, sizeof args, "tokenize --tokenizer %s --data %s --head 3", S->tok_path, S->text_path);
    st = test_run_cli(args, out, sizeof out, errb, sizeof errb);
    assert_int_equal(st, 0);
    char want[64];
    snprintf(want, sizeof want, "%zu (BOS", S->ds.n_tokens);
    assert_non_null(strstr(out, want));
    snprintf(args, sizeof args, "tokenize --tokenizer %s --data %s", S->text_path, S->text_path);
    expect_cli_error(args, S->text_path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_protocols_match_reference),
        cmocka_unit_test(test_plausible_and_thread_stable),
        cmocka_unit_test(test_kl_self_and_perturbed),
        cmocka_unit_test(test_paired_matches_stored),
        cmocka_unit_test(test_cli_threads),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, setup, test_stories_teardown);
}
