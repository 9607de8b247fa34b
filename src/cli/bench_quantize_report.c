/* gq-bench bench quantize: the stage records, the machine's limits and the printed table
 * (protocol in bench_quantize.c). */
#include "cli/bench_quantize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_gemm.h"
#include "core/gq_steady.h"
#include "core/gq_threads.h"
#include "core/gq_time.h"
#include "formats/grid_kernels.h"

/* A line "KEY:   N kB" of /proc/self/status, in bytes; -1 when unreadable. */
static long status_bytes(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            kb = strtol(line + n + 1, NULL, 10);
            break;
        }
    if (f)
        fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

void bq_rss_reset(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f); /* resets the peak RSS (VmHWM) to the current RSS */
        fclose(f);
    }
}

long bq_rss_now(void) { return status_bytes("VmRSS"); }

void bq_record_stage(void *user, const char *stage, gq_stage_limit limit, double work,
                     double seconds)
{
    bq_round *r = user;
    bq_stage *s = NULL;
    for (int i = 0; i < r->n && !s; i++)
        if (strcmp(r->st[i].name, stage) == 0)
            s = &r->st[i];
    if (!s) {
        if (r->n == BQ_MAX_STAGES)
            return;
        s = &r->st[r->n++];
        s->name = stage;
        s->limit = limit;
    }
    s->work += work;
    s->seconds += seconds;
    s->calls++;
    long peak = status_bytes("VmHWM") - r->rss_before;
    if (peak > s->peak_rss)
        s->peak_rss = peak;
    bq_rss_reset(); /* the next stage's peak starts here */
}

int bq_limits_init(bq_limits *l, const gq_config *c, size_t ntok, size_t stream_mib,
                   gq_error *err)
{
    memset(l, 0, sizeof *l);
    l->m = ntok < 2048 ? (int)ntok : 2048;
    l->n = c->hidden_dim;
    l->k = c->dim;
    l->dn = c->dim;
    l->dk = 256;
    l->a = calloc((size_t)l->m * l->k, sizeof *l->a);
    l->bm = calloc((size_t)l->k * l->n, sizeof *l->bm);
    l->c = calloc((size_t)l->m * l->n, sizeof *l->c);
    l->da = calloc((size_t)l->dn * l->dk, sizeof *l->da);
    l->dc = calloc((size_t)l->dn * l->dn, sizeof *l->dc);
    if (!l->a || !l->bm || !l->c || !l->da || !l->dc)
        return gq_fail(err, "out of memory for the gemm limits");
    for (size_t i = 0; i < (size_t)l->m * l->k; i++)
        l->a[i] = (float)(i % 7) * 0.25f;
    for (size_t i = 0; i < (size_t)l->k * l->n; i++)
        l->bm[i] = (float)(i % 5) * 0.5f;
    for (size_t i = 0; i < (size_t)l->dn * l->dk; i++)
        l->da[i] = (double)(i % 11) * 0.125;
    l->bw_mib = gq_bandwidth_mib_beyond_cache(&l->llc_mib);
    if (stream_mib)
        l->bw_mib = stream_mib;
    l->bw = gq_bandwidth_probe_new(l->bw_mib, err);
    return l->bw ? 0 : -1;
}

void bq_limits_sample(bq_limits *l)
{
    double t0 = gq_now();
    gq_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, l->m, l->n, l->k, 1.0f, l->a, l->k, l->bm,
             l->n, 0.0f, l->c, l->n);
    double s = 2.0 * l->m * l->n * l->k / (gq_now() - t0) * 1e-9;
    t0 = gq_now();
    gq_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, l->dn, l->dn, l->dk, 1.0, l->da, l->dk,
             l->da, l->dk, 0.0, l->dc, l->dn);
    double d = 2.0 * l->dn * l->dn * (double)l->dk / (gq_now() - t0) * 1e-9;
    double triad, read;
    gq_bandwidth_probe_run(l->bw, 2, &triad, &read);
    l->sgemm = s > l->sgemm ? s : l->sgemm;
    l->dgemm = d > l->dgemm ? d : l->dgemm;
    l->triad = triad > l->triad ? triad : l->triad;
}

void bq_limits_free(bq_limits *l)
{
    free(l->a);
    free(l->bm);
    free(l->c);
    free(l->da);
    free(l->dc);
    gq_bandwidth_probe_free(l->bw);
    memset(l, 0, sizeof *l);
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median, min and max of the rounds' times of stage `name` (NULL: the rounds' totals; "": the
 * untimed rest, total minus all stages). */
typedef struct {
    double median, min, max;
} spread;

