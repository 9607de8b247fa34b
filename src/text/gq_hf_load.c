/* tokenizer.json (Hugging Face tokenizers): the file, its BPE model (vocabulary, merges,
 * byte fallback, unknown token), added tokens and tokenizer_config.json. Errors name the file
 * and the JSON field. */
#include "text/gq_hf.h"

#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_fileio.h"

#define HF_MAX_VOCAB (1 << 24)
/* PCRE2 limits per match attempt: a hostile pattern fails instead of hanging. */
#define HF_MATCH_LIMIT 1000000u
#define HF_DEPTH_LIMIT 10000u

int hf_fail(gq_error *err, const char *path, const char *field, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return gq_fail(err, "%s: %s: %s", path, field, msg);
}

/* ---- vocabulary: model.vocab plus added_tokens ---- */

/* The id of one vocab entry or added token: an integer in 0..HF_MAX_VOCAB-1. */
static int get_id(const json_t *v, int *id)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) >= HF_MAX_VOCAB)
        return -1;
    *id = (int)json_integer_value(v);
    return 0;
}

/* Size of the id space and of the arena, checking every id. */
static int vocab_extent(const json_t *vocab, const json_t *added, const char *path, int *n,
                        size_t *bytes, gq_error *err)
{
    const char *key;
    json_t *v;
    int id;
    *n = 0;
    *bytes = 0;
    json_object_foreach((json_t *)vocab, key, v) {
        if (get_id(v, &id))
            return hf_fail(err, path, "model.vocab", "\"%s\": expected an id in 0..%d", key,
                           HF_MAX_VOCAB - 1);
        *n = id + 1 > *n ? id + 1 : *n;
        *bytes += strlen(key) + 1;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i);
        const char *c = json_string_value(json_object_get(a, "content"));
        if (!c || !c[0] || get_id(json_object_get(a, "id"), &id))
            return hf_fail(err, path, "added_tokens", "[%zu]: expected a non-empty \"content\" and "
                           "an \"id\" in 0..%d", i, HF_MAX_VOCAB - 1);
        *n = id + 1 > *n ? id + 1 : *n;
        *bytes += strlen(c) + 1;
    }
    return 0;
}

/* Sets id's piece; the same id may appear twice only with the same text. */
static int set_piece(gq_vocab *v, int id, const char *s, const char *path, const char *field,
                     gq_error *err)
{
    if (v->pieces[id]) {
        if (strcmp(v->pieces[id], s) == 0)
            return 0;
        return hf_fail(err, path, field, "id %d is both \"%s\" and \"%s\"", id, v->pieces[id], s);
    }
    if (gq_vocab_set(v, id, s, strlen(s)) != 0)
        return hf_fail(err, path, field, "out of memory");
    return 0;
}

/* One added token: refused unless matched on the raw text without stripping or word rules. */
static int parse_added(gq_hf_tok *hf, const json_t *a, size_t i, const char *path, gq_error *err)
{
    static const char *const unsupported[] = {"lstrip", "rstrip", "single_word"};
    for (int k = 0; k < 3; k++)
        if (json_is_true(json_object_get(a, unsupported[k])))
            return hf_fail(err, path, "added_tokens", "[%zu].%s: true is not supported", i,
                           unsupported[k]);
    /* normalized (default: not special) matches on the normalized text: the same as on the raw
     * text only when nothing normalizes */
    const json_t *norm = json_object_get(a, "normalized");
    bool normalized = json_is_boolean(norm) ? json_is_true(norm)
                                            : !json_is_true(json_object_get(a, "special"));
    if (normalized && hf->n_norm > 0)
        return hf_fail(err, path, "added_tokens", "[%zu].normalized: true (or absent for a "
                       "non-special token) is not supported with a normalizer", i);
    const char *c = json_string_value(json_object_get(a, "content"));
    hf_added *d = &hf->added[hf->n_added++];
    d->len = strlen(c);
    d->text = strdup(c);
    d->id = (int)json_integer_value(json_object_get(a, "id"));
    hf->added_first[(unsigned char)c[0] >> 3] |= (uint8_t)(1u << ((unsigned char)c[0] & 7));
    return d->text ? 0 : hf_fail(err, path, "added_tokens", "out of memory");
}

