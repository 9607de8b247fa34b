/* gq-bench bench decode | bench prefill: tokens/s of packed quantized weights against fp32.
 *
 * Protocol: a synthetic model of the preset's shape (seed --seed). Each row builds one model:
 * fp32 (every linear and the classifier through BLAS: sgemv for one token, sgemm otherwise) or
 * one packed format (block linears, and the classifier unless --classifier fp32, quantized with
 * the format and kept in its packed layout; fp32 activations). Embeddings and norms stay fp32.
 *   decode:  gq_decode_step at positions warm-up..warm-up+N-1 (N = --tokens, default 32) after 2
 *            warm-up steps, fresh KV cache; tokens/s = 1 / the fastest step; bytes/token = weight bytes one step
 *            reads (packed or fp32 linears + classifier + norms + one embedding row); GB/s =
 *            bytes/token * tokens/s; ceiling = STREAM triad (a = b + s*c over 3 x --stream-mib
 *            MiB, all threads, best of 5) measured before and after the table, the larger kept.
 *   prefill: gq_forward_prefill of one window of --tokens tokens (default 128), best of --reps
 *            after a warm-up.
 * "x fp32" is tokens/s over the fp32 row's tokens/s in the same run. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "core/gq_threads.h"
#include "core/gq_time.h"
#include "model/gq_synth.h"
#include "packed/gq_packed.h"

/* The formats of `--format all`. */
static const char *const all_formats[] = {
    "{\"name\": \"int\", \"bits\": 4, \"group_size\": 128, \"zero\": \"asym\"}",
    "{\"name\": \"int\", \"bits\": 4, \"group_size\": 128, \"zero\": \"sym\"}",
    "{\"name\": \"int\", \"bits\": 8, \"granularity\": \"channel\", \"zero\": \"sym\"}",
    "q4_0", "q4_1", "q8_0", "mxfp4_ggml", "q4_K", "q6_K",
};

typedef struct {
    bool decode;
    const char *cmd, *preset, *format;
    long tokens, reps, threads, seed, stream_mib;
    bool pack_classifier;
} bp_opts;

