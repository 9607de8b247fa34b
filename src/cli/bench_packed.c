/* gq-bench bench decode | bench prefill: tokens/s of packed quantized weights against fp32.
 *
 * Protocol: a synthetic model of the preset's shape (seed --seed). Each row builds one model:
 * fp32 (every linear and the classifier through BLAS: sgemv for one token, sgemm otherwise) or
 * one packed format (block linears, and the classifier unless --classifier fp32, quantized with
 * the format and kept in its packed layout; fp32 activations). Embeddings and norms stay fp32.
 * All models are built first; then --rounds rounds (default 3) each time every model in table
 * order (for decode each preceded by a sample of the bandwidth ceiling), keeping each one's
 * best: rows and ceiling share the same machine load even when other processes come and go. Decode activations (--act): q8 (default)
 * quantizes them to int8 per block of 32 (Q4_K: per block of 256, llama.cpp's Q8_K) inside the
 * decode dots of the formats that have such a kernel (column "act"; stories260K perplexity moves
 * by < 1%, tests/packed), fp32 keeps them.
 *   decode:  gq_decode_step at positions warm-up..warm-up+N-1 (N = --tokens, default 32) after 2
 *            warm-up steps, fresh KV cache; tokens/s = 1 / the fastest step; bytes/token = weight bytes one step
 *            reads (packed or fp32 linears + classifier + norms + one embedding row); GB/s =
 *            bytes/token * tokens/s; ceiling = STREAM triad (a = b + s*c over 3 x --stream-mib
 *            MiB, all threads, best of 2 passes per sample), sampled before every row of every
 *            round and once at the end; "% ceiling" is of the best of all samples, "% beside"
 *            of the better of the two samples just before and after the row's fastest round
 *            (the bandwidth the machine gave at that moment: on a shared host it swings); the
 *            read bandwidth (one --stream-mib MiB array read, the same samples) is printed too.
 *   prefill: gq_forward_prefill of one window of --tokens tokens (default 128), best of --reps
 *            after a warm-up, per round.
 * "x fp32" is tokens/s over the fp32 row's tokens/s in the same run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_decl.h"
#include "cli/cli.h"
#include "cli/cli_formats.h"
#include "cli/cli_opts.h"
#include "core/gq_threads.h"
#include "core/gq_time.h"
#include "gguf/gq_gguf_model.h"
#include "model/gq_synth.h"
#include "packed/gq_packed.h"

typedef struct {
    bool decode;
    const char *cmd, *preset, *format, *classifier, *act, *model;
    long tokens, reps, threads, seed, stream_mib, rounds;
    bool pack_classifier, act_q8;
} bp_opts;

/* Returns 0 when o is filled, 1 after --help, GQ_EXIT_USAGE on a bad command line. */
static int parse(int argc, char **argv, bp_opts *o)
{
    char epilog[256];
    snprintf(epilog, sizeof epilog, "presets: %s\n", gq_synth_preset_names());
    const cli_opt opts[] = {
        CLI_OPT("preset", "NAME", CLI_STR, &o->preset, "model shape (see presets below)",
                .def = "stories110M"),
        CLI_OPT("model", "M.gguf", CLI_STR, &o->model,
                "time a GGUF file instead of a preset: rows fp32 (its weights dequantized)\n"
                "and gguf (each block linear packed from the file's own bytes in its own\n"
                "type, e.g. Q4_K_M's q4_K and q6_K; the classifier fp32); --format unused"),
        CLI_OPT("format", "NAME|JSON|all", CLI_STR, &o->format,
                "packed format(s); all: int4 g128 asym/sym, int8 channel, q4_0, q4_1, q8_0,\n"
                "mxfp4_ggml, q4_K, q6_K", .def = "all"),
        CLI_OPT("tokens", "N", CLI_INT, &o->tokens,
                o->decode ? "timed decode steps (after 2 warm-up steps)" : "tokens per window",
                .def = o->decode ? "32" : "128", .min = 1, .max = 1 << 20),
        CLI_OPT("reps", "R", CLI_INT, &o->reps, "prefill runs per round, the best kept",
                .def = "3", .min = 1, .max = 1000),
        CLI_OPT("rounds", "R", CLI_INT, &o->rounds,
                "rounds over all rows (decode: and the ceiling), each row's best kept", .def = "3",
                .min = 1, .max = 100),
        CLI_OPT("threads", "N", CLI_INT, &o->threads,
                "threads (default: OMP_NUM_THREADS or all cores)", .min = 1, .max = 4096),
        CLI_OPT("seed", "S", CLI_INT, &o->seed, "seed of the synthetic weights", .def = "1",
                .max = 0x1p62),
        CLI_OPT("classifier", "C", CLI_CHOICE, &o->classifier,
                "packed: the classifier in the row's format too; fp32: kept in fp32",
                .def = "packed", .choices = "packed|fp32"),
        CLI_OPT("stream-mib", "M", CLI_INT, &o->stream_mib,
                "MiB per STREAM-triad array of the bandwidth ceiling", .def = "256", .min = 1,
                .max = 1 << 16),
        CLI_OPT("act", "A", CLI_CHOICE, &o->act,
                "decode activations: q8 = int8 per block of 32 (Q4_K: per 256, llama.cpp's\n"
                "Q8_K) where the format has such a kernel; fp32 = kept in fp32",
                .def = "q8", .choices = "q8|fp32"),
    };
    /* decode takes no --reps (the fastest step counts); prefill no bandwidth ceiling, and its
     * activations are always fp32 */
    static const char *const decode_only[] = {"stream-mib", "act"}, *const prefill_only[] = {"reps"};
    const char *const *skip = o->decode ? prefill_only : decode_only;
    const int n_skip = o->decode ? 1 : 2, n_all = (int)(sizeof opts / sizeof opts[0]);
    cli_opt taken[sizeof opts / sizeof opts[0]];
    int n = 0;
    for (int i = 0; i < n_all; i++) {
        bool skipped = false;
        for (int k = 0; k < n_skip; k++)
            skipped = skipped || strcmp(opts[i].name, skip[k]) == 0;
        if (!skipped)
            taken[n++] = opts[i];
    }
    const cli_spec spec = {.cmd = o->cmd, .opts = taken, .n_opts = n, .epilog = epilog};
    int rc = cli_parse(&spec, argc, argv);
    if (rc == 0) {
        o->pack_classifier = strcmp(o->classifier, "packed") == 0;
        o->act_q8 = o->decode && strcmp(o->act, "q8") == 0;
    }
    return rc;
}