static double round_value(const bq_round *r, const char *name)
{
    double v = r->total;
    for (int i = 0; name && i < r->n; i++) {
        if (!*name)
            v -= r->st[i].seconds;
        else if (strcmp(r->st[i].name, name) == 0)
            return r->st[i].seconds;
    }
    return name && *name ? 0.0 : v;
}

static spread spread_of(const bq_bench *b, const char *name)
{
    double v[BQ_MAX_ROUNDS];
    for (int r = 0; r < b->n_rounds; r++)
        v[r] = round_value(&b->rounds[r], name);
    qsort(v, (size_t)b->n_rounds, sizeof *v, by_value);
    int n = b->n_rounds;
    spread s = {n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]), v[0], v[n - 1]};
    return s;
}

static double limit_rate(const bq_limits *l, gq_stage_limit k)
{
    return k == GQ_LIMIT_SGEMM ? l->sgemm : k == GQ_LIMIT_DGEMM ? l->dgemm : l->triad;
}

/* How stage `name` grows from the measured calibration to the projected one: the forward pass
 * (and AffineQuant's forward and backward passes) by its FLOPs, AffineQuant's other stages
 * (one step per window) by the window count, the other token-proportional stages by the token
 * count, the rest not. */
static double token_scale(const bq_args *a, const gq_config *c, const char *name)
{
    if (!name || !*name)
        return 1.0;
    if (strcmp(name, "forward") == 0 || strcmp(name, "aq forward") == 0 ||
        strcmp(name, "aq backward") == 0)
        return gq_block_forward_flops(c, (int)a->project_windows, (int)a->project_ctx) /
               gq_block_forward_flops(c, (int)a->windows, (int)a->ctx);
    if (strcmp(name, "recon error") == 0) /* at most GQ_RECON_TOKENS sampled tokens */
        return (double)gq_recon_tokens((size_t)a->project_windows * a->project_ctx) /
               (double)gq_recon_tokens((size_t)a->windows * a->ctx);
    if (strncmp(name, "aq ", 3) == 0)
        return (double)a->project_windows / (double)a->windows;
    static const char *per_token[] = {"hessian", "stats", "salience", "search"};
    for (size_t i = 0; i < sizeof per_token / sizeof per_token[0]; i++)
        if (strcmp(name, per_token[i]) == 0)
            return (double)a->project_windows * a->project_ctx / ((double)a->windows * a->ctx);
    return 1.0; /* factor, columns, round, clip (a fixed token sample), fingerprint */
}

static const char *limit_name(gq_stage_limit k)
{
    return k == GQ_LIMIT_SGEMM ? "sgemm" : k == GQ_LIMIT_DGEMM ? "dgemm" : "triad";
}

/* One row of the stage table; returns its time at the limit (s). */
static double print_stage(const bq_bench *b, const bq_stage *s, double total_median)
{
    spread t = spread_of(b, s->name);
    double lim = limit_rate(&b->lim, s->limit);
    double rate = s->work / t.median * 1e-9, at_limit = s->work / (lim * 1e9);
    printf("%-12s %-6s %5d %10.3g %9.3f %6.1f%% %9.2f %9.2f %6.1f%% %9.3f %6.1f%% %8.0f\n",
           s->name, limit_name(s->limit), s->calls, s->work, t.median,
           100.0 * (t.max - t.min) / t.median, rate, lim, 100.0 * rate / lim, at_limit,
           100.0 * t.median / total_median, s->peak_rss / 1e6);
    return at_limit;
}

static void print_header(const bq_args *a, const bq_bench *b, int threads)
{
    const gq_config *c = &b->cfg;
    char fmt[96];
    gq_quantizer_label(&b->plan.quantizer, fmt, sizeof fmt);
    json_t *mj = gq_method_cfg_to_json(&b->plan.method);
    char *ms = json_dumps(mj, JSON_COMPACT);
    printf("bench quantize: preset %s, one block (dim %d, hidden %d, %d/%d heads), seed %ld\n",
           a->preset, c->dim, c->hidden_dim, c->n_heads, c->n_kv_heads, a->seed);
    printf("method %s, format %s\n", ms ? ms : a->method, fmt);
    printf("calibration %ld windows x %ld tokens = %ld random tokens; %d threads; %d rounds; "
           "load average %.1f; BLAS: %s; int kernels: %s\n", a->windows, a->ctx,
           a->windows * a->ctx, threads, b->n_rounds, gq_load_average(), gq_blas_description(),
           grid_k_isa());
    char llc[32] = "not reported";
    if (b->lim.llc_mib)
        snprintf(llc, sizeof llc, "%zu MiB", b->lim.llc_mib);
    printf("limits (best sample): sgemm %.2f GFLOP/s ((%d x %d) x (%d x %d)), dgemm %.2f "
           "GFLOP/s ((%d x %d) x (%d x %d)), triad %.2f GB/s (3 x %zu MiB arrays; last-level "
           "cache %s)\n", b->lim.sgemm, b->lim.m, b->lim.k, b->lim.k, b->lim.n, b->lim.dgemm,
           b->lim.dn, b->lim.dk, b->lim.dk, b->lim.dn, b->lim.triad, b->lim.bw_mib, llc);
    free(ms);
    json_decref(mj);
}

