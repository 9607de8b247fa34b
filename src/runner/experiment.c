/* Experiment files: top-level parsing (model, eval, calib, methods, overrides) and loading.
 * The sweep expansion is in sweep.c. */
#include "runner/gq_experiment.h"

#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_sha256.h"
#include "model/gq_hf.h"
#include "runner/json_util.h"
#include "runner/runner_internal.h"

/* Replaces a string value that names a configs/ file by the file's JSON (new reference in
 * *out); objects are returned as is (new reference). `what` is "model" or "method". Errors in an
 * included file name that file and where it was included from. */
static int inline_config(json_t *v, const char *exp_file, const char *path, const char *what,
                         json_t **out, char **src, gq_error *err)
{
    *src = NULL;
    if (json_is_object(v)) {
        *out = json_incref(v);
        *src = strdup(exp_file);
        return *src ? 0 : gq_fail(err, "%s: out of memory", path);
    }
    if (!json_is_string(v))
        return gq_fail(err, "%s: expected a %s object or the name of a configs/ JSON file", path,
                       what);
    char file[GQ_EXP_PATH];
    if (ju_find_config(json_string_value(v), exp_file, path, file, sizeof file, err))
        return -1;
    json_t *inc = ju_load(file, false, err);
    if (!inc)
        return gq_fail_prefix(err, "%s", path);
    if (!json_is_object(inc)) {
        json_decref(inc);
        return gq_fail(err, "%s: $: expected a %s object (included at %s)", file, what, path);
    }
    *src = strdup(file);
    *out = inc;
    return *src ? 0 : gq_fail(err, "%s: out of memory", path);
}

/* Messages from an included file: "<file>: <msg> (included at <path>)". */
static int fail_in(gq_error *err, const char *file, const char *exp_file, const char *path)
{
    if (strcmp(file, exp_file) == 0)
        return -1;
    char msg[GQ_ERROR_LEN];
    snprintf(msg, sizeof msg, "%s", err->msg);
    return gq_fail(err, "%s: %s (included at %s)", file, msg, path);
}

static int hash_file(const char *file, char out[65], const char *path, gq_error *err)
{
    if (gq_sha256_file(file, out, err))
        return gq_fail_prefix(err, "%s", path);
    return 0;
}

/* $.model, parsed into this struct by its table; paths are resolved afterwards. */
typedef struct exp_model {
    char *path, *synthetic, *tokenizer, *name;
    uint64_t seed;
    int stream; /* gq_stream_mode */
} exp_model;

static const char *const stream_choices[] = {"auto", "on", "off", NULL};

static const gq_param_spec model_params[] = {
    {"path", GQ_PARAM_STRING, offsetof(exp_model, path), "", 0, 0, NULL,
     "llama2.c checkpoint or Hugging Face model directory (under the assets directory); "
     "or give \"synthetic\""},
    {"synthetic", GQ_PARAM_STRING, offsetof(exp_model, synthetic), "", 0, 0, NULL,
     "synthetic model preset (gq-bench synth --help lists them)"},
    {"seed", GQ_PARAM_U64, offsetof(exp_model, seed), "1", 0, (double)INT64_MAX, NULL,
     "seed of the synthetic model's weights"},
    {"tokenizer", GQ_PARAM_STRING, offsetof(exp_model, tokenizer), NULL, 0, 0, NULL,
     "llama2.c tokenizer.bin or tokenizer.json"},
    {"name", GQ_PARAM_STRING, offsetof(exp_model, name), "", 0, 0, NULL,
     "model column of the results (default: the checkpoint's file name)"},
    {"stream", GQ_PARAM_CHOICE, offsetof(exp_model, stream), "auto", 0, 0, stream_choices,
     "keep the model mapped and one block in fp32 at a time: auto streams llama2.c files "
     "always and HF directories whose fp32 weights exceed 2 GiB (not part of the resume key)"},
    {0}};

