#ifndef GQ_RUN_H
#define GQ_RUN_H
/* Running an experiment: the baseline, then every cell not yet in the journal, then the
 * result files written from the journal.
 *
 * Outputs go to <out_dir>/results/<name>/ (results.csv, results.h5, .journal/) and
 * <out_dir>/plots/<name>/ (PNG charts). Cells run in order, or `jobs` at a time on threads
 * with `threads / jobs` OpenMP/BLAS threads each; a cell's numbers depend only on the
 * experiment and that per-cell thread count. */
#include <stdbool.h>
#include <stdio.h>

#include "core/gq_error.h"
#include "runner/gq_experiment.h"

typedef struct gq_run_opts {
    const char *out_dir; /* "." by default */
    int threads;         /* total threads (> 0) */
    int jobs;            /* cells side by side (>= 1) */
    bool fresh;          /* discard a journal of a different experiment definition */
    bool plots;          /* draw charts (skipped with a message when gnuplot is missing) */
    FILE *summary;       /* where the summary table goes (stdout), NULL for none */
} gq_run_opts;

/* Directories of an experiment's outputs. */
void gq_run_dirs(const gq_experiment *e, const char *out_dir, char *results, char *plots, size_t n);

/* Fails before doing any work when the journal belongs to another definition (and !fresh). */
int gq_run_check(const gq_experiment *e, const gq_run_opts *o, gq_error *err);

int gq_run_experiment(const gq_experiment *e, const gq_run_opts *o, gq_error *err);

#endif