/* Longest first, so that the first match at a position is the longest. */
static int added_cmp(const void *a, const void *b)
{
    const hf_added *x = a, *y = b;
    return (x->len < y->len) - (x->len > y->len);
}

static int load_vocab(gq_tokenizer *t, const json_t *root, const char *path, gq_error *err)
{
    const json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab");
    const json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab))
        return hf_fail(err, path, "model.vocab", "expected an object of token -> id");
    if (added && !json_is_array(added))
        return hf_fail(err, path, "added_tokens", "expected an array");
    int n;
    size_t bytes;
    if (vocab_extent(vocab, added, path, &n, &bytes, err))
        return -1;
    gq_hf_tok *hf = t->hf;
    if (gq_vocab_alloc(&t->v, (size_t)n, bytes) != 0 ||
        !(hf->added = calloc(json_array_size(added) + 1, sizeof *hf->added)))
        return hf_fail(err, path, "model.vocab", "out of memory for %d tokens", n);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)vocab, key, v)
        if (set_piece(&t->v, (int)json_integer_value(v), key, path, "model.vocab", err))
            return -1;
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i);
        if (set_piece(&t->v, (int)json_integer_value(json_object_get(a, "id")),
                      json_string_value(json_object_get(a, "content")), path, "added_tokens", err) ||
            parse_added(hf, a, i, path, err))
            return -1;
    }
    for (int id = 0; id < n; id++)
        if (!t->v.pieces[id])
            return hf_fail(err, path, "model.vocab", "no token has id %d (ids must be 0..%d "
                           "without gaps)", id, n - 1);
    qsort(hf->added, (size_t)hf->n_added, sizeof *hf->added, added_cmp);
    gq_vocab_index(&t->v);
    return 0;
}

/* ---- merges ---- */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

/* Inserts (a, b) -> merged at rank; an already present pair keeps its earlier rank. */
static void merge_insert(gq_hf_tok *hf, int a, int b, int merged, int rank)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t i = (uint32_t)mix64(key) & hf->merge_mask;
    while (hf->merges[i].key != UINT64_MAX) {
        if (hf->merges[i].key == key)
            return;
        i = (i + 1) & hf->merge_mask;
    }
    hf->merges[i] = (hf_merge){key, rank, merged};
}

const hf_merge *hf_merge_find(const gq_hf_tok *hf, int a, int b)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t i = (uint32_t)mix64(key) & hf->merge_mask;
    while (hf->merges[i].key != UINT64_MAX) {
        if (hf->merges[i].key == key)
            return &hf->merges[i];
        i = (i + 1) & hf->merge_mask;
    }
    return NULL;
}

/* Merge i: "left right" or ["left", "right"]; both and their concatenation must be tokens. */
static int parse_merge(gq_tokenizer *t, const json_t *m, size_t i, const char *path,
                       gq_error *err)
{
    const char *l = NULL, *r = NULL;
    size_t nl = 0;
    if (json_is_string(m)) {
        l = json_string_value(m);
        const char *sp = strchr(l, ' ');
        if (sp) {
            nl = (size_t)(sp - l);
            r = sp + 1;
        }
    } else if (json_is_array(m) && json_array_size(m) == 2) {
        l = json_string_value(json_array_get(m, 0));
        r = json_string_value(json_array_get(m, 1));
        nl = l ? strlen(l) : 0;
    }
    if (!l || !r)
        return hf_fail(err, path, "model.merges", "[%zu]: expected \"left right\" or [left, right]",
                       i);
    int a = gq_vocab_find2(&t->v, l, (int)nl, "", 0), b = gq_vocab_find2(&t->v, r, (int)strlen(r),
                                                                         "", 0);
    int merged = gq_vocab_find2(&t->v, l, (int)nl, r, (int)strlen(r));
    if (a < 0 || b < 0 || merged < 0)
        return hf_fail(err, path, "model.merges", "[%zu]: \"%.*s\" + \"%s\": %s is not in the "
                       "vocabulary", i, (int)nl, l, r, a < 0 ? "the left part" : b < 0 ?
                       "the right part" : "the merged token");
    merge_insert(t->hf, a, b, merged, (int)i);
    return 0;
}

