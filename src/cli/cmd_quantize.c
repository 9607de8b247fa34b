/* gq-bench quantize: one method + format applied to a whole model through the layer-wise
 * pipeline (methods/gq_method.h); writes the quantized model in gq-bench's native format
 * (codes, scales, transforms: lossless, qmodel/gq_qmodel.h) or, with --out-format, the
 * fake-quantized model (reconstructions in fp32) as a llama2.c checkpoint or HF directory,
 * and prints the per-tensor report. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calib/gq_calib.h"
#include "cli/cmd_decl.h"
#include "cli/cli.h"
#include "cli/cli_act.h"
#include "cli/cli_model.h"
#include "cli/cli_stages.h"
#include "cli/cli_opts.h"
#include "cli/cli_quantize.h"
#include "core/gq_assets.h"
#include "core/gq_fileio.h"
#include "core/gq_log.h"
#include "core/gq_threads.h"
#include "core/gq_time.h"
#include "methods/gq_pipeline.h"
#include "model/gq_hf.h"
#include "model/gq_hf_stream.h"
#include "model/gq_model.h"
#include "qmodel/gq_qmodel_save.h"
#include "gq_version.h"
#include "text/gq_dataset.h"
#include "text/gq_tokenizer.h"

static const char *CMD = "quantize";

typedef struct {
    char model[CLI_PATH_MAX], tokenizer[CLI_PATH_MAX], calib[CLI_PATH_MAX];
    const char *method, *format, *out, *propagate, *out_format, *dtype, *stream;
    json_t *fmt_params, *method_params;
    cli_list rules;
    long n_calib, calib_ctx, eval_windows, eval_ctx, threads, stop_after;
    uint64_t seed;
    bool json;
    cli_act_args act;
    const char *container, *float_type; /* export writers only */
    const cli_quantize_writer *writer;  /* NULL: quantize's own outputs (--out-format) */
} q_args;

static const char quantize_about[] =
    "Quantizes every linear layer of every block with the method and format (the\n"
    "format's parameters by --set, the method's by --method-set; see gq-bench list).\n"
    "Embeddings, norms and the classifier stay fp32 unless a rule names them.\n";

static const char quantize_epilog[] =
    "Output: Q is the native file (safetensors: each quantized tensor's codes as its\n"
    "format stored them, the rest fp32, JSON metadata naming method, format,\n"
    "calibration and provenance); --model Q loads it bit for bit. With --out-format\n"
    "llama2c|hf it holds the reconstructions in fp32 (fake quantization). The report\n"
    "gives per tensor: format, bits per weight, the relative reconstruction error\n"
    "||WX - QX||^2 / ||WX||^2 on the calibration inputs of that layer (X from the\n"
    "method's FP block, W the weights handed to the format), and method metrics.\n"
    "With --act-* / --kv-* options, Q.act.json beside it holds the activation\n"
    "and KV-cache settings and the static scales calibrated on the calibration\n"
    "windows; eval and generate apply them to Q (a Q.act.json left by an\n"
    "earlier run without them is removed).\n";

/* The option table, in help order: the model, the method and the formats. */
static int model_opts(q_args *a, cli_opt *o)
{
    const cli_quantize_writer *w = a->writer;
    const cli_opt rows[] = {
        CLI_MODEL_OPTS(a->model, a->tokenizer),
        CLI_OPT("method", "NAME", CLI_STR, &a->method,
                "rtn, gptq, awq, praq, affinequant, or a chain such as smoothquant,rtn "
                "(gq-bench list methods)", .required = true),
        CLI_OPT(w ? "quant" : "format", "NAME", CLI_STR, &a->format,
                "a registered format (gq-bench list formats)", .required = true),
        CLI_OPT("set", "k=v", CLI_CALL, &a->fmt_params, "a format parameter, e.g. --set bits=3",
                .parse = cli_set_param, .repeat = true),
        CLI_OPT("method-set", "k=v", CLI_CALL, &a->method_params,
                "a method parameter, e.g. --method-set act_order=true", .parse = cli_set_param,
                .repeat = true),
        CLI_OPT("rule", "P=F", CLI_LIST, &a->rules,
                "tensors matching the glob P (\"layers.*.attn.*\", \"classifier\")\n"
                "use format F, a JSON object {\"name\": ..., params} or \"fp\";\n"
                "the first matching rule wins", .max = CLI_LIST_MAX),
    };
    memcpy(o, rows, sizeof rows);
    return (int)(sizeof rows / sizeof rows[0]);
}

