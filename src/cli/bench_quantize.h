#ifndef GQ_BENCH_QUANTIZE_H
#define GQ_BENCH_QUANTIZE_H
/* gq-bench bench quantize (bench_quantize.c): the run, and its stage table, machine limits
 * and report (bench_quantize_report.c). */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/gq_error.h"
#include "methods/gq_pipeline.h"
#include "model/gq_model.h"
#include "packed/gq_packed.h"

#define BQ_MAX_STAGES 16
#define BQ_MAX_ROUNDS 100

typedef struct {
    const char *preset, *method, *format;
    json_t *fmt_params, *method_params;
    long windows, ctx, hidden, reps, project_windows, project_ctx, threads, seed, stream_mib;
    bool no_avx512;
} bq_args;

/* One stage of one round: the sums over its occurrences. */
typedef struct {
    const char *name; /* a string literal from the method */
    gq_stage_limit limit;
    double work;      /* FLOPs or bytes */
    double seconds;
    int calls;
    long peak_rss;    /* highest peak RSS above rss_before (bytes) at the end of an occurrence */
} bq_stage;

typedef struct {
    bq_stage st[BQ_MAX_STAGES];
    int n;
    double total;     /* wall time of the round */
    long rss_before;  /* RSS (bytes) when the round started */
} bq_round;

/* The machine's limits, best of the samples taken around the rounds. */
typedef struct {
    int m, n, k;          /* sgemm product shape: (m x k) (k x n) */
    int dn, dk;           /* dgemm product: (dn x dk) (dk x dn) */
    float *a, *bm, *c;
    double *da, *dc;
    gq_bandwidth_probe *bw;
    size_t bw_mib, llc_mib; /* MiB per triad array; the last-level cache (0: not reported) */
    double sgemm, dgemm, triad; /* GFLOP/s, GFLOP/s, GB/s */
} bq_limits;

typedef struct {
    gq_config cfg;
    int n_layers;         /* layers of the model the preset stands for (projection) */
    gq_model model;
    bool have_model;
    int *tokens;
    gq_quant_plan plan;
    bq_limits lim;
    bq_round rounds[BQ_MAX_ROUNDS];
    int n_rounds;
} bq_bench;

/* The gq_stage_sink callback: user is a bq_round. */
void bq_record_stage(void *user, const char *stage, gq_stage_limit limit, double work,
                     double seconds);
/* Resets the process's peak RSS (Linux /proc/self/clear_refs; no effect elsewhere). */
void bq_rss_reset(void);
/* The process's resident set now (bytes), -1 when unknown. */
long bq_rss_now(void);

int bq_limits_init(bq_limits *l, const gq_config *c, size_t ntok, size_t stream_mib,
                   gq_error *err);
/* One sample of each limit; the bests are kept. */
void bq_limits_sample(bq_limits *l);
void bq_limits_free(bq_limits *l);

void bq_print(const bq_args *a, const bq_bench *b, int threads);

#endif
