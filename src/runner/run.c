/* Experiment execution: inputs, baseline, cells (optionally several at once), outputs. */
#include "runner/gq_run.h"

#include <errno.h>
#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "calib/gq_calib.h"
#include "core/gq_fileio.h"
#include "core/gq_log.h"
#include "core/gq_params.h"
#include "core/gq_threads.h"
#include "core/gq_time.h"
#include "dist/gq_dist.h"
#include "eval/gq_eval.h"
#include "gguf/gq_gguf_model.h"
#include "model/gq_stream.h"
#include "runner/gq_coded_model.h"
#include "runner/gq_export.h"
#include "runner/gq_journal.h"
#include "runner/gq_results.h"
#include "runner/run_ctx.h"
#include "runner/runner_internal.h"
#include "text/gq_dataset.h"
#include "text/gq_tokenizer.h"


void gq_run_dirs(const gq_experiment *e, const char *out_dir, char *results, char *plots, size_t n)
{
    const char *d = out_dir && out_dir[0] ? out_dir : ".";
    snprintf(results, n, "%s/results/%s", d, e->name);
    snprintf(plots, n, "%s/plots/%s", d, e->name);
}

/* The KL budget: GQ_KL_BUDGET_BYTES when set (a plain non-negative integer), else 1 GiB. */
static int kl_budget(unsigned long long *out, gq_error *err)
{
    return gq_params_env_count("GQ_KL_BUDGET_BYTES", "a byte count (a non-negative integer)",
                               GQ_KL_BUDGET_DEFAULT, 0, out, err);
}

/* The directory this run journals into: results/<name>, or its shard-<i>of<N> subdirectory. */
static void run_dirs(const gq_experiment *e, const gq_run_opts *o, char *results, char *plots,
                     size_t n)
{
    gq_run_dirs(e, o->out_dir, results, plots, n);
    if (o->n_shards > 0) {
        size_t len = strlen(results);
        snprintf(results + len, n - len, "/" GQ_SHARD_DIR_FMT, o->shard, o->n_shards);
    }
}

int gq_run_lock(const gq_experiment *e, const gq_run_opts *o, gq_error *err)
{
    char results[4096], plots[4096];
    run_dirs(e, o, results, plots, sizeof results);
    return gq_journal_lock(results, err);
}

/* The quantization plan of cell c (its parsed structs, borrowed; no calibration). */
static gq_quant_plan cell_plan(const gq_experiment *e, const gq_cell *c)
{
    gq_quant_plan plan = {0};
    plan.method = c->mc;
    plan.quantizer = c->q;
    plan.rules = e->rules;
    plan.n_rules = e->n_rules;
    plan.propagate = e->methods[c->entry].propagate;
    plan.seed = e->calib.seed;
    return plan;
}

/* Whether cell c is one of --export-gguf's. */
static bool exported(const gq_run_opts *o, const gq_cell *c)
{
    for (int i = 0; i < o->n_export_gguf; i++)
        if (strcmp(o->export_gguf[i], c->id) == 0)
            return true;
    return false;
}

/* Every cell to export exists, is quantized, has a plan GGUF holds and a writable file. */
static int check_exports(const gq_experiment *e, const gq_run_opts *o, const char *results,
                         gq_error *err)
{
    for (int i = 0; i < o->n_export_gguf; i++) {
        const char *id = o->export_gguf[i];
        int k = 1;
        while (k < e->n_cells && strcmp(e->cells[k].id, id) != 0)
            k++;
        if (k == e->n_cells)
            return gq_fail(err, "--export-gguf %s: not a quantized cell of the experiment "
                                "(c001..c%03d; --dry-run lists them)", id, e->n_cells - 1);
        gq_quant_plan plan = cell_plan(e, &e->cells[k]);
        char path[4200];
        snprintf(path, sizeof path, "%s/%s.gguf", results, id);
        if (gq_export_gguf_check(&plan, &e->cfg, err) || gq_check_output(path, err))
            return gq_fail_prefix(err, "--export-gguf %s", id);
    }
    return 0;
}

