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
    int shard, n_shards; /* --shard i/N: this run computes share i (1..N) only; 0: all */
    bool split_eval;     /* under mpirun: every rank runs each cell, its evaluation windows
                            split among them (for cells whose evaluation dominates) */
} gq_run_opts;

/* Shares of --shard i/N (job arrays without MPI): share i holds the cells c<k> with
 * (k - 1) mod N == i - 1, i.e. every N-th cell in sweep order starting at the i-th; the
 * baseline is evaluated by every share (each needs it for KL) and journaled with it. A share
 * journals into results/<name>/shard-<i>of<N>/.journal (locked as a results directory), and
 * gq_run_merge turns the shares into the results. */
#define GQ_SHARD_DIR_FMT "shard-%dof%d"
static inline bool gq_run_in_shard(int cell, int shard, int n_shards)
{
    return n_shards <= 0 || (cell - 1) % n_shards == shard - 1;
}

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

/* Under mpirun (dist/gq_dist.h), rank 0 runs gq_run_experiment: it alone validates, locks,
 * journals and writes the results; the baseline's windows are split among all ranks (or a
 * resumed baseline sent); then it hands out the cells one at a time, the largest expected cost
 * first (gq_run_cell_cost in run_dist.c), and runs cells itself on a second thread. The other
 * ranks run gq_run_rank_worker, which loads the same experiment and inputs while rank 0
 * validates, waits for rank 0's go (its key must equal rank 0's), takes its part in the
 * baseline, then runs the cells it is given and sends their records back. Its status: 0, the
 * status rank 0 ended with before starting the ranks, 1 when a rank could not load, or -1
 * (err set). */
int gq_run_rank_worker(const char *file, const gq_run_opts *o, gq_error *err);
/* Rank 0: tells the other ranks to stop with `status` when the run ends before they were
 * started (validation failed, the directory is locked); does nothing once they were. */
void gq_run_release_workers(int status);

/* gq-bench merge: the journals of the shards under results_dir (results/<name>) into its own
 * journal, then results.csv, results.h5 and charts (plots_dir, NULL for none) as a single run
 * writes them. experiment_file: the experiment, or NULL for the file named in the shards'
 * journal. Refused (exit 2 territory, nothing written) when a shard belongs to another
 * experiment definition or a cell is missing. */
int gq_run_merge(const char *results_dir, const char *experiment_file, bool plots, FILE *summary,
                 int *usage_error, gq_error *err);

#endif
