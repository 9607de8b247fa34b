/* gq-bench bench forward: prefill and decode throughput of the forward pass.
 *
 * Protocol: a synthetic model of the preset's shape (fixed seed), or the checkpoint --model,
 * B windows of --ctx random tokens. prefill = gq_forward_prefill over all B*ctx tokens (embedding to logits), best wall
 * time of --reps runs after one warm-up. FLOPs counted: 2 * (B*ctx) * (linear weights of all
 * blocks + classifier) plus causal attention 2 * 2 * head_size * n_heads * ctx(ctx+1)/2 per
 * window and layer (q k^T and p v). sgemm = the same matrix products (every linear of every
 * block and the classifier, on the model's weights with M = B*ctx rows) issued back to back
 * with cblas_sgemm, alternating with the prefill runs, best of --reps: the BLAS ceiling for this shape. ratio = prefill GFLOP/s /
 * sgemm GFLOP/s. decode = gq_decode_step one token at a time (llama2.c order of operations,
 * KV cache) over --decode-steps positions from 0, wall time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "cli/cmd_decl.h"
#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "core/gq_assets.h"
#include "core/gq_rng.h"
#include "core/gq_threads.h"
#include "core/gq_time.h"
#include "model/gq_forward.h"
#include "model/gq_model.h"
#include "model/gq_synth.h"

#define CMD "bench forward"

/* All matrix products of one prefill of n tokens, back to back, each one whole cblas_sgemm
 * threaded by BLAS itself (not gq_sgemm's fixed tiles): the ceiling the tiles are held to.
 * Returns the wall time. */
static double sgemm_pass(const gq_model *m, int n, float *x, float *y)
{
    const gq_config *c = &m->cfg;
    double t0 = gq_now();
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            int rows, cols;
            gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, cols, 1.0f, x, cols,
                        m->layers[l].w[k], cols, 0.0f, y, rows);
        }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, c->vocab_size, c->dim, 1.0f, x,
                c->dim, m->wcls, c->dim, 0.0f, y, c->vocab_size);
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

/* Best prefill and sgemm-pass times (s) of reps timed runs after one warm-up. The two
 * alternate, so both see the same machine load. */
static int time_prefill(const gq_model *m, const int *tok, int B, int T, gq_forward_ws *ws,
                        float *logits, float *x, float *y, int reps, double *best,
                        double *t_gemm, gq_error *err)
{
    *best = 1e30;
    *t_gemm = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = gq_now();
        if (gq_forward_prefill(m, tok, B, T, ws, logits, err) != 0)
            return -1;
        double t = gq_now() - t0, tg = sgemm_pass(m, B * T, x, y);
        if (r > 0 && t < *best)
            *best = t;
        if (r > 0 && tg < *t_gemm)
            *t_gemm = tg;
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

/* The report: throughput and FLOP rates of prefill (B windows of T tokens, best time `best`),
 * of the same linear products as one sgemm each (t_gemm) and of `steps` decode positions. */
static void print_forward(const gq_config *c, const char *preset, long seed, int B, int T,
                          int threads, int reps, double best, double t_gemm, int steps,
                          double t_dec)
{
    int N = B * T;
    double lin_params = (double)c->n_layers * (gq_layer_floats(c) - 2.0 * c->dim) +
                        (double)c->vocab_size * c->dim;
    double lin_flops = 2.0 * N * lin_params;
    double att_flops = 4.0 * gq_head_size(c) * c->n_heads * c->n_layers * B *
                       ((double)T * (T + 1) / 2);
    double gf_prefill = (lin_flops + att_flops) / best * 1e-9;
    double gf_gemm = lin_flops / t_gemm * 1e-9;
    double dec_flops = 2.0 * lin_params; /* per token, attention excluded */
    printf("bench forward: %s (dim %d, hidden %d, %d layers, %d/%d heads, vocab %d), "
           "seed %ld\n", preset, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
           c->vocab_size, seed);
    printf("batch %d x ctx %d = %d tokens, %d threads, best of %d, BLAS: %s\n", B, T, N, threads,
           reps, gq_blas_description());
    printf("%-8s %12s %12s %14s %8s %10s\n", "stage", "tokens/s", "GFLOP/s", "sgemm GFLOP/s",
           "ratio", "time (s)");
    printf("%-8s %12.1f %12.2f %14.2f %7.0f%% %10.4f\n", "prefill", N / best, gf_prefill,
           gf_gemm, 100.0 * gf_prefill / gf_gemm, best);
    if (steps > 0)
        printf("%-8s %12.2f %12.2f %14s %8s %10.4f\n", "decode", steps / t_dec,
               dec_flops * steps / t_dec * 1e-9, "-", "-", t_dec);
    printf("prefill FLOPs: %.3g linear + %.3g attention; sgemm: the same linear products "
           "alone (%.4f s); decode: %d positions from 0, linear FLOPs only\n", lin_flops,
           att_flops, t_gemm, steps);
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
        CLI_OPT("reps", "R", CLI_INT, &o.reps, "timed runs after one warm-up, the best is kept",
                .def = "3", .min = 1, .max = 1000),
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
    int *tok = malloc((size_t)N * sizeof *tok);
    float *logits = malloc((size_t)N * c.vocab_size * sizeof(float));
    float *x = calloc((size_t)N * width, sizeof(float)), *y = malloc((size_t)N * width * 4);
    gq_forward_ws *ws = gq_forward_ws_new(&c, N, &err);
    gq_decode *dec = gq_decode_new(&m, &err);
    int rc = GQ_EXIT_FAIL;
    if (!tok || !logits || !x || !y || !ws || !dec) {
        if (!err.msg[0])
            gq_fail(&err, "out of memory for %d tokens", N);
        goto done;
    }
    fill_inputs(tok, N, c.vocab_size, x, (size_t)N * width, (uint64_t)o.seed);
    double best, t_gemm;
    if (time_prefill(&m, tok, B, T, ws, logits, x, y, reps, &best, &t_gemm, &err))
        goto done;
    double t_dec;
    int steps = (int)o.decode_steps;
    if (time_decode(dec, tok, N, steps, logits, &t_dec, &err))
        goto done;
    print_forward(&c, name, o.seed, B, T, threads, reps, best, t_gemm, steps, t_dec);
    rc = GQ_EXIT_OK;
done:
    if (rc != GQ_EXIT_OK)
        cli_report(CMD, &err, rc);
    gq_decode_free(dec);
    gq_forward_ws_free(ws);
    free(tok);
    free(logits);
    free(x);
    free(y);
    gq_model_free(&m);
    return rc;
}
