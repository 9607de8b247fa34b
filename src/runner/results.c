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

static void set_real(json_t *row, const char *k, double v)
{
    if (isfinite(v))
        json_object_set_new(row, k, json_real(v));
}

static void set_int(json_t *row, const char *k, long long v) { json_object_set_new(row, k, json_integer(v)); }

json_t *gq_results_record(const gq_experiment *e, const gq_cell *c, const gq_cell_run *r)
{
    json_t *row = json_object();
    const char *key;
    json_t *v;
    json_object_foreach(c->axes, key, v) /* the columns below take precedence */
        json_object_set(row, key, v);
    const gq_col_src src = {e, c, r};
    gq_result_cols_fill(&src, 0, row);
    json_t *tensors = json_array();
    for (int i = 0; r->report && i < r->report->n_tensors; i++) {
        const gq_tensor_report *t = &r->report->tensors[i];
        json_t *o = json_pack("{s:s, s:s, s:i, s:i, s:b, s:I}", "name", t->name, "format",
                              t->format, "rows", t->rows, "cols", t->cols, "quantized",
                              t->quantized, "bytes", (json_int_t)t->bytes);
        if (isfinite(t->recon_err))
            json_object_set_new(o, "recon_err", json_real(t->recon_err));
        if (t->extra)
            json_object_set(o, "extra", t->extra);
        json_array_append_new(tensors, o);
    }
    json_t *notes = r->report && r->report->notes ? json_incref(r->report->notes) : json_array();
    return json_pack("{s:o, s:o, s:o}", "row", row, "tensors", tensors, "notes", notes);
}

static void add_cols(gq_table *t, const coldef *defs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        gq_table_add_col(t, defs[i].name, defs[i].type);
}

/* Per-tensor table of one cell: fixed columns plus one REAL column per numeric scalar key of
 * the method's extra metrics ("extra.alpha", "extra.gptq_loss", ...). */
static gq_table *cell_table(const gq_experiment *e, const gq_cell *c, json_t *rec)
{
    gq_table *t = malloc(sizeof *t);
    gq_table_init(t);
    static const coldef cols[] = {{"name", GQ_COL_TEXT},     {"format", GQ_COL_TEXT},
                                  {"rows", GQ_COL_INT},      {"cols", GQ_COL_INT},
                                  {"quantized", GQ_COL_INT}, {"bytes", GQ_COL_INT},
                                  {"bpw", GQ_COL_REAL},      {"recon_err", GQ_COL_REAL},
                                  {"extra", GQ_COL_TEXT}};
    add_cols(t, cols, sizeof cols / sizeof cols[0]);
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
                json_object_set_new(row, "extra", json_string(s));
                free(s);
                const char *ek;
                json_t *ev;
                json_object_foreach(v, ek, ev) {
                    if (!json_is_number(ev))
                        continue;
                    char name[64];
                    snprintf(name, sizeof name, "extra.%s", ek);
                    gq_table_add_col(t, name, GQ_COL_REAL);
                    json_object_set_new(row, name, json_real(json_number_value(ev)));
                }
            } else if (strcmp(k, "quantized") == 0)
                set_int(row, k, json_is_true(v));
            else
                json_object_set(row, k, v);
        }
        double w = json_number_value(json_object_get(tj, "rows")) *
                   json_number_value(json_object_get(tj, "cols"));
        if (w > 0)
            set_real(row, "bpw", 8.0 * json_number_value(json_object_get(tj, "bytes")) / w);
        gq_table_add_row(t, row);
    }
    json_object_set_new(t->attrs, "cell", json_string(c->id));
    json_object_set_new(t->attrs, "series",
                        json_string(c->entry < 0 ? "fp32 baseline" : e->methods[c->entry].label));
    json_object_set_new(t->attrs, "sweep", json_string(c->sweep));
    if (c->method)
        json_object_set(t->attrs, "method", c->method);
    if (c->format)
        json_object_set(t->attrs, "format", c->format);
    json_object_set(t->attrs, "notes", json_object_get(rec, "notes"));
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
             "sgemm), embeddings and classifier fp32; the baseline: fp32 products through BLAS; "
             "packed_bytes: packed linears (codes, scales, zero points), the baseline's fp32 "
             "block linears",
             t->decode_tokens, GQ_TP_WARMUP, GQ_TP_WARMUP + t->decode_tokens - 1, GQ_TP_WARMUP,
             t->prefill_tokens, t->reps);
}