/* ... the calibration windows, the evaluation they avoid, propagation, threads. */
static int calib_opts(q_args *a, cli_opt *o)
{
    const cli_opt rows[] = {
        CLI_OPT("calib-data", "D", CLI_ASSET, a->calib,
                "calibration text (default: TinyStories validation text for\n"
                "models whose path names \"stories\", WikiText-2 test otherwise)\n"
                "(loaded for every method: RTN reports errors on it too)"),
        CLI_OPT("n-calib", "N", CLI_INT, &a->n_calib,
                "calibration windows, drawn with --seed (0: none, for a method\n"
                "that needs none, e.g. rtn: no text is read and the report has\n"
                "no reconstruction errors)",
                .def = "16", .min = 0, .max = 1 << 20),
        CLI_OPT("calib-ctx", "L", CLI_INT, &a->calib_ctx,
                "tokens per window (default: min(256, the model's seq_len))", .min = 2,
                .max = 1 << 20),
        CLI_OPT("seed", "S", CLI_SEED, &a->seed, "seed of the calibration window offsets",
                .def = "0"),
        CLI_OPT("eval-windows", "K", CLI_INT, &a->eval_windows,
                "the windows `gq-bench eval --max-windows K` will score on the\n"
                "calibration text: calibration windows are drawn after them\n"
                "(required with the default --calib-data, the evaluation text)",
                .min = 1, .max = 1 << 30),
        CLI_OPT("eval-ctx", "L", CLI_INT, &a->eval_ctx,
                "window length of that evaluation (default: the model's seq_len,\n"
                "as eval's)", .min = 2, .max = 1 << 20),
        CLI_OPT("propagate", "P", CLI_CHOICE, &a->propagate,
                "fp or quantized: which block's outputs feed the next block\n"
                "(default: the method's reference choice)", .choices = "fp|quantized"),
        CLI_OPT("threads", "N", CLI_INT, &a->threads,
                "threads (default: OMP_NUM_THREADS or all cores)", .min = 1, .max = 4096),
    };
    memcpy(o, rows, sizeof rows);
    return (int)(sizeof rows / sizeof rows[0]);
}

/* ... the output and the report. */
static int output_opts(q_args *a, cli_opt *o)
{
    const cli_quantize_writer *w = a->writer;
    const cli_opt rows[] = {
        CLI_OPT("out", w ? w->out_meta : "Q", CLI_STR, &a->out,
                "output file (a directory with --out-format hf), written atomically\n"
                "(checked writable first; methods that leave explicit transforms\n"
                "are refused except by the native format)", .required = true),
        CLI_OPT("json", NULL, CLI_FLAG, &a->json, "print the report as one JSON object"),
        CLI_ACT_OPTS(&a->act),
        CLI_OPT("stream", "S", CLI_CHOICE, &a->stream,
                "keep the model mapped in its stored dtype, one block in fp32 at a time\n"
                "(auto: when its fp32 weights exceed 2 GiB; export writers always load\n"
                "it whole); with --out-format hf each block is written as it is done",
                .def = "auto", .choices = "auto|on|off"),
        CLI_OPT("stop-after-blocks", "N", CLI_INT, &a->stop_after,
                "benchmark of a large model: quantize blocks 0..N-1 only, print their\n"
                "report and times, write nothing (--out is still checked)", .min = 1,
                .max = 1 << 20),
    };
    memcpy(o, rows, sizeof rows);
    return (int)(sizeof rows / sizeof rows[0]);
}

/* ... then quantize's own output formats, */
static int quantize_only_opts(q_args *a, cli_opt *o)
{
    const cli_opt rows[] = {
        CLI_OPT("out-format", "F", CLI_CHOICE, &a->out_format,
                "native (codes, scales, zero points, permutations and\n"
                "transforms: lossless; --model loads it), llama2c (fp32\n"
                "fake-quant checkpoint) or hf (config.json with a\n"
                "quantization_config + fp model.safetensors)", .def = "native",
                .choices = "native|llama2c|hf"),
        CLI_OPT("dtype", "D", CLI_CHOICE, &a->dtype,
                "safetensors dtype of --out-format hf", .def = "f32", .choices = "f32|f16|bf16"),
    };
    memcpy(o, rows, sizeof rows);
    return (int)(sizeof rows / sizeof rows[0]);
}

/* ... or an export writer's. */
static int writer_opts(q_args *a, cli_opt *o)
{
    const cli_opt rows[] = {
        CLI_OPT("format", "F", CLI_STR, &a->container, "the exported file's format",
                .required = true),
        CLI_OPT("float-type", "T", CLI_CHOICE, &a->float_type,
                "how unquantized matrices are stored", .def = "f32",
                .choices = "f32|f16|bf16"),
    };
    memcpy(o, rows, sizeof rows);
    return (int)(sizeof rows / sizeof rows[0]);
}

static int parse(int argc, char **argv, q_args *a)
{
    cli_opt opts[48]; /* 33 rows today, for quantize and for a writer */
    int n = model_opts(a, opts);
    n += calib_opts(a, opts + n);
    n += output_opts(a, opts + n);
    n += a->writer ? writer_opts(a, opts + n) : quantize_only_opts(a, opts + n);
    cli_spec spec = {
        .cmd = a->writer ? a->writer->cmd : CMD,
        .about = quantize_about,
        .opts = opts,
        .n_opts = n,
        .epilog = a->writer ? a->writer->about : quantize_epilog};
    return cli_parse(&spec, argc, argv);
}

/* "PATTERN=FORMATJSON|fp" */
static int parse_rule(const char *text, int idx, gq_tensor_rule *r, gq_error *err)
{
    memset(r, 0, sizeof *r);
    const char *eq = strchr(text, '=');
    if (!eq || eq == text)
        return gq_fail(err, "--rule '%s': expected PATTERN=FORMATJSON or PATTERN=fp", text);
    if (!(r->pattern = strndup(text, (size_t)(eq - text))))
        return gq_fail(err, "--rule '%s': out of memory", text);
    const char *spec = eq + 1;
    if (strcmp(spec, "fp") == 0 || strcmp(spec, "\"fp\"") == 0) {
        r->keep_fp = true;
        return 0;
    }
    json_error_t je;
    json_t *j = json_loads(spec, JSON_DECODE_ANY, &je);
    if (!j)
        return gq_fail(err, "--rule '%s': format is not JSON (%s) nor \"fp\"", text, je.text);
    char path[64];
    snprintf(path, sizeof path, "--rule[%d]", idx);
    int rc = gq_quantizer_from_json(j, path, &r->quantizer, err);
    json_decref(j);
    return rc;
}

