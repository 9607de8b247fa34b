/* gq-bench eval: perplexity of a model on a text under a named protocol, optionally with KL
 * divergence and top-1 agreement against a saved baseline. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_decl.h"
#include "cli/cli.h"
#include "cli/cli_act.h"
#include "cli/cli_model.h"
#include "cli/cli_opts.h"
#include "core/gq_sha256.h"
#include "core/gq_threads.h"
#include "dist/gq_dist.h"
#include "eval/gq_eval.h"
#include "gguf/gq_gguf_model.h"
#include "core/gq_time.h"
#include "model/gq_model.h"
#include "qmodel/gq_qmodel.h"
#include "runner/gq_results.h"
#include "text/gq_dataset.h"
#include "text/gq_tokenizer.h"

static const char *CMD = "eval";

typedef struct {
    char model[CLI_PATH_MAX], tokenizer[CLI_PATH_MAX], data[CLI_PATH_MAX];
    char baseline[CLI_PATH_MAX], baseline_model[CLI_PATH_MAX];
    const char *save_baseline, *stream;
    long ctx, max_windows, batch, threads;
    gq_ppl_protocol protocol;
    bool json;
    cli_act_args act;
} eval_args;

static int parse_protocol(void *field, const char *value, gq_error *err)
{
    return gq_ppl_protocol_parse(value, (gq_ppl_protocol *)field, err);
}

/* Returns 0, 1 after --help, or GQ_EXIT_USAGE after printing the error. */
static int parse(int argc, char **argv, eval_args *a)
{
    memset(a, 0, sizeof *a);
    const cli_opt opts[] = {
        CLI_MODEL_OPTS(a->model, a->tokenizer),
        CLI_OPT("data", "D", CLI_ASSET, a->data, "UTF-8 text file", .required = true),
        CLI_OPT("ctx", "N", CLI_INT, &a->ctx,
                "window length, 2..seq_len (4.. for llamacpp; default seq_len)", .min = 2,
                .max = 1 << 20),
        CLI_OPT("protocol", "P", CLI_CALL, &a->protocol, "full or llamacpp", .def = "full",
                .parse = parse_protocol),
        CLI_OPT("max-windows", "K", CLI_INT, &a->max_windows,
                "only the first K windows (default: all)", .min = 1, .max = 0x1p40),
        CLI_OPT("batch", "B", CLI_INT, &a->batch,
                "windows per forward pass (default: automatic)", .min = 1, .max = 4096),
        CLI_OPT("threads", "N", CLI_INT, &a->threads,
                "threads (default: OMP_NUM_THREADS or all cores)", .min = 1, .max = 4096),
        CLI_OPT("json", NULL, CLI_FLAG, &a->json, "print one JSON object instead of text"),
        CLI_OPT("stream", "S", CLI_CHOICE, &a->stream,
                "keep the weights mapped in their stored dtype and convert one block to\n"
                "fp32 at a time, per batch (auto: when the fp32 weights exceed 2 GiB)",
                .def = "auto", .choices = "auto|on|off"),
        CLI_OPT("save-baseline", "F", CLI_OUT, &a->save_baseline,
                "save this model's log-probabilities at the scored positions"),
        CLI_OPT("baseline", "F", CLI_IN, a->baseline,
                "compare with a saved baseline: KL(base||model), top-1\n"
                "agreement, delta-PPL (same data, protocol, ctx, windows)"),
        CLI_OPT("baseline-model", "B", CLI_MODEL, a->baseline_model,
                "compare with checkpoint B instead, run on each batch right\n"
                "before M (paired: the numbers of a saved baseline of B, no storage)"),
        CLI_ACT_OPTS(&a->act),
    };
    const cli_spec spec = {
        .cmd = CMD,
        .about =
            "Perplexity of model M on text D. The text is tokenized once with one BOS at the\n"
            "start and cut into non-overlapping windows of N tokens (default: the model's\n"
            "seq_len; the tail is dropped).\n"
            "  full      every position after the first of each window is scored (N-1 per window)\n"
            "  llamacpp  first token of each window replaced by BOS, only positions N/2..N-2\n"
            "            scored (llama.cpp perplexity)\n"
            "PPL = exp(mean NLL); its error is sqrt(var(NLL)/(n-1)) * PPL.\n"
            "Activation / KV-cache quantizers: the --act-* / --kv-* options (dynamic scales),\n"
            "or M.act.json beside M (written by gq-bench quantize) when it exists.\n"
            "Under mpirun (-np N) the batches of windows are split among the ranks (--threads\n"
            "each); the numbers are those of one process, bit for bit.\n",
        CLI_OPTS(opts)};
    return cli_parse(&spec, argc, argv);
}

static const char *baseline_name(const eval_args *a)
{
    return a->baseline_model[0] ? a->baseline_model : a->baseline;
}

