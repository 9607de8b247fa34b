/* tokenizer.json: the normalizer, pre-tokenizer, post-processor and decoder sections. Every
 * type or option the encoder does not implement is refused with the field named. */
#include "text/gq_hf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static const char *type_of(const json_t *j) { return json_string_value(json_object_get(j, "type")); }

static bool flag(const json_t *j, const char *key, bool def)
{
    const json_t *v = json_object_get(j, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

/* "<field>.type: <what> "<type>" is not supported (supported: ...)". */
static int type_fail(gq_error *err, const char *path, const char *field, const char *what,
                     const char *type, const char *supported)
{
    char f[300];
    snprintf(f, sizeof f, "%s.type", field);
    return hf_fail(err, path, f, "%s \"%s\" is not supported (supported: %s)", what, type,
                   supported);
}

static int need_type(const json_t *j, const char *path, const char *field, gq_error *err)
{
    if (!json_is_object(j) || !type_of(j))
        return hf_fail(err, path, field, "expected an object with a string \"type\"");
    return 0;
}

/* One step of a section (not a Sequence): its object, its "type", where it is. */
typedef int (*step_fn)(void *ctx, const json_t *j, const char *type, const char *path,
                       const char *field, gq_error *err);

/* Calls fn on the section j, or on each element of j[list_key] (recursively) when j is a
 * Sequence; null or absent: nothing. */
static int for_each_step(const json_t *j, const char *list_key, step_fn fn, void *ctx,
                         const char *path, const char *field, gq_error *err)
{
    if (json_is_null(j) || !j)
        return 0;
    if (need_type(j, path, field, err))
        return -1;
    const char *type = type_of(j);
    if (strcmp(type, "Sequence") != 0)
        return fn(ctx, j, type, path, field, err);
    const json_t *list = json_object_get(j, list_key);
    if (!json_is_array(list))
        return hf_fail(err, path, field, "%s: expected an array", list_key);
    for (size_t i = 0; i < json_array_size(list); i++) {
        char sub[256];
        if (snprintf(sub, sizeof sub, "%s.%s[%zu]", field, list_key, i) >= (int)sizeof sub)
            return hf_fail(err, path, field, "Sequences nested too deeply");
        if (for_each_step(json_array_get(list, i), list_key, fn, ctx, path, sub, err))
            return -1;
    }
    return 0;
}

/* A literal pattern {"String": s}; a {"Regex": r} one is refused (where='normalizer' ...). */
static int string_pattern(const json_t *j, const char *path, const char *field, char **out,
                          gq_error *err)
{
    const json_t *p = json_object_get(j, "pattern");
    const char *s = json_string_value(json_object_get(p, "String"));
    if (!s || !s[0])
        return hf_fail(err, path, field, "pattern: only a non-empty {\"String\": ...} pattern is "
                       "supported here");
    return (*out = strdup(s)) ? 0 : hf_fail(err, path, field, "out of memory");
}

static int str_field(const json_t *j, const char *key, const char *def, const char *path,
                     const char *field, char **out, gq_error *err)
{
    const json_t *v = json_object_get(j, key);
    if (v && !json_is_string(v))
        return hf_fail(err, path, field, "%s: expected a string", key);
    *out = strdup(v ? json_string_value(v) : def);
    return *out ? 0 : hf_fail(err, path, field, "out of memory");
}

static int normalizer_step(void *ctx, const json_t *j, const char *type, const char *path,
                           const char *field, gq_error *err)
{
    gq_hf_tok *hf = ctx;
    if (hf->n_norm == HF_MAX_STEPS)
        return hf_fail(err, path, field, "more than %d normalizer steps", HF_MAX_STEPS);
    hf_norm *n = &hf->norm[hf->n_norm];
    static const char *const forms[] = {"NFC", "NFD", "NFKC", "NFKD"};
    for (int f = 0; f < 4; f++)
        if (strcmp(type, forms[f]) == 0) {
            n->kind = (hf_norm_kind)f;
            hf->n_norm++;
            return 0;
        }
    if (strcmp(type, "Prepend") == 0) {
        n->kind = HF_PREPEND;
        if (str_field(j, "prepend", "", path, field, &n->to, err))
            return -1;
    } else if (strcmp(type, "Replace") == 0) {
        n->kind = HF_REPLACE;
        if (string_pattern(j, path, field, &n->from, err) ||
            str_field(j, "content", "", path, field, &n->to, err))
            return -1;
    } else {
        return type_fail(err, path, field, "normalizer", type,
                         "Sequence, NFC, NFD, NFKC, NFKD, Prepend, Replace");
    }
    hf->n_norm++;
    return 0;
}

int hf_parse_normalizer(gq_hf_tok *hf, const json_t *j, const char *path, const char *field,
                        gq_error *err)
{
    return for_each_step(j, "normalizers", normalizer_step, hf, path, field, err);
}

/* Compiles a Split pattern (or GPT-2's) in UTF + UCP mode, JIT-compiled when available. */
static int compile_pattern(const char *pat, bool literal, pcre2_code **out, const char *path,
                           const char *field, gq_error *err)
{
    int code;
    PCRE2_SIZE off;
    uint32_t opt = PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK | (literal ? PCRE2_LITERAL : 0);
    *out = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opt, &code, &off, NULL);
    if (!*out) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return hf_fail(err, path, field, "pattern: %s at offset %zu", (const char *)msg,
                       (size_t)off);
    }
    (void)pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE); /* the interpreter is used without JIT */
    return 0;
}