/* Builds one row's model (q NULL: fp32). Returns 0 with why set (and nothing built) when the
 * format has no packed kernel for these shapes. */
static int build_row(const gq_model *m, const gq_quantizer *q, const bp_opts *o,
                     gq_packed_model *pm, char *why, size_t n, gq_error *err)
{
    if (q)
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            int rows, cols;
            gq_linear_shape(&m->cfg, (gq_linear_kind)k, &rows, &cols);
            if (!gq_packed_supported(q, rows, cols, why, n))
                return 0;
        }
    return q ? gq_packed_model_build(m, q, NULL, o->pack_classifier, NULL, pm, err)
             : gq_packed_model_fp32(m, pm, err);
}

/* One sample of the bandwidth ceiling: its triad rate appended to triads, the bests kept. */
static void sample_ceiling(gq_bandwidth_probe *probe, double *triads, int *n, double *best,
                           double *best_read)
{
    double bw, rbw;
    gq_bandwidth_probe_run(probe, 2, &bw, &rbw);
    triads[(*n)++] = bw;
    *best = bw > *best ? bw : *best;
    *best_read = rbw > *best_read ? rbw : *best_read;
}

static int time_row(const gq_packed_model *pm, const bp_opts *o, double *tok_s, gq_error *err)
{
    gq_packed_bench_opts bo = gq_packed_bench_defaults();
    bo.decode_tokens = bo.prefill_tokens = (int)o->tokens;
    bo.reps = (int)o->reps;
    return o->decode ? gq_packed_time_decode(&pm->model, &bo, tok_s, err)
                     : gq_packed_time_prefill(&pm->model, &bo, tok_s, err);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One run of the bench: the rows (0: fp32, then one per format), their packed models and each
 * row's best rate; for decode the ceiling's samples. */
typedef struct {
    bp_opts o;
    gq_config c;
    gq_model m;
    gq_gguf_weights w;     /* --model: the file's stored linears */
    int n_specs, n_rows;
    gq_quantizer *qs;      /* (n_specs) */
    gq_packed_model *pms;  /* (n_rows) */
    double *best;          /* (n_rows) tokens/s */
    int *best_at;          /* (n_rows) decode: the ceiling sample just before the fastest round */
    char (*why)[256];      /* (n_rows) why a row has no packed kernel ("" when built) */
    bool *built;           /* (n_rows) */
    gq_bandwidth_probe *probe;
    double *triads;        /* the ceiling's samples, for their spread */
    int n_triads;
    double bw0, read0;     /* best triad and read samples */
} bp_run;

static int parse_formats(bp_run *R, gq_error *err)
{
    const char *const *specs = cli_packed_specs;
    R->n_specs = cli_n_packed_specs;
    if (R->o.model) {
        R->n_specs = 1; /* the file's own types: one row */
        return 0;
    }
    if (strcmp(R->o.format, "all") != 0) {
        specs = &R->o.format;
        R->n_specs = 1;
    }
    R->qs = calloc((size_t)R->n_specs, sizeof *R->qs);
    if (!R->qs)
        return gq_fail(err, "out of memory");
    for (int i = 0; i < R->n_specs; i++)
        if (cli_quantizer_from_spec(specs[i], "--format", &R->qs[i], err) != 0)
            return -1;
    return 0;
}

/* --model: the row of the GGUF's block linears packed from its own bytes, each in its type;
 * why is set (nothing built) when a type has no packed kernel. */
static int build_gguf_row(bp_run *R, gq_packed_model *pm, char *why, size_t n, gq_error *err)
{
    const gq_gguf_weights *w = &R->w;
    const gq_quantizer **quant = calloc((size_t)w->n_linear, sizeof *quant);
    if (!quant)
        return gq_fail(err, "out of memory");
    for (int i = 0; i < w->n_linear && !why[0]; i++) {
        int rows, cols;
        char name[64], reason[200] = "no packed kernel for float tensors";
        gq_linear_shape(&R->c, (gq_linear_kind)(i % GQ_N_LINEAR), &rows, &cols);
        gq_tensor_name(i / GQ_N_LINEAR, (gq_linear_kind)(i % GQ_N_LINEAR), name, sizeof name);
        quant[i] = w->quant[i].fmt ? &w->quant[i] : NULL;
        if (!quant[i] || !gq_packed_supported(quant[i], rows, cols, reason, sizeof reason))
            snprintf(why, n, "%s (%s): %s", name, w->type[i]->name, reason);
    }
    const gq_packed_codes codes = {(const uint8_t *const *)w->codes, NULL};
    int rc = why[0] ? 0 : gq_packed_model_build_mixed(&R->m, quant, &codes, NULL, pm, err);
    free(quant);
    return rc;
}

/* Allocates the per-row arrays and builds every row's model. */
static int build_rows(bp_run *R, gq_error *err)
{
    R->n_rows = R->n_specs + 1;
    R->pms = calloc((size_t)R->n_rows, sizeof *R->pms);
    R->best = calloc((size_t)R->n_rows, sizeof *R->best);
    R->best_at = calloc((size_t)R->n_rows, sizeof *R->best_at);
    R->why = calloc((size_t)R->n_rows, sizeof *R->why);
    R->built = calloc((size_t)R->n_rows, sizeof *R->built);
    if (!R->pms || !R->best || !R->best_at || !R->why || !R->built)
        return gq_fail(err, "out of memory");
    for (int i = 0; i < R->n_rows; i++) {
        const gq_quantizer *q = i == 0 || R->o.model ? NULL : &R->qs[i - 1];
        int rc = i > 0 && R->o.model
                     ? build_gguf_row(R, &R->pms[i], R->why[i], sizeof R->why[i], err)
                     : build_row(&R->m, q, &R->o, &R->pms[i], R->why[i], sizeof R->why[i], err);
        if (rc != 0) {
            char label[64] = "fp32";
            if (q)
                gq_quantizer_label(q, label, sizeof label);
            return gq_fail_prefix(err, "%s", label);
        }
        R->built[i] = !R->why[i][0];
        if (R->built[i] && i > 0)
            gq_packed_model_set_act_q8(&R->pms[i], R->o.act_q8);
    }
    if (R->o.decode && (!(R->probe = gq_bandwidth_probe_new((size_t)R->o.stream_mib, err)) ||
                        !(R->triads = malloc(((size_t)R->o.rounds * R->n_rows + 1) *
                                             sizeof *R->triads))))
        return gq_fail(err, "bench: out of memory for the bandwidth probe");
    return 0;
}

/* --rounds rounds over all rows (decode: each row preceded by a ceiling sample, one more
 * sample at the end); each row keeps its best rate. */
static int run_rounds(bp_run *R, gq_error *err)
{
    for (int r = 0; r < R->o.rounds; r++)
        for (int i = 0; i < R->n_rows; i++) {
            double t;
            const int sample = R->n_triads;
            if (R->o.decode)
                sample_ceiling(R->probe, R->triads, &R->n_triads, &R->bw0, &R->read0);
            if (R->built[i] && time_row(&R->pms[i], &R->o, &t, err) != 0)
                return -1;
            if (R->built[i] && t > R->best[i]) {
                R->best[i] = t;
                R->best_at[i] = sample;
            }
        }
    if (R->o.decode)
        sample_ceiling(R->probe, R->triads, &R->n_triads, &R->bw0, &R->read0);
    return 0;
}

static void print_header(const bp_run *R, int threads)
{
    const bp_opts *o = &R->o;
    const gq_config *c = &R->c;
    char source[4200];
    if (o->model)
        snprintf(source, sizeof source, "model %s", o->model);
    else
        snprintf(source, sizeof source, "preset %s", o->preset);
    printf("%s: %s (dim %d, hidden %d, %d layers, vocab %d), seed %ld, %d threads, "
           "%ld %s tokens, classifier %s, best of %ld rounds\n", o->cmd, source, c->dim,
           c->hidden_dim, c->n_layers, c->vocab_size, o->seed, threads, o->tokens,
           o->decode ? "decode" : "prefill", o->pack_classifier ? "packed" : "fp32", o->rounds);
    printf("activations: %s; fp32 row = BLAS sgemv/sgemm on fp32 weights; BLAS: %s\n",
           o->act_q8 ? "act q8 = int8 per block of 32 (d = amax/127, round half to even) in the "
                       "decode dots, q8_K = the same per block of 256 (Q4_K, as llama.cpp), "
                       "fp32 = fp32"
                     : "fp32",
           gq_blas_description());
    if (o->decode)
        printf("%-24s %5s %8s %10s %10s %8s %8s %9s %8s\n", "format", "act", "bpw", "MB/token",
               "tokens/s", "x fp32", "GB/s", "% ceiling", "% beside");
    else
        printf("%-24s %8s %10s %8s %10s\n", "format", "bpw", "tokens/s", "x fp32", "s/window");
}

static void print_row(const bp_run *R, int i, size_t lin_params)
{
    char label[64] = "fp32";
    if (i > 0 && R->o.model)
        snprintf(label, sizeof label, "gguf (own types)");
    else if (i > 0)
        gq_quantizer_label(&R->qs[i - 1], label, sizeof label);
    if (!R->built[i]) {
        printf("%-24s %s\n", label, R->why[i]);
        return;
    }
    const gq_packed_model *pm = &R->pms[i];
    double bpw = i > 0 ? 8.0 * (double)pm->packed_bytes / (double)lin_params : 32.0;
    double rate = R->best[i], x_fp32 = rate / R->best[0];
    if (R->o.decode) {
        double mb = (double)pm->decode_bytes / 1e6, gbs = mb * rate / 1e3;
        const double *next = R->triads + R->best_at[i];
        double beside = next[0] > next[1] ? next[0] : next[1];
        printf("%-24s %5s %8.3f %10.1f %10.2f %8.2f %8.2f %8.0f%% %7.0f%%\n", label,
               i > 0 ? gq_packed_linear_act(pm->lin[0]) : "fp32", bpw, mb, rate, x_fp32, gbs,
               100.0 * gbs / R->bw0, 100.0 * gbs / beside);
    } else {
        printf("%-24s %8.3f %10.1f %8.2f %10.4f\n", label, bpw, rate, x_fp32,
               (double)R->o.tokens / rate);
    }
}

static void print_ceiling(bp_run *R)
{
    qsort(R->triads, (size_t)R->n_triads, sizeof *R->triads, cmp_double);
    printf("bandwidth ceiling (STREAM triad a = b + s*c, 3 x %ld MiB, all threads, best of "
           "%d samples): %.2f GB/s (the samples: min %.2f, median %.2f; this machine's "
           "bandwidth moves with its other load)\n", R->o.stream_mib, R->n_triads, R->bw0,
           R->triads[0], R->triads[R->n_triads / 2]);
    printf("read bandwidth (one %ld MiB array read, all threads, same samples; a decode "
           "step only reads): %.2f GB/s\n", R->o.stream_mib, R->read0);
}

static void bp_run_free(bp_run *R)
{
    gq_bandwidth_probe_free(R->probe);
    free(R->triads);
    for (int i = 0; R->pms && i < R->n_rows; i++)
        gq_packed_model_free(&R->pms[i]);
    free(R->pms), free(R->best), free(R->best_at), free(R->why), free(R->built);
    for (int i = 0; R->qs && i < R->n_specs; i++)
        gq_quantizer_free(&R->qs[i]);
    free(R->qs);
    gq_model_free(&R->m);
    gq_gguf_weights_free(&R->w);
}

static int bench_packed(int argc, char **argv, bool decode)
{
    bp_run R = {.o = {.decode = decode, .cmd = decode ? "bench decode" : "bench prefill"}};
    int rc = parse(argc, argv, &R.o);
    if (rc)
        return rc == 1 ? GQ_EXIT_OK : rc;
    int threads = gq_threads_set((int)R.o.threads);
    gq_error err = {{0}};
    if (R.o.model) {
        R.o.pack_classifier = false;
        if (gq_gguf_load_model(R.o.model, &R.m, &R.w, &err) != 0) {
            bp_run_free(&R);
            return cli_report(R.o.cmd, &err, GQ_EXIT_USAGE);
        }
        R.c = R.m.cfg;
    } else if (gq_synth_preset(R.o.preset, &R.c, &err) != 0) {
        return cli_report(R.o.cmd, &err, GQ_EXIT_USAGE);
    }
    if (R.o.tokens + 2 > R.c.seq_len) {
        bp_run_free(&R);
        return cli_usage_error(R.o.cmd, "--tokens %ld exceeds the model's seq_len %d",
                               R.o.tokens, R.c.seq_len);
    }
    if (parse_formats(&R, &err) != 0) {
        bp_run_free(&R);
        return cli_report(R.o.cmd, &err, GQ_EXIT_USAGE);
    }
    rc = GQ_EXIT_FAIL;
    if ((!R.o.model && gq_model_synth_config(&R.c, (uint64_t)R.o.seed, &R.m, &err) != 0) ||
        build_rows(&R, &err) != 0 || run_rounds(&R, &err) != 0) {
        cli_report(R.o.cmd, &err, rc);
        bp_run_free(&R);
        return rc;
    }
    print_header(&R, threads);
    size_t lin_params = (size_t)R.c.n_layers * (gq_layer_floats(&R.c) - 2 * (size_t)R.c.dim) +
                        (R.o.pack_classifier ? (size_t)R.c.vocab_size * R.c.dim : 0);
    for (int i = 0; i < R.n_rows; i++)
        print_row(&R, i, lin_params);
    if (decode)
        print_ceiling(&R);
    bp_run_free(&R);
    return GQ_EXIT_OK;
}

int bench_decode(int argc, char **argv) { return bench_packed(argc, argv, true); }
int bench_prefill(int argc, char **argv) { return bench_packed(argc, argv, false); }
