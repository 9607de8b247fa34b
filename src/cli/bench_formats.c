/* gq-bench bench formats: throughput and error of every format on one synthetic matrix.
 *
 * Protocol: W (rows, cols) with i.i.d. Student-t(nu=5) entries scaled by 0.02 (heavy-tailed
 * like trained weights), row r drawn from its own RNG seeded with (seed, r). For each format
 * configuration: quantize = format->quantize writing the storage layout only (no
 * reconstruction); dequantize = format->dequantize from that storage; times are wall clock,
 * best of --reps runs, reported as million weights per second with 1 thread and with N
 * threads. SQNR = 10 log10(sum w^2 / sum (w^ - w)^2) of the dequantized storage; bpw =
 * 8 * storage bytes / (rows * cols). --reference times the int, fp and mx formats through their
 * scalar reference (fit + encode per group) instead of their fast path (grid.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cmd_decl.h"
#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "core/gq_alloc.h"
#include "core/gq_fileio.h"
#include "core/gq_rng.h"
#include "core/gq_threads.h"
#include "core/gq_time.h"
#include "formats/gq_format.h"
#include "formats/grid.h"
#include "formats/grid_kernels.h"
#include "formats/quant_error.h"

#define CMD "bench formats"

/* The grid formats' bench configurations; every other registered format (the llama.cpp
 * blocks) runs with its defaults. */
static const char *const grid_configs[] = {
    "{\"name\": \"int\", \"bits\": 4, \"group_size\": 128, \"zero\": \"asym\"}",
    "{\"name\": \"int\", \"bits\": 4, \"group_size\": 128, \"zero\": \"sym\"}",
    "{\"name\": \"int\", \"bits\": 3, \"group_size\": 128, \"zero\": \"asym\"}",
    "{\"name\": \"int\", \"bits\": 8, \"granularity\": \"channel\", \"zero\": \"sym\"}",
    "{\"name\": \"fp\", \"element\": \"e4m3\", \"granularity\": \"channel\"}",
    "{\"name\": \"fp\", \"element\": \"e2m1\", \"granularity\": \"group\", \"group_size\": 32}",
    "{\"name\": \"mx\", \"element\": \"fp4_e2m1\"}",
    "{\"name\": \"mx\", \"element\": \"fp6_e3m2\"}",
    "{\"name\": \"mx\", \"element\": \"fp8_e4m3\"}",
    "{\"name\": \"mx\", \"element\": \"int8\"}",
};

static void make_weights(float *w, int rows, int cols, uint64_t seed)
{
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        gq_rng rng;
        gq_rng_seed(&rng, seed * 0x9E3779B97F4A7C15ull + (uint64_t)r);
        for (int c = 0; c < cols; c++)
            w[(size_t)r * cols + c] = (float)(0.02 * gq_rng_student_t(&rng, 5.0));
    }
}

typedef struct timing {
    double q, dq; /* best seconds */
} timing;

static int time_format(const gq_quantizer *q, const float *w, int rows, int cols, int reps,
                       uint8_t *codes, float *y, timing *t, gq_error *err)
{
    t->q = t->dq = INFINITY;
    for (int i = 0; i < reps; i++) {
        double t0 = gq_now();
        if (gq_quantizer_run(q, w, rows, cols, NULL, codes, NULL, err))
            return -1;
        double t1 = gq_now();
        if (q->fmt->dequantize(q->params, codes, rows, cols, y, err))
            return -1;
        double t2 = gq_now();
        t->q = fmin(t->q, t1 - t0);
        t->dq = fmin(t->dq, t2 - t1);
    }
    return 0;
}

static int bench_one(const gq_quantizer *q, const float *w, int rows, int cols, int reps,
                     int threads, uint8_t *codes, float *y, gq_error *err)
{
    timing t1, tn;
    gq_threads_set(1);
    if (time_format(q, w, rows, cols, reps, codes, y, &t1, err))
        return -1;
    gq_threads_set(threads);
    if (time_format(q, w, rows, cols, reps, codes, y, &tn, err))
        return -1;
    size_t n = (size_t)rows * (size_t)cols;
    gq_quant_error e = gq_quant_error_compute(w, y, n);
    char label[128];
    gq_quantizer_label(q, label, sizeof label);
    double mw = (double)n / 1e6;
    printf("| %-22s | %7.4f | %8.2f | %9.1f | %9.1f | %9.1f | %9.1f |\n", label,
           gq_quantizer_bpw(q, rows, cols), e.sqnr_db, mw / t1.q, mw / tn.q, mw / t1.dq,
           mw / tn.dq);
    fflush(stdout);
    return 0;
}

static bool is_grid_format(const char *name)
{
    return strcmp(name, "int") == 0 || strcmp(name, "fp") == 0 || strcmp(name, "mx") == 0;
}

