/* gq-bench bench forward: prefill and decode throughput of the forward pass.
 *
 * Protocol: a synthetic model of the preset's shape (fixed seed), or the checkpoint --model,
 * B windows of --ctx random tokens. One warm-up, then --reps rounds; a round is one prefill
 * (gq_forward_prefill over all B*ctx tokens, embedding to logits, its stages timed) followed by
 * the sgemm pass: the same linear products (every linear of every block and the classifier, on
 * the model's weights with M = B*ctx rows) issued back to back as whole cblas_sgemm calls
 * threaded by BLAS, the BLAS ceiling for this shape. FLOPs counted: 2 * (B*ctx) * (linear
 * weights of all blocks + classifier) plus causal attention 2 * 2 * head_size * n_heads *
 * ctx(ctx+1)/2 per window and layer (q k^T and p v). ratio = prefill GFLOP/s / sgemm GFLOP/s
 * of the same round; printed are the medians over the rounds and their min .. max, and the
 * median time of every stage next to the same products in the sgemm pass. decode =
 * gq_decode_step one token at a time (llama2.c order of operations, KV cache) over
 * --decode-steps positions from 0, wall time. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "cli/cmd_decl.h"
#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "core/gq_assets.h"
#include "core/gq_rng.h"
#include "core/gq_steady.h"
#include "core/gq_threads.h"
#include "core/gq_time.h"
#include "model/gq_forward.h"
#include "model/gq_model.h"
#include "model/gq_synth.h"

#define CMD "bench forward"

/* The stage of the prefill that issues linear k's product. */
static gq_fwd_stage stage_of_linear(gq_linear_kind k)
{
    switch (k) {
    case GQ_LIN_Q: case GQ_LIN_K: case GQ_LIN_V: return GQ_FWD_QKV;
    case GQ_LIN_O: return GQ_FWD_O;
    case GQ_LIN_GATE: case GQ_LIN_UP: return GQ_FWD_GATE_UP;
    default: return GQ_FWD_DOWN;
    }
}

/* All matrix products of one prefill of n tokens, back to back, each one whole cblas_sgemm
 * threaded by BLAS itself (not gq_sgemm's fixed tiles): the ceiling the tiles are held to.
 * Adds each product's wall time to by_stage[the stage that issues it]; returns the total. */
static double sgemm_pass(const gq_model *m, int n, float *x, float *y, double *by_stage)
{
    const gq_config *c = &m->cfg;
    double t0 = gq_now(), t = t0;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            int rows, cols;
            gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, cols, 1.0f, x, cols,
                        m->layers[l].w[k], cols, 0.0f, y, rows);
            double now = gq_now();
            by_stage[stage_of_linear((gq_linear_kind)k)] += now - t;
            t = now;
        }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, c->vocab_size, c->dim, 1.0f, x,
                c->dim, m->wcls, c->dim, 0.0f, y, c->vocab_size);
    by_stage[GQ_FWD_CLASSIFIER] += gq_now() - t;
    return gq_now() - t0;
}

/* Seeded inputs: n token ids below vocab, then nx standard normal activations. */
static void fill_inputs(int *tok, int n, int vocab, float *x, size_t nx, uint64_t seed)
{
    gq_rng rng;
    gq_rng_seed(&rng, seed);
    for (int i = 0; i < n; i++)
        tok[i] = (int)gq_rng_below(&rng, (uint64_t)vocab);
    for (size_t i = 0; i < nx; i++)
        x[i] = (float)gq_rng_normal(&rng);
}

/* Wall seconds of each timed round: the prefill and its stages, the sgemm pass and its
 * products grouped by the stage that issues them ((n, GQ_FWD_N_STAGES) row-major). */
typedef struct fwd_rounds {
    int n;
    double *prefill, *gemm, *stage, *gemm_stage;
} fwd_rounds;

/* R for n rounds; false when out of memory (R can still be freed). */
static bool rounds_alloc(fwd_rounds *R, int n)
{
    R->n = n;
    R->prefill = malloc((size_t)n * sizeof(double));
    R->gemm = malloc((size_t)n * sizeof(double));
    R->stage = malloc((size_t)n * GQ_FWD_N_STAGES * sizeof(double));
    R->gemm_stage = malloc((size_t)n * GQ_FWD_N_STAGES * sizeof(double));
    return R->prefill && R->gemm && R->stage && R->gemm_stage;
}