/* Sizes of what one block holds, next to the measured peak. */
static void print_memory(const bq_bench *b, size_t ntok)
{
    const gq_config *c = &b->cfg;
    double weights = 0.0;
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        int rows, cols;
        gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
        weights += (double)rows * cols * sizeof(float);
    }
    double stream = (double)ntok * (2.0 * c->dim + 3.0 * c->dim + c->hidden_dim) * sizeof(float);
    double h_dim = 8.0 * c->dim * c->dim, h_hid = 8.0 * c->hidden_dim * c->hidden_dim;
    long peak = 0;
    for (int r = 0; r < b->n_rounds; r++)
        for (int i = 0; i < b->rounds[r].n; i++)
            peak = b->rounds[r].st[i].peak_rss > peak ? b->rounds[r].st[i].peak_rss : peak;
    printf("memory (MB): block fp32 %.0f + its reconstructions %.0f; calibration inputs, "
           "outputs and one trace %.0f; one Hessian (double) %.0f (dim) / %.0f (hidden); "
           "RSS before a round %.0f (the synthetic model and the limits' arrays), peak above "
           "it %.0f\n",
           weights / 1e6, weights / 1e6, stream / 1e6, h_dim / 1e6, h_hid / 1e6,
           b->rounds[0].rss_before / 1e6, peak / 1e6);
}

/* The total against the stages no quantization with calibration can skip: its block forward
 * passes and, for GPTQ, Hessians and factorisations (issue 14's "no wasted passes" ratio). */
static void print_pass_economy(const bq_bench *b, double total)
{
    double t = spread_of(b, "forward").median + spread_of(b, "hessian").median +
               spread_of(b, "factor").median;
    int passes = 0;
    for (int j = 0; j < b->rounds[0].n; j++)
        if (strcmp(b->rounds[0].st[j].name, "forward") == 0)
            passes = b->rounds[0].st[j].calls;
    if (t > 0.0)
        printf("passes: %d block forward pass(es) a round; total / (forward + hessian + factor) "
               "= %.2fx\n", passes, total / t);
}

void bq_print(const bq_args *a, const bq_bench *b, int threads)
{
    print_header(a, b, threads);
    printf("%-12s %-6s %5s %10s %9s %7s %9s %9s %7s %9s %7s %8s\n", "stage", "limit", "calls",
           "work", "time (s)", "spread", "rate", "limit", "of lim", "at lim(s)", "share",
           "+peak MB");
    spread total = spread_of(b, NULL), rest = spread_of(b, "");
    double sum_limits = 0.0, projected = rest.median, projected_lim = 0.0;
    const bq_round *r0 = &b->rounds[0];
    for (int i = 0; i < r0->n; i++) {
        double at_limit = print_stage(b, &r0->st[i], total.median);
        double scale = token_scale(a, &b->cfg, r0->st[i].name);
        sum_limits += at_limit;
        projected += spread_of(b, r0->st[i].name).median * scale;
        projected_lim += at_limit * scale;
    }
    printf("%-12s %-6s %5s %10s %9.3f %6.1f%% %9s %9s %7s %9s %6.1f%%\n", "other", "-", "-", "-",
           rest.median, 100.0 * (rest.max - rest.min) / total.median, "-", "-", "-", "-",
           100.0 * rest.median / total.median);
    printf("%-12s %-6s %5s %10s %9.3f %6.1f%% %9s %9s %7s %9.3f %6s  total / sum of limits "
           "%.2fx\n", "total", "-", "-", "-", total.median,
           100.0 * (total.max - total.min) / total.median, "-", "-", "-", sum_limits, "100%",
           total.median / sum_limits);
    printf("work: FLOPs (sgemm, dgemm) or bytes (triad); time: median of the rounds, spread "
           "(max - min) / median; rate: GFLOP/s or GB/s; other: untimed (embedding, copies)\n");
    print_pass_economy(b, total.median);
    print_memory(b, (size_t)a->windows * a->ctx);
    printf("projection: %d blocks with %ld x %ld calibration tokens: %.0f s (%.2f h) at the "
           "measured stage rates, %.0f s (%.2f h) with every stage at its limit\n", b->n_layers,
           a->project_windows, a->project_ctx, projected * b->n_layers,
           projected * b->n_layers / 3600.0, projected_lim * b->n_layers,
           projected_lim * b->n_layers / 3600.0);
}
