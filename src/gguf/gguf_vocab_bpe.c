/* GGUF `gpt2` vocabularies (byte-level BPE: tokens, token types, merges and llama.cpp's
 * pre-tokenizer name) read as, and written from, a tokenizer.json tokenizer. Reading builds the
 * tokenizer.json the keys stand for and hands it to the tokenizer.json loader, so encoding is
 * the one `--tokenizer tokenizer.json` uses. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gq_gguf_model.h"
#include "gguf/gq_gguf_write.h"

/* llama.cpp's token types (llama_token_type) */
enum { TOK_NORMAL = 1, TOK_CONTROL = 3, TOK_USER_DEFINED = 4 };

/* A llama.cpp byte-level pre-tokenizer (tokenizer.ggml.pre) as the tokenizer.json steps it
 * stands for: NFC or no normalizer, Split(regex, Isolated) then ByteLevel without its own
 * regex, BPE with or without ignore_merges. The patterns are those of the Llama 3 and Qwen2/3
 * tokenizer.json files (the digits: runs of up to 3, or single). */
typedef struct bpe_pre {
    const char *name;
    const char *regex;
    const char *normalizer; /* "NFC" or NULL */
    bool ignore_merges;
} bpe_pre;

static const bpe_pre known_pres[] = {
    {"llama-bpe",
     "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
     "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     NULL, true},
    {"qwen2",
     "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
     "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     "NFC", false},
};
#define N_PRES (sizeof known_pres / sizeof known_pres[0])

/* ---- reading ---- */

static const bpe_pre *pre_by_name(const char *s, size_t n)
{
    for (size_t i = 0; i < N_PRES; i++)
        if (strlen(known_pres[i].name) == n && memcmp(known_pres[i].name, s, n) == 0)
            return &known_pres[i];
    return NULL;
}

/* The optional bool key (absent: false). */
static int get_bool(const gq_gguf *g, const char *key, bool *out, gq_error *err)
{
    const gq_gguf_kv *kv = gq_gguf_find_kv(g, key);
    *out = false;
    if (!kv)
        return 0;
    if (kv->type != GQ_GGUF_BOOL)
        return gq_fail(err, "%s: key %s: expected a bool", g->path, key);
    *out = kv->data[0] != 0;
    return 0;
}

/* The tokenizer.json steps of pre (normalizer, pre-tokenizer, decoder) into root. */
static void put_steps(json_t *root, const bpe_pre *pre)
{
    json_object_set_new(root, "normalizer",
                        pre->normalizer ? json_pack("{s:s}", "type", pre->normalizer)
                                        : json_null());
    json_object_set_new(root, "pre_tokenizer",
                        json_pack("{s:s,s:[{s:s,s:{s:s},s:s,s:b},{s:s,s:b,s:b,s:b}]}", "type",
                                  "Sequence", "pretokenizers", "type", "Split", "pattern",
                                  "Regex", pre->regex, "behavior", "Isolated", "invert", false,
                                  "type", "ByteLevel", "add_prefix_space", false,
                                  "trim_offsets", false, "use_regex", false));
    json_object_set_new(root, "decoder",
                        json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space",
                                  false, "trim_offsets", false, "use_regex", false));
}

/* The post-processor: BOS before every sequence when the file says add_bos_token, else none. */
static json_t *post_processor(const char *bos, json_int_t bos_id)
{
    if (!bos)
        return json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", false,
                         "trim_offsets", false, "use_regex", false);
    json_t *seq = json_pack("[{s:{s:s,s:i}},{s:{s:s,s:i}}]", "SpecialToken", "id", bos,
                            "type_id", 0, "Sequence", "id", "A", "type_id", 0);
    return json_pack("{s:s,s:o,s:o,s:{s:{s:s,s:[i],s:[s]}}}", "type", "TemplateProcessing",
                     "single", json_deep_copy(seq), "pair", seq, "special_tokens", bos, "id",
                     bos, "ids", bos_id, "tokens", bos);
}

/* model.vocab and added_tokens from the tokens and their types (control and user-defined
 * tokens are added tokens, control ones special); *bos (malloc'd) receives token bos_id. */
