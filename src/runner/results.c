/* Cell records, the results table and its files (columns documented in gq_results.h). */
#include "runner/gq_results.h"

#include <dirent.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gq_fileio.h"
#include "core/gq_log.h"
#include "core/gq_threads.h"
#include "gq_version.h"
#include "report/gq_h5.h"
#include "report/gq_plot.h"
#include "runner/runner_internal.h"

typedef struct {
    const char *name;
    gq_col_type type;
} coldef;

/* The setters below return nonzero when out of memory (jansson's json_object_set_new). */
static int set_real(json_t *row, const char *k, double v)
{
    return isfinite(v) ? json_object_set_new(row, k, json_real(v)) : 0;
}

static int set_int(json_t *row, const char *k, long long v)
{
    return json_object_set_new(row, k, json_integer(v));
}

/* Sets text attribute k. jansson refuses text that is not UTF-8 (a path may hold any bytes):
 * such an attribute is left out, so only out of memory (or text NULL from a failed dump) is an
 * error. */
static int set_text(json_t *o, const char *k, const char *text)
{
    json_t *v = json_string(text);
    if (!v) {
        json_t *raw = text ? json_string_nocheck(text) : NULL;
        json_decref(raw);
        return raw ? 0 : -1;
    }
    return json_object_set_new(o, k, v);
}

json_t *gq_results_record(const gq_experiment *e, const gq_cell *c, const gq_cell_run *r)
{
    json_t *row = json_object(), *tensors = json_array();
    json_t *notes = r->report && r->report->notes ? json_incref(r->report->notes) : json_array();
    bool bad = !row || !tensors || !notes;
    const char *key;
    json_t *v;
    json_object_foreach(c->axes, key, v) /* the columns below take precedence */
        bad |= json_object_set(row, key, v) != 0;
    const gq_col_src src = {e, c, r};
    if (row)
        gq_result_cols_fill(&src, 0, row);
    for (int i = 0; !bad && r->report && i < r->report->n_tensors; i++) {
        const gq_tensor_report *t = &r->report->tensors[i];
        json_t *o = json_pack("{s:s, s:s, s:i, s:i, s:b, s:I}", "name", t->name, "format",
                              t->format, "rows", t->rows, "cols", t->cols, "quantized",
                              t->quantized, "bytes", (json_int_t)t->bytes);
        if (o && isfinite(t->recon_err))
            bad |= json_object_set_new(o, "recon_err", json_real(t->recon_err)) != 0;
        if (o && t->extra)
            bad |= json_object_set(o, "extra", t->extra) != 0;
        bad |= json_array_append_new(tensors, o) != 0;
    }
    if (bad) {
        json_decref(row);
        json_decref(tensors);
        json_decref(notes);
        return NULL;
    }
    return json_pack("{s:o, s:o, s:o}", "row", row, "tensors", tensors, "notes", notes);
}

static bool add_cols(gq_table *t, const coldef *defs, size_t n)
{
    bool bad = false;
    for (size_t i = 0; i < n; i++)
        bad |= gq_table_add_col(t, defs[i].name, defs[i].type) < 0;
    return bad;
}

/* Per-tensor table of one cell: fixed columns plus one REAL column per numeric scalar key of
 * the method's extra metrics ("extra.alpha", "extra.gptq_loss", ...). NULL when out of memory. */