static int model_fields(gq_experiment *e, const exp_model *m, const json_t *mj, const char *P,
                        gq_error *err)
{
    char sub[64];
    snprintf(sub, sizeof sub, "%s.tokenizer", P);
    if (ju_resolve(m->tokenizer, sub, e->tokenizer_path, sizeof e->tokenizer_path, err))
        return -1;
    if (!m->path == !m->synthetic)
        return gq_fail(err, "%s: give exactly one of \"path\" (a llama2.c checkpoint) or "
                            "\"synthetic\" (a generator preset)", P);
    char label[128];
    if (m->path) {
        if (json_object_get(mj, "seed"))
            return gq_fail(err, "%s.seed: only a synthetic model takes a seed", P);
        e->stream = (gq_stream_mode)m->stream;
        snprintf(sub, sizeof sub, "%s.path", P);
        if (ju_resolve_model(m->path, sub, e->model_path, sizeof e->model_path, err))
            return -1;
        const char *slash = strrchr(e->model_path, '/');
        e->model_label = strdup(m->name ? m->name : slash ? slash + 1 : e->model_path);
    } else {
        if (json_object_get(mj, "stream"))
            return gq_fail(err, "%s.stream: a synthetic model is generated in memory; only a "
                                "model file or directory streams", P);
        e->synthetic = strdup(m->synthetic);
        e->synthetic_seed = m->seed;
        snprintf(label, sizeof label, "synthetic:%.64s:seed%llu", m->synthetic,
                 (unsigned long long)m->seed);
        e->model_label = strdup(m->name ? m->name : label);
    }
    if (!e->model_label || (m->synthetic && !e->synthetic))
        return gq_fail(err, "%s: out of memory", P);
    return 0;
}

static int parse_model(gq_experiment *e, json_t *root, gq_error *err)
{
    json_t *v = json_object_get(root, "model");
    if (!v)
        return gq_fail(err, "$: missing \"model\"");
    json_t *mj;
    char *src;
    if (inline_config(v, e->file, "$.model", "model", &mj, &src, err))
        return -1;
    json_object_set(root, "model", mj); /* resolved form, for provenance */
    /* inside an included file, paths start at its root */
    const char *P = strcmp(src, e->file) ? "$" : "$.model";
    exp_model m;
    int rc = gq_params_parse(model_params, mj, P, &m, err) || model_fields(e, &m, mj, P, err);
    gq_params_release(model_params, &m);
    json_decref(mj);
    if (rc)
        rc = fail_in(err, src, e->file, "$.model");
    free(src);
    return rc ? -1 : 0;
}

static const char *const protocol_names[] = {"full", "llamacpp", NULL};   /* gq_ppl_protocol */
static const char *const kl_names[] = {"auto", "stored", "paired", NULL};   /* gq_kl_baseline */

const gq_param_spec gq_exp_eval_params[] = {
    {"text", GQ_PARAM_STRING, offsetof(gq_exp_eval, text), NULL, 0, 0, NULL,
     "text file to score (under the assets directory)"},
    {"protocol", GQ_PARAM_CHOICE, offsetof(gq_exp_eval, protocol), "full", 0, 0, protocol_names,
     "perplexity protocol: every position of a window, or llama.cpp's second half"},
    {"ctx", GQ_PARAM_INT, offsetof(gq_exp_eval, ctx), "256", 4, 1 << 20, NULL,
     "tokens per window (at most the model's context)"},
    {"max_windows", GQ_PARAM_INT, offsetof(gq_exp_eval, max_windows), "0", 0, 1 << 30, NULL,
     "score the first N windows; 0 = every window"},
    {"kl_baseline", GQ_PARAM_CHOICE, offsetof(gq_exp_eval, kl_baseline), "auto", 0, 0, kl_names,
     "KL reference: stored baseline log-probabilities, the baseline rerun (paired), or auto"},
    {0}};

const gq_param_spec gq_exp_calib_params[] = {
    {"text", GQ_PARAM_STRING, offsetof(gq_exp_calib, text), NULL, 0, 0, NULL,
     "calibration text (windows after the evaluated ones when it is the evaluation text)"},
    {"n_calib", GQ_PARAM_INT, offsetof(gq_exp_calib, n_calib), "32", 1, 1 << 20, NULL,
     "calibration windows (n_calib x calib_ctx tokens at most the text's held-out tokens)"},
    {"calib_ctx", GQ_PARAM_INT, offsetof(gq_exp_calib, calib_ctx), "256", 2, 1 << 20, NULL,
     "tokens per calibration window (at most the model's context)"},
    {"seed", GQ_PARAM_U64, offsetof(gq_exp_calib, seed), "0", 0, (double)INT64_MAX, NULL,
     "seed of the window offsets and of methods that draw numbers"},
    {0}};