static void print_report(const gq_quant_report *r, const char *label)
{
    printf("%-29s %-22s %7s %12s  %s\n", "tensor", "format", "bpw", "recon_err", "method metrics");
    for (int i = 0; i < r->n_tensors; i++) {
        const gq_tensor_report *t = &r->tensors[i];
        char *extra = t->extra ? json_dumps(t->extra, JSON_COMPACT | JSON_REAL_PRECISION(4)) : NULL;
        double bpw = 8.0 * (double)t->bytes / ((double)t->rows * t->cols);
        if (isnan(t->recon_err))
            printf("%-29s %-22s %7.3f %12s  %s\n", t->name, t->format, bpw, "-", extra ? extra : "");
        else
            printf("%-29s %-22s %7.3f %12.4e  %s\n", t->name, t->format, bpw, t->recon_err,
                   extra ? extra : "");
        free(extra);
    }
    printf("\nquantized linears: %zu weights, %zu bytes, %.4f bpw (%s)\n", r->linear_weights,
           r->linear_bytes, r->linear_weights ? 8.0 * (double)r->linear_bytes / r->linear_weights : 0.0,
           label);
    printf("model size: %zu bytes (quantized tensors as stored, the rest fp32)\n", r->model_bytes);
    printf("stage times: statistics %.3f s, search %.3f s, quantization %.3f s\n", r->t_stats,
           r->t_search, r->t_quant);
    size_t nn = json_array_size(r->notes);
    for (size_t i = 0; i < nn; i++)
        printf("note: %s\n", json_string_value(json_array_get(r->notes, i)));
}

/* Which block outputs feed the next block under plan p ("fp" / "quantized"). */
static const char *propagate_name(const gq_quant_plan *p)
{
    gq_propagate g = p->propagate == GQ_PROPAGATE_METHOD_DEFAULT ? p->method.method->propagate
                                                                 : p->propagate;
    return g == GQ_PROPAGATE_FP ? "fp" : "quantized";
}

static json_t *report_json(const gq_quant_report *r, const gq_quant_plan *p, const char *model,
                           const char *tokenizer, const gq_dataset *calib, size_t calib_first,
                           const size_t *offsets, const char *out)
{
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(model));
    json_object_set_new(o, "tokenizer", json_string(tokenizer));
    json_object_set_new(o, "method", gq_method_cfg_to_json(&p->method));
    json_object_set_new(o, "format", gq_quantizer_to_json(&p->quantizer));
    json_object_set_new(o, "propagate", json_string(propagate_name(p)));
    json_object_set_new(o, "threads", json_integer(gq_threads_get()));
    json_object_set_new(o, "blas", json_string(gq_blas_description()));
    json_object_set_new(o, "blas_kernel", json_string(gq_blas_kernel()));
    json_object_set_new(o, "calib_data", calib ? json_string(calib->path) : json_null());
    json_object_set_new(o, "calib_sha256", calib ? json_string(calib->sha256) : json_null());
    json_object_set_new(o, "n_calib", json_integer(calib ? p->n_calib : 0));
    json_object_set_new(o, "calib_ctx", json_integer(calib ? p->calib_ctx : 0));
    json_object_set_new(o, "calib_first_token", json_integer((json_int_t)calib_first));
    json_t *offs = json_array();
    for (int i = 0; calib && i < p->n_calib; i++)
        json_array_append_new(offs, json_integer((json_int_t)offsets[i]));
    json_object_set_new(o, "calib_offsets", offs);
    if (p->seed <= (uint64_t)INT64_MAX)
        json_object_set_new(o, "seed", json_integer((json_int_t)p->seed));
    else { /* beyond JSON integers (int64): the exact decimal as a string */
        char seed[24];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)p->seed);
        json_object_set_new(o, "seed", json_string(seed));
    }
    json_object_set_new(o, "out", json_string(out));
    json_t *ts = json_array();
    for (int i = 0; i < r->n_tensors; i++) {
        const gq_tensor_report *t = &r->tensors[i];
        json_t *e = json_object();
        json_object_set_new(e, "name", json_string(t->name));
        json_object_set_new(e, "format", json_string(t->format));
        json_object_set_new(e, "rows", json_integer(t->rows));
        json_object_set_new(e, "cols", json_integer(t->cols));
        json_object_set_new(e, "quantized", json_boolean(t->quantized));
        json_object_set_new(e, "bytes", json_integer((json_int_t)t->bytes));
        json_object_set_new(e, "recon_err", isnan(t->recon_err) ? json_null() : json_real(t->recon_err));
        if (t->extra)
            json_object_set(e, "metrics", t->extra);
        json_array_append_new(ts, e);
    }
    json_object_set_new(o, "tensors", ts);
    json_object_set_new(o, "linear_weights", json_integer((json_int_t)r->linear_weights));
    json_object_set_new(o, "linear_bytes", json_integer((json_int_t)r->linear_bytes));
    json_object_set_new(o, "model_bytes", json_integer((json_int_t)r->model_bytes));
    json_object_set_new(o, "t_stats", json_real(r->t_stats));
    json_object_set_new(o, "t_search", json_real(r->t_search));
    json_object_set_new(o, "t_quant", json_real(r->t_quant));
    json_object_set(o, "notes", r->notes);
    return o;
}

