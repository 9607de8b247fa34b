/* The cells of a run spread over the ranks of an MPI job (gq_run.h). Rank 0 keeps the queue,
 * the journal and the outputs; messages (dist/gq_dist.h):
 *   go          rank 0 -> all (broadcast): start (with the KL mode and the experiment's key)
 *               or stop with an exit status
 *   joined      all -> all (gather): int32 per rank, 0 when it loaded the experiment and inputs
 *   baseline    rank 0 -> all (broadcast): how the baseline reaches the ranks (gq_dist_base),
 *               then the stored log-probabilities (send) or every rank's share of the windows
 *               (split: the evaluation's own gather)
 *   READY       worker -> 0: wants a cell (its first message)
 *   CELL        0 -> worker: int32 cell index, -1: no cells left
 *   DONE        worker -> 0: int32 cell, int32 ok, double seconds, then the record as JSON
 *               (%.17g reals: it reads back to the same doubles) or the error message
 * With --split-eval there are no cell messages: rank 0 broadcasts the list of cells, every
 * rank runs each in turn (its evaluation split) and waits for rank 0's broadcast that it is
 * journaled.
 * Records are journaled by rank 0 as they arrive, so a job that ends early (a rank killed)
 * keeps every finished cell; the cells in flight are named on stderr when the job is ended. */
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gq_threads.h"
#include "core/gq_time.h"
#include "dist/gq_dist.h"
#include "eval/eval_baseline.h"
#include "runner/run_ctx.h"

enum { TAG_READY = 1, TAG_CELL, TAG_DONE };

typedef struct go_msg {
    int32_t go;     /* 1: cells follow; 0: stop with `status` */
    int32_t status;
    int32_t paired;
    int32_t reserved;
    char key[72];
} go_msg;

typedef struct base_msg {
    int32_t how;    /* gq_dist_base */
    int32_t reserved;
    uint64_t bytes; /* GQ_DIST_BASE_SEND: the baseline block's size */
} base_msg;

/* Rank 0's view of the other ranks: not yet started, started (they wait for collective steps
 * or cells: a failure of rank 0 now must end the job), or told that no cell is left. */
static enum { RANKS_IDLE, RANKS_STARTED, RANKS_DONE } ranks_state;

/* ---- the cells in flight, named when the job is ended (SIGTERM from mpirun) ---- */

static int *rank_of;          /* per cell: the rank running it, -1 none (rank 0 only) */
static char lost_msg[2][2048]; /* the message for the current state, double-buffered */
static volatile sig_atomic_t lost_cur = -1;