const gq_param_spec gq_exp_throughput_params[] = {
    {"enabled", GQ_PARAM_BOOL, offsetof(gq_exp_throughput, enabled), "true", 0, 0, NULL,
     "measure decode and prefill tokens/s on the packed kernels"},
    {"decode_tokens", GQ_PARAM_INT, offsetof(gq_exp_throughput, decode_tokens), "16", 1, 1 << 20,
     NULL, "timed decode steps (+ 2 warm-up steps, at most the model's context)"},
    {"prefill_tokens", GQ_PARAM_INT, offsetof(gq_exp_throughput, prefill_tokens), "0", 0,
     1 << 20, NULL, "tokens of the timed prefill window; 0 = min(64, the model's context)"},
    {"reps", GQ_PARAM_INT, offsetof(gq_exp_throughput, reps), "3", 1, 1000, NULL,
     "prefill repetitions, the fastest is kept"},
    {0}};

void gq_experiment_print_params(FILE *f)
{
    static const struct {
        const char *section, *about;
        const gq_param_spec *specs;
    } sections[] = {
        {"model", "the model (or the name of a configs/models file)", model_params},
        {"eval", "evaluation (required)", gq_exp_eval_params},
        {"calib", "calibration, for methods that calibrate", gq_exp_calib_params},
        {"throughput", "packed-kernel throughput columns", gq_exp_throughput_params},
        {"activations", "activation quantizers at every block linear's input (also per "
                        "method entry; null: none); other keys: the format's parameters; "
                        "\"overrides\": [{\"pattern\", \"keep_fp\" | spec}]", gq_act_params},
        {"kv_cache", "KV-cache quantizer (also per method entry; null: none); other keys: the "
                     "format's parameters", gq_kv_params},
    };
    fprintf(f, "experiment sections (README.md, \"Experiment files\"):\n");
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
        fprintf(f, "\n  $.%s: %s\n", sections[i].section, sections[i].about);
        gq_params_print(f, sections[i].specs, "    ");
    }
}

/* A section object (or NULL when absent) parsed by its table at path "$.<name>". */
static int parse_section(json_t *root, const char *name, const gq_param_spec *specs, void *out,
                         bool *present, gq_error *err)
{
    char path[32];
    snprintf(path, sizeof path, "$.%s", name);
    json_t *o = json_object_get(root, name);
    if (present)
        *present = o != NULL;
    gq_params_defaults(specs, out);
    if (!o)
        return 0;
    if (!json_is_object(o))
        return gq_fail(err, "%s: expected an object", path);
    gq_params_release(specs, out);
    return gq_params_parse(specs, o, path, out, err);
}

static int parse_sections(gq_experiment *e, json_t *root, gq_error *err)
{
    if (!json_object_get(root, "eval"))
        return gq_fail(err, "$: missing \"eval\"");
    if (parse_section(root, "eval", gq_exp_eval_params, &e->eval, NULL, err) ||
        ju_resolve(e->eval.text, "$.eval.text", e->eval_path, sizeof e->eval_path, err) ||
        parse_section(root, "calib", gq_exp_calib_params, &e->calib, &e->has_calib, err) ||
        (e->has_calib &&
         ju_resolve(e->calib.text, "$.calib.text", e->calib_path, sizeof e->calib_path, err)))
        return -1;
    return parse_section(root, "throughput", gq_exp_throughput_params, &e->throughput, NULL, err);
}

/* Limits that depend on the model's context. */
static int check_contexts(gq_experiment *e, gq_error *err)
{
    gq_exp_throughput *t = &e->throughput;
    int seq = e->cfg.seq_len;
    if (e->eval.ctx > seq)
        return gq_fail(err, "$.eval.ctx: %d is longer than the model's context (%d)", e->eval.ctx,
                       seq);
    if (e->has_calib && e->calib.calib_ctx > seq)
        return gq_fail(err, "$.calib.calib_ctx: %d is longer than the model's context (%d)",
                       e->calib.calib_ctx, seq);
    if (t->decode_tokens + GQ_TP_WARMUP > seq)
        return gq_fail(err, "$.throughput.decode_tokens: %d + %d warm-up steps exceed the model's "
                            "context (%d)", t->decode_tokens, GQ_TP_WARMUP, seq);
    if (t->prefill_tokens > seq)
        return gq_fail(err, "$.throughput.prefill_tokens: %d is longer than the model's context "
                            "(%d)", t->prefill_tokens, seq);
    if (t->prefill_tokens == 0)
        t->prefill_tokens = seq < 64 ? seq : 64;
    return 0;
}