static void environment_attrs(const gq_experiment *e, gq_table *t)
{
    json_t *a = t->attrs;
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
    json_object_set_new(a, "experiment_name", json_string(e->name));
    json_object_set_new(a, "experiment_file", json_string(e->file));
    json_object_set_new(a, "experiment_json", json_string(exp));
    json_object_set_new(a, "config_sha256", json_string(e->config_sha256));
    if (e->plugins) { /* [{"path", "sha256"}] of the loaded $.plugins */
        char *pl = json_dumps(e->plugins, JSON_COMPACT);
        json_object_set_new(a, "plugins", json_string(pl));
        free(pl);
    }
    json_object_set_new(a, "protocol", json_string(proto));
    json_object_set_new(a, "version", json_string(GQ_VERSION));
    json_object_set_new(a, "revision", json_string(GQ_VCS_REVISION));
#if defined(__clang__)
    json_object_set_new(a, "compiler", json_string("clang " __VERSION__));
#elif defined(__GNUC__)
    json_object_set_new(a, "compiler", json_string("gcc " __VERSION__));
#else
    json_object_set_new(a, "compiler", json_string(__VERSION__));
#endif
    json_object_set_new(a, "blas", json_string(gq_blas_description()));
    json_object_set_new(a, "cpu", json_string(cpu));
    char tp[1024];
    throughput_text(e, tp, sizeof tp);
    json_object_set_new(a, "throughput", json_string(tp));
    json_object_set_new(a, "empty_columns", json_string("decode_tok_s, prefill_tok_s, packed_bytes"));
    json_object_set_new(a, "empty_columns_reason",
                        json_string("empty in a row whose throughput_note says why (the packed "
                                    "kernels could not run that cell, or $.throughput.enabled is "
                                    "false); never estimated"));
    free(exp);
}

int gq_results_tables(const gq_experiment *e, json_t *const *records, gq_table *main,
                      gq_table **cell_tables, gq_error *err)
{
    gq_table_init(main);
    for (const gq_result_col *col = gq_result_cols; col->name; col++) {
        gq_table_add_col(main, col->name, col->type);
        if (!(col->scope & GQ_RCOL_AXES_AFTER))
            continue;
        for (int a = 0; a < e->n_axes; a++) {
            json_t *v0 = json_array_get(e->axes[a].values, 0);
            gq_table_add_col(main, e->axes[a].name,
                             json_is_integer(v0)  ? GQ_COL_INT
                             : json_is_number(v0) ? GQ_COL_REAL
                                                  : GQ_COL_TEXT);
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
        gq_table_add_row(main, json_incref(row));
        cell_tables[i] = cell_table(e, &e->cells[i], records[i]);
    }
    environment_attrs(e, main); /* after the rows: states their KL reference */
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
    if (e->has_calib)
        fprintf(f, "calibration: %s (sha256 %.12s), n_calib %d x calib_ctx %d unless swept\n",
                e->calib_path, e->calib_sha256, e->calib.n_calib, e->calib.calib_ctx);
    char klref[256];
    kl_reference_text(t, klref, sizeof klref);
    fprintf(f, "kl_div: nats/token vs the fp32 baseline on the same windows; top1_pct: %% argmax "
               "agreement; %s; bpw: bits per weight of the quantized linears; times in "
               "seconds\n", klref);
    char tp[1024];
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