static void on_end_signal(int sig)
{
    int i = lost_cur;
    if (i >= 0) {
        ssize_t w = write(STDERR_FILENO, lost_msg[i], strlen(lost_msg[i]));
        (void)w;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void watch_end_signals(void)
{
    signal(SIGTERM, on_end_signal);
    signal(SIGINT, on_end_signal);
}

/* Rewrites the message into the buffer not in use, then switches to it. */
static void set_lost_msg(const char *text)
{
    int next = lost_cur == 0 ? 1 : 0;
    snprintf(lost_msg[next], sizeof lost_msg[next], "%s", text);
    lost_cur = next;
}

/* on_take hook of rank 0 (r->lock held): cell k went to `rank`, or finished (rank -1). */
static void track_cell(run_ctx *r, int k, int rank)
{
    rank_of[k] = rank;
    char text[2048];
    int n = snprintf(text, sizeof text, "gq-bench run: the MPI job ended while these cells were "
                                        "running: ");
    int shown = 0;
    for (int i = 1; i < r->e->n_cells && n < (int)sizeof text - 64; i++)
        if (rank_of[i] >= 0)
            n += snprintf(text + n, sizeof text - (size_t)n, "%s%s (rank %d)", shown++ ? ", " : "",
                          r->e->cells[i].id, rank_of[i]);
    snprintf(text + n, sizeof text - (size_t)n,
             "%s; they are lost. Every finished cell is in the journal: the same command (any "
             "number of ranks) runs only the missing ones.\n", shown ? "" : "none");
    set_lost_msg(text);
}

static void name_lost_cell(const gq_cell *c);

/* ---- the cost model ---- */

static double method_param(const gq_cell *c, const char *name)
{
    json_t *v = json_object_get(c->method, name);
    return json_is_number(v) ? json_number_value(v) : 0.0;
}

/* Model tokens a cell runs: its evaluation (twice when paired) plus its calibration windows
 * times a method factor: 2 (capture and statistics) + n_grid (AWQ/PRAQ: each grid point reruns
 * the inspected module) + 3 x epochs (AffineQuant: forward and backward per epoch), taking
 * n_grid and epochs from the method's parameters when it has them. Quantization proper,
 * throughput and every other term are the same for all cells of a model and left out. */
double gq_run_cell_cost(const gq_experiment *e, const gq_cell *c, bool paired)
{
    double eval = (double)e->eval_windows * e->eval.ctx * (paired ? 2 : 1);
    if (!c->needs_calib)
        return eval;
    double factor = 2 + method_param(c, "n_grid") + 3 * method_param(c, "epochs");
    return eval + (double)c->n_calib * c->calib_ctx * factor;
}

static const run_ctx *sort_ctx;

static int by_cost(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    const gq_experiment *e = sort_ctx->e;
    double ci = gq_run_cell_cost(e, &e->cells[i], sort_ctx->paired);
    double cj = gq_run_cell_cost(e, &e->cells[j], sort_ctx->paired);
    return ci > cj ? -1 : ci < cj ? 1 : (i > j) - (i < j); /* ties: sweep order */
}

/* ---- rank 0 ---- */

static int send_go(const go_msg *g, gq_error *err)
{
    go_msg copy = *g;
    return gq_dist_bcast(&copy, sizeof copy, err);
}

void gq_run_release_workers(int status)
{
    if (gq_dist_size() < 2 || gq_dist_rank() != 0)
        return;
    if (ranks_state == RANKS_STARTED) /* they wait in a collective step or for a cell */
        gq_dist_abort(status ? status : 1);
    if (ranks_state != RANKS_IDLE)
        return;
    ranks_state = RANKS_DONE;
    go_msg g = {.go = 0, .status = status};
    gq_error err = {{0}};
    if (send_go(&g, &err))
        gq_log_warn("%s", err.msg);
}

/* Every rank's status (0: ready) to every rank; the first rank that is not ready, or -1. */
static int exchange_status(int32_t mine, gq_error *err)
{
    int n = gq_dist_size();
    int32_t *all = calloc((size_t)n, sizeof *all);
    size_t *first = malloc(((size_t)n + 1) * sizeof *first);
    int bad = -1;
    if (!all || !first) {
        free(all);
        free(first);
        gq_fail(err, "out of memory for the status of %d ranks", n);
        return -2;
    }
    for (int i = 0; i <= n; i++)
        first[i] = (size_t)i;
    all[gq_dist_rank()] = mine;
    if (gq_dist_allgather(all, sizeof *all, first, err))
        bad = -2;
    for (int i = 0; bad == -1 && i < n; i++)
        if (all[i])
            bad = i;
    free(all);
    free(first);
    return bad;
}

int gq_run_dist_start(run_ctx *r, gq_error *err)
{
    if (gq_dist_size() < 2)
        return 0;
    ranks_state = RANKS_STARTED;
    go_msg g = {.go = 1, .paired = r->paired};
    snprintf(g.key, sizeof g.key, "%s", r->e->key);
    if (send_go(&g, err))
        return -1;
    int bad = exchange_status(0, err);
    if (bad == -2)
        return -1;
    if (bad >= 0) {
        ranks_state = RANKS_DONE; /* they stop after the failed exchange */
        return gq_fail(err, "rank %d could not load the experiment or its inputs (its message "
                            "is above); every rank needs the same files", bad);
    }
    return 0;
}

int gq_run_dist_baseline(run_ctx *r, gq_dist_base how, gq_error *err)
{
    if (gq_dist_size() < 2)
        return 0;
    base_msg b = {.how = (int32_t)how};
    if (how == GQ_DIST_BASE_SEND)
        b.bytes = r->baseline->bytes;
    if (gq_dist_bcast(&b, sizeof b, err))
        return -1;
    if (how == GQ_DIST_BASE_SPLIT)
        gq_log_info("baseline: its windows are split among the %d ranks", gq_dist_size());
    if (how != GQ_DIST_BASE_SEND)
        return 0;
    gq_log_info("sending the baseline's log-probabilities (%.1f MiB) to %d ranks",
                r->baseline->bytes / 1048576.0, gq_dist_size() - 1);
    return gq_dist_bcast(r->baseline->hdr, r->baseline->bytes, err);
}

/* The next cell for `rank` (-1: none left), sent to it; *active drops when it is told to stop. */
static int hand_out(run_ctx *r, int rank, int *active, gq_error *err)
{
    pthread_mutex_lock(&r->lock);
    int32_t k = r->next >= r->n_todo ? -1 : r->todo[r->next++];
    if (k >= 0)
        track_cell(r, k, rank);
    pthread_mutex_unlock(&r->lock);
    if (k < 0)
        (*active)--;
    return gq_dist_send(rank, TAG_CELL, &k, sizeof k, err);
}

typedef struct rank_use {
    double busy;
    int cells;
} rank_use;

/* A DONE message: journal the record, or note the failure. */
static void cell_done(run_ctx *r, const gq_dist_msg *m, rank_use *use)
{
    int32_t k, ok;
    double secs;
    size_t head = 2 * sizeof(int32_t) + sizeof(double);
    if (m->n < head)
        return;
    memcpy(&k, m->data, sizeof k);
    memcpy(&ok, m->data + sizeof k, sizeof ok);
    memcpy(&secs, m->data + 2 * sizeof k, sizeof secs);
    if (k < 1 || k >= r->e->n_cells)
        return;
    const char *text = m->data + head;
    gq_error err = {{0}};
    json_error_t je;
    json_t *rec = ok ? json_loads(text, JSON_REJECT_DUPLICATES, &je) : NULL;
    if (ok && !rec)
        gq_fail(&err, "cell %s: rank %d sent a record that is not JSON", r->e->cells[k].id,
                m->from);
    int rc = rec ? gq_journal_put(&r->journal, r->e->cells[k].id, rec, &err) : -1;
    json_decref(rec);
    pthread_mutex_lock(&r->lock);
    track_cell(r, k, -1);
    use[m->from].busy += secs;
    use[m->from].cells++;
    if (rc)
        gq_run_cell_failed(r, k, ok ? err.msg : text);
    else
        gq_progress_add(&r->progress, 1);
    pthread_mutex_unlock(&r->lock);
}

/* "rank utilisation: rank 0 97% (4 cells), rank 1 95% (5 cells)" over the cell phase. */
static void log_utilisation(const rank_use *use, int n, double wall, int cells)
{
    char text[4096];
    int len = snprintf(text, sizeof text, "MPI: %d ranks ran %d cells in %.2f s; rank "
                                          "utilisation (time in cells / that wall time):", n,
                       cells, wall);
    for (int i = 0; i < n && len < (int)sizeof text - 48; i++)
        len += snprintf(text + len, sizeof text - (size_t)len, " rank %d %.0f%% (%d cells)%s", i,
                        wall > 0 ? 100.0 * use[i].busy / wall : 0.0, use[i].cells,
                        i + 1 < n ? "," : "");
    gq_log_info("%s", text);
}

/* Serves the other ranks until each has been told that no cell is left. */
static int serve(run_ctx *r, rank_use *use, gq_error *err)
{
    int active = gq_dist_size() - 1;
    while (active > 0) {
        gq_dist_msg m;
        if (gq_dist_recv(&m, err))
            return -1;
        int rc = 0;
        if (m.tag == TAG_DONE)
            cell_done(r, &m, use);
        if (m.tag == TAG_READY || m.tag == TAG_DONE)
            rc = hand_out(r, m.from, &active, err);
        free(m.data);
        if (rc)
            return -1;
    }
    return 0;
}

/* The cells in sweep order, each run by every rank together (--split-eval): quantized by each
 * (the same result everywhere), evaluated with its windows split, journaled by rank 0. */
static int run_together(run_ctx *r, gq_error *err)
{
    int32_t n = r->n_todo;
    if (gq_dist_bcast(&n, sizeof n, err))
        return -1;
    int *todo = gq_dist_rank() == 0 ? r->todo : calloc(n > 0 ? (size_t)n : 1, sizeof *todo);
    if (!todo)
        return gq_fail(err, "out of memory for %d cells", (int)n);
    int rc = gq_dist_bcast(todo, (size_t)n * sizeof *todo, err);
    r->split_cells = true;
    r->threads_per_job = r->o->threads;
    if (gq_dist_rank() == 0)
        gq_progress_start(&r->progress, "cells", n);
    for (int i = 0; rc == 0 && i < n; i++) {
        const gq_cell *c = &r->e->cells[todo[i]];
        gq_error cerr = {{0}};
        json_t *rec = NULL;
        name_lost_cell(c);
        int32_t failed = gq_run_cell(r, c, &rec, &cerr) ||
                         (gq_dist_rank() == 0 && gq_journal_put(&r->journal, c->id, rec, &cerr));
        json_decref(rec);
        /* the others wait here while rank 0 measures the throughput and journals */
        rc = gq_dist_bcast(&failed, sizeof failed, err);
        if (gq_dist_rank() > 0 || rc)
            continue;
        if (failed)
            gq_run_cell_failed(r, todo[i], cerr.msg);
        else
            gq_progress_add(&r->progress, 1);
    }
    set_lost_msg("");
    if (gq_dist_rank() == 0)
        gq_progress_finish(&r->progress);
    else
        free(todo);
    return rc;
}

int gq_run_dist_cells(run_ctx *r, gq_error *err)
{
    if (r->o->split_eval) {
        gq_log_info("MPI: %d cells one after another, each on all %d ranks with its evaluation "
                    "windows split among them (--split-eval)", r->n_todo, gq_dist_size());
        int rc = run_together(r, err);
        if (rc == 0)
            ranks_state = RANKS_DONE;
        return rc;
    }
    int n = gq_dist_size();
    rank_use *use = calloc((size_t)n, sizeof *use);
    rank_of = malloc((size_t)r->e->n_cells * sizeof *rank_of);
    if (!use || !rank_of) {
        free(use);
        return gq_fail(err, "out of memory for %d ranks", n);
    }
    for (int i = 0; i < r->e->n_cells; i++)
        rank_of[i] = -1;
    sort_ctx = r;
    qsort(r->todo, (size_t)r->n_todo, sizeof *r->todo, by_cost);
    gq_log_info("MPI: %d cells over %d ranks with %d threads each, the largest expected cost "
                "first", r->n_todo, n, r->o->threads);
    r->threads_per_job = r->o->threads;
    r->on_take = track_cell;
    pthread_mutex_lock(&r->lock);
    track_cell(r, 0, -1);
    pthread_mutex_unlock(&r->lock);
    watch_end_signals();
    gq_progress_start(&r->progress, "cells", r->n_todo);
    double t0 = gq_now();
    pthread_t local;
    bool threaded = pthread_create(&local, NULL, gq_run_worker, r) == 0;
    int rc = serve(r, use, err);
    if (rc == 0)
        ranks_state = RANKS_DONE;
    if (!threaded) /* rank 0 runs its share after the others got theirs */
        gq_run_worker(r);
    else
        pthread_join(local, NULL);
    gq_progress_finish(&r->progress);
    use[0].busy = r->busy_s;
    use[0].cells = r->cells_run;
    log_utilisation(use, n, gq_now() - t0, r->n_todo);
    free(use);
    r->on_take = NULL;
    free(rank_of);
    rank_of = NULL;
    return rc;
}

/* ---- the other ranks ---- */

/* The message this rank prints when the job is ended while it runs cell c. */
static void name_lost_cell(const gq_cell *c)
{
    char text[512];
    snprintf(text, sizeof text, "gq-bench run (rank %d): the MPI job ended while this rank was "
             "running cell %s; it is lost (the finished cells are in the journal).\n",
             gq_dist_rank(), c->id);
    set_lost_msg(text);
}

/* Runs the cells rank 0 sends until it sends -1. */
static int work(run_ctx *r, gq_error *err)
{
    if (gq_dist_send(0, TAG_READY, "", 0, err))
        return -1;
    for (;;) {
        gq_dist_msg m;
        if (gq_dist_recv(&m, err))
            return -1;
        int32_t k = -1;
        if (m.tag == TAG_CELL && m.n == sizeof k)
            memcpy(&k, m.data, sizeof k);
        free(m.data);
        if (k < 1 || k >= r->e->n_cells)
            return 0;
        const gq_cell *c = &r->e->cells[k];
        name_lost_cell(c);
        double t0 = gq_now();
        json_t *rec = NULL;
        gq_error cerr = {{0}};
        int32_t ok = gq_run_cell(r, c, &rec, &cerr) == 0;
        char *body = ok ? json_dumps(rec, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
        json_decref(rec);
        ok = ok && body;
        if (!ok && !cerr.msg[0])
            snprintf(cerr.msg, sizeof cerr.msg, "cell %s: out of memory for its record", c->id);
        double secs = gq_now() - t0;
        const char *payload = ok ? body : cerr.msg;
        size_t head = 2 * sizeof(int32_t) + sizeof secs, len = strlen(payload);
        char *msg = malloc(head + len);
        int rc = -1;
        if (msg) {
            memcpy(msg, &k, sizeof k);
            memcpy(msg + sizeof k, &ok, sizeof ok);
            memcpy(msg + 2 * sizeof k, &secs, sizeof secs);
            memcpy(msg + head, payload, len);
            rc = gq_dist_send(0, TAG_DONE, msg, head + len, err);
        } else
            gq_fail(err, "out of memory for the message of cell %s", c->id);
        free(msg);
        free(body);
        set_lost_msg("");
        if (rc)
            return -1;
    }
}

/* The experiment of a worker rank, checked against rank 0's. */
static int join_run(run_ctx *r, const go_msg *g, gq_error *err)
{
    if (strcmp(r->e->key, g->key) != 0)
        return gq_fail(err, "this rank reads another experiment definition than rank 0 (its "
                            "files differ: the ranks need the same files, e.g. a shared file "
                            "system)");
    r->paired = g->paired != 0;
    r->threads_per_job = r->o->threads;
    gq_threads_set(r->o->threads);
    return 0;
}

/* The baseline as rank 0 says: nothing, its stored log-probabilities, or this rank's share of
 * the baseline's evaluation (which leaves the whole stored baseline on every rank). */
static int receive_baseline(run_ctx *r, gq_error *err)
{
    base_msg b;
    if (gq_dist_bcast(&b, sizeof b, err))
        return -1;
    if (b.how == GQ_DIST_BASE_SPLIT) {
        gq_eval_opts eo = gq_run_eval_opts(r->e, true);
        gq_eval_result res;
        if (gq_eval_run(&r->fp, &r->eval_ds, &eo, NULL, r->paired ? NULL : &r->baseline, &res,
                        err))
            return gq_fail_prefix(err, "baseline");
        return 0;
    }
    if (b.how != GQ_DIST_BASE_SEND)
        return 0;
    char *block = malloc(b.bytes ? b.bytes : 1);
    if (!block)
        return gq_fail(err, "out of memory for the baseline (%llu bytes)",
                       (unsigned long long)b.bytes);
    if (gq_dist_bcast(block, b.bytes, err)) {
        free(block);
        return -1;
    }
    return gq_eval_baseline_adopt(block, b.bytes, "the baseline from rank 0", &r->baseline, err);
}

/* Loads the experiment and its inputs while rank 0 validates; rank 0 reports a refused
 * experiment, so this rank's own error is kept for later. */
static bool prepare(const char *file, gq_experiment *e, run_ctx *r, gq_error *err)
{
    memset(e, 0, sizeof *e);
    bool loaded = gq_experiment_load(file, e, err) == 0;
    gq_run_ctx_init(r, e, r->o);
    if (loaded)
        gq_run_open_inputs(r, err);
    return loaded;
}

int gq_run_rank_worker(const char *file, const gq_run_opts *o, gq_error *err)
{
    gq_experiment e;
    run_ctx r = {.o = o};
    bool loaded = prepare(file, &e, &r, err);
    go_msg g;
    int rc = gq_dist_bcast(&g, sizeof g, err);
    if (rc || !g.go) {
        gq_run_ctx_free(&r);
        if (loaded)
            gq_experiment_free(&e);
        return rc ? -1 : g.status;
    }
    rc = err->msg[0] ? -1 : join_run(&r, &g, err);
    if (rc)
        fprintf(stderr, "gq-bench run (rank %d): %s\n", gq_dist_rank(), err->msg);
    int bad = exchange_status(rc ? 1 : 0, err);
    if (bad == -1) {
        watch_end_signals();
        if (receive_baseline(&r, err) || (o->split_eval ? run_together(&r, err) : work(&r, err))) {
            /* rank 0 and the others wait for this rank in a collective step or for its cell */
            fprintf(stderr, "gq-bench run (rank %d): %s\n", gq_dist_rank(), err->msg);
            gq_dist_abort(1);
        }
    }
    rc = bad == -1 ? 0 : 1; /* a rank that could not load: rank 0 says which, and stops */
    gq_run_ctx_free(&r);
    if (loaded)
        gq_experiment_free(&e);
    return rc;
}