static int parse_split(hf_pre *p, const json_t *j, const char *path, const char *field,
                       gq_error *err)
{
    const json_t *pat = json_object_get(j, "pattern");
    const char *re = json_string_value(json_object_get(pat, "Regex"));
    const char *lit = json_string_value(json_object_get(pat, "String"));
    const char *behavior = json_string_value(json_object_get(j, "behavior"));
    if ((!re && !lit) || (lit && !lit[0]))
        return hf_fail(err, path, field, "pattern: expected {\"Regex\": ...} or a non-empty "
                       "{\"String\": ...}");
    if (!behavior || (strcmp(behavior, "Isolated") != 0 && strcmp(behavior, "Removed") != 0))
        return hf_fail(err, path, field, "behavior: \"%s\" is not supported (supported: Isolated, "
                       "Removed)", behavior ? behavior : "(missing)");
    p->kind = HF_SPLIT;
    p->keep_matches_only = flag(j, "invert", false);
    p->removed = strcmp(behavior, "Removed") == 0;
    return compile_pattern(re ? re : lit, !re, &p->re, path, field, err);
}

static int parse_metaspace(hf_pre *p, const json_t *j, const char *path, const char *field,
                           gq_error *err)
{
    p->kind = HF_METASPACE;
    if (str_field(j, "replacement", "\xE2\x96\x81", path, field, &p->replacement, err))
        return -1;
    if (!p->replacement[0])
        return hf_fail(err, path, field, "replacement: empty");
    if (flag(j, "split", true))
        return hf_fail(err, path, field, "split: true (or absent, whose default is true) is not "
                       "supported; only \"split\": false");
    const char *scheme = json_string_value(json_object_get(j, "prepend_scheme"));
    if (!scheme)
        p->prepend = flag(j, "add_prefix_space", true) ? HF_PREPEND_ALWAYS : HF_PREPEND_NEVER;
    else if (strcmp(scheme, "always") == 0)
        p->prepend = HF_PREPEND_ALWAYS;
    else if (strcmp(scheme, "first") == 0)
        p->prepend = HF_PREPEND_FIRST;
    else if (strcmp(scheme, "never") == 0)
        p->prepend = HF_PREPEND_NEVER;
    else
        return hf_fail(err, path, field, "prepend_scheme: \"%s\" (expected always, first or "
                       "never)", scheme);
    return 0;
}

/* GPT-2's pre-tokenizer pattern, which ByteLevel applies when use_regex is true. */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int pre_tokenizer_step(void *ctx, const json_t *j, const char *type, const char *path,
                              const char *field, gq_error *err)
{
    gq_hf_tok *hf = ctx;
    if (hf->n_pre == HF_MAX_STEPS)
        return hf_fail(err, path, field, "more than %d pre-tokenizer steps", HF_MAX_STEPS);
    hf_pre *p = &hf->pre[hf->n_pre++];
    if (strcmp(type, "Split") == 0)
        return parse_split(p, j, path, field, err);
    if (strcmp(type, "Metaspace") == 0)
        return parse_metaspace(p, j, path, field, err);
    if (strcmp(type, "ByteLevel") == 0) {
        p->kind = HF_BYTE_LEVEL;
        p->add_prefix_space = flag(j, "add_prefix_space", true);
        p->keep_matches_only = true;
        hf->byte_level = true;
        if (flag(j, "use_regex", true))
            return compile_pattern(GPT2_PATTERN, false, &p->re, path, field, err);
        return 0;
    }
    hf->n_pre--;
    return type_fail(err, path, field, "pre-tokenizer", type,
                     "Sequence, Split, ByteLevel, Metaspace");
}

int hf_parse_pre_tokenizer(gq_hf_tok *hf, const json_t *j, const char *path, const char *field,
                           gq_error *err)
{
    return for_each_step(j, "pretokenizers", pre_tokenizer_step, hf, path, field, err);
}

/* A TemplateProcessing special token: its ids from "special_tokens". */
static int template_ids(gq_hf_tok *hf, const json_t *specials, const char *name, bool before,
                        const char *path, const char *field, gq_error *err)
{
    const json_t *ids = json_object_get(json_object_get(specials, name), "ids");
    if (!json_is_array(ids) || json_array_size(ids) == 0)
        return hf_fail(err, path, field, "special_tokens: \"%s\" has no ids", name);
    for (size_t i = 0; i < json_array_size(ids); i++) {
        json_int_t id = json_integer_value(json_array_get(ids, i));
        int *n = before ? &hf->n_prefix : &hf->n_suffix;
        if (!json_is_integer(json_array_get(ids, i)) || id < 0 || id >= (1 << 24))
            return hf_fail(err, path, field, "special_tokens: \"%s\": ids must be token ids",
                           name);
        if (*n == HF_MAX_TEMPLATE)
            return hf_fail(err, path, field, "more than %d special tokens", HF_MAX_TEMPLATE);
        (before ? hf->prefix : hf->suffix)[(*n)++] = (int)id;
    }
    return 0;
}