int gq_run_check(const gq_experiment *e, const gq_run_opts *o, gq_error *err)
{
    char results[4096], plots[4096];
    run_dirs(e, o, results, plots, sizeof results);
    unsigned long long budget;
    /* unusable output directories are found before any work (exit 2) */
    if (gq_check_dir_writable("--out-dir", results, err) ||
        (o->plots && gq_check_dir_writable("--out-dir", plots, err)))
        return -1;
    static const char *const outputs[] = {"results.csv", "results.h5"};
    char path[4200];
    for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", results, outputs[i]);
        if (gq_check_output(path, err))
            return -1;
    }
    snprintf(path, sizeof path, "%s/.journal", results);
    if (gq_check_real_dir(path, err))
        return -1;
    return kl_budget(&budget, err) || check_exports(e, o, results, err) ||
                   gq_journal_check(results, e, o->fresh, err)
               ? -1
               : 0;
}

gq_eval_opts gq_run_eval_opts(const gq_experiment *e, bool baseline)
{
    gq_eval_opts eo = gq_eval_opts_default(e->eval.ctx);
    eo.protocol = (gq_ppl_protocol)e->eval.protocol;
    eo.max_windows = e->eval.max_windows;
    eo.progress = baseline && gq_dist_rank() == 0;
    eo.split = baseline && gq_dist_size() > 1; /* every rank evaluates a share */
    return eo;
}

int gq_run_open_inputs(run_ctx *r, gq_error *err)
{
    const gq_experiment *e = r->e;
    if (gq_runner_model_open_codes(e, &r->fp, &r->fp_codes, err))
        return -1;
    r->have_model = true;
    if (gq_tokenizer_open(e->tokenizer_path, r->fp.cfg.vocab_size, &r->tok, err) ||
        gq_dataset_load(e->eval_path, r->tok, &r->eval_ds, err))
        return -1;
    /* validation checked the texts; a file changed since then is refused here */
    if (strcmp(r->eval_ds.sha256, e->eval_sha256) != 0)
        return gq_fail(err, "%s: changed since the experiment was validated", e->eval_path);
    if (e->has_calib && gq_dataset_load(e->calib_path, r->tok, &r->calib_ds, err))
        return -1;
    if (e->has_calib && strcmp(r->calib_ds.sha256, e->calib_sha256) != 0)
        return gq_fail(err, "%s: changed since the experiment was validated", e->calib_path);
    if (e->calib_first)
        gq_log_info("calibration and evaluation read the same text: calibration windows are "
                    "drawn after the %zu evaluated tokens", e->calib_first);
    return 0;
}

/* secs: the whole cell; tp: its throughput measurement. */
static void cell_done_log(const gq_experiment *e, const gq_cell *c, json_t *rec, double secs,
                          const gq_cell_throughput *tp)
{
    json_t *row = json_object_get(rec, "row");
    char tps[256] = "";
    if (tp->measured)
        snprintf(tps, sizeof tps, ", decode %.0f tok/s, prefill %.0f tok/s (medians %.0f, %.0f; "
                 "%d + %d rounds%s; load %.2f; measured in %.2fs)", tp->decode_tok_s,
                 tp->prefill_tok_s, tp->decode.median, tp->prefill.median, tp->decode.rounds,
                 tp->prefill.rounds, tp->decode.steady && tp->prefill.steady ? "" : ", unsteady",
                 tp->load_avg, tp->seconds);
    gq_log_info("cell %s (%s %s%s%s): ppl %.4f, kl %.5f, top1 %.2f%%, %.3f bpw%s, %.1fs", c->id,
                c->entry < 0 ? e->base_series : e->methods[c->entry].label, c->format_label,
                c->sweep[0] ? ", " : "", c->sweep,
                json_number_value(json_object_get(row, "ppl")),
                json_number_value(json_object_get(row, "kl_div")),
                json_number_value(json_object_get(row, "top1_pct")),
                json_number_value(json_object_get(row, "bpw")), tps, secs);
}

