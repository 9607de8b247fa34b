#ifndef GQ_RUN_H
#define GQ_RUN_H
/* Running an experiment: the baseline, then every cell not yet in the journal, then the
 * result files written from the journal.
 *
 * Outputs go to <out_dir>/results/<name>/ (results.csv, results.h5, .journal/) and
 * <out_dir>/plots/<name>/ (PNG charts). Cells run in order, or `jobs` at a time on threads
 * with `threads / jobs` OpenMP/BLAS threads each; a cell's numbers depend only on the
 * experiment and that per-cell thread count.
 *
 * KL / top-1 reference ($.eval.kl_baseline, see eval/gq_eval.h): "stored" keeps the baseline's
 * fp32 log-probabilities in memory and in the journal (.journal/baseline.logp) for every cell;
 * "paired" keeps nothing and reruns the unquantized model on each batch beside every cell;
 * "auto" (default) stores when 192 + scored * (vocab * 4 + 12) bytes is at most the budget,
 * GQ_KL_BUDGET_DEFAULT (1 GiB) or GQ_KL_BUDGET_BYTES from the environment when set, and
 * pairs otherwise. Both give the same numbers; the column kl_reference says which one each
 * cell used. */
#include <stdbool.h>
#include <stdio.h>

#include "core/gq_error.h"
#include "runner/gq_experiment.h"

#define GQ_KL_BUDGET_DEFAULT (1ull << 30)

typedef struct gq_run_opts {
    const char *out_dir; /* "." by default */
    int threads;         /* total threads (> 0) */
    int jobs;            /* cells side by side (>= 1) */
    bool fresh;          /* discard a journal of a different experiment definition */
    bool plots;          /* draw charts (skipped with a message when gnuplot is missing) */
    FILE *summary;       /* where the summary table goes (stdout), NULL for none */
    /* Cells to export as GGUF (results/<name>/<cell>.gguf), run even when journaled (their
     * numbers come out the same bits); unquantized matrices as export_float_type. */
    const char *const *export_gguf;
    int n_export_gguf;
    const char *export_float_type; /* "f32" (NULL), "f16", "bf16" */
} gq_run_opts;

/* Directories of an experiment's outputs. */
void gq_run_dirs(const gq_experiment *e, const char *out_dir, char *results, char *plots, size_t n);

/* Creates the results directory and locks it against other runs (gq_journal_lock): returns
 * the descriptor holding the lock until it is closed or the process exits, or -1 (err set:
 * another run holds it, or the directory cannot be created). Take it before any work. */
int gq_run_lock(const gq_experiment *e, const gq_run_opts *o, gq_error *err);

/* Fails before doing any work when the journal belongs to another definition (and !fresh),
 * or a cell to export is not a cell or has a plan GGUF cannot hold. */
int gq_run_check(const gq_experiment *e, const gq_run_opts *o, gq_error *err);

int gq_run_experiment(const gq_experiment *e, const gq_run_opts *o, gq_error *err);

#endif