static void rounds_free(fwd_rounds *R)
{
    free(R->prefill);
    free(R->gemm);
    free(R->stage);
    free(R->gemm_stage);
}

/* reps timed rounds after one warm-up; in each round a prefill, then the sgemm pass, so both
 * see the same machine load. */
static int time_prefill(const gq_model *m, const int *tok, int B, int T, gq_forward_ws *ws,
                        float *logits, float *x, float *y, fwd_rounds *R, gq_error *err)
{
    double warm[GQ_FWD_N_STAGES];
    for (int r = -1; r < R->n; r++) {
        double *st = r < 0 ? warm : R->stage + (size_t)r * GQ_FWD_N_STAGES;
        double *gs = r < 0 ? warm : R->gemm_stage + (size_t)r * GQ_FWD_N_STAGES;
        memset(st, 0, GQ_FWD_N_STAGES * sizeof *st);
        gq_forward_ws_time_stages(ws, st);
        double t0 = gq_now();
        int rc = gq_forward_prefill(m, tok, B, T, ws, logits, err);
        double t = gq_now() - t0;
        gq_forward_ws_time_stages(ws, NULL);
        if (rc != 0)
            return -1;
        memset(gs, 0, GQ_FWD_N_STAGES * sizeof *gs);
        double tg = sgemm_pass(m, B * T, x, y, gs);
        if (r >= 0) {
            R->prefill[r] = t;
            R->gemm[r] = tg;
        }
    }
    return 0;
}

/* Time (s) of `steps` decode positions from 0 over the ids tok[0..n) (cycled). */
static int time_decode(gq_decode *dec, const int *tok, int n, int steps, float *logits,
                       double *t_dec, gq_error *err)
{
    *t_dec = 0;
    if (steps <= 0)
        return 0;
    double t0 = gq_now();
    for (int p = 0; p < steps; p++)
        if (gq_decode_step(dec, tok[p % n], p, logits, err) != 0)
            return -1;
    *t_dec = gq_now() - t0;
    return 0;
}

/* FLOPs of one prefill of N tokens: flops[stage] for the stages that issue linear products
 * (2 N rows cols per product) and attention (2 x 2 head_size n_heads T(T+1)/2 per window and
 * layer: q k^T and p v over the causal keys); returns the linear total. */
static double prefill_flops(const gq_config *c, int B, int T, double *flops)
{
    double N = (double)B * T, lin = 2.0 * N * c->vocab_size * c->dim;
    memset(flops, 0, GQ_FWD_N_STAGES * sizeof *flops);
    flops[GQ_FWD_CLASSIFIER] = lin;
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        int rows, cols;
        gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
        double f = 2.0 * N * rows * cols * c->n_layers;
        flops[stage_of_linear((gq_linear_kind)k)] += f;
        lin += f;
    }
    flops[GQ_FWD_ATTENTION] = 4.0 * gq_head_size(c) * c->n_heads * c->n_layers * B *
                              ((double)T * (T + 1) / 2);
    return lin;
}

/* Median of column j of the (n, stride) table v. */
static double median_col(const double *v, int n, int stride, int j)
{
    double tmp[n];
    for (int r = 0; r < n; r++)
        tmp[r] = v[(size_t)r * stride + j];
    gq_rate_spread s;
    gq_rate_spread_of(tmp, n, &s);
    return s.median;
}

/* Spread (min, median, max) over the rounds of a / t[r] (a rate) or, with u, of
 * (a / t[r]) / (b / u[r]) (a ratio of rates). */
static gq_rate_spread spread(double a, const double *t, double b, const double *u, int n)
{
    double v[n];
    for (int r = 0; r < n; r++)
        v[r] = u ? (a / t[r]) / (b / u[r]) : a / t[r];
    gq_rate_spread s;
    gq_rate_spread_of(v, n, &s);
    return s;
}

/* Per-stage medians of the prefill, with the FLOP rate where the stage has FLOPs and, for
 * the linear products, the same products' time and rate in the sgemm pass. */