static void print_json(const eval_args *a, const char *model_path, const char *tok_path,
                       const cli_model_prov *prov, const gq_dataset *ds,
                       const gq_eval_result *r, const cli_act *acts)
{
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(model_path));
    json_object_set_new(o, "tokenizer", json_string(tok_path));
    cli_model_prov_json(o, prov);
    json_object_set_new(o, "data", json_string(ds->path));
    json_object_set_new(o, "data_sha256", json_string(ds->sha256));
    json_object_set_new(o, "data_bytes", json_integer((json_int_t)ds->text_bytes));
    json_object_set_new(o, "data_tokens", json_integer((json_int_t)ds->n_tokens));
    json_object_set_new(o, "windows_available",
                        json_integer((json_int_t)gq_dataset_n_windows(ds, r->ctx)));
    json_object_set_new(o, "batch", json_integer(r->batch));
    json_object_set_new(o, "ranks", json_integer(gq_dist_size()));
    if (r->has_baseline)
        json_object_set_new(o, "baseline", json_string(baseline_name(a)));
    /* the evaluation's columns, named as in the runner's results (gq_result_cols) */
    gq_cell_run run = {.eval = r, .threads = r->threads,
                       .act = acts->has_acts ? &acts->acts : NULL,
                       .kv = acts->has_kv ? &acts->kv : NULL};
    if (acts->file[0])
        json_object_set_new(o, "act_file", json_string(acts->file));
    const gq_col_src src = {NULL, NULL, &run};
    gq_result_cols_fill(&src, GQ_RCOL_EVAL, o);
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17)); /* doubles exactly */
    printf("%s\n", s);
    free(s);
    json_decref(o);
}

static void print_text(const eval_args *a, const gq_model *m, const char *model_path,
                       const char *tok_path, const cli_model_prov *prov, const gq_dataset *ds,
                       const gq_eval_result *r, const cli_act *acts)
{
    char act_line[512];
    cli_act_describe(acts, act_line, sizeof act_line);
    int first = r->protocol == GQ_PPL_LLAMACPP ? r->ctx / 2 : 0;
    cli_print_model_lines(m, model_path, tok_path, prov);
    printf("data        %s (%zu bytes, %zu tokens with one BOS)\n", ds->path, ds->text_bytes,
           ds->n_tokens);
    printf("sha256      %s\n", ds->sha256);
    printf("protocol    %s: windows of %d tokens%s, positions %d..%d scored\n",
           gq_ppl_protocol_name(r->protocol), r->ctx,
           r->protocol == GQ_PPL_LLAMACPP ? ", first token set to BOS" : "", first, r->ctx - 2);
    printf("windows     %zu of %zu (batch %d, %d threads)\n", r->windows,
           gq_dataset_n_windows(ds, r->ctx), r->batch, r->threads);
    if (gq_dist_size() > 1)
        printf("ranks       %d (%s): batches split among them, sums in position order\n",
               gq_dist_size(), gq_dist_library());
    printf("blas        %s\n", gq_blas_description());
    if (act_line[0])
        printf("quantizers  %s (fake-quantized, fp32 products)\n", act_line);
    printf("scored      %zu predictions over %zu tokens\n", r->scored, r->tokens);
    printf("mean NLL    %.6f +/- %.6f nats/token\n", r->mean_nll, r->nll_se);
    printf("PPL         %.4f +/- %.4f\n", r->ppl, r->ppl_se);
    if (r->has_baseline) {
        printf("baseline    %s (PPL %.4f, %s)\n", baseline_name(a), r->base_ppl,
               r->reference == GQ_EVAL_REF_MODEL ? "model run on the same batches"
                                                 : "stored log-probabilities");
        printf("delta PPL   %+.4f\n", r->delta_ppl);
        printf("KL          %.6f +/- %.6f nats (base || model)\n", r->kl_mean, r->kl_se);
        printf("top-1       %.3f +/- %.3f %% agreement with the baseline\n", r->top1_pct,
               r->top1_se_pct);
    }
    printf("speed       %.0f tokens/s (%.3f s)\n", r->tokens_per_s, r->seconds);
    printf("memory      peak RSS %.0f MiB; %s\n", (double)gq_peak_rss_bytes() / 1048576.0,
           gq_model_streamed(m) ? "streamed: one block in fp32 at a time, per batch"
                                : "the whole model in fp32");
}

/* What eval reads, loaded: the model with its activation quantizers, the text and the
 * baseline (saved log-probabilities or a second model); and, once run, the baseline to save. */
typedef struct {
    char model_path[CLI_PATH_MAX], tok_path[CLI_PATH_MAX];
    gq_model m, base_model;
    gq_tokenizer *tok;
    gq_dataset ds;
    gq_eval_baseline *base_in, *base_out;
    cli_act acts;
} eval_inputs;

