/* The result columns: one table names every column of the journal record, results.csv, the
 * /results dataset of results.h5 and (the evaluation's own columns) `gq-bench eval --json`.
 * Each entry computes its value from the experiment, the cell and the cell's run; NULL leaves
 * the column empty (a non-finite number is never written as one). */
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gq_version.h"
#include "core/gq_threads.h"
#include "runner/gq_results.h"
#include "runner/runner_internal.h"

static json_t *real(double v) { return isfinite(v) ? json_real(v) : NULL; }
static json_t *integer(long long v) { return json_integer(v); }
static json_t *text(const char *v) { return v && v[0] ? json_string(v) : NULL; }

/* An experiment's cell (not `gq-bench eval`) */
#define CELL(s) ((s)->e && (s)->c)
/* A quantized cell: its method entry and report */
#define QUANT(s) (CELL(s) && (s)->c->entry >= 0)
#define EV(s) ((s)->r->eval)

/* Evaluation measurements, valid for any evaluated model. */
#define EVAL_REAL(fn, expr) static json_t *fn(const gq_col_src *s) { return real(expr); }
#define EVAL_INT(fn, expr) static json_t *fn(const gq_col_src *s) { return integer((long long)(expr)); }
EVAL_REAL(v_ppl, EV(s)->ppl)
EVAL_REAL(v_ppl_stderr, EV(s)->ppl_se)
EVAL_REAL(v_mean_nll, EV(s)->mean_nll)
EVAL_REAL(v_nll_stderr, EV(s)->nll_se)
EVAL_REAL(v_t_eval, EV(s)->seconds)
EVAL_REAL(v_eval_tok_s, EV(s)->tokens_per_s)
EVAL_INT(v_ctx, EV(s)->ctx)
EVAL_INT(v_eval_windows, EV(s)->windows)
EVAL_INT(v_eval_tokens, EV(s)->tokens)
EVAL_INT(v_scored, EV(s)->scored)
EVAL_INT(v_threads, s->r->threads)

static json_t *v_protocol(const gq_col_src *s) { return text(gq_ppl_protocol_name(EV(s)->protocol)); }

/* Comparisons with the baseline; the baseline row against itself by definition (0 / 100). */
static json_t *vs_base(const gq_col_src *s, double v, double self)
{
    if (EV(s)->has_baseline)
        return real(v);
    return CELL(s) && s->c->entry < 0 ? json_real(self) : NULL;
}
static json_t *v_base_ppl(const gq_col_src *s) { return vs_base(s, EV(s)->base_ppl, EV(s)->ppl); }
static json_t *v_delta_ppl(const gq_col_src *s) { return vs_base(s, EV(s)->delta_ppl, 0.0); }
static json_t *v_kl_div(const gq_col_src *s) { return vs_base(s, EV(s)->kl_mean, 0.0); }
static json_t *v_kl_stderr(const gq_col_src *s) { return vs_base(s, EV(s)->kl_se, 0.0); }
static json_t *v_top1_pct(const gq_col_src *s) { return vs_base(s, EV(s)->top1_pct, 100.0); }
static json_t *v_top1_stderr(const gq_col_src *s) { return vs_base(s, EV(s)->top1_se_pct, 0.0); }
static json_t *v_kl_reference(const gq_col_src *s)
{
    if (s->r->kl_reference)
        return text(s->r->kl_reference);
    return EV(s)->has_baseline ? text(gq_eval_ref_kind_name(EV(s)->reference)) : NULL;
}

/* The cell and its experiment. */
static json_t *v_experiment(const gq_col_src *s) { return CELL(s) ? text(s->e->name) : NULL; }
static json_t *v_cell(const gq_col_src *s) { return CELL(s) ? text(s->c->id) : NULL; }
static json_t *v_series(const gq_col_src *s)
{
    return !CELL(s) ? NULL : text(QUANT(s) ? s->e->methods[s->c->entry].label : s->e->base_series);
}
static json_t *v_model(const gq_col_src *s) { return CELL(s) ? text(s->e->model_label) : NULL; }
static json_t *v_method(const gq_col_src *s) { return CELL(s) ? text(s->c->method_name) : NULL; }
static json_t *v_format(const gq_col_src *s) { return CELL(s) ? text(s->c->format_label) : NULL; }
static json_t *v_sweep(const gq_col_src *s) { return CELL(s) ? text(s->c->sweep) : NULL; }
static json_t *v_bits(const gq_col_src *s)
{
    if (!QUANT(s))
        return NULL;
    json_t *b = json_object_get(s->c->axes, "bits");
    if (!b)
        b = json_object_get(s->c->format, "bits");
    return json_is_integer(b) ? json_incref(b) : NULL;
}
/* The effective group width: the format's groups on a wide row; empty per channel/tensor. */
static json_t *v_group_size(const gq_col_src *s)
{
    if (!QUANT(s))
        return NULL;
    const gq_quantizer *q = &s->c->q;
    const int wide = 1 << 16;
    int g = q->fmt->group_cols ? q->fmt->group_cols(q->params, wide) : 0;
    return g > 0 && g < wide ? integer(g) : NULL;
}
static json_t *dumps(const json_t *j)
{
    char *t = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_t *v = text(t);
    free(t);
    return v;
}
static json_t *v_method_params(const gq_col_src *s) { return QUANT(s) ? dumps(s->c->method) : NULL; }
static json_t *v_format_params(const gq_col_src *s) { return QUANT(s) ? dumps(s->c->format) : NULL; }
static json_t *v_propagate(const gq_col_src *s)
{
    static const char *const props[] = {"default", "fp", "quantized"};
    return QUANT(s) ? text(props[s->e->methods[s->c->entry].propagate]) : NULL;
}