static const char *const propagate_names[] = {"default", "fp", "quantized", NULL}; /* gq_propagate */

/* Label (default "<method> <format>", mn the method's name), propagation and exclusions of a
 * method entry. */
static int method_fields(gq_exp_method *em, json_t *m, const char *mn, const char *base,
                         gq_error *err)
{
    const char *fn = json_string_value(json_object_get(em->format, "name"));
    size_t n = strlen(mn) + strlen(fn) + 2;
    char *def_label = malloc(n);
    if (!def_label)
        return gq_fail(err, "%s: out of memory", base);
    snprintf(def_label, n, "%s %s", mn, fn);
    int rc = ju_strdup(m, "label", base, def_label, &em->label, err);
    free(def_label);
    if (rc)
        return -1;
    static const gq_param_spec prop_spec[] = {
        {"propagate", GQ_PARAM_CHOICE, 0, "default", 0, 0, propagate_names, NULL}, {0}};
    json_t *pv = json_object_get(m, "propagate");
    json_t *pj = pv ? json_pack("{s:O}", "propagate", pv) : NULL;
    if (pv && !pj)
        return gq_fail(err, "%s: out of memory", base);
    int prop;
    rc = gq_params_parse(prop_spec, pj, base, &prop, err);
    json_decref(pj);
    if (rc)
        return -1;
    em->propagate = (gq_propagate)prop;
    json_t *ex = json_object_get(m, "exclude");
    em->exclude = ex ? json_incref(ex) : json_array();
    if (!em->exclude)
        return gq_fail(err, "%s: out of memory", base);
    if (!json_is_array(em->exclude))
        return gq_fail(err, "%s.exclude: expected an array of sweep axis names", base);
    for (size_t k = 0; k < json_array_size(em->exclude); k++)
        if (!json_is_string(json_array_get(em->exclude, k)))
            return gq_fail(err, "%s.exclude[%zu]: expected a string", base, k);
    return 0;
}

/* The entry's activation (or KV-cache) section: its own key (null: none), else the
 * experiment's top-level one; its JSON path for messages. Parsed and checked per cell. */
static int entry_section(const gq_experiment *e, json_t *m, const char *key, const char *base,
                         json_t **out, char *path, size_t n, gq_error *err)
{
    json_t *v = json_object_get(m, key);
    snprintf(path, n, "%s.%s", v ? base : "$", key);
    if (!v)
        v = json_object_get(e->resolved, key);
    if (v && !json_is_null(v) && !json_is_object(v))
        return gq_fail(err, "%s: expected an object {\"format\": ..., parameters} or null", path);
    *out = v && !json_is_null(v) ? json_deep_copy(v) : NULL;
    return v && !json_is_null(v) && !*out ? gq_fail(err, "%s: out of memory", path) : 0;
}

