#ifndef GQ_RUN_CTX_H
#define GQ_RUN_CTX_H
/* The state of one run, shared by run.c (inputs, baseline, cells, outputs) and run_dist.c (the
 * same cells spread over the ranks of an MPI job). Not part of the runner's interface. */
#include <pthread.h>
#include <stdbool.h>

#include <jansson.h>

#include "core/gq_log.h"
#include "eval/gq_eval.h"
#include "qmodel/gq_qmodel.h"
#include "runner/gq_journal.h"
#include "runner/gq_run.h"
#include "runner/runner_internal.h"
#include "text/gq_dataset.h"
#include "text/gq_tokenizer.h"

/* Everything the cells share, read-only while they run (except the work queue). */
typedef struct run_ctx {
    const gq_experiment *e;
    const gq_run_opts *o;
    gq_journal journal;
    gq_model fp;
    gq_qcodes fp_codes;   /* the codes of a quantized checkpoint (GPTQ, AWQ, native), else empty */
    bool have_model;
    gq_tokenizer *tok;
    gq_dataset eval_ds, calib_ds;
    gq_eval_baseline *baseline; /* stored mode */
    bool paired;                /* paired mode: cells rerun `fp` as their KL reference */
    int threads_per_job;
    gq_tp_gate gate;      /* throughput measurements run while no other cell computes */

    pthread_mutex_t lock; /* guards the fields below */
    int *todo;            /* cell indices still to run */
    int n_todo, next, done;
    bool *failed;         /* per cell: failed at run time (the others go on) */
    int n_failed;
    gq_progress progress;
    double busy_s;        /* seconds this process spent in cells (rank utilisation) */
    int cells_run;        /* cells this process ran */
    void (*on_take)(struct run_ctx *r, int cell, int rank); /* a cell handed out (run_dist.c) */
    bool split_cells;     /* --split-eval: all ranks run each cell, its windows split */
} run_ctx;

void gq_run_ctx_init(run_ctx *r, const gq_experiment *e, const gq_run_opts *o);
void gq_run_ctx_free(run_ctx *r);
/* Loads the model, tokenizer and texts (checked against the hashes validation saw). */
int gq_run_open_inputs(run_ctx *r, gq_error *err);
/* Quantizes and evaluates cell c; *rec: its journal record (new reference). */
int gq_run_cell(run_ctx *r, const gq_cell *c, json_t **rec, gq_error *err);
/* Takes cells from r->todo until it is empty, journaling each record (a pthread body). */
void *gq_run_worker(void *arg);
/* Marks cell k failed and logs its message (r->lock held by the caller). */
void gq_run_cell_failed(run_ctx *r, int k, const char *msg);

/* Evaluation options of the run: the baseline's (progress shown; under mpirun its windows
 * split among the ranks) or a cell's. */
gq_eval_opts gq_run_eval_opts(const gq_experiment *e, bool baseline);

/* run_dist.c: expected cost of a cell in model tokens, for handing out the largest first. */
double gq_run_cell_cost(const gq_experiment *e, const gq_cell *c, bool paired);
/* run_dist.c, rank 0 of an MPI job (each returns 0 at once in a single process): starts the
 * other ranks (KL mode and key), which load the experiment and inputs; fails when one cannot. */
int gq_run_dist_start(run_ctx *r, gq_error *err);
/* How the ranks get the baseline: nothing (paired, resumed), the stored log-probabilities
 * rank 0 resumed (sent), or every rank evaluates a share of the windows (split) and, stored,
 * ends up with all of them. */
typedef enum { GQ_DIST_BASE_NONE, GQ_DIST_BASE_SEND, GQ_DIST_BASE_SPLIT } gq_dist_base;
int gq_run_dist_baseline(run_ctx *r, gq_dist_base how, gq_error *err);
/* run_dist.c, rank 0: runs r->todo over every rank (its own cells on a thread), or with
 * o->split_eval every cell on all ranks together. */
int gq_run_dist_cells(run_ctx *r, gq_error *err);

#endif