/* The activation settings quantize calibrated (text line or JSON keys). */
static void print_act(const cli_act *acts, const char *file, json_t *o)
{
    if (o) {
        json_object_set(o, "activations", acts->has_acts ? acts->acts.canonical : json_null());
        json_object_set(o, "kv_cache", acts->has_kv ? acts->kv.canonical : json_null());
        json_object_set_new(o, "act_file", acts->has_acts || acts->has_kv ? json_string(file)
                                                                          : json_null());
        return;
    }
    char line[512];
    cli_act_describe(acts, line, sizeof line);
    if (line[0])
        printf("activation  %s; saved to %s\n", line, file);
}

/* The calibration windows of a run: where they may start and where they start. */
typedef struct calib_choice {
    char path[CLI_PATH_MAX];
    size_t first;    /* tokens held out before the windows: the evaluated ones */
    size_t *offsets; /* n_calib window starts */
    int *tokens;     /* (n_calib, calib_ctx) token ids */
} calib_choice;

#define GQ_EXIT_USAGE_PRINTED (-2) /* a usage error already printed */

/* Calibration text and windows under the runner's rule: windows are drawn after the windows
 * `eval` scores when the text is the evaluation text (the default), and that needs to know
 * how many (--eval-windows). Returns GQ_EXIT_FAIL when loaded (the status of later errors),
 * GQ_EXIT_USAGE with err set, or GQ_EXIT_USAGE_PRINTED. */
static int load_calibration(const q_args *a, const char *model_path, const gq_model *m,
                            const gq_tokenizer *tok, gq_dataset *ds, calib_choice *cal,
                            gq_quant_plan *plan, gq_error *err)
{
    const char *text = a->calib[0] ? a->calib
                       : strstr(model_path, "stories") ? "text/tinystories/tinystories_val.txt"
                                                       : "text/wikitext-2-raw/wiki.test.raw";
    int ctx = (int)(a->calib_ctx ? a->calib_ctx : (m->cfg.seq_len < 256 ? m->cfg.seq_len : 256));
    if (ctx > m->cfg.seq_len) {
        cli_usage_error(a->writer ? a->writer->cmd : CMD, "--calib-ctx %d exceeds the model's seq_len %d", ctx, m->cfg.seq_len);
        return GQ_EXIT_USAGE_PRINTED;
    }
    int eval_ctx = (int)(a->eval_ctx ? a->eval_ctx : m->cfg.seq_len);
    cal->first = (size_t)a->eval_windows * (size_t)eval_ctx;
    if (gq_asset_resolve(text, cal->path, sizeof cal->path, err) ||
        gq_dataset_load(cal->path, tok, ds, err))
        return GQ_EXIT_USAGE;
    if (gq_dataset_calib_offsets(ds, cal->first, (int)a->n_calib, ctx, plan->seed, &cal->offsets,
                                 err) ||
        gq_calib_windows(ds, cal->first, (int)a->n_calib, ctx, plan->seed, &cal->tokens, err)) {
        gq_fail_prefix(err, "--calib-data %s (after %zu held-out tokens)", text, cal->first);
        return GQ_EXIT_USAGE;
    }
    plan->calib_tokens = cal->tokens;
    plan->n_calib = (int)a->n_calib;
    plan->calib_ctx = ctx;
    gq_log_info("calibration: %ld windows x %d tokens from %s, drawn after token %zu (seed %llu)",
                a->n_calib, ctx, cal->path, cal->first, (unsigned long long)a->seed);
    return GQ_EXIT_FAIL;
}

/* "calibration 4 windows x 32 tokens at tokens 2017, 5190, ... of F (after the ...)" */
static void print_calibration(const gq_quant_plan *plan, const calib_choice *cal,
                              const gq_dataset *ds, uint64_t seed)
{
    printf("calibration %d windows x %d tokens at seeded offsets (seed %llu) from %s\n"
           "            (sha256 %s), starting at tokens", plan->n_calib, plan->calib_ctx,
           (unsigned long long)seed, cal->path, ds->sha256);
    for (int i = 0; i < plan->n_calib && i < 8; i++)
        printf("%s %zu", i ? "," : "", cal->offsets[i]);
    printf("%s\n            (held out: the first %zu tokens, the evaluated windows)\n",
           plan->n_calib > 8 ? ", ..." : "", cal->first);
}

static bool native_out(const q_args *a)
{
    return !a->writer && (!a->out_format || strcmp(a->out_format, "native") == 0);
}

/* The quantization plan from the options: method, format, override rules (*n_rules of them
 * parsed, for the caller to free), seed and propagation. */