static void print_stages(const fwd_rounds *R, const double *flops)
{
    double med[GQ_FWD_N_STAGES], total = 0;
    for (int s = 0; s < GQ_FWD_N_STAGES; s++)
        total += med[s] = median_col(R->stage, R->n, GQ_FWD_N_STAGES, s);
    printf("%-11s %9s %6s %9s %10s %9s %9s\n", "stage", "time (s)", "share", "GFLOP/s",
           "sgemm (s)", "GFLOP/s", "vs sgemm");
    for (int s = 0; s < GQ_FWD_N_STAGES; s++) {
        printf("%-11s %9.4f %5.1f%%", gq_fwd_stage_names[s], med[s], 100.0 * med[s] / total);
        double g = median_col(R->gemm_stage, R->n, GQ_FWD_N_STAGES, s);
        if (flops[s] > 0)
            printf(" %9.2f", flops[s] / med[s] * 1e-9);
        if (flops[s] > 0 && g > 0)
            printf(" %10.4f %9.2f %8.0f%%", g, flops[s] / g * 1e-9, 100.0 * g / med[s]);
        printf("\n");
    }
}

/* The report: throughput and FLOP rates of prefill (B windows of T tokens) and of the same
 * linear products as one sgemm each, medians and spread over the rounds R, the stages, and
 * `steps` decode positions (t_dec). */
static void print_forward(const gq_config *c, const char *name, long seed, int B, int T,
                          int threads, const fwd_rounds *R, int steps, double t_dec)
{
    int N = B * T;
    double flops[GQ_FWD_N_STAGES];
    double lin_flops = prefill_flops(c, B, T, flops), att_flops = flops[GQ_FWD_ATTENTION];
    double all = lin_flops + att_flops, dec_flops = lin_flops / N; /* per token, no attention */
    gq_rate_spread pf = spread(all * 1e-9, R->prefill, 0, NULL, R->n);
    gq_rate_spread sg = spread(lin_flops * 1e-9, R->gemm, 0, NULL, R->n);
    gq_rate_spread ra = spread(all, R->prefill, lin_flops, R->gemm, R->n);
    printf("bench forward: %s (dim %d, hidden %d, %d layers, %d/%d heads, vocab %d), "
           "seed %ld\n", name, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
           c->vocab_size, seed);
    printf("batch %d x ctx %d = %d tokens, %d threads, %d rounds after a warm-up (prefill and "
           "sgemm pass alternate; medians), BLAS: %s\n", B, T, N, threads, R->n,
           gq_blas_description());
    printf("%-8s %12s %12s %14s %8s %10s\n", "stage", "tokens/s", "GFLOP/s", "sgemm GFLOP/s",
           "ratio", "time (s)");
    printf("%-8s %12.1f %12.2f %14.2f %7.0f%% %10.4f\n", "prefill", pf.median / all * 1e9 * N,
           pf.median, sg.median, 100.0 * ra.median, all * 1e-9 / pf.median);
    if (steps > 0)
        printf("%-8s %12.2f %12.2f %14s %8s %10.4f\n", "decode", steps / t_dec,
               dec_flops * steps / t_dec * 1e-9, "-", "-", t_dec);
    printf("spread over %d rounds (min .. max): ratio %.0f%% .. %.0f%%, prefill %.2f .. %.2f "
           "GFLOP/s, sgemm %.2f .. %.2f GFLOP/s\n", R->n, 100.0 * ra.min, 100.0 * ra.best,
           pf.min, pf.best, sg.min, sg.best);
    printf("prefill FLOPs: %.3g linear + %.3g attention; sgemm: the same linear products "
           "alone; ratio: prefill GFLOP/s / sgemm GFLOP/s of the same round; decode: %d "
           "positions from 0, linear FLOPs only\n", lin_flops, att_flops, steps);
    print_stages(R, flops);
}

/* The model to time: the checkpoint at `path` (assets: names resolved) when given, else a
 * synthetic model of the preset's shape. Returns a GQ_EXIT_* status. */
static int bench_model(const char *path, const char *preset, uint64_t seed, gq_model *m,
                       gq_error *err)
{
    char resolved[4096];
    memset(m, 0, sizeof *m);
    if (path)
        return gq_asset_resolve(path, resolved, sizeof resolved, err) != 0 ||
                       gq_model_load(resolved, m, err) != 0
                   ? GQ_EXIT_USAGE
                   : GQ_EXIT_OK;
    gq_config c;
    if (gq_synth_preset(preset, &c, err) != 0)
        return GQ_EXIT_USAGE;
    return gq_model_synth_config(&c, seed, m, err) != 0 ? GQ_EXIT_FAIL : GQ_EXIT_OK;
}