static int put_tokens(const gq_gguf *g, const gq_gguf_kv *tokens, const gq_gguf_kv *types,
                      json_t *vocab, json_t *added, uint64_t bos_id, char **bos, gq_error *err)
{
    gq_gguf_str_iter it = {tokens->data};
    for (uint64_t i = 0; i < tokens->n; i++) {
        const char *s;
        size_t n;
        gq_gguf_str_next(&it, &s, &n);
        int32_t type = TOK_NORMAL;
        if (types)
            memcpy(&type, types->data + 4 * i, 4);
        json_t *str = json_stringn(s, n);
        if (!str)
            return gq_fail(err, "%s: key tokenizer.ggml.tokens: token %llu is not UTF-8",
                           g->path, (unsigned long long)i);
        if (i == bos_id && !(*bos = strdup(json_string_value(str)))) {
            json_decref(str);
            return gq_fail(err, "%s: out of memory", g->path);
        }
        if (type == TOK_CONTROL || type == TOK_USER_DEFINED) {
            json_array_append_new(added, json_pack("{s:I,s:o,s:b,s:b,s:b,s:b,s:b}", "id",
                                                   (json_int_t)i, "content", str, "single_word",
                                                   false, "lstrip", false, "rstrip", false,
                                                   "normalized", false, "special",
                                                   type == TOK_CONTROL));
        } else {
            json_object_set_new(vocab, json_string_value(str), json_integer((json_int_t)i));
            json_decref(str);
        }
    }
    return 0;
}

/* The keys of the vocabulary: pre-tokenizer, tokens (and types), merges, BOS. */
typedef struct bpe_keys {
    const bpe_pre *pre;
    const gq_gguf_kv *tokens, *types, *merges;
    uint64_t bos_id; /* UINT64_MAX: no BOS added */
} bpe_keys;

static int read_keys(const gq_gguf *g, bpe_keys *k, gq_error *err)
{
    const char *s;
    size_t n;
    bool add_bos;
    memset(k, 0, sizeof *k);
    k->bos_id = UINT64_MAX;
    if (gq_gguf_get_str(g, "tokenizer.ggml.pre", false, &s, &n, err))
        return -1;
    if (!(k->pre = pre_by_name(s, n)))
        return gq_fail(err, "%s: key tokenizer.ggml.pre = \"%.*s\": gq-bench reads the "
                            "byte-level pre-tokenizers llama-bpe (Llama 3) and qwen2", g->path,
                       (int)(n > 64 ? 64 : n), s);
    if (gq_gguf_get_array(g, "tokenizer.ggml.tokens", GQ_GGUF_STRING, 0, &k->tokens, err) ||
        gq_gguf_get_array(g, "tokenizer.ggml.merges", GQ_GGUF_STRING, 0, &k->merges, err))
        return -1;
    if (k->tokens->n > (1u << 22) || k->merges->n > (1u << 22))
        return gq_fail(err, "%s: keys tokenizer.ggml.tokens / merges: %llu tokens, %llu merges "
                            "(at most %u each)", g->path, (unsigned long long)k->tokens->n,
                       (unsigned long long)k->merges->n, 1u << 22);
    if (gq_gguf_find_kv(g, "tokenizer.ggml.token_type") &&
        gq_gguf_get_array(g, "tokenizer.ggml.token_type", GQ_GGUF_I32, k->tokens->n, &k->types,
                          err))
        return -1;
    if (get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos, err))
        return -1;
    uint64_t bos = UINT64_MAX;
    if (add_bos && gq_gguf_get_uint(g, "tokenizer.ggml.bos_token_id", false, k->tokens->n - 1,
                                    &bos, err))
        return -1;
    k->bos_id = add_bos ? bos : UINT64_MAX;
    return 0;
}

/* The tokenizer.json the keys stand for, as text (malloc'd), or NULL after err. */
static char *tokenizer_json(const gq_gguf *g, const bpe_keys *k, gq_error *err)
{
    json_t *root = json_object(), *vocab = json_object(), *added = json_array();
    json_t *merges = json_array();
    char *bos = NULL, *text = NULL;
    if (put_tokens(g, k->tokens, k->types, vocab, added, k->bos_id, &bos, err))
        goto done;
    gq_gguf_str_iter it = {k->merges->data};
    for (uint64_t i = 0; i < k->merges->n; i++) {
        const char *s;
        size_t n;
        gq_gguf_str_next(&it, &s, &n);
        json_array_append_new(merges, json_stringn(s, n));
    }
    json_object_set_new(root, "version", json_string("1.0"));
    json_object_set(root, "added_tokens", added);
    put_steps(root, k->pre);
    json_object_set_new(root, "post_processor", post_processor(bos, (json_int_t)k->bos_id));
    json_object_set_new(root, "model",
                        json_pack("{s:s,s:n,s:n,s:n,s:n,s:b,s:b,s:b,s:O,s:O}", "type", "BPE",
                                  "dropout", "unk_token", "continuing_subword_prefix",
                                  "end_of_word_suffix", "fuse_unk", false, "byte_fallback",
                                  false, "ignore_merges", k->pre->ignore_merges, "vocab", vocab,
                                  "merges", merges));
    if (!(text = json_dumps(root, JSON_COMPACT)))
        gq_fail(err, "%s: out of memory for the vocabulary", g->path);
done:
    free(bos);
    json_decref(root), json_decref(vocab), json_decref(added), json_decref(merges);
    return text;
}