/* Stored or paired KL reference ($.eval.kl_baseline), logged with the sizes it was chosen by. */
static int choose_kl_reference(run_ctx *r, gq_error *err)
{
    gq_eval_opts eo = gq_run_eval_opts(r->e, false);
    size_t bytes = gq_eval_stored_bytes(&r->fp, &r->eval_ds, &eo, err);
    unsigned long long budget;
    if (kl_budget(&budget, err))
        return -1;
    if (bytes == 0)
        return -1;
    if (bytes == SIZE_MAX && r->e->eval.kl_baseline == GQ_KL_STORED)
        return gq_fail(err, "$.eval.kl_baseline: \"stored\" log-probabilities of this evaluation "
                            "would not fit in memory (size overflows); use \"paired\" or \"auto\"");
    char sz[64], bud[64];
    snprintf(sz, sizeof sz, "%zu bytes (%.1f MiB)", bytes, bytes / 1048576.0);
    snprintf(bud, sizeof bud, "%llu bytes (%.1f MiB)", budget, budget / 1048576.0);
    switch ((gq_kl_baseline)r->e->eval.kl_baseline) {
    case GQ_KL_STORED:
        r->paired = false;
        gq_log_info("KL reference: stored baseline log-probabilities, %s ($.eval.kl_baseline "
                    "\"stored\")", sz);
        break;
    case GQ_KL_PAIRED:
        r->paired = true;
        gq_log_info("KL reference: paired, the baseline model reruns beside every cell "
                    "($.eval.kl_baseline \"paired\")");
        break;
    case GQ_KL_AUTO:
        r->paired = bytes > budget;
        if (r->paired)
            gq_log_info("KL reference: paired, the baseline model reruns beside every cell (stored "
                        "log-probabilities would take %s, over the budget of %s)", sz, bud);
        else
            gq_log_info("KL reference: stored baseline log-probabilities, %s (budget %s)", sz,
                        bud);
        break;
    }
    return 0;
}

/* Evaluates the unquantized model; in stored mode keeps its log-probabilities for KL and top-1
 * (also in the journal, so a resumed run reuses them). Paired mode needs only its record. */
static int run_baseline(run_ctx *r, gq_error *err)
{
    char bpath[4200];
    gq_journal_baseline_path(&r->journal, bpath, sizeof bpath);
    bool journaled = gq_journal_has(&r->journal, "baseline");
    if (journaled && r->paired) {
        gq_log_info("baseline: resumed from the journal");
        return gq_run_dist_baseline(r, GQ_DIST_BASE_NONE, err);
    }
    if (journaled && gq_file_exists(bpath)) {
        if (gq_eval_baseline_load(bpath, &r->baseline, err) == 0) {
            gq_log_info("baseline: resumed from %s", bpath);
            return gq_run_dist_baseline(r, GQ_DIST_BASE_SEND, err);
        }
        gq_log_warn("%s; the baseline is evaluated again", err->msg);
        gq_error_clear(err);
    }
    gq_log_info("baseline: evaluating the unquantized model");
    double t0 = gq_now();
    /* throughput first: its decode reads every block of a streamed model, whose pages are
     * dropped again before the stored log-probabilities exist (they never add up) */
    gq_cell_throughput tp;
    if (gq_runner_throughput_loaded(r->e, &r->fp, &r->fp_codes, &tp, err))
        return gq_fail_prefix(err, "baseline");
    gq_model_drop_pages(&r->fp);
    gq_eval_opts eo = gq_run_eval_opts(r->e, true);
    gq_eval_result res;
    if (gq_run_dist_baseline(r, GQ_DIST_BASE_SPLIT, err))
        return -1;
    if (gq_eval_run(&r->fp, &r->eval_ds, &eo, NULL, r->paired ? NULL : &r->baseline, &res, err))
        return gq_fail_prefix(err, "baseline");
    /* log-probs first: a journaled baseline record implies its log-probs exist */
    if (!r->paired && gq_eval_baseline_save(r->baseline, bpath, err))
        return -1;
    gq_cell_run cr = {&res, NULL, gq_threads_get(), (double)gq_peak_rss_bytes() / 1e6, 0,
                      "self", &tp, NULL, NULL};
    json_t *rec = gq_results_record(r->e, &r->e->cells[0], &cr);
    int rc = gq_journal_put(&r->journal, "baseline", rec, err);
    if (rc == 0)
        cell_done_log(r->e, &r->e->cells[0], rec, gq_now() - t0, &tp);
    json_decref(rec);
    return rc;
}

