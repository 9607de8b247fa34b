/* Experiment files: top-level parsing (model, eval, calib, methods, overrides) and loading.
 * The sweep expansion is in sweep.c. */
#include "runner/gq_experiment.h"

#include <ctype.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_sha256.h"
#include "runner/json_util.h"
#include "runner/runner_internal.h"

/* Replaces a string value that names a configs/ file by the file's JSON (new reference in
 * *out); objects are returned as is (new reference). `what` is "model" or "method". Errors in an
 * included file name that file and where it was included from. */
static int inline_config(json_t *v, const char *exp_file, const char *path, const char *what,
                         json_t **out, char *src, size_t src_n, gq_error *err)
{
    snprintf(src, src_n, "%s", exp_file);
    if (json_is_object(v)) {
        *out = json_incref(v);
        return 0;
    }
    if (!json_is_string(v))
        return gq_fail(err, "%s: expected a %s object or the name of a configs/ JSON file", path,
                       what);
    char file[1024];
    if (ju_find_config(json_string_value(v), exp_file, path, file, sizeof file, err))
        return -1;
    json_t *inc = ju_load(file, err);
    if (!inc)
        return gq_fail_prefix(err, "%s", path);
    if (!json_is_object(inc)) {
        json_decref(inc);
        return gq_fail(err, "%s: $: expected a %s object (included at %s)", file, what, path);
    }
    snprintf(src, src_n, "%s", file);
    *out = inc;
    return 0;
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

static int parse_model(gq_experiment *e, json_t *root, gq_error *err)
{
    json_t *v = json_object_get(root, "model");
    if (!v)
        return gq_fail(err, "$: missing \"model\"");
    json_t *m;
    char src[1024];
    if (inline_config(v, e->file, "$.model", "model", &m, src, sizeof src, err))
        return -1;
    json_object_set(root, "model", m); /* resolved form, for provenance */
    /* inside an included file, paths start at its root */
    const char *P = strcmp(src, e->file) ? "$" : "$.model";
    char pseed[32];
    snprintf(pseed, sizeof pseed, "%s.seed", P);
    static const char *const keys[] = {"path", "synthetic", "seed", "tokenizer", "name", NULL};
    int rc = -1;
    long long seed = 0;
    if (ju_check_keys(m, P, keys, err) ||
        ju_file(m, "tokenizer", P, e->tokenizer_path, sizeof e->tokenizer_path, err))
        goto done;
    bool has_path = json_object_get(m, "path"), has_syn = json_object_get(m, "synthetic");
    if (has_path == has_syn) {
        gq_fail(err, "%s: give exactly one of \"path\" (a llama2.c checkpoint) or "
                     "\"synthetic\" (a generator preset)", P);
        goto done;
    }
    if (has_path) {
        if (json_object_get(m, "seed")) {
            gq_fail(err, "%s: only a synthetic model takes a seed", pseed);
            goto done;
        }
        if (ju_file(m, "path", P, e->model_path, sizeof e->model_path, err))
            goto done;
        char tmp[1024];
        snprintf(tmp, sizeof tmp, "%s", e->model_path);
        snprintf(e->model_label, sizeof e->model_label, "%s", basename(tmp));
    } else {
        if (ju_string(m, "synthetic", P, NULL, e->synthetic, sizeof e->synthetic, err) ||
            ju_int(m, "seed", P, false, 1, 0, INT64_MAX, &seed, err))
            goto done;
        e->synthetic_seed = (uint64_t)seed;
        snprintf(e->model_label, sizeof e->model_label, "synthetic:%s:seed%llu", e->synthetic,
                 (unsigned long long)seed);
    }
    char def[sizeof e->model_label];
    snprintf(def, sizeof def, "%s", e->model_label);
    if (ju_string(m, "name", P, def, e->model_label, sizeof e->model_label, err))
        goto done;
    rc = 0;
done:
    json_decref(m);
    return rc ? fail_in(err, src, e->file, "$.model") : 0;
}

static int parse_eval(gq_experiment *e, json_t *root, gq_error *err)
{
    json_t *ev = json_object_get(root, "eval");
    if (!json_is_object(ev))
        return gq_fail(err, ev ? "$.eval: expected an object" : "$: missing \"eval\"");
    static const char *const keys[] = {"text", "protocol", "ctx", "max_windows", "kl_baseline",
                                       NULL};
    char proto[32], klb[32];
    long long ctx, maxw;
    if (ju_check_keys(ev, "$.eval", keys, err) ||
        ju_file(ev, "text", "$.eval", e->eval_path, sizeof e->eval_path, err) ||
        ju_string(ev, "protocol", "$.eval", "full", proto, sizeof proto, err) ||
        ju_int(ev, "ctx", "$.eval", false, 256, 4, 1 << 20, &ctx, err) ||
        ju_int(ev, "max_windows", "$.eval", false, 0, 0, 1 << 30, &maxw, err) ||
        ju_string(ev, "kl_baseline", "$.eval", "auto", klb, sizeof klb, err))
        return -1;
    if (gq_ppl_protocol_parse(proto, &e->protocol, err))
        return gq_fail_prefix(err, "$.eval.protocol");
    if (strcmp(klb, "auto") == 0)
        e->kl_baseline = GQ_KL_AUTO;
    else if (strcmp(klb, "stored") == 0)
        e->kl_baseline = GQ_KL_STORED;
    else if (strcmp(klb, "paired") == 0)
        e->kl_baseline = GQ_KL_PAIRED;
    else
        return gq_fail(err, "$.eval.kl_baseline: \"%s\" is not one of \"auto\", \"stored\", "
                            "\"paired\"", klb);
    e->ctx = (int)ctx;
    e->max_windows = (int)maxw;
    return 0;
}

/* $.throughput; the limits that depend on the model's context are checked by
 * check_throughput once the configuration is known. */
static int parse_throughput(gq_experiment *e, json_t *root, gq_error *err)
{
    gq_exp_throughput *t = &e->throughput;
    *t = (gq_exp_throughput){.enabled = true, .decode_tokens = 16, .prefill_tokens = 0,
                             .reps = 3};
    json_t *o = json_object_get(root, "throughput");
    if (!o)
        return 0;
    if (!json_is_object(o))
        return gq_fail(err, "$.throughput: expected an object");
    static const char *const keys[] = {"enabled", "decode_tokens", "prefill_tokens", "reps", NULL};
    long long dec, pre, reps;
    if (ju_check_keys(o, "$.throughput", keys, err) ||
        ju_int(o, "decode_tokens", "$.throughput", false, 16, 1, 1 << 20, &dec, err) ||
        ju_int(o, "prefill_tokens", "$.throughput", false, 0, 1, 1 << 20, &pre, err) ||
        ju_int(o, "reps", "$.throughput", false, 3, 1, 1000, &reps, err))
        return -1;
    json_t *en = json_object_get(o, "enabled");
    if (en && !json_is_boolean(en))
        return gq_fail(err, "$.throughput.enabled: expected true or false");
    t->enabled = !en || json_is_true(en);
    t->decode_tokens = (int)dec;
    t->prefill_tokens = (int)pre;
    t->reps = (int)reps;
    return 0;
}

static int check_throughput(gq_experiment *e, gq_error *err)
{
    gq_exp_throughput *t = &e->throughput;
    int seq = e->cfg.seq_len;
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

static int parse_calib(gq_experiment *e, json_t *root, gq_error *err)
{
    json_t *c = json_object_get(root, "calib");
    if (!c)
        return 0;
    if (!json_is_object(c))
        return gq_fail(err, "$.calib: expected an object");
    static const char *const keys[] = {"text", "n_calib", "calib_ctx", "seed", NULL};
    long long n, ctx, seed;
    if (ju_check_keys(c, "$.calib", keys, err) ||
        ju_file(c, "text", "$.calib", e->calib_path, sizeof e->calib_path, err) ||
        ju_int(c, "n_calib", "$.calib", false, 32, 1, 1 << 20, &n, err) ||
        ju_int(c, "calib_ctx", "$.calib", false, 256, 2, 1 << 20, &ctx, err) ||
        ju_int(c, "seed", "$.calib", false, 0, 0, INT64_MAX, &seed, err))
        return -1;
    e->has_calib = true;
    e->n_calib = (int)n;
    e->calib_ctx = (int)ctx;
    e->seed = (uint64_t)seed;
    return 0;
}

static int parse_method(gq_experiment *e, json_t *arr, size_t i, gq_error *err)
{
    gq_exp_method *em = &e->methods[i];
    snprintf(em->path, sizeof em->path, "$.methods[%zu]", i);
    json_t *m;
    if (inline_config(json_array_get(arr, i), e->file, em->path, "method", &m, em->file,
                      sizeof em->file, err))
        return -1;
    json_array_set(arr, i, m);
    /* inside an included file, paths start at its root */
    char base[64];
    snprintf(base, sizeof base, "%s", strcmp(em->file, e->file) ? "$" : em->path);
    static const char *const keys[] = {"label", "method", "format", "propagate", "exclude", NULL};
    char sub[96], prop[32];
    int rc = -1;
    if (ju_check_keys(m, base, keys, err))
        goto done;
    json_t *meth = json_object_get(m, "method"), *fmt = json_object_get(m, "format");
    if (!meth || !fmt) {
        gq_fail(err, "%s: missing \"%s\"", base, meth ? "format" : "method");
        goto done;
    }
    /* accept "gptq" as shorthand for {"name": "gptq"} */
    em->method = json_is_string(meth) ? json_pack("{s:O}", "name", meth) : json_deep_copy(meth);
    em->format = json_is_string(fmt) ? json_pack("{s:O}", "name", fmt) : json_deep_copy(fmt);
    if (!json_is_object(em->method) || !json_is_object(em->format)) {
        gq_fail(err, "%s.%s: expected an object {\"name\": ..., parameters} or a name", base,
                json_is_object(em->method) ? "format" : "method");
        goto done;
    }
    /* parse once with the entry's own values so errors point at the file that holds them */
    gq_method_cfg mc;
    gq_quantizer q;
    snprintf(sub, sizeof sub, "%s.method", base);
    if (gq_method_cfg_from_json(em->method, sub, &mc, err))
        goto done;
    gq_method_cfg_free(&mc);
    snprintf(sub, sizeof sub, "%s.format", base);
    if (gq_quantizer_from_json(em->format, sub, &q, err))
        goto done;
    char flabel[64];
    gq_quantizer_label(&q, flabel, sizeof flabel);
    gq_quantizer_free(&q);
    char def_label[96];
    snprintf(def_label, sizeof def_label, "%s %s",
             json_string_value(json_object_get(em->method, "name")),
             json_string_value(json_object_get(em->format, "name")));
    if (ju_string(m, "label", base, def_label, em->label, sizeof em->label, err) ||
        ju_string(m, "propagate", base, "default", prop, sizeof prop, err))
        goto done;
    if (strcmp(prop, "default") == 0)
        em->propagate = GQ_PROPAGATE_METHOD_DEFAULT;
    else if (strcmp(prop, "fp") == 0)
        em->propagate = GQ_PROPAGATE_FP;
    else if (strcmp(prop, "quantized") == 0)
        em->propagate = GQ_PROPAGATE_QUANTIZED;
    else {
        gq_fail(err, "%s.propagate: \"%s\" is not one of \"default\", \"fp\", \"quantized\"", base,
                prop);
        goto done;
    }
    json_t *ex = json_object_get(m, "exclude");
    em->exclude = ex ? json_incref(ex) : json_array();
    if (!json_is_array(em->exclude)) {
        gq_fail(err, "%s.exclude: expected an array of sweep axis names", base);
        goto done;
    }
    for (size_t k = 0; k < json_array_size(em->exclude); k++)
        if (!json_is_string(json_array_get(em->exclude, k))) {
            gq_fail(err, "%s.exclude[%zu]: expected a string", base, k);
            goto done;
        }
    rc = 0;
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
    e->n_methods = (int)json_array_size(arr);
    e->methods = calloc((size_t)e->n_methods, sizeof *e->methods);
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
    e->n_rules = (int)json_array_size(arr);
    e->rules = calloc((size_t)e->n_rules + 1, sizeof *e->rules);
    for (int i = 0; i < e->n_rules; i++) {
        json_t *o = json_array_get(arr, (size_t)i);
        char path[64];
        snprintf(path, sizeof path, "$.overrides[%d]", i);
        if (!json_is_object(o))
            return gq_fail(err, "%s: expected an object", path);
        static const char *const keys[] = {"pattern", "keep_fp", "format", NULL};
        gq_tensor_rule *r = &e->rules[i];
        if (ju_check_keys(o, path, keys, err) ||
            ju_string(o, "pattern", path, NULL, r->pattern, sizeof r->pattern, err))
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
    char stem[1024];
    snprintf(stem, sizeof stem, "%s", e->file);
    char *b = basename(stem);
    char *dot = strrchr(b, '.');
    if (dot && dot != b)
        *dot = '\0';
    if (ju_string(root, "name", "$", b, e->name, sizeof e->name, err) ||
        ju_string(root, "description", "$", "", e->description, sizeof e->description, err))
        return -1;
    for (const char *p = e->name; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("_-.", *p))
            return gq_fail(err, "$.name: \"%s\" must use only letters, digits, '_', '-' and '.' "
                                "(it names the results directory)", e->name);
    if (e->name[0] == '.')
        return gq_fail(err, "$.name: must not start with '.'");
    return 0;
}

/* Resume key: the canonical resolved experiment plus the hashes of every input file. */
static void compute_key(gq_experiment *e)
{
    json_t *k = json_pack("{s:O, s:s, s:s, s:s, s:s}", "experiment", e->resolved, "model",
                          e->model_sha256, "tokenizer", e->tokenizer_sha256, "eval",
                          e->eval_sha256, "calib", e->calib_sha256);
    if (e->plugins) /* only then, so keys of experiments without plugins stay as they were */
        json_object_set(k, "plugins", e->plugins);
    char *s = json_dumps(k, JSON_COMPACT | JSON_SORT_KEYS);
    gq_sha256_hex(s, strlen(s), e->key);
    free(s);
    json_decref(k);
}

static int load_inner(gq_experiment *e, gq_error *err)
{
    json_t *root = e->resolved;
    if (!json_is_object(root))
        return gq_fail(err, "$: expected an object");
    static const char *const keys[] = {"name",    "description", "model", "eval",
                                       "calib",   "methods",     "overrides", "sweep",
                                       "zip",     "throughput",  "plugins", NULL};
    if (ju_check_keys(root, "$", keys, err) || gq_exp_load_plugins(e, root, err) ||
        set_name(e, root, err) ||
        parse_model(e, root, err) || parse_eval(e, root, err) || parse_calib(e, root, err) ||
        parse_methods(e, root, err) || parse_overrides(e, root, err) ||
        parse_throughput(e, root, err))
        return -1;
    if (gq_runner_model_config(e, &e->cfg, err) || check_throughput(e, err))
        return -1;
    if (e->ctx > e->cfg.seq_len)
        return gq_fail(err, "$.eval.ctx: %d is longer than the model's context (%d)", e->ctx,
                       e->cfg.seq_len);
    if (e->has_calib && e->calib_ctx > e->cfg.seq_len)
        return gq_fail(err, "$.calib.calib_ctx: %d is longer than the model's context (%d)",
                       e->calib_ctx, e->cfg.seq_len);
    if (gq_sweep_expand(e, err))
        return -1;
    if ((e->model_path[0] && hash_file(e->model_path, e->model_sha256, "$.model.path", err)) ||
        hash_file(e->tokenizer_path, e->tokenizer_sha256, "$.model.tokenizer", err) ||
        hash_file(e->eval_path, e->eval_sha256, "$.eval.text", err) ||
        (e->has_calib && hash_file(e->calib_path, e->calib_sha256, "$.calib.text", err)))
        return -1;
    compute_key(e);
    return 0;
}

int gq_experiment_load(const char *path, gq_experiment *e, gq_error *err)
{
    memset(e, 0, sizeof *e);
    snprintf(e->file, sizeof e->file, "%s", path);
    if (gq_sha256_file(path, e->config_sha256, err))
        return -1;
    e->resolved = ju_load(path, err);
    if (!e->resolved)
        return -1;
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
        json_decref(e->methods[i].method);
        json_decref(e->methods[i].format);
        json_decref(e->methods[i].exclude);
    }
    free(e->methods);
    for (int i = 0; i < e->n_rules; i++)
        if (e->rules[i].quantizer.fmt)
            gq_quantizer_free(&e->rules[i].quantizer);
    free(e->rules);
    for (int i = 0; i < e->n_axes; i++)
        json_decref(e->axes[i].values);
    free(e->axes);
    for (int i = 0; i < e->n_cells; i++) {
        json_decref(e->cells[i].method);
        json_decref(e->cells[i].format);
        json_decref(e->cells[i].axes);
    }
    free(e->cells);
    json_decref(e->resolved);
    json_decref(e->plugins);
    memset(e, 0, sizeof *e);
}

void gq_experiment_print_cells(const gq_experiment *e, FILE *f)
{
    char windows[48] = "every window";
    if (e->max_windows)
        snprintf(windows, sizeof windows, "at most %d windows", e->max_windows);
    fprintf(f, "experiment %s (%s): %d cells, model %s, eval: %s protocol, ctx %d, %s\n",
            e->name, e->file, e->n_cells, e->model_label, gq_ppl_protocol_name(e->protocol),
            e->ctx, windows);
    fprintf(f, "%-9s %-22s %-8s %-26s %-8s %-9s %s\n", "cell", "series", "method", "format",
            "n_calib", "calib_ctx", "sweep");
    for (int i = 0; i < e->n_cells; i++) {
        const gq_cell *c = &e->cells[i];
        char nc[16] = "-", cc[16] = "-";
        if (c->needs_calib) {
            snprintf(nc, sizeof nc, "%d", c->n_calib);
            snprintf(cc, sizeof cc, "%d", c->calib_ctx);
        }
        fprintf(f, "%-9s %-22s %-8s %-26s %-8s %-9s %s\n", c->id,
                c->entry < 0 ? "fp32 baseline" : e->methods[c->entry].label, c->method_name,
                c->format_label, nc, cc, c->sweep);
    }
}
