/* gq-bench bench matvec: throughput of the packed decode kernels on one matrix, the tool for
 * kernel work (bench decode measures whole decode steps).
 *
 * Protocol: one matrix of --rows x --cols Gaussian weights (seed --seed) packed with each
 * format; y = W x for one activation vector (decode path: int8 activations per block of 32
 * under --act q8, including their quantization). Each timing repeats the product for at
 * least 20 ms and keeps the time per product; best of --reps, timings of the rows
 * interleaved per repetition. Columns: 1 thread and all threads (--threads). A matrix that
 * fits the caches (the default 2048 x 768 at 4 bits is 0.8 MB) measures the kernel's compute
 * rate; GB/s = packed bytes / time, "x fp32" against cblas_sgemv on the fp32 matrix with
 * the same thread count. */
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "cli/cmd_decl.h"
#include "cli/cli.h"
#include "cli/cli_formats.h"
#include "cli/cli_opts.h"
#include "core/gq_rng.h"
#include "core/gq_threads.h"
#include "core/gq_time.h"
#include "packed/gq_packed.h"

#define CMD "bench matvec"

typedef struct {
    const gq_packed_linear *P; /* NULL: fp32 sgemv on W */
    const float *W;
    int rows, cols;
} mv_row;

static void product(const mv_row *r, float *y, const float *x)
{
    if (r->P)
        gq_packed_linear_apply(r->P, y, x, 1);
    else
        cblas_sgemv(CblasRowMajor, CblasNoTrans, r->rows, r->cols, 1.0f, r->W, r->cols, x, 1,
                    0.0f, y, 1);
}

/* Seconds per product: repeated for at least 20 ms. */
static double time_product(const mv_row *r, float *y, const float *x)
{
    long n = 0;
    double t0 = gq_now(), t;
    do {
        product(r, y, x);
        n++;
        t = gq_now() - t0;
    } while (t < 0.02);
    return t / (double)n;
}

/* Seeded rows x cols weights (normal, std 0.02) and cols standard normal activations. */
static void fill_inputs(float *W, int rows, int cols, float *x, uint64_t seed)
{
    gq_rng rng;
    gq_rng_seed(&rng, seed);
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        W[i] = 0.02f * (float)gq_rng_normal(&rng);
    for (int j = 0; j < cols; j++)
        x[j] = (float)gq_rng_normal(&rng);
}

/* Appends the row of packed format `spec` (tab[*n_rows], label[*n_rows]), or prints why the
 * format cannot pack W. GQ_EXIT_OK, GQ_EXIT_USAGE (a bad spec) or GQ_EXIT_FAIL, err set. */
static int add_packed(const char *spec, bool act_q8, const float *W, int rows, int cols,
                      mv_row *tab, char (*label)[64], int *n_rows, gq_error *err)
{
    gq_quantizer q;
    if (cli_quantizer_from_spec(spec, "--format", &q, err) != 0)
        return GQ_EXIT_USAGE;
    char why[256];
    gq_quantizer_label(&q, label[*n_rows], sizeof label[*n_rows]);
    if (!gq_packed_supported(&q, rows, cols, why, sizeof why)) {
        printf("%-24s %s\n", label[*n_rows], why);
        gq_quantizer_free(&q);
        return GQ_EXIT_OK;
    }
    gq_packed_linear *P = gq_packed_linear_new(&q, W, rows, cols, NULL, err);
    gq_quantizer_free(&q);
    if (!P)
        return GQ_EXIT_FAIL;
    gq_packed_linear_set_act_q8(P, act_q8);
    tab[(*n_rows)++] = (mv_row){P, W, rows, cols};
    return GQ_EXIT_OK;
}

/* best[i] = {1 thread, nt threads}: the best seconds per product of row i over reps rounds;
 * each round times every row with 1 thread, then with nt. */
static void time_rows(const mv_row *tab, int n_rows, float *y, const float *x, int reps, int nt,
                      double (*best)[2])
{
    for (int i = 0; i < n_rows; i++)
        best[i][0] = best[i][1] = DBL_MAX;
    for (int r = 0; r < reps; r++)
        for (int c = 0; c < 2; c++) {
            gq_threads_set(c == 0 ? 1 : nt);
            for (int i = 0; i < n_rows; i++) {
                double t = time_product(&tab[i], y, x);
                best[i][c] = t < best[i][c] ? t : best[i][c];
            }
        }
}