/* (n_calib, calib_ctx) token windows of the calibration text at seeded offsets. */
static int calib_tokens(const run_ctx *r, const gq_cell *c, int **out, gq_error *err)
{
    if (gq_calib_windows(&r->calib_ds, r->e->calib_first, c->n_calib, c->calib_ctx,
                         r->e->calib.seed, out, err))
        return gq_fail_prefix(err, "$.calib");
    return 0;
}

static void stage(run_ctx *r, const gq_cell *c, const char *what)
{
    char label[96];
    snprintf(label, sizeof label, "cells (%s: %s)", c->id, what);
    pthread_mutex_lock(&r->lock);
    gq_progress_stage(&r->progress, label);
    pthread_mutex_unlock(&r->lock);
}

/* The cell's activation / KV-cache quantizers for a model of config cfg, before quantization
 * (methods that train through them see them in the plan). */
static int init_act(const gq_cell *c, const gq_config *cfg, gq_act_model *am, gq_error *err)
{
    if (gq_act_model_init(am, cfg, c->has_act ? &c->act : NULL, c->has_kv ? &c->kv : NULL,
                          err))
        return gq_fail_prefix(err, "activation quantizers");
    return 0;
}

/* Attaches them to the quantized model q, calibrating static scales on the cell's calibration
 * windows (tokens). */
static int attach_act(const gq_cell *c, gq_model *q, const int *tokens, gq_act_model *am,
                      gq_error *err)
{
    if (gq_act_calibrate(am, q, tokens, c->n_calib, c->calib_ctx, err))
        return gq_fail_prefix(err, "activation quantizers");
    q->act = &am->hook;
    return 0;
}

/* Activation quantizers run in the accuracy path only: their cells have no packed kernel. */
static void act_throughput_note(gq_cell_throughput *tp)
{
    memset(tp, 0, sizeof *tp);
    snprintf(tp->note, sizeof tp->note, "activation or KV-cache quantizers: fake-quantized in "
                                        "the accuracy path only, no packed kernel");
}

/* results/<name>/<cell>.gguf of a computed cell. */
static int export_cell(run_ctx *r, const gq_cell *c, const gq_quant_plan *plan,
                       const gq_model *q, const gq_quant_report *rep, gq_error *err)
{
    char results[4096], plots[4096], path[4200], name[512];
    gq_run_dirs(r->e, r->o->out_dir, results, plots, sizeof results);
    snprintf(path, sizeof path, "%s/%s.gguf", results, c->id);
    snprintf(name, sizeof name, "%s %s", r->e->name, c->id);
    const char *ft = r->o->export_float_type ? r->o->export_float_type : "f32";
    if (gq_export_gguf(path, plan, q, rep, r->tok, name, ft, err))
        return -1;
    gq_log_info("%s: exported to %s", c->id, path);
    return 0;
}

/* What a cell computes, released by cell_work_free. */
typedef struct {
    gq_quant_plan plan;   /* the cell's parsed structs, read only; its quantizers outlive cm */
    gq_coded_model cm;    /* the quantized model, held as codes */
    gq_quant_report rep;  /* owns the codes cm reads */
    gq_act_model am;
    int *tokens;          /* calibration windows, or NULL */
    bool acts;            /* activation or KV-cache quantizers */
} cell_work;

static void cell_work_free(cell_work *w)
{
    gq_coded_free(&w->cm);
    gq_act_model_free(&w->am);
    gq_quant_report_free(&w->rep);
    free(w->tokens);
}

/* The resident parts of the cell's coded model (gq_coded_model.h), beside the fp32 size of the
 * model it stands for. */
static void memory_log(const gq_cell *c, const gq_coded_model *cm)
{
    gq_coded_bytes b;
    gq_coded_model_bytes(cm, &b);
    double mb = 1e-6, total = (double)(b.outer + b.codes + b.fp32_lin + b.small + b.transforms);
    gq_log_info("cell %s: quantized model held in %.1f MB (fp32 %.1f MB): %d linears as codes "
                "%.1f MB, %d in fp32 %.1f MB, embeddings/classifier %.1f MB%s, norms/biases "
                "%.2f MB, transforms %.1f MB; a block's coded linears are fp32 only while in use",
                c->id, total * mb, (double)gq_model_fp32_bytes(&cm->model.cfg) * mb, b.n_coded,
                (double)b.codes * mb, b.n_fp32, (double)b.fp32_lin * mb, (double)b.outer * mb,
                b.outer ? "" : " (the source model's)",
                (double)b.small * mb, (double)b.transforms * mb);
}