/* "name" -> {"name": "name"}; a list with each member so; anything else copied. */
static json_t *named_object(json_t *v)
{
    if (json_is_string(v))
        return json_pack("{s:O}", "name", v);
    if (!json_is_array(v))
        return json_deep_copy(v);
    json_t *a = json_array();
    for (size_t i = 0; a && i < json_array_size(v); i++)
        if (json_array_append_new(a, named_object(json_array_get(v, i)))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static int parse_method(gq_experiment *e, json_t *arr, size_t i, gq_error *err)
{
    gq_exp_method *em = &e->methods[i];
    snprintf(em->path, sizeof em->path, "$.methods[%zu]", i);
    json_t *m;
    if (inline_config(json_array_get(arr, i), e->file, em->path, "method", &m, &em->file, err))
        return -1;
    json_array_set(arr, i, m);
    /* inside an included file, paths start at its root */
    char base[64];
    snprintf(base, sizeof base, "%s", strcmp(em->file, e->file) ? "$" : em->path);
    static const char *const keys[] = {"label",   "method",      "format",   "propagate",
                                       "exclude", "activations", "kv_cache", NULL};
    char sub[96];
    int rc = -1;
    if (ju_check_keys(m, base, keys, err))
        goto done;
    json_t *meth = json_object_get(m, "method"), *fmt = json_object_get(m, "format");
    if (!meth || !fmt) {
        gq_fail(err, "%s: missing \"%s\"", base, meth ? "format" : "method");
        goto done;
    }
    /* accept "gptq" as shorthand for {"name": "gptq"}, in a chain too */
    em->method = named_object(meth);
    em->format = named_object(fmt);
    if (!em->method || !em->format) {
        gq_fail(err, "%s: out of memory", base);
        goto done;
    }
    /* a list is a chain, whose parser names a bad member */
    if (!(json_is_object(em->method) || json_is_array(em->method)) ||
        !json_is_object(em->format)) {
        gq_fail(err, "%s.%s: expected an object {\"name\": ..., parameters} or a name%s", base,
                json_is_object(em->format) ? "method" : "format",
                json_is_object(em->format) ? ", or a list of them (a method chain)" : "");
        goto done;
    }
    /* parse once with the entry's own values so errors point at the file that holds them */
    gq_method_cfg mc;
    gq_quantizer q;
    snprintf(sub, sizeof sub, "%s.method", base);
    if (gq_method_cfg_from_json(em->method, sub, &mc, err))
        goto done;
    em->calibrates = gq_method_cfg_needs_calibration(&mc);
    snprintf(sub, sizeof sub, "%s.format", base);
    if (gq_quantizer_from_json(em->format, sub, &q, err) == 0) {
        gq_quantizer_free(&q);
        rc = method_fields(em, m, gq_method_name(mc.method), base, err) ||
             entry_section(e, m, "activations", base, &em->act, em->act_path,
                           sizeof em->act_path, err) ||
             entry_section(e, m, "kv_cache", base, &em->kv, em->kv_path, sizeof em->kv_path,
                           err);
    }
    gq_method_cfg_free(&mc);
done:
    json_decref(m);
    return rc ? fail_in(err, em->file, e->file, em->path) : 0;
}

static int parse_methods(gq_experiment *e, json_t *root, gq_error *err)
{
    json_t *arr = json_object_get(root, "methods");
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return gq_fail(err, "$.methods: %s", arr ? "expected a non-empty array"
                                                 : "missing (list the methods to compare)");
    e->methods = calloc(json_array_size(arr), sizeof *e->methods);
    if (!e->methods)
        return gq_fail(err, "$.methods: out of memory");
    e->n_methods = (int)json_array_size(arr);
    for (size_t i = 0; i < (size_t)e->n_methods; i++)
        if (parse_method(e, arr, i, err))
            return -1;
    for (int i = 0; i < e->n_methods; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(e->methods[i].label, e->methods[j].label) == 0)
                return gq_fail(err, "%s.label: \"%s\" is already the label of %s (labels name the "
                                    "series in tables and charts)",
                               e->methods[i].path, e->methods[i].label, e->methods[j].path);
    return 0;
}

static int parse_overrides(gq_experiment *e, json_t *root, gq_error *err)
{
    json_t *arr = json_object_get(root, "overrides");
    if (!arr)
        return 0;
    if (!json_is_array(arr))
        return gq_fail(err, "$.overrides: expected an array of {\"pattern\", \"keep_fp\" | \"format\"}");
    e->rules = calloc(json_array_size(arr) + 1, sizeof *e->rules);
    if (!e->rules)
        return gq_fail(err, "$.overrides: out of memory");
    e->n_rules = (int)json_array_size(arr);
    for (int i = 0; i < e->n_rules; i++) {
        json_t *o = json_array_get(arr, (size_t)i);
        char path[64];
        snprintf(path, sizeof path, "$.overrides[%d]", i);
        if (!json_is_object(o))
            return gq_fail(err, "%s: expected an object", path);
        static const char *const keys[] = {"pattern", "keep_fp", "format", NULL};
        gq_tensor_rule *r = &e->rules[i];
        if (ju_check_keys(o, path, keys, err) ||
            ju_strdup(o, "pattern", path, NULL, &r->pattern, err))
            return -1;
        json_t *kf = json_object_get(o, "keep_fp"), *fmt = json_object_get(o, "format");
        if (kf && !json_is_boolean(kf))
            return gq_fail(err, "%s.keep_fp: expected true or false", path);
        r->keep_fp = json_is_true(kf);
        if (r->keep_fp == (fmt != NULL))
            return gq_fail(err, "%s: give either \"keep_fp\": true or a \"format\"", path);
        char sub[96];
        snprintf(sub, sizeof sub, "%s.format", path);
        if (fmt && gq_quantizer_from_json(fmt, sub, &r->quantizer, err))
            return -1;
    }
    return 0;
}

static int set_name(gq_experiment *e, json_t *root, gq_error *err)
{
    char *stem = strdup(e->file);
    if (!stem)
        return gq_fail(err, "$: out of memory");
    char *b = basename(stem);
    char *dot = strrchr(b, '.');
    if (dot && dot != b)
        *dot = '\0';
    int rc = ju_strdup(root, "name", "$", b, &e->name, err) ||
             ju_strdup(root, "description", "$", "", &e->description, err);
    free(stem);
    if (rc)
        return -1;
    for (const char *p = e->name; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("_-.", *p))
            return gq_fail(err, "$.name: \"%s\" must use only letters, digits, '_', '-' and '.' "
                                "(it names the results directory)", e->name);
    if (e->name[0] == '.')
        return gq_fail(err, "$.name: must not start with '.'");
    if (strlen(e->name) > 255) /* NAME_MAX of the results directory */
        return gq_fail(err, "$.name: longer than a file name may be (255 bytes; it names the "
                            "results directory)");
    return 0;
}

/* Resume key: the canonical resolved experiment plus the hashes of every input file. */
static int compute_key(gq_experiment *e, gq_error *err)
{
    /* how the model is held changes no number: a run resumes across $.model.stream */
    json_t *exp = json_deep_copy(e->resolved);
    json_object_del(json_object_get(exp, "model"), "stream");
    json_t *k = json_pack("{s:o, s:s, s:s, s:s, s:s}", "experiment", exp, "model",
                          e->model_sha256, "tokenizer", e->tokenizer_sha256, "eval",
                          e->eval_sha256, "calib", e->calib_sha256);
    /* plugins and an HF config only when given, so other keys stay as they were */
    if (k && e->model_config_sha256[0] &&
        json_object_set_new(k, "model_config", json_string(e->model_config_sha256)))
        json_decref(k), k = NULL;
    char *s = k && !(e->plugins && json_object_set(k, "plugins", e->plugins))
                  ? json_dumps(k, JSON_COMPACT | JSON_SORT_KEYS)
                  : NULL;
    json_decref(k);
    if (!s)
        return gq_fail(err, "$: out of memory computing the resume key");
    gq_sha256_hex(s, strlen(s), e->key);
    free(s);
    return 0;
}

static int load_inner(gq_experiment *e, gq_error *err)
{
    json_t *root = e->resolved;
    if (!json_is_object(root))
        return gq_fail(err, "$: expected an object");
    static const char *const keys[] = {"name",       "description", "model",    "eval",
                                       "calib",      "methods",     "overrides", "sweep",
                                       "zip",        "throughput",  "plugins",  "activations",
                                       "kv_cache",   NULL};
    if (ju_check_keys(root, "$", keys, err) || gq_exp_load_plugins(e, root, err) ||
        set_name(e, root, err) || parse_model(e, root, err) || parse_sections(e, root, err) ||
        parse_methods(e, root, err) || parse_overrides(e, root, err))
        return -1;
    if (gq_runner_model_describe(e, err) || check_contexts(e, err) ||
        gq_exp_check_inputs(e, err) || gq_sweep_expand(e, err))
        return -1;
    if ((e->model_path[0] && gq_model_hashes(e->model_path, e->model_config_sha256,
                                             e->model_sha256, err) &&
         gq_fail_prefix(err, "$.model.path")) ||
        hash_file(e->tokenizer_path, e->tokenizer_sha256, "$.model.tokenizer", err))
        return -1;
    return compute_key(e, err);
}

int gq_experiment_load(const char *path, gq_experiment *e, gq_error *err)
{
    memset(e, 0, sizeof *e);
    e->file = strdup(path);
    if (!e->file)
        return gq_fail(err, "%s: out of memory", path);
    if (gq_sha256_file(path, e->config_sha256, err) || !(e->resolved = ju_load(path, true, err))) {
        gq_experiment_free(e);
        return -1;
    }
    if (load_inner(e, err)) {
        /* messages from included files already start with that file's name */
        bool named = strncmp(err->msg, "$", 1) != 0;
        if (!named)
            gq_fail_prefix(err, "%s", path);
        gq_experiment_free(e);
        return -1;
    }
    return 0;
}

void gq_experiment_free(gq_experiment *e)
{
    for (int i = 0; i < e->n_methods; i++) {
        free(e->methods[i].label);
        free(e->methods[i].file);
        json_decref(e->methods[i].method);
        json_decref(e->methods[i].format);
        json_decref(e->methods[i].exclude);
        json_decref(e->methods[i].act);
        json_decref(e->methods[i].kv);
    }
    free(e->methods);
    for (int i = 0; e->rules && i < e->n_rules; i++)
        gq_tensor_rule_free(&e->rules[i]);
    free(e->rules);
    for (int i = 0; i < e->n_axes; i++) {
        free(e->axes[i].name);
        json_decref(e->axes[i].values);
    }
    free(e->axes);
    for (int i = 0; i < e->n_cells; i++)
        gq_cell_release(&e->cells[i]);
    free(e->cells);
    gq_params_release(gq_exp_eval_params, &e->eval);
    gq_params_release(gq_exp_calib_params, &e->calib);
    json_decref(e->resolved);
    json_decref(e->plugins);
    free(e->file);
    free(e->name);
    free(e->description);
    free(e->synthetic);
    free(e->model_label);
    memset(e, 0, sizeof *e);
}

/* " [A: int8 sym token dynamic] [KV: int8 sym head]" for a cell's quantizers ("" without). */
static void cell_act_label(const gq_cell *c, char *buf, size_t n)
{
    char f[96], g[32], sc[32];
    size_t len = 0;
    if (c->has_act) {
        gq_act_spec_format(&c->act.def, f, sizeof f);
        gq_act_spec_granularity(&c->act.def, g, sizeof g);
        gq_act_spec_scales(&c->act.def, sc, sizeof sc);
        len = (size_t)snprintf(buf, n, " [A: %s %s %s%s]", f, g, sc,
                               c->act.n_rules ? " +overrides" : "");
    }
    if (c->has_kv && len < n) {
        gq_act_spec_format(&c->kv.def, f, sizeof f);
        gq_act_spec_granularity(&c->kv.def, g, sizeof g);
        snprintf(buf + len, n - len, " [KV: %s %s]", f, g);
    }
}

void gq_experiment_print_cells(const gq_experiment *e, FILE *f)
{
    fprintf(f, "experiment %s (%s): %d cells, model %s, eval: %s protocol, ctx %d, %zu windows\n",
            e->name, e->file, e->n_cells, e->model_label,
            gq_ppl_protocol_name((gq_ppl_protocol)e->eval.protocol), e->eval.ctx,
            e->eval_windows);
    if (e->has_calib)
        fprintf(f, "calibration: windows drawn from token %zu of %zu of %s\n", e->calib_first,
                e->calib_tokens, e->calib_path);
    fprintf(f, "%-9s %-22s %-8s %-26s %-8s %-9s %s\n", "cell", "series", "method", "format",
            "n_calib", "calib_ctx", "sweep");
    for (int i = 0; i < e->n_cells; i++) {
        const gq_cell *c = &e->cells[i];
        char nc[16] = "-", cc[16] = "-";
        if (c->needs_calib) {
            snprintf(nc, sizeof nc, "%d", c->n_calib);
            snprintf(cc, sizeof cc, "%d", c->calib_ctx);
        }
        char act[256] = "";
        cell_act_label(c, act, sizeof act);
        fprintf(f, "%-9s %-22s %-8s %-26s %-8s %-9s %s%s\n", c->id,
                c->entry < 0 ? e->base_series : e->methods[c->entry].label, c->method_name,
                c->format_label, nc, cc, c->sweep, act);
    }
}