int gq_gguf_bpe_tokenizer_from(const gq_gguf *g, int expected_vocab, gq_tokenizer **tok,
                               gq_error *err)
{
    bpe_keys k;
    *tok = NULL;
    if (read_keys(g, &k, err))
        return -1;
    char *text = tokenizer_json(g, &k, err);
    if (!text)
        return -1;
    /* named as a file inside the GGUF, so no tokenizer_config.json is looked for beside it */
    char what[4200];
    snprintf(what, sizeof what, "%s/tokenizer.ggml", g->path);
    int rc = gq_tokenizer_parse(what, text, strlen(text), expected_vocab, tok, err);
    free(text);
    return rc;
}

/* ---- writing ---- */

static const char *type_of(const json_t *step)
{
    const char *s = json_string_value(json_object_get(step, "type"));
    return s ? s : "";
}

/* The llama.cpp pre-tokenizer whose steps the tokenizer.json root has, or NULL. */
static const bpe_pre *pre_of(const json_t *root)
{
    const json_t *pre = json_object_get(root, "pre_tokenizer");
    const json_t *steps = json_object_get(pre, "pretokenizers");
    const json_t *split = json_array_get(steps, 0), *bl = json_array_get(steps, 1);
    const json_t *norm = json_object_get(root, "normalizer");
    const json_t *model = json_object_get(root, "model");
    const char *behavior = json_string_value(json_object_get(split, "behavior"));
    if (strcmp(type_of(pre), "Sequence") != 0 || json_array_size(steps) != 2 ||
        strcmp(type_of(split), "Split") != 0 || strcmp(type_of(bl), "ByteLevel") != 0 ||
        json_is_true(json_object_get(bl, "use_regex")) ||
        json_is_true(json_object_get(split, "invert")) ||
        strcmp(behavior ? behavior : "", "Isolated") != 0)
        return NULL;
    const char *re = json_string_value(json_object_get(json_object_get(split, "pattern"),
                                                       "Regex"));
    for (size_t i = 0; re && i < N_PRES; i++) {
        const bpe_pre *p = &known_pres[i];
        bool norm_ok = p->normalizer ? strcmp(type_of(norm), p->normalizer) == 0
                                     : json_is_null(norm) || !norm;
        if (strcmp(re, p->regex) == 0 && norm_ok &&
            json_is_true(json_object_get(model, "ignore_merges")) == p->ignore_merges)
            return p;
    }
    return NULL;
}

typedef struct {
    const gq_tokenizer *tok;
    const json_t *merges;
    char *scratch; /* one merge "left right" */
    size_t cap;
} bpe_write_ctx;

static const char *token_at(void *ctx, size_t i, size_t *len)
{
    const char *p = gq_tokenizer_piece(((bpe_write_ctx *)ctx)->tok, (int)i);
    *len = strlen(p);
    return p;
}

/* Merge i as "left right" (tokenizer.json holds either that string or [left, right]). */
static const char *merge_at(void *ctx, size_t i, size_t *len)
{
    bpe_write_ctx *c = ctx;
    const json_t *m = json_array_get(c->merges, i);
    if (json_is_string(m)) {
        *len = json_string_length(m);
        return json_string_value(m);
    }
    const json_t *l = json_array_get(m, 0), *r = json_array_get(m, 1);
    *len = (size_t)snprintf(c->scratch, c->cap, "%s %s", json_string_value(l),
                            json_string_value(r));
    return c->scratch;
}

