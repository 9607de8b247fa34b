#ifndef GQ_RESULTS_H
#define GQ_RESULTS_H
/* The results of an experiment: one record per cell (kept in the journal) and the table, HDF5
 * file, charts and summary made from them. One table of columns (gq_result_cols, columns.c)
 * names them all, and `gq-bench eval --json` uses its evaluation columns.
 *
 * results.csv / the /results dataset have one row per cell with these columns:
 *   experiment, cell, series (method entry label), model, method, format (label), sweep
 *   ("k=v ..." of the swept values of the cell), bits, group_size (effective group width:
 *   the swept value, else the format's own; empty for per-channel/per-tensor formats), one
 *   column per other sweep axis, method_params, format_params (canonical JSON), propagate,
 *   a_bits, a_format, a_granularity, a_scales, kv_bits, kv_format (the activation and KV-cache
 *   quantizers' default spec, act/gq_act.h; empty without),
 *   ppl, ppl_stderr, delta_ppl (ppl - baseline ppl), kl_div, kl_stderr (mean KL(baseline ||
 *   cell) in nats per scored token), top1_pct (% of scored positions whose argmax equals the
 *   baseline's), top1_stderr_pct, base_ppl, mean_nll, nll_stderr (nats per scored token), bpw (bits per weight of the quantized block linears), linear_bytes,
 *   model_bytes, quantized_tensors, fp_tensors, t_stats, t_search, t_quant, t_eval (seconds),
 *   eval_tok_s (tokens through the model per second of evaluation), peak_rss_mb (process peak
 *   RSS at the end of the cell, MB = 1e6 bytes), threads, decode_tok_s, prefill_tok_s
 *   (tokens/s of the packed kernels, the best of rounds repeated until they agree, protocol in
 *   the HDF5 attribute "throughput"), decode_tok_s_median, decode_tok_s_min, decode_rounds,
 *   prefill_tok_s_median, prefill_tok_s_min, prefill_rounds (the spread of those rounds),
 *   throughput_steady (1 when both medians came within GQ_STEADY_TOL of the best, 0 when the
 *   round limit was reached first: a disturbed measurement), load_avg (1-minute load average
 *   right after the measurement), packed_bytes
 *   (bytes of the packed linears; the baseline: its block linears in fp32), throughput_note
 *   (empty when measured, else why those three are empty: never estimated), protocol, ctx,
 *   eval_windows, eval_tokens, scored, kl_reference (how kl_div and top1_pct were measured:
 *   "stored" baseline log-probabilities, "paired" baseline model rerun on the same batches,
 *   "self" for the baseline row), tokenizer, eval_text, eval_sha256, calib_text, calib_sha256, n_calib,
 *   calib_ctx, seed, config_sha256, model_sha256, tokenizer_sha256, version, revision,
 *   blas_kernel (the OpenBLAS kernel set that computed the row: numbers are bit-identical across
 *   thread counts and --jobs for one kernel and build, not across kernels), blas (the BLAS
 *   build, threading and kernel). */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "core/gq_steady.h"
#include "eval/gq_eval.h"
#include "methods/gq_pipeline.h"
#include "report/gq_table.h"
#include "runner/gq_experiment.h"
#include "runner/gq_journal.h"

/* Throughput of one cell (gq_runner_throughput): measured, or a one-line note why not. */
typedef struct gq_cell_throughput {
    bool measured;
    double decode_tok_s, prefill_tok_s; /* the best rounds */
    gq_rate_spread decode, prefill;     /* all rounds (core/gq_steady.h) */
    double load_avg;                    /* 1-minute load average after it, -1 unknown */
    size_t packed_bytes; /* packed linears; the baseline: its block linears in fp32 */
    char note[512];      /* empty when measured */
    double seconds;      /* wall time of the measurement (packing included), for the log */
} gq_cell_throughput;

/* Timing and environment of one finished cell. */
typedef struct gq_cell_run {
    const gq_eval_result *eval;
    const gq_quant_report *report; /* NULL for the baseline */
    int threads;
    double peak_rss_mb;
    size_t calib_first; /* first token calibration windows may start at */
    const char *kl_reference; /* "stored", "paired", or "self" for the baseline */
    const gq_cell_throughput *tp;
    const gq_act_cfg *act, *kv; /* activation / KV-cache quantizers evaluated (NULL: none) */
} gq_cell_run;

/* Where a result column's value comes from: the experiment and cell (both NULL for
 * `gq-bench eval`, which fills only the evaluation's columns) and the run (eval always set). */
typedef struct gq_col_src {
    const gq_experiment *e;
    const gq_cell *c;
    const gq_cell_run *r;
} gq_col_src;

enum {
    GQ_RCOL_EVAL = 1,       /* a measurement of the evaluation alone: in `eval --json` too */
    GQ_RCOL_AXES_AFTER = 2, /* the sweep-axis columns follow this one in tables */
};

/* One result column: its name in the journal record, results.csv, results.h5 and
 * `eval --json`, its type in tables, and its value (new reference; NULL = empty). */
typedef struct gq_result_col {
    const char *name;
    gq_col_type type;
    unsigned scope;
    json_t *(*value)(const gq_col_src *s);
} gq_result_col;

/* Every result column in table order (columns.c), ended by a NULL name. */
extern const gq_result_col gq_result_cols[];

/* Sets each column whose scope includes `scope` (0: all) and has a value into row. */
void gq_result_cols_fill(const gq_col_src *s, unsigned scope, json_t *row);

/* The journal record of a finished cell: {"row": {...}, "tensors": [...], "notes": [...]}. */
json_t *gq_results_record(const gq_experiment *e, const gq_cell *c, const gq_cell_run *r);

/* Builds the main table from the records of every cell (in cell order; a NULL record: a cell
 * that failed, no row) and one per-tensor table per cell with a record (cell_tables[i], caller
 * frees each and the array). */
int gq_results_tables(const gq_experiment *e, json_t *const *records, gq_table *main,
                      gq_table **cell_tables, gq_error *err);

/* Writes results.csv and results.h5 under results_dir and, unless plots_dir is NULL, the charts
 * (a missing gnuplot is reported on stderr and skipped); prints the summary to `summary`.
 * Cells with failed[i] set (NULL: none) failed at run time and have no row. */
int gq_results_write(const gq_experiment *e, const gq_journal *j, const bool *failed,
                     const char *results_dir, const char *plots_dir, FILE *summary,
                     gq_error *err);

/* Redraws the charts of a stored results.csv (gq-bench plot). */
int gq_results_plot(const char *results_dir, const char *plots_dir, int *n_charts, gq_error *err);

#endif
