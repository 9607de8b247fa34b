/* gq-bench bench quantize: the stages of one method on one block of a real shape, each against
 * the limit of this machine measured in the same run.
 *
 * Protocol: a synthetic one-block model of the preset's shape (fixed seed, model/gq_synth.h),
 * --windows x --ctx random calibration tokens, and the whole layer-wise pipeline
 * (gq_quantize_model) on it: the calibration forward passes, the method's stages and the
 * pipeline's reconstruction errors, as a real run does for each block. Every stage reports its
 * wall time and work through the stage timer (gq_stage_sink, methods/gq_method.h); a round is
 * one complete quantization, --reps rounds, all on one block working copy (gq_block_buffers), as
 * a whole model's blocks after the first share one. Limits, measured between the rounds (best
 * of all samples): sgemm and dgemm = gq_sgemm / gq_dgemm GFLOP/s on products of the block's size
 * ((tokens x dim) x (dim x hidden) single, (dim x 256) x (256 x dim) double, the shape of the
 * Hessian's and the factorisation's updates); bandwidth = STREAM triad GB/s (gq_packed.h) over
 * arrays each the size of the last-level cache (a block of a large model is read from memory,
 * and a probe that fits the cache would measure the cache instead).
 * Memory: peak RSS since the previous stage ended (Linux clear_refs), and the sizes of what a
 * block holds. The projection to a whole model scales the token-proportional stages by the
 * token ratio (the forward pass by its FLOP ratio) and multiplies by the preset's layers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/bench_quantize.h"
#include "cli/cmd_decl.h"
#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "core/gq_rng.h"
#include "core/gq_threads.h"
#include "core/gq_time.h"
#include "formats/grid_kernels.h"
#include "methods/gq_pipeline.h"
#include "model/gq_synth.h"

#define CMD "bench quantize"

/* Shape presets: "llama2-7b" is one block of the synthetic llama2-7b-2layers shape with
 * Llama-2-7B's 32 layers for the projection; other names are the synthetic presets. */
static int bench_config(const char *preset, long hidden, gq_config *c, int *n_layers,
                        gq_error *err)
{
    bool l7b = strcmp(preset, "llama2-7b") == 0;
    if (gq_synth_preset(l7b ? "llama2-7b-2layers" : preset, c, err))
        return gq_fail(err, "unknown preset '%s' (known: llama2-7b, %s)", preset,
                       gq_synth_preset_names());
    *n_layers = l7b ? 32 : c->n_layers;
    c->n_layers = 1;
    c->shared_classifier = true; /* one vocabulary table: the block is what is measured */
    if (hidden)
        c->hidden_dim = (int)hidden;
    return 0;
}

static int parse_args(int argc, char **argv, bq_args *a)
{
    char presets[300];
    snprintf(presets, sizeof presets, "presets: llama2-7b, %s\n", gq_synth_preset_names());
    const cli_opt opts[] = {
        CLI_OPT("preset", "NAME", CLI_STR, &a->preset, "block shape (see presets below)",
                .def = "stories110M"),
        CLI_OPT("method", "NAME", CLI_STR, &a->method, "rtn, gptq, awq, praq, affinequant",
                .required = true),
        CLI_OPT("format", "NAME", CLI_STR, &a->format, "a registered format", .def = "int"),
        CLI_OPT("set", "k=v", CLI_CALL, &a->fmt_params, "a format parameter, e.g. --set bits=3",
                .parse = cli_set_param, .repeat = true),
        CLI_OPT("method-set", "k=v", CLI_CALL, &a->method_params,
                "a method parameter, e.g. --method-set act_order=true", .parse = cli_set_param,
                .repeat = true),
        CLI_OPT("windows", "B", CLI_INT, &a->windows, "calibration windows", .def = "4",
                .min = 1, .max = 4096),
        CLI_OPT("ctx", "T", CLI_INT, &a->ctx, "tokens per calibration window", .def = "512",
                .min = 1, .max = 1 << 16),
        CLI_OPT("hidden", "H", CLI_INT, &a->hidden, "override the preset's hidden width",
                .min = 1, .max = 1 << 16),
        CLI_OPT("reps", "R", CLI_INT, &a->reps, "rounds (complete quantizations of the block)",
                .def = "3", .min = 1, .max = 100),
        CLI_OPT("project-windows", "N", CLI_INT, &a->project_windows,
                "windows of --project-ctx tokens for the whole-model projection",
                .def = "128", .min = 1, .max = 1 << 20),
        CLI_OPT("project-ctx", "T", CLI_INT, &a->project_ctx,
                "tokens per window of the projection", .def = "2048", .min = 1, .max = 1 << 20),
        CLI_OPT("threads", "N", CLI_INT, &a->threads,
                "threads (default: OMP_NUM_THREADS or all cores)", .min = 1, .max = 4096),
        CLI_OPT("seed", "S", CLI_INT, &a->seed, "seed of the weights and tokens", .def = "1",
                .max = 0x1p62),
        CLI_OPT("stream-mib", "M", CLI_INT, &a->stream_mib,
                "MiB per STREAM-triad array of the bandwidth limit (default: the last-level "
                "cache's size, at least 128)", .min = 1, .max = 1 << 16),
        CLI_OPT("no-avx512", NULL, CLI_FLAG, &a->no_avx512,
                "int's kernels in their AVX2 form on a CPU with AVX-512 (same bytes)"),
    };
    const cli_spec spec = {.cmd = CMD, CLI_OPTS(opts), .epilog = presets};
    return cli_parse(&spec, argc, argv);
}