/* Token types: control for special added tokens, user-defined for the other added ones. */
static int32_t *token_types(const json_t *root, int n, gq_error *err)
{
    int32_t *types = malloc((size_t)n * sizeof *types);
    if (!types)
        return gq_fail(err, "out of memory for the vocabulary"), NULL;
    for (int i = 0; i < n; i++)
        types[i] = TOK_NORMAL;
    size_t i;
    const json_t *a;
    json_array_foreach(json_object_get(root, "added_tokens"), i, a) {
        json_int_t id = json_integer_value(json_object_get(a, "id"));
        if (id >= 0 && id < n)
            types[id] = json_is_true(json_object_get(a, "special")) ? TOK_CONTROL
                                                                   : TOK_USER_DEFINED;
    }
    return types;
}

/* Whether encoding with special tokens puts BOS first (the post-processor or
 * tokenizer_config.json's add_bos_token). */
static bool adds_bos(const gq_tokenizer *tok)
{
    int *ids = NULL;
    size_t n = 0;
    gq_error ignored = {{0}};
    bool yes = gq_tokenizer_bos_id(tok) >= 0 &&
               gq_tokenizer_encode(tok, "", 0, true, false, &ids, &n, &ignored) == 0 && n > 0 &&
               ids[0] == gq_tokenizer_bos_id(tok);
    free(ids);
    return yes;
}

static void put_keys(gq_gguf_writer *w, const gq_tokenizer *tok, const bpe_pre *pre,
                     const int32_t *types, bpe_write_ctx *c)
{
    size_t n = (size_t)gq_tokenizer_vocab_size(tok);
    gq_gguf_put_str(w, "tokenizer.ggml.model", "gpt2");
    gq_gguf_put_str(w, "tokenizer.ggml.pre", pre->name);
    gq_gguf_put_str_array(w, "tokenizer.ggml.tokens", n, token_at, c);
    gq_gguf_put_i32_array(w, "tokenizer.ggml.token_type", types, n);
    gq_gguf_put_str_array(w, "tokenizer.ggml.merges", json_array_size(c->merges), merge_at, c);
    if (gq_tokenizer_bos_id(tok) >= 0)
        gq_gguf_put_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)gq_tokenizer_bos_id(tok));
    if (gq_tokenizer_eos_id(tok) >= 0)
        gq_gguf_put_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)gq_tokenizer_eos_id(tok));
    gq_gguf_put_bool(w, "tokenizer.ggml.add_bos_token", adds_bos(tok));
}

/* Whether a pre-tokenizer is ByteLevel or a Sequence holding one. */
static bool byte_level(const json_t *pre)
{
    if (strcmp(type_of(pre), "ByteLevel") == 0)
        return true;
    size_t i;
    const json_t *step;
    json_array_foreach(json_object_get(pre, "pretokenizers"), i, step) {
        if (strcmp(type_of(step), "ByteLevel") == 0)
            return true;
    }
    return false;
}

int gq_gguf_put_bpe_vocab(gq_gguf_writer *w, const gq_tokenizer *tok, bool *written,
                          gq_error *err)
{
    size_t len;
    const char *src = gq_tokenizer_json_source(tok, &len);
    *written = false;
    json_t *root = src ? json_loadb(src, len, 0, NULL) : NULL;
    if (!root || !byte_level(json_object_get(root, "pre_tokenizer"))) {
        json_decref(root);
        return 0; /* not a byte-level BPE: the caller writes a `llama` vocabulary */
    }
    const bpe_pre *pre = pre_of(root);
    if (!pre) {
        json_decref(root);
        return gq_fail(err, "tokenizer.json: its normalizer, pre_tokenizer and model.ignore_merges "
                            "are not those of a llama.cpp byte-level pre-tokenizer gq-bench "
                            "writes (llama-bpe: Llama 3; qwen2: Qwen2/3)");
    }
    bpe_write_ctx c = {tok, json_object_get(json_object_get(root, "model"), "merges"), NULL, 0};
    size_t longest = 0;
    for (int i = 0; i < gq_tokenizer_vocab_size(tok); i++)
        if (strlen(gq_tokenizer_piece(tok, i)) > longest)
            longest = strlen(gq_tokenizer_piece(tok, i));
    c.cap = 2 * longest + 2;
    c.scratch = malloc(c.cap);
    int32_t *types = c.scratch ? token_types(root, gq_tokenizer_vocab_size(tok), err) : NULL;
    int rc = 0;
    if (!types)
        rc = c.scratch ? -1 : gq_fail(err, "out of memory for the vocabulary");
    else
        put_keys(w, tok, pre, types, &c);
    *written = rc == 0;
    free(types);
    free(c.scratch);
    json_decref(root);
    return rc;
}