/* The setup line and the head of the Markdown table bench_one fills. */
static void print_header(long rows, long cols, long seed, long reps, int nthreads, bool reference)
{
    printf("bench formats: W %ld x %ld, Student-t(5) * 0.02, seed %ld; best of %ld runs; "
           "threads 1 and %d; int/fp/mx: %s%s%s\n", rows, cols, seed, reps, nthreads,
           reference ? "scalar reference" : "fast path", reference ? "" : ", int kernels ",
           reference ? "" : grid_k_isa());
    printf("quantize = storage layout only; dequantize = from storage; SQNR of the dequantized "
           "storage; Mw/s = 1e6 weights/s\n\n");
    printf("| %-22s | %7s | %8s | %9s | %9s | %9s | %9s |\n", "format", "bpw", "SQNR dB",
           "q 1T", "q NT", "dq 1T", "dq NT");
    printf("|%.24s|%.9s|%.10s|%.11s|%.11s|%.11s|%.11s|\n", "------------------------",
           "---------:", "---------:", "----------:", "----------:", "----------:",
           "----------:");
}

int bench_formats(int argc, char **argv)
{
    long rows, cols, threads, reps, seed;
    bool reference = false, no_avx512 = false;
    const cli_opt opts[] = {
        CLI_OPT("rows", "R", CLI_INT, &rows, "rows of W", .def = "4096", .min = 1, .max = 1 << 20),
        CLI_OPT("cols", "C", CLI_INT, &cols, "columns of W", .def = "11008", .min = 1,
                .max = 1 << 24),
        CLI_OPT("threads", "N", CLI_INT, &threads, "threads of the N-thread columns, 0 = every core",
                .def = "0", .max = 4096),
        CLI_OPT("reps", "R", CLI_INT, &reps, "runs per timing, the best is kept", .def = "2",
                .min = 1, .max = 1000),
        CLI_OPT("seed", "S", CLI_INT, &seed, "seed of W", .def = "1", .max = 0x1p30),
        CLI_OPT("reference", NULL, CLI_FLAG, &reference,
                "int, fp and mx through their scalar reference instead of the fast path"),
        CLI_OPT("no-avx512", NULL, CLI_FLAG, &no_avx512,
                "int's kernels in their AVX2 form on a CPU with AVX-512 (same bytes)"),
    };
    const cli_spec spec = {
        .cmd = CMD,
        .about = "Quantize/dequantize throughput (million weights/s, 1 thread and N threads),\n"
                 "SQNR and bits per weight of each format on a synthetic heavy-tailed matrix.\n",
        CLI_OPTS(opts)};
    CLI_PARSE_OR_RETURN(&spec, argc, argv);
    if ((double)rows * (double)cols > 2e9)
        return cli_usage_error(CMD, "%ld x %ld is too large", rows, cols);

    gq_error err = {{0}};
    int nthreads = gq_threads_set((int)threads);
    size_t n = (size_t)rows * (size_t)cols;
    float *w = gq_alloc_zero(n * sizeof *w, "weights", &err);
    float *y = gq_alloc_zero(n * sizeof *y, "reconstruction", &err);
    uint8_t *codes = gq_alloc_zero(n * sizeof(float), "codes", &err); /* >= any format */
    int status = GQ_EXIT_OK;
    if (!w || !y || !codes) {
        status = cli_report(CMD, &err, GQ_EXIT_FAIL);
        goto done;
    }
    make_weights(w, (int)rows, (int)cols, (uint64_t)seed);
    grid_force_reference(reference);
    grid_k_allow_avx512(!no_avx512);

    print_header(rows, cols, seed, reps, nthreads, reference);
    int nfmt;
    const gq_format *const *all = gq_format_all(&nfmt);
    size_t nconf = sizeof grid_configs / sizeof grid_configs[0];
    for (size_t i = 0; i < nconf + (size_t)nfmt && status == GQ_EXIT_OK; i++) {
        gq_quantizer q;
        int rc;
        if (i < nconf) {
            json_t *spec = json_loads(grid_configs[i], 0, NULL);
            rc = gq_quantizer_from_json(spec, "$", &q, &err);
            json_decref(spec);
        } else {
            const gq_format *f = all[i - nconf];
            if (is_grid_format(f->name))
                continue;
            rc = gq_quantizer_init(&q, f->name, NULL, "$", &err);
        }
        if (rc) {
            status = cli_report(CMD, &err, GQ_EXIT_FAIL);
            break;
        }
        if (gq_quantizer_bytes(&q, (int)rows, (int)cols) > n * sizeof(float)) {
            gq_fail(&err, "%s: storage larger than float32", q.fmt->name);
            rc = -1;
        } else {
            rc = bench_one(&q, w, (int)rows, (int)cols, (int)reps, nthreads, codes, y, &err);
        }
        if (rc) {
            /* A shape a block format cannot take (cols not a multiple of 256) skips a row. */
            char label[128];
            gq_quantizer_label(&q, label, sizeof label);
            printf("| %-22s | skipped: %s\n", label, err.msg);
        }
        gq_quantizer_free(&q);
    }
done:
    free(w);
    free(y);
    free(codes);
    return status;
}