static gq_table *cell_table(const gq_experiment *e, const gq_cell *c, json_t *rec)
{
    gq_table *t = malloc(sizeof *t);
    if (!t)
        return NULL;
    bool bad = gq_table_init(t) != 0;
    static const coldef cols[] = {{"name", GQ_COL_TEXT},     {"format", GQ_COL_TEXT},
                                  {"rows", GQ_COL_INT},      {"cols", GQ_COL_INT},
                                  {"quantized", GQ_COL_INT}, {"bytes", GQ_COL_INT},
                                  {"bpw", GQ_COL_REAL},      {"recon_err", GQ_COL_REAL},
                                  {"extra", GQ_COL_TEXT}};
    bad |= add_cols(t, cols, sizeof cols / sizeof cols[0]);
    json_t *tensors = json_object_get(rec, "tensors");
    size_t i;
    json_t *tj;
    json_array_foreach(tensors, i, tj) {
        json_t *row = json_object();
        const char *k;
        json_t *v;
        json_object_foreach(tj, k, v) {
            if (strcmp(k, "extra") == 0) {
                char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
                bad |= set_text(row, "extra", s) != 0; /* NULL s: -1 */
                free(s);
                const char *ek;
                json_t *ev;
                json_object_foreach(v, ek, ev) {
                    if (!json_is_number(ev))
                        continue;
                    char name[64];
                    snprintf(name, sizeof name, "extra.%s", ek);
                    bad |= gq_table_add_col(t, name, GQ_COL_REAL) < 0;
                    bad |= json_object_set_new(row, name, json_real(json_number_value(ev))) != 0;
                }
            } else if (strcmp(k, "quantized") == 0)
                bad |= set_int(row, k, json_is_true(v)) != 0;
            else
                bad |= json_object_set(row, k, v) != 0;
        }
        double w = json_number_value(json_object_get(tj, "rows")) *
                   json_number_value(json_object_get(tj, "cols"));
        if (w > 0)
            bad |= set_real(row, "bpw",
                            8.0 * json_number_value(json_object_get(tj, "bytes")) / w) != 0;
        bad |= gq_table_add_row(t, row) != 0; /* a NULL row fails here too */
    }
    json_t *a = t->attrs;
    bad |= set_text(a, "cell", c->id) != 0;
    bad |= set_text(a, "series",
                    c->entry < 0 ? e->base_series : e->methods[c->entry].label) != 0;
    bad |= set_text(a, "sweep", c->sweep) != 0;
    if (c->method)
        bad |= json_object_set(a, "method", c->method) != 0;
    if (c->format)
        bad |= json_object_set(a, "format", c->format) != 0;
    json_t *notes = json_object_get(rec, "notes");
    if (notes)
        bad |= json_object_set(a, "notes", notes) != 0;
    if (bad) {
        gq_table_free(t);
        free(t);
        return NULL;
    }
    return t;
}

/* How the cells' KL / top-1 were measured, from their kl_reference column (a resumed run may
 * mix modes; both give the same numbers). */
static void kl_reference_text(const gq_table *t, char *out, size_t n)
{
    bool stored = false, paired = false;
    for (size_t r = 0; r < gq_table_n_rows(t); r++) {
        const char *k = gq_table_str(t, r, "kl_reference");
        stored |= k && strcmp(k, "stored") == 0;
        paired |= k && strcmp(k, "paired") == 0;
    }
    snprintf(out, n, "KL and top-1 against %s",
             stored && paired ? "the baseline's stored fp32 log-probabilities in some cells and "
                                "the baseline model rerun on the same batches (paired) in others"
             : paired ? "the baseline model rerun on the same batches of windows (paired)"
             : stored ? "the baseline's stored fp32 log-probabilities"
                      : "the baseline (no quantized cells)");
}

/* The throughput protocol (gq_packed_measure, packed/gq_packed.h). */
static void throughput_text(const gq_experiment *e, char *out, size_t n)
{
    const gq_exp_throughput *t = &e->throughput;
    const bool ckpt = e->base_bpw < 32.0; /* the baseline is a quantized checkpoint */
    if (!t->enabled) {
        snprintf(out, n, "throughput not measured ($.throughput.enabled false)");
        return;
    }
    snprintf(out, n,
             "decode_tok_s: 1 / the fastest of %d decode steps (positions %d..%d after %d "
             "warm-up steps, fresh KV cache); prefill_tok_s: %d tokens / the fastest of %d "
             "prefill passes of one window (after one warm-up); wall clock with the row's thread "
             "count, measured while no other cell runs (--jobs: the other cells wait); the "
             "quantized model's block linears packed in the cell's format (decode on int8 "
             "activations where the format has an int8 kernel, prefill dequantized tiles + "
             "sgemm), embeddings and classifier fp32; the baseline: %s; "
             "packed_bytes: packed linears (codes, scales, zero points), the baseline's %s "
             "block linears; each of decode and prefill repeated in rounds until at least %d "
             "rounds were done and their median came within %.0f%% of the best "
             "(throughput_steady 1) or %d rounds were done (throughput_steady 0: disturbed), "
             "the best round reported, *_median and *_min the spread, load_avg the 1-minute "
             "load average after the measurement",
             t->decode_tokens, GQ_TP_WARMUP, GQ_TP_WARMUP + t->decode_tokens - 1, GQ_TP_WARMUP,
             t->prefill_tokens, t->reps,
             ckpt ? "its checkpoint's block linears packed from their codes"
                  : "fp32 products through BLAS",
             ckpt ? "packed" : "fp32", GQ_STEADY_MIN_ROUNDS, 100.0 * GQ_STEADY_TOL,
             GQ_STEADY_MAX_ROUNDS);
}