/* Quantizes the cell into w->cm (block by block through the pipeline's sink) and attaches its
 * activation quantizers. */
static int quantize_cell(run_ctx *r, const gq_cell *c, cell_work *w, gq_error *err)
{
    if (c->needs_calib && calib_tokens(r, c, &w->tokens, err))
        return -1;
    if (gq_method_cfg_needs_calibration(&c->mc)) { /* not when only static scales calibrate */
        w->plan.calib_tokens = w->tokens;
        w->plan.n_calib = c->n_calib;
        w->plan.calib_ctx = c->calib_ctx;
    }
    stage(r, c, "quantize");
    if (w->acts) {
        if (init_act(c, &r->fp.cfg, &w->am, err))
            return -1;
        w->plan.act = &w->am.hook;
    }
    if (gq_coded_init(&w->cm, &w->plan, &r->fp, err))
        return -1;
    w->plan.sink = &w->cm.sink;
    if (gq_quantize_model(&r->fp, &w->plan, NULL, &w->rep, err) ||
        gq_coded_finish(&w->cm, &w->rep, err))
        return -1;
    memory_log(c, &w->cm);
    return w->acts ? attach_act(c, &w->cm.model, w->tokens, &w->am, err) : 0;
}

static int evaluate_cell(run_ctx *r, const gq_cell *c, cell_work *w, gq_eval_result *res,
                         gq_error *err)
{
    stage(r, c, "evaluate");
    gq_eval_opts eo = gq_run_eval_opts(r->e, false);
    eo.split = r->split_cells; /* --split-eval: every rank evaluates a share of this cell */
    gq_eval_reference ref =
        r->paired ? gq_eval_ref_model(&r->fp) : gq_eval_ref_stored(r->baseline);
    return gq_eval_run(&w->cm.model, &r->eval_ds, &eo, &ref, NULL, res, err);
}

/* Throughput on the packed kernels built from the codes; the model is read as a plain one
 * (its coded linears come from the codes, everything else is resident). */
static int cell_throughput(run_ctx *r, const gq_cell *c, cell_work *w, gq_cell_throughput *tp,
                           gq_error *err)
{
    stage(r, c, "throughput");
    *tp = (gq_cell_throughput){.note = "not measured by this rank"};
    if (w->acts) {
        act_throughput_note(tp);
        return 0;
    }
    if (r->split_cells && gq_dist_rank() > 0) /* its record is rank 0's */
        return 0;
    gq_model view = w->cm.model;
    view.blocks = NULL;
    gq_tp_gate_enter_exclusive(&r->gate);
    int rc = gq_runner_throughput(r->e, &view, &w->plan.quantizer, &w->rep, tp, err);
    gq_tp_gate_leave_exclusive(&r->gate);
    return rc;
}

/* The cell's journal record (*out), its GGUF export when asked, the log line. */
static int cell_record(run_ctx *r, const gq_cell *c, cell_work *w, const gq_eval_result *res,
                       const gq_cell_throughput *tp, double t0, json_t **out, gq_error *err)
{
    const gq_experiment *e = r->e;
    gq_cell_run cr = {res, &w->rep, r->threads_per_job, (double)gq_peak_rss_bytes() / 1e6,
                      e->calib_first, gq_eval_ref_kind_name(res->reference), tp,
                      c->has_act ? &c->act : NULL, c->has_kv ? &c->kv : NULL};
    json_t *rec = gq_results_record(e, c, &cr);
    if (!rec)
        return gq_fail(err, "out of memory for the cell's record");
    if (exported(r->o, c) && !(r->split_cells && gq_dist_rank() > 0) &&
        export_cell(r, c, &w->plan, &w->cm.model, &w->rep, err)) {
        json_decref(rec);
        return -1;
    }
    cell_done_log(e, c, rec, gq_now() - t0, tp);
    *out = rec;
    return 0;
}