/* Activation and KV-cache quantizers (act/gq_act.h), of the section's default spec. */
static json_t *act_text(const gq_act_cfg *a, void (*fn)(const gq_act_spec *, char *, size_t))
{
    char buf[128];
    if (!a)
        return NULL;
    fn(&a->def, buf, sizeof buf);
    return text(buf);
}
static void kv_format(const gq_act_spec *s, char *buf, size_t n)
{
    char f[96], g[32];
    gq_act_spec_format(s, f, sizeof f);
    gq_act_spec_granularity(s, g, sizeof g);
    snprintf(buf, n, "%s %s", f, g);
}
static json_t *v_a_bits(const gq_col_src *s)
{
    return s->r->act ? integer(gq_act_spec_bits(&s->r->act->def)) : NULL;
}
static json_t *v_a_format(const gq_col_src *s) { return act_text(s->r->act, gq_act_spec_format); }
static json_t *v_a_granularity(const gq_col_src *s)
{
    return act_text(s->r->act, gq_act_spec_granularity);
}
static json_t *v_a_scales(const gq_col_src *s) { return act_text(s->r->act, gq_act_spec_scales); }
static json_t *v_kv_bits(const gq_col_src *s)
{
    return s->r->kv ? integer(gq_act_spec_bits(&s->r->kv->def)) : NULL;
}
static json_t *v_kv_format(const gq_col_src *s) { return act_text(s->r->kv, kv_format); }

/* Sizes and stage times: the quantization report, or the baseline's (experiment.h). */
#define REP(s) ((s)->r->report)
static json_t *v_bpw(const gq_col_src *s)
{
    if (!CELL(s))
        return NULL;
    if (!REP(s))
        return json_real(s->e->base_bpw);
    return REP(s)->linear_weights
               ? real(8.0 * (double)REP(s)->linear_bytes / (double)REP(s)->linear_weights)
               : NULL;
}
static json_t *v_linear_bytes(const gq_col_src *s)
{
    if (!CELL(s))
        return NULL;
    return integer((long long)(REP(s) ? REP(s)->linear_bytes : s->e->base_linear_bytes));
}
static json_t *v_model_bytes(const gq_col_src *s)
{
    if (!CELL(s))
        return NULL;
    return integer((long long)(REP(s) ? REP(s)->model_bytes
                                      : gq_model_param_count(&s->e->cfg) * 4 -
                                            gq_runner_fp32_linear_bytes(&s->e->cfg) +
                                            s->e->base_linear_bytes));
}
static int quantized_count(const gq_quant_report *q)
{
    int n = 0;
    for (int i = 0; i < q->n_tensors; i++)
        n += q->tensors[i].quantized;
    return n;
}
static json_t *v_quantized_tensors(const gq_col_src *s)
{
    return !CELL(s) ? NULL : integer(REP(s) ? quantized_count(REP(s)) : 0);
}
static json_t *v_fp_tensors(const gq_col_src *s)
{
    if (!CELL(s))
        return NULL;
    return integer(REP(s) ? REP(s)->n_tensors - quantized_count(REP(s))
                          : GQ_N_LINEAR * s->e->cfg.n_layers);
}
static json_t *v_t_stats(const gq_col_src *s) { return CELL(s) ? real(REP(s) ? REP(s)->t_stats : 0) : NULL; }
static json_t *v_t_search(const gq_col_src *s) { return CELL(s) ? real(REP(s) ? REP(s)->t_search : 0) : NULL; }
static json_t *v_t_quant(const gq_col_src *s) { return CELL(s) ? real(REP(s) ? REP(s)->t_quant : 0) : NULL; }
static json_t *v_peak_rss(const gq_col_src *s) { return CELL(s) ? real(s->r->peak_rss_mb) : NULL; }