int bench_forward(int argc, char **argv)
{
    struct {
        const char *preset, *model;
        long ctx, batch, threads, reps, decode_steps, seed;
    } o = {0};
    char presets[256];
    snprintf(presets, sizeof presets, "presets: %s\n", gq_synth_preset_names());
    const cli_opt opts[] = {
        CLI_OPT("preset", "NAME", CLI_STR, &o.preset, "model shape (see presets below)",
                .def = "stories110M"),
        CLI_OPT("model", "M", CLI_STR, &o.model,
                "a llama2.c checkpoint instead of a synthetic preset (assets: paths work)"),
        CLI_OPT("ctx", "T", CLI_INT, &o.ctx, "tokens per window, at most the preset's seq_len",
                .def = "512", .min = 1, .max = 1 << 20),
        CLI_OPT("batch", "B", CLI_INT, &o.batch, "windows per prefill", .def = "1", .min = 1,
                .max = 1024),
        CLI_OPT("threads", "N", CLI_INT, &o.threads,
                "threads (default: OMP_NUM_THREADS or all cores)", .min = 1, .max = 4096),
        CLI_OPT("reps", "R", CLI_INT, &o.reps,
                "timed rounds (prefill, then sgemm pass) after one warm-up; medians are kept",
                .def = "5", .min = 1, .max = 1000),
        CLI_OPT("decode-steps", "S", CLI_INT, &o.decode_steps, "decode positions from 0",
                .def = "64", .max = 1 << 20),
        CLI_OPT("seed", "S", CLI_INT, &o.seed, "seed of the weights and tokens", .def = "1",
                .max = 0x1p62),
    };
    const cli_spec spec = {.cmd = CMD, CLI_OPTS(opts), .epilog = presets};
    CLI_PARSE_OR_RETURN(&spec, argc, argv);
    int threads = gq_threads_set((int)o.threads);
    gq_error err = {{0}};
    gq_model m;
    int rc_model = bench_model(o.model, o.preset, (uint64_t)o.seed, &m, &err);
    if (rc_model != GQ_EXIT_OK)
        return cli_report(CMD, &err, rc_model);
    const gq_config c = m.cfg;
    const char *name = o.model ? o.model : o.preset;
    if (o.ctx > c.seq_len || o.decode_steps > c.seq_len) {
        gq_model_free(&m);
        return cli_usage_error(CMD, "--ctx %ld / --decode-steps %ld exceed %s's seq_len %d",
                               o.ctx, o.decode_steps, name, c.seq_len);
    }
    int B = (int)o.batch, T = (int)o.ctx, N = B * T, reps = (int)o.reps;
    size_t width = (size_t)(c.hidden_dim > c.vocab_size ? c.hidden_dim : c.vocab_size);
    width = width > (size_t)c.dim ? width : (size_t)c.dim;
    fwd_rounds R;
    bool rounds_ok = rounds_alloc(&R, reps);
    int *tok = malloc((size_t)N * sizeof *tok);
    float *logits = malloc((size_t)N * c.vocab_size * sizeof(float));
    float *x = calloc((size_t)N * width, sizeof(float)), *y = malloc((size_t)N * width * 4);
    gq_forward_ws *ws = gq_forward_ws_new(&c, N, &err);
    gq_decode *dec = gq_decode_new(&m, &err);
    int rc = GQ_EXIT_FAIL;
    if (!tok || !logits || !x || !y || !ws || !dec || !rounds_ok) {
        if (!err.msg[0])
            gq_fail(&err, "out of memory for %d tokens", N);
        goto done;
    }
    fill_inputs(tok, N, c.vocab_size, x, (size_t)N * width, (uint64_t)o.seed);
    if (time_prefill(&m, tok, B, T, ws, logits, x, y, &R, &err))
        goto done;
    double t_dec;
    int steps = (int)o.decode_steps;
    if (time_decode(dec, tok, N, steps, logits, &t_dec, &err))
        goto done;
    print_forward(&c, name, o.seed, B, T, threads, &R, steps, t_dec);
    rc = GQ_EXIT_OK;
done:
    if (rc != GQ_EXIT_OK)
        cli_report(CMD, &err, rc);
    gq_decode_free(dec);
    gq_forward_ws_free(ws);
    free(tok);
    rounds_free(&R);
    free(logits);
    free(x);
    free(y);
    gq_model_free(&m);
    return rc;
}