/* Fills `in` (zeroed by the caller); on failure err names the file or option. */
static int load_inputs(const eval_args *a, eval_inputs *in, gq_error *err)
{
    if (a->baseline[0] && a->baseline_model[0])
        return gq_fail(err, "--baseline and --baseline-model are alternatives: give one");
    if (cli_load_model_stream(a->model, a->tokenizer, gq_stream_mode_parse(a->stream), &in->m,
                              &in->tok, in->model_path, in->tok_path, sizeof in->model_path,
                              err) != 0 ||
        cli_act_attach(&a->act, &in->m, in->model_path, &in->acts, err))
        return -1;
    if (a->ctx > in->m.cfg.seq_len)
        return gq_fail(err, "--ctx %ld exceeds the model's seq_len %d (%s)", a->ctx,
                       in->m.cfg.seq_len, in->model_path);
    if (gq_dataset_load(a->data, in->tok, &in->ds, err) != 0 ||
        (a->baseline[0] && gq_eval_baseline_load(a->baseline, &in->base_in, err) != 0) ||
        (a->baseline_model[0] &&
         gq_model_open_any(a->baseline_model, &in->base_model, NULL, err) != 0))
        return -1;
    return 0;
}

static void free_inputs(eval_inputs *in, eval_args *a)
{
    gq_eval_baseline_free(in->base_in);
    gq_eval_baseline_free(in->base_out);
    gq_dataset_free(&in->ds);
    gq_tokenizer_free(in->tok);
    gq_model_free(&in->m);
    gq_model_free(&in->base_model);
    cli_act_free(&in->acts, &a->act);
}

static gq_eval_opts eval_opts(const eval_args *a, const gq_model *m)
{
    gq_eval_opts o = gq_eval_opts_default(a->ctx ? (int)a->ctx : m->cfg.seq_len);
    o.protocol = a->protocol;
    o.max_windows = a->max_windows;
    o.batch = (int)a->batch;
    o.progress = !a->json && gq_dist_rank() == 0;
    o.split = gq_dist_size() > 1; /* under mpirun: windows shared among the ranks */
    return o;
}

/* Rank 0's output: the baseline of --save-baseline, then the report (JSON or text). */
static int report(const eval_args *a, const eval_inputs *in, const gq_eval_result *r,
                  gq_error *err)
{
    if (in->base_out && gq_eval_baseline_save(in->base_out, a->save_baseline, err) != 0)
        return -1;
    cli_model_prov prov;
    if (cli_model_provenance(in->model_path, in->tok_path, &prov, err) != 0)
        return -1;
    if (a->json)
        print_json(a, in->model_path, in->tok_path, &prov, &in->ds, r, &in->acts);
    else
        print_text(a, &in->m, in->model_path, in->tok_path, &prov, &in->ds, r, &in->acts);
    return 0;
}

/* Checks the reference against the windows, evaluates and reports; returns the exit status
 * (GQ_EXIT_USAGE for a reference that does not match, GQ_EXIT_FAIL for a failed run). */
static int evaluate(const eval_args *a, eval_inputs *in, gq_error *err)
{
    gq_eval_reference ref = a->baseline_model[0] ? gq_eval_ref_model(&in->base_model)
                                                 : gq_eval_ref_stored(in->base_in);
    gq_eval_opts o = eval_opts(a, &in->m);
    if (gq_eval_check_ref(&in->m, &in->ds, &o, &ref, err) != 0) {
        if (a->baseline_model[0])
            gq_fail_prefix(err, "--baseline-model %s", a->baseline_model);
        return GQ_EXIT_USAGE;
    }
    gq_eval_result r;
    if (gq_eval_run(&in->m, &in->ds, &o, &ref, a->save_baseline ? &in->base_out : NULL, &r,
                    err) != 0)
        return GQ_EXIT_FAIL;
    if (!isfinite(r.mean_nll)) {
        gq_fail(err, "%s: the mean NLL is not finite (%g): the model produced NaN or infinite "
                     "logits", in->model_path, r.mean_nll);
        return GQ_EXIT_FAIL;
    }
    if (gq_dist_rank() > 0) /* rank 0 alone saves and prints the whole result */
        return GQ_EXIT_OK;
    return report(a, in, &r, err) ? GQ_EXIT_FAIL : GQ_EXIT_OK;
}

int cmd_eval(int argc, char **argv)
{
    eval_args a;
    int p = parse(argc, argv, &a);
    if (p != 0)
        return p == 1 ? GQ_EXIT_OK : p;
    if (a.threads > 0)
        gq_threads_set((int)a.threads);
    gq_error err = {{0}};
    eval_inputs in;
    memset(&in, 0, sizeof in);
    int status = load_inputs(&a, &in, &err) ? GQ_EXIT_USAGE : evaluate(&a, &in, &err);
    if (status != GQ_EXIT_OK)
        cli_report(CMD, &err, status);
    /* under mpirun a failure on some ranks only (out of memory, say) would leave the others
     * waiting in the gather of the split evaluation: end the whole job instead */
    if (status != GQ_EXIT_OK && gq_dist_size() > 1)
        gq_dist_abort(status);
    free_inputs(&in, &a);
    return status;
}