/* Throughput: measured, or a note why not (never an estimate). */
#define TP(s) ((s)->r->tp)
static json_t *v_decode(const gq_col_src *s) { return TP(s) && TP(s)->measured ? real(TP(s)->decode_tok_s) : NULL; }
static json_t *v_prefill(const gq_col_src *s) { return TP(s) && TP(s)->measured ? real(TP(s)->prefill_tok_s) : NULL; }
#define MEASURED(s) (TP(s) && TP(s)->measured)
static json_t *v_decode_median(const gq_col_src *s) { return MEASURED(s) ? real(TP(s)->decode.median) : NULL; }
static json_t *v_decode_min(const gq_col_src *s) { return MEASURED(s) ? real(TP(s)->decode.min) : NULL; }
static json_t *v_decode_rounds(const gq_col_src *s) { return MEASURED(s) ? integer(TP(s)->decode.rounds) : NULL; }
static json_t *v_prefill_median(const gq_col_src *s) { return MEASURED(s) ? real(TP(s)->prefill.median) : NULL; }
static json_t *v_prefill_min(const gq_col_src *s) { return MEASURED(s) ? real(TP(s)->prefill.min) : NULL; }
static json_t *v_prefill_rounds(const gq_col_src *s) { return MEASURED(s) ? integer(TP(s)->prefill.rounds) : NULL; }
static json_t *v_steady(const gq_col_src *s)
{
    return MEASURED(s) ? integer(TP(s)->decode.steady && TP(s)->prefill.steady) : NULL;
}
static json_t *v_load_avg(const gq_col_src *s)
{
    return MEASURED(s) && TP(s)->load_avg >= 0 ? real(TP(s)->load_avg) : NULL;
}
static json_t *v_packed_bytes(const gq_col_src *s)
{
    return TP(s) && TP(s)->measured ? integer((long long)TP(s)->packed_bytes) : NULL;
}
static json_t *v_throughput_note(const gq_col_src *s)
{
    if (!CELL(s) || (TP(s) && TP(s)->measured))
        return NULL;
    return text(TP(s) ? TP(s)->note : "not measured");
}

/* Inputs and provenance. */
static json_t *base_name(const char *path)
{
    char *b = strdup(path);
    json_t *v = b ? text(basename(b)) : NULL;
    free(b);
    return v;
}
#define CALIB(s) (CELL(s) && (s)->c->needs_calib)
static json_t *v_tokenizer(const gq_col_src *s) { return CELL(s) ? base_name(s->e->tokenizer_path) : NULL; }
static json_t *v_eval_text(const gq_col_src *s) { return CELL(s) ? base_name(s->e->eval_path) : NULL; }
static json_t *v_eval_sha256(const gq_col_src *s) { return CELL(s) ? text(s->e->eval_sha256) : NULL; }
static json_t *v_calib_text(const gq_col_src *s) { return CALIB(s) ? base_name(s->e->calib_path) : NULL; }
static json_t *v_calib_sha256(const gq_col_src *s) { return CALIB(s) ? text(s->e->calib_sha256) : NULL; }
static json_t *v_n_calib(const gq_col_src *s) { return CALIB(s) ? integer(s->c->n_calib) : NULL; }
static json_t *v_calib_ctx(const gq_col_src *s) { return CALIB(s) ? integer(s->c->calib_ctx) : NULL; }
static json_t *v_calib_first(const gq_col_src *s)
{
    return CALIB(s) ? integer((long long)s->r->calib_first) : NULL;
}
static json_t *v_seed(const gq_col_src *s) { return CELL(s) ? integer((long long)s->e->calib.seed) : NULL; }
static json_t *v_config_sha256(const gq_col_src *s) { return CELL(s) ? text(s->e->config_sha256) : NULL; }
static json_t *v_model_sha256(const gq_col_src *s)
{
    return !CELL(s) ? NULL : text(s->e->model_sha256[0] ? s->e->model_sha256 : "synthetic");
}
static json_t *v_tokenizer_sha256(const gq_col_src *s) { return CELL(s) ? text(s->e->tokenizer_sha256) : NULL; }
static json_t *v_model_path(const gq_col_src *s)
{
    return !CELL(s) ? NULL : text(s->e->model_path[0] ? s->e->model_path : "synthetic");
}
static json_t *v_model_config_sha256(const gq_col_src *s)
{
    return CELL(s) ? text(s->e->model_config_sha256) : NULL;
}
static json_t *v_version(const gq_col_src *s) { (void)s; return text(GQ_VERSION); }
static json_t *v_revision(const gq_col_src *s) { (void)s; return text(GQ_VCS_REVISION); }
static json_t *v_blas_kernel(const gq_col_src *s) { (void)s; return text(gq_blas_kernel()); }
static json_t *v_blas(const gq_col_src *s) { (void)s; return text(gq_blas_description()); }