/* Table-level facts of the run; nonzero when out of memory. */
static int environment_attrs(const gq_experiment *e, gq_table *t)
{
    json_t *a = t->attrs;
    int bad = 0;
    char cpu[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *p = strchr(line, ':');
            if (p) {
                p += strspn(p + 1, " ") + 1;
                p[strcspn(p, "\n")] = '\0';
                snprintf(cpu, sizeof cpu, "%s", p);
            }
            break;
        }
    if (f)
        fclose(f);
    char *exp = json_dumps(e->resolved, JSON_INDENT(2) | JSON_SORT_KEYS);
    char klref[256];
    kl_reference_text(t, klref, sizeof klref);
    char proto[3 * GQ_EXP_PATH + 1024];
    snprintf(proto, sizeof proto,
             "perplexity protocol %s, ctx %d, %s windows of %s (sha256 %s), tokenizer %s; %s; "
             "calibration %s; seed %llu",
             gq_ppl_protocol_name((gq_ppl_protocol)e->eval.protocol), e->eval.ctx,
             e->eval.max_windows ? "the first max_windows" : "all", e->eval_path, e->eval_sha256,
             e->tokenizer_path, klref, e->has_calib ? e->calib_path : "none",
             (unsigned long long)e->calib.seed);
    bad |= set_text(a, "experiment_name", e->name);
    bad |= set_text(a, "experiment_file", e->file);
    bad |= set_text(a, "experiment_json", exp);
    bad |= set_text(a, "config_sha256", e->config_sha256);
    if (e->plugins) { /* [{"path", "sha256"}] of the loaded $.plugins */
        char *pl = json_dumps(e->plugins, JSON_COMPACT);
        bad |= set_text(a, "plugins", pl);
        free(pl);
    }
    bad |= set_text(a, "protocol", proto);
    bad |= set_text(a, "version", GQ_VERSION);
    bad |= set_text(a, "revision", GQ_VCS_REVISION);
#if defined(__clang__)
    bad |= set_text(a, "compiler", "clang " __VERSION__);
#elif defined(__GNUC__)
    bad |= set_text(a, "compiler", "gcc " __VERSION__);
#else
    bad |= set_text(a, "compiler", __VERSION__);
#endif
    bad |= set_text(a, "blas", gq_blas_description());
    bad |= set_text(a, "blas_kernel", gq_blas_kernel());
    bad |= set_text(a, "cpu", cpu);
    char tp[2048];
    throughput_text(e, tp, sizeof tp);
    bad |= set_text(a, "throughput", tp);
    bad |= set_text(a, "empty_columns", "decode_tok_s, prefill_tok_s, their spread "
                                        "(decode_tok_s_median ... load_avg), packed_bytes");
    bad |= set_text(a, "empty_columns_reason",
                    "empty in a row whose throughput_note says why (the packed kernels could not "
                    "run that cell, or $.throughput.enabled is false); never estimated");
    free(exp);
    return bad;
}

int gq_results_tables(const gq_experiment *e, json_t *const *records, gq_table *main,
                      gq_table **cell_tables, gq_error *err)
{
    bool bad = gq_table_init(main) != 0;
    for (const gq_result_col *col = gq_result_cols; col->name; col++) {
        bad |= gq_table_add_col(main, col->name, col->type) < 0;
        if (!(col->scope & GQ_RCOL_AXES_AFTER))
            continue;
        for (int a = 0; a < e->n_axes; a++) {
            json_t *v0 = json_array_get(e->axes[a].values, 0);
            bad |= gq_table_add_col(main, e->axes[a].name,
                                    json_is_integer(v0)  ? GQ_COL_INT
                                    : json_is_number(v0) ? GQ_COL_REAL
                                                         : GQ_COL_TEXT) < 0;
        }
    }
    for (int i = 0; i < e->n_cells; i++) {
        if (!records[i]) /* a cell that failed at run time */
            continue;
        json_t *row = json_object_get(records[i], "row");
        if (!json_is_object(row)) {
            gq_table_free(main);
            return gq_fail(err, "journal record of cell %s has no row; rerun with --fresh",
                           e->cells[i].id);
        }
        bad |= gq_table_add_row(main, json_incref(row)) != 0;
        bad |= !(cell_tables[i] = cell_table(e, &e->cells[i], records[i]));
    }
    bad |= environment_attrs(e, main) != 0; /* after the rows: states their KL reference */
    if (bad) {
        gq_table_free(main);
        return gq_fail(err, "out of memory building the result tables");
    }
    return 0;
}