static int load_merges(gq_tokenizer *t, const json_t *model, const char *path, gq_error *err)
{
    const json_t *merges = json_object_get(model, "merges");
    if (!json_is_array(merges))
        return hf_fail(err, path, "model.merges", "expected an array");
    size_t n = json_array_size(merges), cap = 16;
    if (n > HF_MAX_VOCAB)
        return hf_fail(err, path, "model.merges", "more than %d merges", HF_MAX_VOCAB);
    while (cap < 2 * n)
        cap <<= 1;
    gq_hf_tok *hf = t->hf;
    if (!(hf->merges = malloc(cap * sizeof *hf->merges)))
        return hf_fail(err, path, "model.merges", "out of memory for %zu merges", n);
    memset(hf->merges, 0xff, cap * sizeof *hf->merges);
    hf->merge_mask = (uint32_t)(cap - 1);
    hf->n_merges = (int)n;
    for (size_t i = 0; i < n; i++)
        if (parse_merge(t, json_array_get(merges, i), i, path, err))
            return -1;
    return 0;
}

/* ---- model ---- */

/* An optional string option that must be absent, null or "" (a feature the encoder lacks). */
static int must_be_empty(const json_t *model, const char *key, const char *path, gq_error *err)
{
    const json_t *v = json_object_get(model, key);
    if (v && !json_is_null(v) && !(json_is_string(v) && !json_string_value(v)[0]))
        return hf_fail(err, path, "model", "%s: only null or \"\" is supported", key);
    return 0;
}

static int load_model_options(gq_tokenizer *t, const json_t *model, const char *path,
                              gq_error *err)
{
    gq_hf_tok *hf = t->hf;
    const json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && json_number_value(dropout) != 0.0)
        return hf_fail(err, path, "model", "dropout: only null is supported");
    if (must_be_empty(model, "continuing_subword_prefix", path, err) ||
        must_be_empty(model, "end_of_word_suffix", path, err))
        return -1;
    hf->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    hf->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    hf->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    hf->unk_id = -1;
    const json_t *unk = json_object_get(model, "unk_token");
    if (json_is_string(unk) &&
        (hf->unk_id = gq_vocab_find2(&t->v, json_string_value(unk),
                                     (int)strlen(json_string_value(unk)), "", 0)) < 0)
        return hf_fail(err, path, "model", "unk_token: \"%s\" is not in the vocabulary",
                       json_string_value(unk));
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        hf->byte_id[b] = gq_vocab_find2(&t->v, name, 6, "", 0);
    }
    return 0;
}

static int check_model_type(const json_t *model, const char *path, gq_error *err)
{
    const char *type = json_string_value(json_object_get(model, "type"));
    if (!json_is_object(model))
        return hf_fail(err, path, "model", "expected an object");
    if (!type)
        return hf_fail(err, path, "model.type", "missing");
    if (strcmp(type, "BPE") != 0)
        return hf_fail(err, path, "model.type", "\"%s\" is not supported (only BPE)", type);
    return 0;
}

/* ---- tokenizer_config.json and special tokens ---- */

/* A special token of tokenizer_config.json: "text" or {"content": "text"}; -1 when absent. */
static int config_token(const gq_tokenizer *t, const json_t *cfg, const char *key)
{
    const json_t *v = json_object_get(cfg, key);
    const char *s = json_is_string(v) ? json_string_value(v)
                                      : json_string_value(json_object_get(v, "content"));
    return s ? gq_vocab_find2(&t->v, s, (int)strlen(s), "", 0) : -1;
}

/* BOS/EOS ids and, without a TemplateProcessing post-processor, the add_bos_token /
 * add_eos_token flags, from tokenizer_config.json beside the file (optional). */