static int build_plan(const q_args *a, gq_quant_plan *plan, gq_tensor_rule *rules, int *n_rules,
                      gq_error *err)
{
    /* An unknown name is the --method/--format value's fault, an unknown key --set's. */
    if (gq_method_cfg_init(&plan->method, a->method, a->method_params,
                           gq_method_find(a->method) ? "--method-set" : "--method", err) ||
        gq_quantizer_init(&plan->quantizer, a->format, a->fmt_params,
                          gq_format_find(a->format) ? "--set" : "--format", err))
        return -1;
    if (a->n_calib == 0 && gq_method_cfg_needs_calibration(&plan->method)) {
        gq_fail(err, "--n-calib 0: method \"%s\" needs calibration windows", a->method);
        return -1;
    }
    if (a->n_calib > 0 && !a->calib[0] && !a->eval_windows) {
        gq_fail(err, "--calib-data: the default calibration text is the evaluation text that "
                     "`gq-bench eval` scores; give --eval-windows K (and --eval-ctx L) to draw "
                     "the calibration windows after the K evaluated windows, or --calib-data "
                     "with a separate text");
        return -1;
    }
    if (gq_method_cfg_adds_transforms(&plan->method) && !native_out(a)) {
        gq_fail(err, "--method %s: leaves explicit input transforms or an online rotation in "
                     "the model, which a llama2.c checkpoint, HF directory or GGUF file (--out) "
                     "cannot hold; save it in the native format (quantize --out-format native)",
                a->method);
        return -1;
    }
    for (; *n_rules < a->rules.n; (*n_rules)++)
        if (parse_rule(a->rules.v[*n_rules], *n_rules, &rules[*n_rules], err)) {
            gq_tensor_rule_free(&rules[*n_rules]); /* the failed rule is not counted */
            return -1;
        }
    plan->rules = rules;
    plan->n_rules = *n_rules;
    plan->seed = a->seed;
    plan->propagate = !a->propagate ? GQ_PROPAGATE_METHOD_DEFAULT
                     : strcmp(a->propagate, "fp") == 0 ? GQ_PROPAGATE_FP : GQ_PROPAGATE_QUANTIZED;
    return 0;
}

static bool hf_out(const q_args *a)
{
    return !a->writer && a->out_format && strcmp(a->out_format, "hf") == 0;
}

/* The output is checked before any work: writable, a llama2.c checkpoint only for a model it
 * can hold, and activation settings only where a file beside the checkpoint can hold them. */
static int check_output(const q_args *a, const gq_model *m, const cli_act *acts,
                        const char *act_file, gq_error *err)
{
    bool has_act = acts->has_acts || acts->has_kv;
    if (has_act && (a->writer || hf_out(a)))
        return gq_fail(err, "--act-* / --kv-* settings are saved only beside a native file or "
                            "llama2.c checkpoint (quantize --out-format native|llama2c)");
    if (a->writer)
        return a->writer->out_dir ? gq_check_dir_writable("--out", a->out, err)
                                  : gq_check_writable("--out", a->out, err);
    if (hf_out(a))
        return gq_check_dir_writable("--out", a->out, err);
    if (gq_check_writable("--out", a->out, err) || (has_act && gq_check_output(act_file, err)))
        return -1;
    /* only the HF writer takes a streamed model's blocks as they finish; the others write a
     * whole quantized model, which for a model streamed for its size would not fit either */
    if (gq_model_streamed(m) && !a->stop_after &&
        gq_model_fp32_bytes(&m->cfg) > GQ_STREAM_AUTO_BYTES)
        return gq_fail(err, "--out: a streamed model of %.1f GiB in fp32 is written block by "
                            "block only with --out-format hf; the %s output would hold the "
                            "whole quantized model in memory",
                       (double)gq_model_fp32_bytes(&m->cfg) / 1073741824.0, a->out_format);
    if (!native_out(a) && !gq_model_llama2c_compatible(&m->cfg))
        return gq_fail(err, "--out: a %s model with this configuration cannot be a llama2.c "
                            "checkpoint; use --out-format hf", gq_family_name(m->cfg.family));
    return 0;
}