static int parse(int argc, char **argv, bp_opts *o)
{
    static const struct option longopts[] = {
        {"preset", required_argument, 0, 'p'}, {"format", required_argument, 0, 'f'},
        {"tokens", required_argument, 0, 't'}, {"reps", required_argument, 0, 'r'},
        {"threads", required_argument, 0, 'j'}, {"seed", required_argument, 0, 's'},
        {"classifier", required_argument, 0, 'c'}, {"stream-mib", required_argument, 0, 'm'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    opterr = 0;
    optind = 1;
    int ch, bad = 0;
    while (!bad && (ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'p': o->preset = optarg; break;
        case 'f': o->format = optarg; break;
        case 't': bad = cli_int(o->cmd, "--tokens", optarg, 1, 1 << 20, &o->tokens); break;
        case 'r': bad = cli_int(o->cmd, "--reps", optarg, 1, 1000, &o->reps); break;
        case 'j': bad = cli_int(o->cmd, "--threads", optarg, 1, 4096, &o->threads); break;
        case 's': bad = cli_int(o->cmd, "--seed", optarg, 0, 1L << 62, &o->seed); break;
        case 'm': bad = cli_int(o->cmd, "--stream-mib", optarg, 1, 1 << 16, &o->stream_mib); break;
        case 'c':
            if (strcmp(optarg, "packed") != 0 && strcmp(optarg, "fp32") != 0)
                return cli_usage_error(o->cmd, "--classifier must be packed or fp32, not '%s'",
                                       optarg);
            o->pack_classifier = strcmp(optarg, "packed") == 0;
            break;
        case 'h':
            printf("usage: gq-bench %s [--preset NAME] [--format NAME|JSON|all] [--tokens N]\n"
                   "         [--reps R] [--threads N] [--seed S] [--classifier packed|fp32]"
                   " [--stream-mib M]\n\n"
                   "defaults: stories110M, all packed formats, %ld tokens, 3 reps, all cores, "
                   "classifier packed, 256 MiB stream arrays\npresets: %s\n",
                   o->cmd, o->tokens, gq_synth_preset_names());
            return 1;
        default:
            return cli_usage_error(o->cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (bad)
        return GQ_EXIT_USAGE;
    if (optind < argc)
        return cli_usage_error(o->cmd, "unexpected argument '%s'", argv[optind]);
    return 0;
}

/* A format from a registry name or a JSON object. */
static int make_quantizer(const char *spec, gq_quantizer *q, gq_error *err)
{
    if (spec[0] != '{')
        return gq_quantizer_init(q, spec, NULL, "--format", err);
    json_error_t je;
    json_t *j = json_loads(spec, 0, &je);
    if (!j)
        return gq_fail(err, "--format: invalid JSON: %s", je.text);
    int rc = gq_quantizer_from_json(j, "--format", q, err);
    json_decref(j);
    return rc;
}

/* One table row: builds the model (q NULL: fp32), times it; *tok_s = 0 with `why` when the
 * format has no packed kernel. */
static int run_row(const gq_model *m, const gq_quantizer *q, const bp_opts *o,
                   gq_packed_model *pm, double *tok_s, char *why, size_t n, gq_error *err)
{
    *tok_s = 0;
    if (q)
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            int rows, cols;
            gq_linear_shape(&m->cfg, (gq_linear_kind)k, &rows, &cols);
            if (!gq_packed_supported(q, rows, cols, why, n))
                return 0;
        }
    if ((q ? gq_packed_model_build(m, q, o->pack_classifier, NULL, pm, err)
           : gq_packed_model_fp32(m, pm, err)) != 0)
        return -1;
    gq_packed_bench_opts bo = gq_packed_bench_defaults();
    bo.decode_tokens = bo.prefill_tokens = (int)o->tokens;
    bo.reps = (int)o->reps;
    int rc = o->decode ? gq_packed_time_decode(&pm->model, &bo, tok_s, err)
                       : gq_packed_time_prefill(&pm->model, &bo, tok_s, err);
    return rc;
}

static int bench_packed(int argc, char **argv, bool decode)
{
    bp_opts o = {decode, decode ? "bench decode" : "bench prefill", "stories110M", "all",
                 decode ? 32 : 128, 3, 0, 1, 256, true};
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc == 1 ? GQ_EXIT_OK : rc;
    int threads = gq_threads_set((int)o.threads);
    gq_error err = {{0}};
    gq_config c;
    if (gq_synth_preset(o.preset, &c, &err) != 0)
        return cli_report(o.cmd, &err, GQ_EXIT_USAGE);
    if (o.tokens + 2 > c.seq_len)
        return cli_usage_error(o.cmd, "--tokens %ld exceeds the preset's seq_len %d", o.tokens,
                               c.seq_len);
    const char *const *specs = all_formats;
    int n_specs = (int)(sizeof all_formats / sizeof all_formats[0]);
    if (strcmp(o.format, "all") != 0) {
        specs = &o.format;
        n_specs = 1;
    }
    gq_quantizer *qs = calloc((size_t)n_specs, sizeof *qs);
    for (int i = 0; qs && i < n_specs; i++)
        if (make_quantizer(specs[i], &qs[i], &err) != 0) {
            for (int k = 0; k < i; k++)
                gq_quantizer_free(&qs[k]);
            free(qs);
            return cli_report(o.cmd, &err, GQ_EXIT_USAGE);
        }
    gq_model m;
    double bw0 = 0, bw1 = 0;
    if (!qs || gq_model_synth_config(&c, (uint64_t)o.seed, &m, &err) != 0) {
        free(qs);
        return cli_report(o.cmd, &err, GQ_EXIT_FAIL);
    }
    rc = GQ_EXIT_FAIL;
    if (decode && gq_packed_bandwidth((size_t)o.stream_mib, 5, &bw0, &err) != 0)
        goto done;
    printf("%s: preset %s (dim %d, hidden %d, %d layers, vocab %d), seed %ld, %d threads, "
           "%ld %s tokens, classifier %s\n", o.cmd, o.preset, c.dim, c.hidden_dim, c.n_layers,
           c.vocab_size, o.seed, threads, o.tokens, decode ? "decode" : "prefill",
           o.pack_classifier ? "packed" : "fp32");
    printf("activations fp32; fp32 row = BLAS sgemv/sgemm on fp32 weights; BLAS: %s\n",
           gq_blas_description());
    if (decode)
        printf("%-24s %8s %10s %10s %8s %8s %9s\n", "format", "bpw", "MB/token", "tokens/s",
               "x fp32", "GB/s", "% ceiling");
    else
        printf("%-24s %8s %10s %8s %10s\n", "format", "bpw", "tokens/s", "x fp32", "s/window");
    double base = 0;
    for (int i = -1; i < n_specs; i++) {
        const gq_quantizer *q = i < 0 ? NULL : &qs[i];
        gq_packed_model pm = {0};
        char label[64] = "fp32", why[256] = "";
        if (q)
            gq_quantizer_label(q, label, sizeof label);
        double tok_s;
        if (run_row(&m, q, &o, &pm, &tok_s, why, sizeof why, &err) != 0) {
            gq_fail_prefix(&err, "%s", label);
            goto done;
        }
        if (tok_s == 0) {
            printf("%-24s %s\n", label, why);
            continue;
        }
        size_t lin_params = (size_t)c.n_layers * (gq_layer_floats(&c) - 2 * (size_t)c.dim) +
                            (o.pack_classifier ? (size_t)c.vocab_size * c.dim : 0);
        double bpw = q ? 8.0 * (double)pm.packed_bytes / (double)lin_params : 32.0;
        if (i < 0)
            base = tok_s;
        if (decode) {
            double mb = (double)pm.decode_bytes / 1e6, gbs = mb * tok_s / 1e3;
            printf("%-24s %8.3f %10.1f %10.2f %8.2f %8.2f %8.0f%%\n", label, bpw, mb, tok_s,
                   tok_s / base, gbs, 100.0 * gbs / bw0);
        } else {
            printf("%-24s %8.3f %10.1f %8.2f %10.4f\n", label, bpw, tok_s, tok_s / base,
                   (double)o.tokens / tok_s);
        }
        fflush(stdout);
        gq_packed_model_free(&pm);
    }
    if (decode) {
        if (gq_packed_bandwidth((size_t)o.stream_mib, 5, &bw1, &err) != 0)
            goto done;
        printf("bandwidth ceiling (STREAM triad, 3 x %ld MiB): %.2f GB/s before, %.2f GB/s "
               "after; %% ceiling uses the first\n", o.stream_mib, bw0, bw1);
    }
    rc = GQ_EXIT_OK;
done:
    if (rc != GQ_EXIT_OK)
        cli_report(o.cmd, &err, rc);
    for (int i = 0; i < n_specs; i++)
        gq_quantizer_free(&qs[i]);
    free(qs);
    gq_model_free(&m);
    return rc;
}

int bench_decode(int argc, char **argv) { return bench_packed(argc, argv, true); }
int bench_prefill(int argc, char **argv) { return bench_packed(argc, argv, false); }