static int parse_template(gq_hf_tok *hf, const json_t *j, const char *path, const char *field,
                          gq_error *err)
{
    const json_t *single = json_object_get(j, "single"), *specials = json_object_get(j,
                                                                                 "special_tokens");
    if (!json_is_array(single))
        return hf_fail(err, path, field, "single: expected an array");
    bool seen_a = false;
    for (size_t i = 0; i < json_array_size(single); i++) {
        const json_t *item = json_array_get(single, i);
        const char *sp = json_string_value(json_object_get(json_object_get(item, "SpecialToken"),
                                                           "id"));
        const char *seq = json_string_value(json_object_get(json_object_get(item, "Sequence"),
                                                            "id"));
        if (sp) {
            if (template_ids(hf, specials, sp, !seen_a, path, field, err))
                return -1;
        } else if (seq && strcmp(seq, "A") == 0 && !seen_a) {
            seen_a = true;
        } else {
            return hf_fail(err, path, field, "single[%zu]: expected a SpecialToken or the one "
                           "Sequence A", i);
        }
    }
    return seen_a ? 0 : hf_fail(err, path, field, "single: no Sequence A");
}

static int post_processor_step(void *ctx, const json_t *j, const char *type, const char *path,
                               const char *field, gq_error *err)
{
    if (strcmp(type, "ByteLevel") == 0) /* offsets only */
        return 0;
    if (strcmp(type, "TemplateProcessing") == 0)
        return parse_template(ctx, j, path, field, err);
    return type_fail(err, path, field, "post-processor", type,
                     "TemplateProcessing, ByteLevel, Sequence");
}

int hf_parse_post_processor(gq_tokenizer *t, const json_t *j, const char *path,
                            const char *field, gq_error *err)
{
    return for_each_step(j, "processors", post_processor_step, t->hf, path, field, err);
}

static int add_dec_op(gq_hf_tok *hf, hf_dec_kind kind, const char *path, const char *field,
                      gq_error *err)
{
    if (hf->n_dec_ops == HF_MAX_STEPS)
        return hf_fail(err, path, field, "more than %d decoder steps", HF_MAX_STEPS);
    hf->dec_ops[hf->n_dec_ops++] = (hf_dec){kind, NULL, NULL};
    return 0;
}

static int decoder_step(void *ctx, const json_t *j, const char *type, const char *path,
                        const char *field, gq_error *err)
{
    gq_hf_tok *hf = ctx;
    if (strcmp(type, "ByteLevel") == 0)
        return add_dec_op(hf, HF_DEC_BYTE_LEVEL, path, field, err);
    if (strcmp(type, "ByteFallback") == 0)
        return add_dec_op(hf, HF_DEC_BYTE_FALLBACK, path, field, err);
    if (strcmp(type, "Fuse") == 0) /* joins the pieces: what per-token decoding does anyway */
        return 0;
    if (strcmp(type, "Strip") == 0) {
        const char *c = json_string_value(json_object_get(j, "content"));
        json_int_t start = json_integer_value(json_object_get(j, "start"));
        json_int_t stop = json_integer_value(json_object_get(j, "stop"));
        if (!c || strcmp(c, " ") != 0 || start > 1 || stop != 0)
            return hf_fail(err, path, field, "only Strip of one leading \" \" is supported");
        hf->strip_after_bos = start == 1;
        return 0;
    }
    if (strcmp(type, "Replace") == 0 || strcmp(type, "Metaspace") == 0) {
        bool meta = type[0] == 'M';
        if (add_dec_op(hf, HF_DEC_REPLACE, path, field, err))
            return -1;
        hf_dec *d = &hf->dec_ops[hf->n_dec_ops - 1];
        if (meta) {
            const char *scheme = json_string_value(json_object_get(j, "prepend_scheme"));
            hf->strip_after_bos = !scheme || strcmp(scheme, "never") != 0;
            return str_field(j, "replacement", "\xE2\x96\x81", path, field, &d->from, err) ||
                   !(d->to = strdup(" ")) ? -1 : 0;
        }
        return string_pattern(j, path, field, &d->from, err) ||
               str_field(j, "content", "", path, field, &d->to, err);
    }
    return type_fail(err, path, field, "decoder", type,
                     "Sequence, ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace");
}

int hf_parse_decoder(gq_hf_tok *hf, const json_t *j, const char *path, const char *field,
                     gq_error *err)
{
    return for_each_step(j, "decoders", decoder_step, hf, path, field, err);
}