/* quantization_config of an HF export: method, format, rules, propagation, gq-bench version. */
static char *quant_config(const gq_quant_plan *p)
{
    json_t *rules = json_array();
    for (int i = 0; i < p->n_rules; i++)
        json_array_append_new(rules, json_pack("{s:s,s:o}", "pattern", p->rules[i].pattern,
                                               "format", p->rules[i].keep_fp
                                                             ? json_string("fp")
                                                             : gq_quantizer_to_json(
                                                                   &p->rules[i].quantizer)));
    json_t *o = json_pack("{s:s,s:o,s:o,s:o,s:s,s:s,s:s}", "quant_method", "gq-bench",
                          "method", gq_method_cfg_to_json(&p->method), "format",
                          gq_quantizer_to_json(&p->quantizer), "rules", rules, "propagate",
                          propagate_name(p), "gq_bench_version", GQ_VERSION,
                          "gq_bench_revision", GQ_VCS_REVISION);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static int save_hf(const q_args *a, const gq_quant_plan *p, const gq_model *out,
                   gq_error *err)
{
    char *qc = quant_config(p);
    if (!qc)
        return gq_fail(err, "--out: out of memory");
    int rc = gq_model_save_hf(out, a->out, gq_st_dtype_parse(a->dtype), qc, err);
    free(qc);
    return rc;
}

/* The block-by-block HF output of a streamed model (gq_quant_sink over gq_hf_writer). */
static int hf_sink_outer(void *user, const gq_model *m, gq_error *err)
{
    return gq_hf_writer_outer(user, m, err);
}

static int hf_sink_block(void *user, const gq_config *c, int l, const gq_layer *L,
                         uint8_t *const codes[GQ_N_LINEAR], int32_t *const perm[GQ_N_LINEAR],
                         gq_error *err)
{
    (void)c, (void)codes, (void)perm;
    return gq_hf_writer_block(user, l, L, err);
}

/* --stop-after-blocks: the finished blocks go nowhere. */
static int discard_outer(void *user, const gq_model *m, gq_error *err)
{
    (void)user, (void)m, (void)err;
    return 0;
}

static int discard_block(void *user, const gq_config *c, int l, const gq_layer *L,
                         uint8_t *const codes[GQ_N_LINEAR], int32_t *const perm[GQ_N_LINEAR],
                         gq_error *err)
{
    (void)user, (void)c, (void)l, (void)L, (void)codes, (void)perm, (void)err;
    return 0;
}

static int quantize_partial(gq_quant_plan *p, const gq_model *m, int n_blocks,
                            gq_quant_report *rep, gq_error *err)
{
    gq_quant_sink sink = {.outer = discard_outer, .block = discard_block};
    p->sink = &sink;
    p->stop_after_blocks = n_blocks;
    int rc = gq_quantize_model(m, p, NULL, rep, err);
    p->sink = NULL;
    return rc;
}

/* Quantizes the streamed m straight into the HF directory --out (no quantized copy held). */
static int quantize_to_hf(const q_args *a, gq_quant_plan *p, const gq_model *m,
                          gq_quant_report *rep, gq_error *err)
{
    char *qc = quant_config(p);
    if (!qc)
        return gq_fail(err, "--out: out of memory");
    gq_hf_writer *w = gq_hf_writer_open(a->out, &m->cfg, gq_st_dtype_parse(a->dtype), qc,
                                        GQ_HF_SHARD_BYTES, err);
    free(qc);
    if (!w)
        return -1;
    gq_quant_sink sink = {.outer = hf_sink_outer, .block = hf_sink_block, .user = w};
    p->sink = &sink;
    int rc = gq_quantize_model(m, p, NULL, rep, err);
    p->sink = NULL;
    if (rc) {
        gq_hf_writer_abort(w);
        return -1;
    }
    return gq_hf_writer_finish(w, err);
}

/* Wall time per stage, of loading and writing, and the peak RSS. */
static void print_costs(const cli_stages *st, const gq_model *m, bool to_sink, double t_load,
                        double t_quant, double t_write)
{
    printf("stages      ");
    cli_stages_print(st, stdout);
    printf("time        load + calibration text %.2f s, quantize %.2f s%s, write %.2f s\n",
           t_load, t_quant, to_sink ? " (blocks written as they finish)" : "", t_write);
    printf("memory      peak RSS %.0f MiB; %s\n", (double)gq_peak_rss_bytes() / 1048576.0,
           gq_model_streamed(m) ? "streamed: one block in fp32 at a time"
                                : "the whole model in fp32");
}

/* The run's result on stdout: one JSON object (--json) or the text report. ds: the calibration
 * text, NULL when none was used. */
static void print_result(const q_args *a, const gq_model *m, const gq_quant_plan *plan,
                         const gq_quant_report *rep, const calib_choice *cal,
                         const gq_dataset *ds, const char *model_path, const char *tok_path,
                         double secs, const cli_act *acts)
{
    char act_file[CLI_PATH_MAX + 16];
    gq_act_file_path(a->out, act_file, sizeof act_file);
    char label[96];
    gq_quantizer_label(&plan->quantizer, label, sizeof label);
    if (a->json) {
        json_t *o = report_json(rep, plan, model_path, tok_path, ds, cal->first, cal->offsets,
                                a->out);
        json_object_set_new(o, "seconds", json_real(secs));
        print_act(acts, act_file, o);
        cli_model_prov prov;
        gq_error perr = {{0}};
        if (cli_model_provenance(model_path, tok_path, &prov, &perr) == 0)
            cli_model_prov_json(o, &prov);
        char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
        printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        cli_model_prov prov;
        gq_error perr = {{0}};
        if (cli_model_provenance(model_path, tok_path, &prov, &perr) == 0)
            cli_print_model_lines(m, model_path, tok_path, &prov);
        else
            printf("model       %s (%s)\n", model_path, perr.msg);
        printf("method      %s", gq_method_name(plan->method.method));
        json_t *mj = gq_method_cfg_to_json(&plan->method);
        char *ms = json_dumps(mj, JSON_COMPACT);
        printf("  %s\n", ms);
        free(ms);
        json_decref(mj);
        printf("format      %s\n", label);
        printf("tokenizer   %s\n", tok_path);
        if (ds)
            print_calibration(plan, cal, ds, a->seed);
        else
            printf("calibration none\n");
        printf("propagate   %s block outputs feed the next block; %d threads\n",
               propagate_name(plan), gq_threads_get());
        printf("blas        %s\n", gq_blas_description());
        printf("output      %s (%s), %.2f s\n", a->out,
               a->stop_after   ? "not written: --stop-after-blocks"
               : a->writer     ? a->writer->cmd
               : hf_out(a)     ? "fake-quantized HF directory"
               : native_out(a) ? "gq-bench native: codes, lossless"
                               : "fake-quantized fp32 llama2.c checkpoint",
               secs);
        print_act(acts, act_file, NULL);
        printf("\n");
        print_report(rep, label);
    }
}

/* The description a native file carries: the run's JSON report (method, format, calibration
 * text, windows and seed, per-tensor formats and errors; not its timings and thread count),
 * the override rules, the gq-bench version and the model's and tokenizer's hashes. */
static json_t *native_meta(const q_args *a, const gq_quant_plan *plan,
                           const gq_quant_report *rep, const calib_choice *cal,
                           const gq_dataset *ds, const char *model_path, const char *tok_path)
{
    json_t *o = report_json(rep, plan, model_path, tok_path, ds, cal->first, cal->offsets,
                            a->out);
    /* the file is the same bytes for any thread count and run time */
    static const char *const volatile_keys[] = {"threads", "t_stats", "t_search", "t_quant",
                                                "out"};
    for (size_t i = 0; i < sizeof volatile_keys / sizeof volatile_keys[0]; i++)
        json_object_del(o, volatile_keys[i]);
    char *qc = quant_config(plan);
    json_t *q = qc ? json_loads(qc, 0, NULL) : NULL;
    free(qc);
    json_object_set(o, "rules", json_object_get(q, "rules"));
    json_object_set_new(o, "gq_bench_version", json_string(GQ_VERSION));
    json_object_set_new(o, "gq_bench_revision", json_string(GQ_VCS_REVISION));
    json_decref(q);
    cli_model_prov prov;
    gq_error perr = {{0}};
    if (cli_model_provenance(model_path, tok_path, &prov, &perr) == 0)
        cli_model_prov_json(o, &prov);
    return o;
}

/* What save_quantized writes the model with. */
typedef struct q_saver {
    const gq_quant_plan *plan;
    const gq_quant_report *rep;
    json_t *meta; /* native only; taken over */
} q_saver;

static int save_model(const q_args *a, const gq_model *out, q_saver *sv, gq_error *err)
{
    if (!native_out(a))
        return gq_model_save(out, a->out, err);
    json_t *meta = sv->meta;
    sv->meta = NULL;
    return gq_native_save_quantized(a->out, sv->plan, out, sv->rep, meta, err);
}

/* Writes the model and, with activation settings, calibrates their static scales on the
 * plan's calibration windows and writes them beside it (an older file there is removed). */
static int save_quantized(const q_args *a, q_saver *sv, gq_model *out, cli_act *acts,
                          const char *act_file, gq_error *err)
{
    const gq_quant_plan *plan = sv->plan;
    if (!acts->has_acts && !acts->has_kv) {
        if (save_model(a, out, sv, err))
            return -1;
        if (gq_file_exists(act_file) && unlink(act_file))
            return gq_fail(err, "%s: cannot remove the earlier activation file", act_file);
        return 0;
    }
    if (gq_act_model_init(&acts->am, &out->cfg, acts->has_acts ? &acts->acts : NULL,
                          acts->has_kv ? &acts->kv : NULL, err) ||
        gq_act_calibrate(&acts->am, out, plan->calib_tokens, plan->n_calib, plan->calib_ctx,
                         err))
        return gq_fail_prefix(err, "activation calibration");
    return save_model(a, out, sv, err) ||
                   gq_act_save(&acts->am, acts->has_acts ? &acts->acts : NULL,
                               acts->has_kv ? &acts->kv : NULL, a->out, act_file, err)
               ? -1
               : 0;
}

/* The quantized model to its output: quantize's native file, llama2.c checkpoint or HF
 * directory, or the writer's file. */
static int write_output(const q_args *a, const gq_quant_plan *plan, const gq_model *fp,
                        gq_model *out, const gq_quant_report *rep,
                        const gq_tokenizer *tok, const char *model_path, cli_act *acts,
                        const char *act_file, json_t *meta, gq_error *err)
{
    if (hf_out(a))
        return save_hf(a, plan, out, err);
    q_saver sv = {plan, rep, json_incref(meta)};
    if (!a->writer) {
        int rc = save_quantized(a, &sv, out, acts, act_file, err);
        json_decref(sv.meta);
        return rc;
    }
    json_decref(sv.meta);
    cli_quantized q = {plan, fp, out, rep, tok, model_path, a->out, a->float_type};
    return a->writer->write(&q, err);
}

/* Quantizes m: its first blocks only (--stop-after-blocks), block by block into the HF
 * writer (to_sink), or into the whole model out. */
static int run_quantize(const q_args *a, gq_quant_plan *plan, const gq_model *m, gq_model *out,
                        gq_quant_report *rep, bool to_sink, gq_error *err)
{
    if (a->stop_after)
        return quantize_partial(plan, m, (int)a->stop_after, rep, err);
    return to_sink ? quantize_to_hf(a, plan, m, rep, err)
                   : gq_quantize_model(m, plan, out, rep, err);
}

/* write_output with the native file's description (method, calibration, provenance). */
static int write_described(const q_args *a, const gq_quant_plan *plan, const gq_model *m,
                           gq_model *out, const gq_quant_report *rep, const calib_choice *cal,
                           const gq_dataset *ds, const gq_tokenizer *tok,
                           const char *model_path, const char *tok_path, cli_act *acts,
                           const char *act_file, gq_error *err)
{
    json_t *meta = native_out(a) ? native_meta(a, plan, rep, cal, ds, model_path, tok_path)
                                 : NULL;
    int rc = write_output(a, plan, m, out, rep, tok, model_path, acts, act_file, meta, err);
    json_decref(meta);
    return rc;
}

static void args_free(q_args *a)
{
    json_decref(a->fmt_params);
    json_decref(a->method_params);
    json_decref(a->act.act_params);
    json_decref(a->act.kv_params);
}

/* One quantize run, from its plan to the written model (freed by run_free). */
typedef struct {
    gq_quant_plan plan;
    gq_tensor_rule rules[CLI_LIST_MAX];
    int n_rules;
    gq_model m, out;
    gq_tokenizer *tok;
    gq_dataset ds;
    gq_quant_report rep;
    bool have_report;
    char model_path[CLI_PATH_MAX], tok_path[CLI_PATH_MAX];
    calib_choice cal;
    cli_act acts;
    char act_file[CLI_PATH_MAX + 16];
    cli_stages stages;
    double t_start; /* gq_now() before the plan is built: the load time's start */
} q_run;

/* The activation and KV quantizers of the options; static scales need calibration windows. */
static int build_acts(const q_args *a, q_run *r, gq_error *err)
{
    if (cli_act_build(&a->act, &r->m.cfg, a->n_calib > 0, &r->acts, err) == 0)
        return 0;
    return a->n_calib > 0 ? -1 : gq_fail_prefix(err, "--n-calib 0");
}

/* The plan, the model and tokenizer, the output checks and the calibration windows. Returns
 * GQ_EXIT_OK when ready, else the exit status (GQ_EXIT_USAGE_PRINTED: already said). */
static int prepare(const q_args *a, q_run *r, gq_error *err)
{
    const cli_quantize_writer *writer = a->writer;
    if (build_plan(a, &r->plan, r->rules, &r->n_rules, err))
        return GQ_EXIT_USAGE;
    gq_stream_mode mode = writer ? GQ_STREAM_OFF : gq_stream_mode_parse(a->stream);
    if (cli_load_model_stream(a->model, a->tokenizer, mode, &r->m, &r->tok, r->model_path,
                              r->tok_path, sizeof r->model_path, err) ||
        build_acts(a, r, err) ||
        check_output(a, &r->m, &r->acts, r->act_file, err) ||
        (writer && writer->check_plan && writer->check_plan(&r->plan, &r->m.cfg, err)))
        return GQ_EXIT_USAGE;
    /* Calibration windows are loaded for every method (RTN too) so that every report measures
     * reconstruction errors on the same inputs; --n-calib 0 (data-free methods) loads none. */
    if (a->n_calib == 0)
        return GQ_EXIT_OK;
    int status = load_calibration(a, r->model_path, &r->m, r->tok, &r->ds, &r->cal, &r->plan,
                                  err);
    return status == GQ_EXIT_FAIL ? GQ_EXIT_OK : status;
}

/* Quantizes, writes the output, prints the report and the costs. */
static int quantize_write(const q_args *a, q_run *r, gq_error *err)
{
    double t0 = gq_now(), t_load = t0 - r->t_start;
    bool to_sink = (gq_model_streamed(&r->m) && hf_out(a)) || a->stop_after;
    if (run_quantize(a, &r->plan, &r->m, &r->out, &r->rep, to_sink, err))
        return -1;
    r->have_report = true;
    double secs = gq_now() - t0;
    double t_write = gq_now();
    const gq_dataset *ds = r->cal.tokens ? &r->ds : NULL;
    if (!to_sink && write_described(a, &r->plan, &r->m, &r->out, &r->rep, &r->cal, ds, r->tok,
                                    r->model_path, r->tok_path, &r->acts, r->act_file, err))
        return -1;
    t_write = gq_now() - t_write;
    print_result(a, &r->m, &r->plan, &r->rep, &r->cal, ds, r->model_path, r->tok_path, secs,
                 &r->acts);
    if (!a->json)
        print_costs(&r->stages, &r->m, to_sink, t_load, secs, t_write);
    return 0;
}

static void run_free(q_run *r, q_args *a)
{
    if (r->have_report)
        gq_quant_report_free(&r->rep);
    gq_model_free(&r->out);
    gq_model_free(&r->m);
    gq_dataset_free(&r->ds);
    gq_tokenizer_free(r->tok);
    free(r->cal.tokens);
    free(r->cal.offsets);
    for (int i = 0; i < r->n_rules; i++)
        gq_tensor_rule_free(&r->rules[i]);
    gq_quantizer_free(&r->plan.quantizer);
    if (r->plan.method.method)
        gq_method_cfg_free(&r->plan.method);
    json_decref(a->fmt_params);
    json_decref(a->method_params);
    cli_act_free(&r->acts, &a->act);
}

static int quantize_main(int argc, char **argv, const cli_quantize_writer *writer)
{
    q_args a;
    memset(&a, 0, sizeof a);
    a.writer = writer;
    int prc = parse(argc, argv, &a);
    if (prc != 0) {
        args_free(&a);
        return prc == 1 ? GQ_EXIT_OK : prc;
    }
    if (a.threads)
        gq_threads_set((int)a.threads);
    gq_error err = {{0}};
    q_run r;
    memset(&r, 0, sizeof r);
    gq_act_file_path(a.out, r.act_file, sizeof r.act_file);
    cli_stages_init(&r.stages);
    r.plan.stages = &r.stages.sink;
    r.t_start = gq_now();
    int status = prepare(&a, &r, &err);
    if (status == GQ_EXIT_OK && quantize_write(&a, &r, &err))
        status = GQ_EXIT_FAIL;
    if (status == GQ_EXIT_USAGE_PRINTED)
        status = GQ_EXIT_USAGE;
    else if (status != GQ_EXIT_OK)
        cli_report(writer ? writer->cmd : CMD, &err, status);
    run_free(&r, &a);
    return status;
}

int cmd_quantize(int argc, char **argv)
{
    return quantize_main(argc, argv, NULL);
}

int cli_quantize_export(int argc, char **argv, const cli_quantize_writer *w)
{
    return quantize_main(argc, argv, w);
}