/* Quantizes and evaluates one cell, then measures its throughput alone (see gq_tp_gate). */
int gq_run_cell(run_ctx *r, const gq_cell *c, json_t **out, gq_error *err)
{
    double t0 = gq_now();
    cell_work w = {.plan = cell_plan(r->e, c), .acts = c->has_act || c->has_kv};
    gq_eval_result res;
    gq_cell_throughput tp;
    gq_tp_gate_enter_shared(&r->gate);
    int rc = quantize_cell(r, c, &w, err) || evaluate_cell(r, c, &w, &res, err) ? -1 : 0;
    gq_tp_gate_leave_shared(&r->gate);
    if (rc == 0)
        rc = cell_throughput(r, c, &w, &tp, err);
    if (rc == 0)
        rc = cell_record(r, c, &w, &res, &tp, t0, out, err);
    if (rc)
        gq_fail_prefix(err, "cell %s (%s %s%s%s)", c->id, r->e->methods[c->entry].label,
                       c->format_label, c->sweep[0] ? ", " : "", c->sweep);
    cell_work_free(&w);
    return rc;
}

void gq_run_cell_failed(run_ctx *r, int k, const char *msg)
{
    r->failed[k] = true;
    r->n_failed++;
    gq_log_warn("%s", msg);
}

/* A worker takes cells from the queue until it is empty. A cell that fails (validation has
 * refused every content error, so a resource: memory, disk, a non-finite result) is logged and
 * the others go on. */
void *gq_run_worker(void *arg)
{
    run_ctx *r = arg;
    omp_set_num_threads(r->threads_per_job);
    for (;;) {
        pthread_mutex_lock(&r->lock);
        int k = r->next >= r->n_todo ? -1 : r->todo[r->next++];
        if (k >= 0 && r->on_take)
            r->on_take(r, k, 0);
        pthread_mutex_unlock(&r->lock);
        if (k < 0)
            return NULL;
        gq_error err = {{0}};
        json_t *rec = NULL;
        double t0 = gq_now();
        int rc = gq_run_cell(r, &r->e->cells[k], &rec, &err) ||
                 gq_journal_put(&r->journal, r->e->cells[k].id, rec, &err);
        json_decref(rec);
        pthread_mutex_lock(&r->lock);
        r->busy_s += gq_now() - t0;
        r->cells_run++;
        if (r->on_take)
            r->on_take(r, k, -1);
        if (rc)
            gq_run_cell_failed(r, k, err.msg);
        else
            gq_progress_add(&r->progress, 1);
        pthread_mutex_unlock(&r->lock);
    }
}

/* "2 of 9 cells failed (c003, c007; messages above); ..." */
static int failed_cells(const run_ctx *r, gq_error *err)
{
    char ids[256] = "";
    for (int i = 1, shown = 0; i < r->e->n_cells; i++)
        if (r->failed[i] && shown++ < 16) {
            size_t len = strlen(ids);
            snprintf(ids + len, sizeof ids - len, "%s%s", len ? ", " : "", r->e->cells[i].id);
        }
    return gq_fail(err, "%d of %d cells failed (%s%s; their messages are above); results hold "
                        "the others, and running the same command again retries the failed "
                        "ones", r->n_failed, r->e->n_cells - 1, ids, r->n_failed > 16 ? ", ..." : "");
}