static int load_config(gq_tokenizer *t, const char *path, gq_error *err)
{
    char *dir = strdup(path), cfg_path[4200];
    if (!dir)
        return gq_fail(err, "%s: out of memory", path);
    snprintf(cfg_path, sizeof cfg_path, "%s/tokenizer_config.json", dirname(dir));
    free(dir);
    gq_hf_tok *hf = t->hf;
    t->bos_id = hf->n_prefix > 0 ? hf->prefix[0] : -1;
    t->eos_id = hf->n_suffix > 0 ? hf->suffix[hf->n_suffix - 1] : -1;
    if (!gq_file_exists(cfg_path))
        return 0;
    json_error_t je;
    json_t *cfg = json_load_file(cfg_path, JSON_DECODE_INT_AS_REAL, &je); /* 1e30 lengths */
    if (!json_is_object(cfg)) {
        json_decref(cfg);
        return gq_fail(err, "%s: line %d: %s", cfg_path, je.line, cfg ? "expected an object" :
                       je.text);
    }
    int bos = config_token(t, cfg, "bos_token"), eos = config_token(t, cfg, "eos_token");
    t->bos_id = bos >= 0 ? bos : t->bos_id;
    t->eos_id = eos >= 0 ? eos : t->eos_id;
    bool template = hf->n_prefix + hf->n_suffix > 0;
    if (!template && json_is_true(json_object_get(cfg, "add_bos_token")) && t->bos_id >= 0)
        hf->prefix[hf->n_prefix++] = t->bos_id;
    if (!template && json_is_true(json_object_get(cfg, "add_eos_token")) && t->eos_id >= 0)
        hf->suffix[hf->n_suffix++] = t->eos_id;
    json_decref(cfg);
    return 0;
}

/* ---- decoded pieces ---- */

/* The decoder applied to one piece: Replace steps, byte fallback (<0xXX> -> the byte), the
 * byte-level alphabet -> bytes. */
static int decode_piece(const gq_hf_tok *hf, const char *piece, hf_buf *out)
{
    hf_buf cur = {0}, next = {0};
    int rc = hf_buf_put(&cur, piece, strlen(piece));
    for (int k = 0; k < hf->n_dec_ops && rc == 0; k++) {
        const hf_dec *d = &hf->dec_ops[k];
        next.n = 0;
        if (d->kind == HF_DEC_BYTE_LEVEL) {
            rc = hf_byte_level_decode(cur.p, cur.n, &next);
        } else if (d->kind == HF_DEC_BYTE_FALLBACK) {
            unsigned b = 0;
            char c, tail;
            bool byte = cur.n == 6 && sscanf(cur.p, "<0x%2X%c", &b, &tail) == 2 && tail == '>';
            c = (char)b;
            rc = byte ? hf_buf_put(&next, &c, 1) : hf_buf_put(&next, cur.p, cur.n);
        } else {
            size_t nf = strlen(d->from);
            for (size_t i = 0; i < cur.n && rc == 0;) {
                bool hit = cur.n - i >= nf && memcmp(cur.p + i, d->from, nf) == 0;
                rc = hit ? hf_buf_put(&next, d->to, strlen(d->to)) : hf_buf_put(&next, cur.p + i, 1);
                i += hit ? nf : 1;
            }
            rc = rc ? rc : hf_buf_put(&next, "", 0);
        }
        hf_buf tmp = cur;
        cur = next;
        next = tmp;
    }
    rc = rc ? rc : hf_buf_put(out, cur.p, cur.n);
    free(cur.p);
    free(next.p);
    return rc;
}

static int build_decoded(gq_tokenizer *t, const char *path, gq_error *err)
{
    gq_hf_tok *hf = t->hf;
    hf_buf all = {0};
    size_t *off = malloc((size_t)t->v.n * sizeof *off);
    bool *added = calloc((size_t)t->v.n, sizeof *added);
    int rc = off && added ? 0 : -1;
    for (int k = 0; k < hf->n_added && rc == 0; k++)
        added[hf->added[k].id] = true;
    for (int id = 0; id < t->v.n && rc == 0; id++) {
        off[id] = all.n;
        rc = added[id] ? hf_buf_put(&all, t->v.pieces[id], (size_t)t->v.lens[id])
                   : decode_piece(hf, t->v.pieces[id], &all);
        rc = rc ? rc : hf_buf_put(&all, "", 1); /* the NUL separator */
    }
    if (rc == 0 && gq_vocab_alloc(&hf->dec, (size_t)t->v.n, all.n + 1) == 0) {
        for (int id = 0; id < t->v.n; id++)
            gq_vocab_set(&hf->dec, id, all.p + off[id], strlen(all.p + off[id]));
    } else {
        rc = -1;
    }
    free(off);
    free(added);
    free(all.p);
    return rc ? hf_fail(err, path, "decoder", "out of memory") : 0;
}