/* One line per row: bytes, time, bandwidth and speed-up over fp32 (row 0) at 1 and nt threads. */
static void print_rows(const mv_row *tab, const char (*label)[64], const double (*best)[2],
                       int n_rows)
{
    for (int i = 0; i < n_rows; i++) {
        size_t bytes = tab[i].P ? gq_packed_linear_bytes(tab[i].P)
                                : (size_t)tab[i].rows * tab[i].cols * sizeof(float);
        printf("%-24s %5s %10zu %9.1f %9.2f %9.2f %9.2f %9.2f\n", label[i],
               tab[i].P ? gq_packed_linear_act(tab[i].P) : "fp32",
               bytes, best[i][0] * 1e6, (double)bytes / best[i][0] / 1e9,
               best[0][0] / best[i][0], (double)bytes / best[i][1] / 1e9,
               best[0][1] / best[i][1]);
    }
}

int bench_matvec(int argc, char **argv)
{
    struct {
        long rows, cols, threads, reps, seed;
        const char *format, *act;
    } o = {0};
    const cli_opt opts[] = {
        CLI_OPT("rows", "R", CLI_INT, &o.rows, "output rows", .def = "2048", .min = 1,
                .max = 1 << 20),
        CLI_OPT("cols", "C", CLI_INT, &o.cols, "input columns", .def = "768", .min = 1,
                .max = 65536),
        CLI_OPT("format", "NAME|JSON|all", CLI_STR, &o.format, "packed format(s)", .def = "all"),
        CLI_OPT("act", "A", CLI_CHOICE, &o.act,
                "decode activations: q8 = int8 per block of 32 (Q4_K: 256), fp32", .def = "q8",
                .choices = "q8|fp32"),
        CLI_OPT("threads", "N", CLI_INT, &o.threads,
                "threads of the last column (default: OMP_NUM_THREADS or all cores)", .min = 1,
                .max = 4096),
        CLI_OPT("reps", "R", CLI_INT, &o.reps, "timings per row and thread count, best kept",
                .def = "5", .min = 1, .max = 1000),
        CLI_OPT("seed", "S", CLI_INT, &o.seed, "seed of the weights and activations", .def = "1",
                .max = 0x1p62),
    };
    const cli_spec spec = {.cmd = CMD, CLI_OPTS(opts)};
    CLI_PARSE_OR_RETURN(&spec, argc, argv);
    const int nt = gq_threads_set((int)o.threads);
    const int rows = (int)o.rows, cols = (int)o.cols;
    const char *const *specs = cli_packed_specs;
    int n_specs = cli_n_packed_specs;
    if (strcmp(o.format, "all") != 0) {
        specs = &o.format;
        n_specs = 1;
    }
    gq_error err = {{0}};
    int rc = GQ_EXIT_FAIL, n_rows = 0;
    float *W = malloc((size_t)rows * cols * sizeof(float));
    float *x = malloc((size_t)cols * sizeof(float)), *y = malloc((size_t)rows * sizeof(float));
    mv_row *tab = calloc((size_t)n_specs + 1, sizeof *tab);
    char (*label)[64] = calloc((size_t)n_specs + 1, sizeof *label);
    double (*best)[2] = calloc((size_t)n_specs + 1, sizeof *best);
    if (!W || !x || !y || !tab || !label || !best) {
        gq_fail(&err, "out of memory");
        goto done;
    }
    fill_inputs(W, rows, cols, x, (uint64_t)o.seed);
    tab[n_rows++] = (mv_row){NULL, W, rows, cols};
    snprintf(label[0], sizeof label[0], "fp32 (sgemv)");
    for (int s = 0; s < n_specs; s++)
        if ((rc = add_packed(specs[s], strcmp(o.act, "q8") == 0, W, rows, cols, tab, label,
                             &n_rows, &err)) != GQ_EXIT_OK)
            goto done;
    rc = GQ_EXIT_FAIL;
    time_rows(tab, n_rows, y, x, (int)o.reps, nt, best);
    printf("%s: %d x %d, seed %ld, activations %s, best of %ld, 1 and %d threads; %s\n", CMD,
           rows, cols, o.seed, o.act, o.reps, nt, gq_blas_description());
    printf("%-24s %5s %10s %9s %9s %9s %9s %9s\n", "format", "act", "bytes", "us 1T", "GB/s 1T",
           "x fp32", "GB/s NT", "x fp32");
    print_rows(tab, label, best, n_rows);
    rc = GQ_EXIT_OK;
done:
    if (rc != GQ_EXIT_OK)
        cli_report(CMD, &err, rc);
    for (int i = 1; tab && i < n_rows; i++)
        gq_packed_linear_free((gq_packed_linear *)tab[i].P);
    free(W), free(x), free(y), free(tab), free(label), free(best);
    return rc;
}