static int run_cells(run_ctx *r, gq_error *err)
{
    const gq_experiment *e = r->e;
    r->todo = calloc((size_t)e->n_cells, sizeof *r->todo);
    r->failed = calloc((size_t)e->n_cells, sizeof *r->failed);
    if (!r->todo || !r->failed)
        return gq_fail(err, "out of memory for the list of cells");
    int share = 0; /* cells of this shard (all cells without --shard) */
    for (int i = 1; i < e->n_cells; i++) {
        if (!gq_run_in_shard(i, r->o->shard, r->o->n_shards))
            continue;
        share++;
        if (!gq_journal_has(&r->journal, e->cells[i].id) || exported(r->o, &e->cells[i]))
            r->todo[r->n_todo++] = i;
    }
    if (r->o->n_shards > 0)
        gq_log_info("shard %d of %d: %d of the %d cells (c%03d, c%03d, ...: every %d-th in sweep "
                    "order)", r->o->shard, r->o->n_shards, share, e->n_cells - 1, r->o->shard,
                    r->o->shard + r->o->n_shards, r->o->n_shards);
    if (r->n_todo < share)
        gq_log_info("resuming: %d of %d cells already in the journal", share - r->n_todo, share);
    if (gq_dist_size() > 1)
        return gq_run_dist_cells(r, err);
    int jobs = r->o->jobs < 1 ? 1 : r->o->jobs;
    if (jobs > r->n_todo)
        jobs = r->n_todo > 0 ? r->n_todo : 1;
    r->threads_per_job = r->o->threads / jobs > 0 ? r->o->threads / jobs : 1;
    gq_progress_start(&r->progress, "cells", r->n_todo);
    if (jobs == 1) {
        gq_threads_set(r->threads_per_job);
        gq_run_worker(r);
    } else {
        gq_log_info("running %d cells at a time with %d threads each (throughput is measured "
                    "while the other cells wait)", jobs, r->threads_per_job);
        gq_threads_set(r->threads_per_job);
        pthread_t *th = calloc((size_t)jobs, sizeof *th);
        if (!th)
            return gq_fail(err, "out of memory for the %d cell threads", jobs);
        int started = 0; /* a thread that cannot start leaves its cells to the others */
        while (started < jobs && pthread_create(&th[started], NULL, gq_run_worker, r) == 0)
            started++;
        if (started == 0)
            gq_run_worker(r);
        for (int i = 0; i < started; i++)
            pthread_join(th[i], NULL);
        free(th);
    }
    gq_progress_finish(&r->progress);
    return 0;
}

void gq_run_ctx_init(run_ctx *r, const gq_experiment *e, const gq_run_opts *o)
{
    memset(r, 0, sizeof *r);
    r->e = e;
    r->o = o;
    pthread_mutex_init(&r->lock, NULL);
    gq_tp_gate_init(&r->gate);
}

void gq_run_ctx_free(run_ctx *r)
{
    if (r->have_model || r->fp.map || r->fp.heap)
        gq_model_free(&r->fp);
    gq_qcodes_free(&r->fp_codes);
    if (r->tok)
        gq_tokenizer_free(r->tok);
    gq_dataset_free(&r->eval_ds);
    gq_dataset_free(&r->calib_ds);
    if (r->baseline)
        gq_eval_baseline_free(r->baseline);
    free(r->todo);
    free(r->failed);
    pthread_mutex_destroy(&r->lock);
    gq_tp_gate_destroy(&r->gate);
}

/* The outputs of a finished run: results.csv, results.h5 and charts, or for a shard only a
 * note (its journal is merged later by gq-bench merge). */
static int write_outputs(run_ctx *r, const char *results, const char *plots, gq_error *err)
{
    const gq_run_opts *o = r->o;
    if (o->n_shards > 0) {
        gq_log_info("shard %d of %d done: its cells are journaled in %s; after every shard, "
                    "`gq-bench merge %.*s` writes the results", o->shard, o->n_shards, results,
                    (int)(strrchr(results, '/') - results), results);
        return 0;
    }
    return gq_results_write(r->e, &r->journal, r->failed, results, o->plots ? plots : NULL,
                            o->summary, err);
}

int gq_run_experiment(const gq_experiment *e, const gq_run_opts *o, gq_error *err)
{
    run_ctx r;
    gq_run_ctx_init(&r, e, o);
    char results[4096], plots[4096];
    run_dirs(e, o, results, plots, sizeof results);
    int rc = -1;
    gq_threads_set(o->threads);
    if (gq_journal_open(results, e, o->fresh, &r.journal, err))
        goto done;
    if (gq_run_open_inputs(&r, err))
        goto done;
    gq_log_info("%s: %d cells (baseline + %d), results in %s", e->name, e->n_cells,
                e->n_cells - 1, results);
    if (choose_kl_reference(&r, err) || gq_run_dist_start(&r, err) || run_baseline(&r, err) ||
        run_cells(&r, err))
        goto done;
    gq_threads_set(o->threads);
    rc = write_outputs(&r, results, plots, err);
    if (rc == 0 && r.n_failed)
        rc = failed_cells(&r, err);
done:
    gq_run_ctx_free(&r);
    return rc;
}