#define T GQ_COL_TEXT
#define I GQ_COL_INT
#define R GQ_COL_REAL
#define E GQ_RCOL_EVAL
#define A GQ_RCOL_AXES_AFTER
const gq_result_col gq_result_cols[] = {
    {"experiment", T, 0, v_experiment},       {"cell", T, 0, v_cell},
    {"series", T, 0, v_series},               {"model", T, 0, v_model},
    {"method", T, 0, v_method},               {"format", T, 0, v_format},
    {"sweep", T, 0, v_sweep},                 {"bits", I, 0, v_bits},
    {"group_size", I, A, v_group_size},       {"method_params", T, 0, v_method_params},
    {"format_params", T, 0, v_format_params}, {"propagate", T, 0, v_propagate},
    {"a_bits", I, E, v_a_bits},               {"a_format", T, E, v_a_format},
    {"a_granularity", T, E, v_a_granularity}, {"a_scales", T, E, v_a_scales},
    {"kv_bits", I, E, v_kv_bits},             {"kv_format", T, E, v_kv_format},
    {"ppl", R, E, v_ppl},                     {"ppl_stderr", R, E, v_ppl_stderr},
    {"delta_ppl", R, E, v_delta_ppl},         {"kl_div", R, E, v_kl_div},
    {"kl_stderr", R, E, v_kl_stderr},         {"top1_pct", R, E, v_top1_pct},
    {"top1_stderr_pct", R, E, v_top1_stderr}, {"base_ppl", R, E, v_base_ppl},
    {"mean_nll", R, E, v_mean_nll},           {"nll_stderr", R, E, v_nll_stderr},
    {"bpw", R, 0, v_bpw},                     {"linear_bytes", I, 0, v_linear_bytes},
    {"model_bytes", I, 0, v_model_bytes},     {"quantized_tensors", I, 0, v_quantized_tensors},
    {"fp_tensors", I, 0, v_fp_tensors},       {"t_stats", R, 0, v_t_stats},
    {"t_search", R, 0, v_t_search},           {"t_quant", R, 0, v_t_quant},
    {"t_eval", R, E, v_t_eval},               {"eval_tok_s", R, E, v_eval_tok_s},
    {"peak_rss_mb", R, 0, v_peak_rss},        {"threads", I, E, v_threads},
    {"decode_tok_s", R, 0, v_decode},         {"prefill_tok_s", R, 0, v_prefill},
    {"decode_tok_s_median", R, 0, v_decode_median}, {"decode_tok_s_min", R, 0, v_decode_min},
    {"decode_rounds", I, 0, v_decode_rounds}, {"prefill_tok_s_median", R, 0, v_prefill_median},
    {"prefill_tok_s_min", R, 0, v_prefill_min}, {"prefill_rounds", I, 0, v_prefill_rounds},
    {"throughput_steady", I, 0, v_steady},    {"load_avg", R, 0, v_load_avg},
    {"packed_bytes", I, 0, v_packed_bytes},   {"throughput_note", T, 0, v_throughput_note},
    {"protocol", T, E, v_protocol},           {"ctx", I, E, v_ctx},
    {"eval_windows", I, E, v_eval_windows},   {"eval_tokens", I, E, v_eval_tokens},
    {"scored", I, E, v_scored},               {"kl_reference", T, E, v_kl_reference},
    {"tokenizer", T, 0, v_tokenizer},         {"eval_text", T, 0, v_eval_text},
    {"eval_sha256", T, 0, v_eval_sha256},     {"calib_text", T, 0, v_calib_text},
    {"calib_sha256", T, 0, v_calib_sha256},   {"n_calib", I, 0, v_n_calib},
    {"calib_ctx", I, 0, v_calib_ctx},         {"calib_first_token", I, 0, v_calib_first},
    {"seed", I, 0, v_seed},                   {"config_sha256", T, 0, v_config_sha256},
    {"model_sha256", T, 0, v_model_sha256},   {"tokenizer_sha256", T, 0, v_tokenizer_sha256},
    {"model_path", T, 0, v_model_path},       {"model_config_sha256", T, 0, v_model_config_sha256},
    {"version", T, E, v_version},             {"revision", T, E, v_revision},
    {"blas_kernel", T, E, v_blas_kernel},     {"blas", T, E, v_blas},
    {NULL, T, 0, NULL}};

void gq_result_cols_fill(const gq_col_src *s, unsigned scope, json_t *row)
{
    for (const gq_result_col *c = gq_result_cols; c->name; c++) {
        if ((c->scope & scope) != scope)
            continue;
        json_t *v = c->value(s);
        if (v)
            json_object_set_new(row, c->name, v);
    }
}