/* The one-block model, its calibration tokens and the plan. */
static int setup(const bq_args *a, bq_bench *b, gq_error *err)
{
    if (bench_config(a->preset, a->hidden, &b->cfg, &b->n_layers, err))
        return GQ_EXIT_USAGE;
    if (a->ctx > b->cfg.seq_len)
        return gq_fail(err, "--ctx %ld exceeds the preset's seq_len %d", a->ctx, b->cfg.seq_len),
               GQ_EXIT_USAGE;
    b->plan.n_calib = (int)a->windows;
    b->plan.calib_ctx = (int)a->ctx;
    if (gq_method_cfg_init(&b->plan.method, a->method, a->method_params,
                           gq_method_find(a->method) ? "--method-set" : "--method", err) ||
        gq_quantizer_init(&b->plan.quantizer, a->format, a->fmt_params,
                          gq_format_find(a->format) ? "--set" : "--format", err))
        return GQ_EXIT_USAGE;
    size_t ntok = (size_t)a->windows * a->ctx;
    if (!(b->tokens = malloc(ntok * sizeof *b->tokens)))
        return gq_fail(err, "out of memory for %zu tokens", ntok), GQ_EXIT_FAIL;
    gq_rng rng;
    gq_rng_seed(&rng, (uint64_t)a->seed);
    for (size_t i = 0; i < ntok; i++)
        b->tokens[i] = (int)gq_rng_below(&rng, (uint64_t)b->cfg.vocab_size);
    b->plan.calib_tokens = b->tokens;
    b->plan.seed = (uint64_t)a->seed;
    /* the rounds share the block's working copy, as a model's blocks do after the first */
    if (!(b->plan.buffers = gq_block_buffers_new()))
        return gq_fail(err, "out of memory"), GQ_EXIT_FAIL;
    if (gq_model_synth_config(&b->cfg, (uint64_t)a->seed, &b->model, err))
        return GQ_EXIT_FAIL;
    b->have_model = true;
    return GQ_EXIT_OK;
}

/* One round: the whole pipeline on the block, stages recorded into b->rounds[r]. */
static int one_round(bq_bench *b, int r, gq_error *err)
{
    gq_stage_sink sink = {bq_record_stage, &b->rounds[r]};
    b->plan.stages = &sink;
    gq_model out;
    gq_quant_report rep;
    bq_rss_reset();
    b->rounds[r].rss_before = bq_rss_now();
    double t0 = gq_now();
    int rc = gq_quantize_model(&b->model, &b->plan, &out, &rep, err);
    b->rounds[r].total = gq_now() - t0;
    b->plan.stages = NULL;
    if (rc)
        return -1;
    gq_model_free(&out);
    gq_quant_report_free(&rep);
    return 0;
}

static void bench_free(bq_bench *b)
{
    if (b->have_model)
        gq_model_free(&b->model);
    free(b->tokens);
    gq_block_buffers_free(b->plan.buffers);
    gq_method_cfg_free(&b->plan.method);
    if (b->plan.quantizer.fmt)
        gq_quantizer_free(&b->plan.quantizer);
    bq_limits_free(&b->lim);
}

int bench_quantize(int argc, char **argv)
{
    bq_args a = {0};
    int prc = parse_args(argc, argv, &a);
    if (prc != 0)
        return prc == 1 ? GQ_EXIT_OK : prc;
    int threads = gq_threads_set((int)a.threads);
    grid_k_allow_avx512(!a.no_avx512);
    gq_error err = {{0}};
    bq_bench b = {0};
    int rc = setup(&a, &b, &err);
    if (rc == GQ_EXIT_OK)
        rc = bq_limits_init(&b.lim, &b.cfg, (size_t)a.windows * a.ctx, (size_t)a.stream_mib,
                            &err)
                 ? GQ_EXIT_FAIL
                 : GQ_EXIT_OK;
    for (int r = 0; rc == GQ_EXIT_OK && r < a.reps; r++) {
        bq_limits_sample(&b.lim);
        if (one_round(&b, r, &err))
            rc = GQ_EXIT_FAIL;
        b.n_rounds = r + 1;
    }
    if (rc == GQ_EXIT_OK) {
        bq_limits_sample(&b.lim);
        bq_print(&a, &b, threads);
    } else {
        cli_report(CMD, &err, rc);
    }
    bench_free(&b);
    json_decref(a.fmt_params); /* the --set / --method-set objects cli_parse built */
    json_decref(a.method_params);
    return rc;
}