static void print_summary(const gq_experiment *e, const gq_table *t, FILE *f)
{
    static const char *const cols[] = {"cell", "series", "format", "sweep", "ppl", "ppl_stderr",
                                       "delta_ppl", "kl_div", "top1_pct", "bpw", "t_quant",
                                       "t_eval", "decode_tok_s", "prefill_tok_s"};
    fprintf(f, "\n%s: %s, perplexity protocol %s, ctx %d, %.0f windows (%.0f scored "
               "tokens) of %s (sha256 %.12s), seed %llu, %.0f threads\n",
            e->name, e->model_label, gq_ppl_protocol_name((gq_ppl_protocol)e->eval.protocol),
            e->eval.ctx, gq_table_num(t, 0, "eval_windows"), gq_table_num(t, 0, "scored"),
            e->eval_path, e->eval_sha256, (unsigned long long)e->calib.seed,
            gq_table_num(t, 0, "threads"));
    if (e->model_path[0])
        fprintf(f, "model: %s (%s%.12s%sweights sha256 %.12s), tokenizer sha256 %.12s\n",
                e->model_path, e->model_config_sha256[0] ? "config.json sha256 " : "",
                e->model_config_sha256, e->model_config_sha256[0] ? ", " : "",
                e->model_sha256, e->tokenizer_sha256);
    if (e->has_calib)
        fprintf(f, "calibration: %s (sha256 %.12s), n_calib %d x calib_ctx %d unless swept\n",
                e->calib_path, e->calib_sha256, e->calib.n_calib, e->calib.calib_ctx);
    char klref[256];
    kl_reference_text(t, klref, sizeof klref);
    fprintf(f, "kl_div: nats/token vs the baseline on the same windows; top1_pct: %% argmax "
               "agreement; %s; bpw: bits per weight of the quantized linears; times in "
               "seconds\n", klref);
    char tp[2048];
    throughput_text(e, tp, sizeof tp);
    fprintf(f, "throughput: %s; an empty value: see the row's throughput_note in results.csv\n\n",
            tp);
    char *s = gq_table_format(t, cols, (int)(sizeof cols / sizeof cols[0]));
    fputs(s, f);
    free(s);
}

/* Removes temporaries ("<file>.tmp.<pid>") left in dir by a killed run. */
static void remove_stale_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    char p[8400];
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tmp.") && de->d_type == DT_REG) {
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            unlink(p);
        }
    closedir(d);
}

int gq_results_write(const gq_experiment *e, const gq_journal *j, const bool *failed,
                     const char *results_dir, const char *plots_dir, FILE *summary,
                     gq_error *err)
{
    remove_stale_tmp(results_dir);
    if (plots_dir)
        remove_stale_tmp(plots_dir);
    json_t **records = calloc((size_t)e->n_cells, sizeof *records);
    gq_table **cells = calloc((size_t)e->n_cells, sizeof *cells);
    gq_table main = {0};
    int rc = -1;
    if (!records || !cells) {
        free(records);
        free(cells);
        return gq_fail(err, "out of memory for the records of %d cells", e->n_cells);
    }
    for (int i = 0; i < e->n_cells; i++)
        if (!(failed && failed[i]) && !(records[i] = gq_journal_get(j, e->cells[i].id, err)))
            goto done;
    if (gq_results_tables(e, records, &main, cells, err))
        goto done;
    char path[4200];
    snprintf(path, sizeof path, "%s/results.csv", results_dir);
    if (gq_table_write_csv(&main, path, err))
        goto done;
    gq_h5_group *groups = calloc((size_t)e->n_cells, sizeof *groups);
    if (!groups) {
        gq_fail(err, "out of memory for the groups of %d cells", e->n_cells);
        goto done;
    }
    int n_groups = 0;
    for (int i = 0; i < e->n_cells; i++)
        if (cells[i])
            groups[n_groups++] = (gq_h5_group){e->cells[i].id, cells[i]};
    snprintf(path, sizeof path, "%s/results.h5", results_dir);
    rc = gq_h5_write(path, &main, groups, n_groups, err);
    free(groups);
    if (rc)
        goto done;
    gq_log_info("wrote %s/results.csv and results.h5", results_dir);
    if (plots_dir) {
        int n = 0;
        gq_error perr = {{0}};
        if (!gq_gnuplot_path())
            gq_log_warn("charts skipped: gnuplot not found in PATH (results.csv and results.h5 "
                        "are complete; install gnuplot and run `gq-bench plot %s`)", results_dir);
        else if (gq_plot_results(&main, plots_dir, &n, &perr)) {
            rc = gq_fail(err, "%s", perr.msg);
            goto done;
        } else
            gq_log_info("wrote %d charts to %s", n, plots_dir);
    }
    if (summary)
        print_summary(e, &main, summary);
    rc = 0;
done:
    for (int i = 0; i < e->n_cells; i++) {
        json_decref(records[i]);
        if (cells[i]) {
            gq_table_free(cells[i]);
            free(cells[i]);
        }
    }
    free(records);
    free(cells);
    if (main.cols)
        gq_table_free(&main);
    return rc;
}

int gq_results_plot(const char *results_dir, const char *plots_dir, int *n_charts, gq_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/results.csv", results_dir);
    gq_table t;
    if (gq_table_read_csv(path, &t, err))
        return -1;
    int rc = gq_plot_results(&t, plots_dir, n_charts, err);
    gq_table_free(&t);
    return rc;
}