/* ---- the file ---- */

static void describe(gq_tokenizer *t)
{
    gq_hf_tok *hf = t->hf;
    snprintf(hf->describe, sizeof hf->describe, "tokenizer.json BPE, %s, %d merges%s",
             hf->byte_level ? "byte-level" : "SentencePiece-style", hf->n_merges,
             hf->byte_fallback ? ", byte fallback" : "");
}

static int load_sections(gq_tokenizer *t, const json_t *root, const char *path, gq_error *err)
{
    const json_t *model = json_object_get(root, "model");
    gq_hf_tok *hf = t->hf;
    if (check_model_type(model, path, err) ||
        hf_parse_normalizer(hf, json_object_get(root, "normalizer"), path, "normalizer", err) ||
        load_vocab(t, root, path, err) || load_model_options(t, model, path, err) ||
        load_merges(t, model, path, err) ||
        hf_parse_pre_tokenizer(hf, json_object_get(root, "pre_tokenizer"), path, "pre_tokenizer",
                               err) ||
        hf_parse_post_processor(t, json_object_get(root, "post_processor"), path,
                                "post_processor", err) ||
        hf_parse_decoder(hf, json_object_get(root, "decoder"), path, "decoder", err))
        return -1;
    for (int k = 0; k < hf->n_prefix + hf->n_suffix; k++) {
        int id = k < hf->n_prefix ? hf->prefix[k] : hf->suffix[k - hf->n_prefix];
        if (id >= t->v.n)
            return hf_fail(err, path, "post_processor", "special token id %d is not in the "
                           "vocabulary", id);
    }
    return load_config(t, path, err) || build_decoded(t, path, err);
}

int gq_hf_load(const char *path, const char *json, size_t len, gq_tokenizer *t, gq_error *err)
{
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return gq_fail(err, "%s: JSON error at line %d, column %d: %s", path, je.line,
                       je.column, je.text);
    if (!(t->hf = calloc(1, sizeof *t->hf)) || !(t->hf->mctx = pcre2_match_context_create(NULL))) {
        json_decref(root);
        return gq_fail(err, "%s: out of memory", path);
    }
    pcre2_set_match_limit(t->hf->mctx, HF_MATCH_LIMIT);
    pcre2_set_depth_limit(t->hf->mctx, HF_DEPTH_LIMIT);
    int rc = load_sections(t, root, path, err);
    json_decref(root);
    if (rc == 0 && !(t->hf->source = malloc(len + 1)))
        rc = gq_fail(err, "%s: out of memory", path);
    else if (rc == 0)
        memcpy(t->hf->source, json, (t->hf->source_len = len));
    if (rc == 0)
        describe(t);
    return rc;
}

const char *gq_hf_describe(const gq_tokenizer *t) { return t->hf->describe; }

void gq_hf_free(gq_hf_tok *hf)
{
    if (!hf)
        return;
    for (int k = 0; k < hf->n_norm; k++) {
        free(hf->norm[k].from);
        free(hf->norm[k].to);
    }
    for (int k = 0; k < hf->n_pre; k++) {
        pcre2_code_free(hf->pre[k].re);
        free(hf->pre[k].replacement);
    }
    for (int k = 0; k < hf->n_dec_ops; k++) {
        free(hf->dec_ops[k].from);
        free(hf->dec_ops[k].to);
    }
    for (int k = 0; k < hf->n_added; k++)
        free(hf->added[k].text);
    free(hf->added);
    free(hf->merges);
    pcre2_match_context_free(hf->mctx);
    gq_vocab_free(&hf->dec);
    free(hf->source);
    free(hf);
}
