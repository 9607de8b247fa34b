/* Writes a tokenizer as tokenizer.json. A llama2.c tokenizer.bin becomes the SentencePiece-style
 * BPE that encodes the same: pieces with " " spelled "▁", normalizer Prepend "▁" + Replace
 * " " -> "▁" (llama2.c's dummy prefix and spaces), byte fallback, <unk>/<s>/</s> as special
 * added tokens, BOS by TemplateProcessing, and merges derived from the scores: every split of a
 * piece scoring above llama2.c's floor into two pieces, ranked by the piece's score (highest
 * first; ties by id, then by the split's position). A tokenizer read from tokenizer.json is
 * written back as read. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/gq_fileio.h"
#include "text/gq_hf.h"

#define META "\xE2\x96\x81" /* ▁, SentencePiece's space */
#define MERGE_SCORE_FLOOR (-1e10f)

typedef struct {
    float score;
    int id, split; /* the merged piece and the length of its left part */
} merge_src;

/* The llama2.c piece as a tokenizer.json token: ids 0..2 are the special tokens (llama2.c
 * stores BOS/EOS as "\n<s>\n" / "\n</s>\n"), spaces become "▁". Caller frees. */
static char *json_piece(const gq_tokenizer *t, int id)
{
    static const char *const special[] = {"<unk>", "<s>", "</s>"};
    if (id < 3)
        return strdup(special[id]);
    hf_buf b = {0};
    const char *p = t->v.pieces[id];
    for (int i = 0; i < t->v.lens[id]; i++)
        if (hf_buf_put(&b, p[i] == ' ' ? META : p + i, p[i] == ' ' ? 3 : 1) != 0) {
            free(b.p);
            return NULL;
        }
    return b.p ? b.p : strdup("");
}

static int vocab_json(const gq_tokenizer *t, json_t *vocab, const char *path, gq_error *err)
{
    for (int id = 0; id < t->v.n; id++) {
        if (strstr(t->v.pieces[id], META))
            return gq_fail(err, "%s: token %d contains \"" META "\", which tokenizer.json uses for "
                           "the space: no equivalent tokenizer.json", path, id);
        char *s = json_piece(t, id);
        json_t *key = s ? json_string(s) : NULL; /* NULL: not valid UTF-8 */
        if (!key || json_object_get(vocab, s)) {
            int dup = key ? (int)json_integer_value(json_object_get(vocab, s)) : -1;
            json_decref(key);
            free(s);
            return dup >= 0 ? gq_fail(err, "%s: tokens %d and %d are the same tokenizer.json "
                                      "token", path, dup, id)
                            : gq_fail(err, "%s: token %d is not valid UTF-8: no tokenizer.json "
                                      "equivalent", path, id);
        }
        json_decref(key);
        json_object_set_new(vocab, s, json_integer(id));
        free(s);
    }
    return 0;
}

static uint32_t score_order(float s)
{
    uint32_t u;
    memcpy(&u, &s, 4);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static int merge_cmp(const void *a, const void *b)
{
    const merge_src *x = a, *y = b;
    uint32_t sx = score_order(x->score), sy = score_order(y->score);
    if (sx != sy)
        return sx > sy ? -1 : 1;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return (x->split > y->split) - (x->split < y->split);
}

/* Every (left, right) split of a mergeable piece into two pieces, in rank order. */
static int collect_merges(const gq_tokenizer *t, merge_src **out, size_t *n_out)
{
    size_t n = 0, cap = 1024;
    merge_src *m = malloc(cap * sizeof *m);
    for (int id = 3; m && id < t->v.n; id++) {
        if (!(t->scores[id] > MERGE_SCORE_FLOOR))
            continue;
        const char *p = t->v.pieces[id];
        for (int k = 1; k < t->v.lens[id]; k++) {
            if (gq_vocab_find2(&t->v, p, k, "", 0) < 0 ||
                gq_vocab_find2(&t->v, p + k, t->v.lens[id] - k, "", 0) < 0)
                continue;
            if (n == cap) {
                merge_src *g = realloc(m, 2 * cap * sizeof *m);
                if (!g) {
                    free(m);
                    return -1;
                }
                m = g;
                cap *= 2;
            }
            m[n++] = (merge_src){t->scores[id], id, k};
        }
    }
    if (!m)
        return -1;
    qsort(m, n, sizeof *m, merge_cmp);
    *out = m;
    *n_out = n;
    return 0;
}

static int merges_json(const gq_tokenizer *t, json_t *merges)
{
    merge_src *m;
    size_t n;
    if (collect_merges(t, &m, &n) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char *full = json_piece(t, m[i].id);
        if (!full) {
            free(m);
            return -1;
        }
        /* the split in the tokenizer.json spelling: every space before it became 3 bytes */
        size_t cut = (size_t)m[i].split;
        for (int k = 0; k < m[i].split; k++)
            cut += t->v.pieces[m[i].id][k] == ' ' ? 2 : 0;
        json_t *pair = json_array();
        json_array_append_new(pair, json_stringn(full, cut));
        json_array_append_new(pair, json_string(full + cut));
        json_array_append_new(merges, pair);
        free(full);
    }
    free(m);
    return 0;
}

/* Everything around the model: added tokens, normalizer, post-processor, decoder. */
static const char PIPELINE[] =
    "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null,"
    " \"added_tokens\": ["
    "  {\"id\": 0, \"content\": \"<unk>\", \"single_word\": false, \"lstrip\": false,"
    "   \"rstrip\": false, \"normalized\": false, \"special\": true},"
    "  {\"id\": 1, \"content\": \"<s>\", \"single_word\": false, \"lstrip\": false,"
    "   \"rstrip\": false, \"normalized\": false, \"special\": true},"
    "  {\"id\": 2, \"content\": \"</s>\", \"single_word\": false, \"lstrip\": false,"
    "   \"rstrip\": false, \"normalized\": false, \"special\": true}],"
    " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": ["
    "  {\"type\": \"Prepend\", \"prepend\": \"" META "\"},"
    "  {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"" META "\"}]},"
    " \"pre_tokenizer\": null,"
    " \"post_processor\": {\"type\": \"TemplateProcessing\","
    "  \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}},"
    "   {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}],"
    "  \"pair\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}},"
    "   {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}},"
    "   {\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 1}},"
    "   {\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}],"
    "  \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1], \"tokens\": [\"<s>\"]}}},"
    " \"decoder\": {\"type\": \"Sequence\", \"decoders\": ["
    "  {\"type\": \"Replace\", \"pattern\": {\"String\": \"" META "\"}, \"content\": \" \"},"
    "  {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"},"
    "  {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]}}";

static int save_llama2c(const gq_tokenizer *t, const char *path, gq_error *err)
{
    if (t->space_id < 0)
        return gq_fail(err, "%s: the vocabulary has no \" \" piece (llama2.c's dummy prefix would "
                       "be a byte token): no tokenizer.json equivalent", path);
    json_t *vocab = json_object(), *merges = json_array();
    if (vocab_json(t, vocab, path, err) != 0 || merges_json(t, merges) != 0) {
        json_decref(vocab);
        json_decref(merges);
        return err->msg[0] ? -1 : gq_fail(err, "%s: out of memory", path);
    }
    json_t *model = json_pack("{s:s,s:n,s:s,s:n,s:n,s:b,s:b,s:b,s:o,s:o}", "type", "BPE",
                              "dropout", "unk_token", "<unk>", "continuing_subword_prefix",
                              "end_of_word_suffix", "fuse_unk", 1, "byte_fallback", 1,
                              "ignore_merges", 0, "vocab", vocab, "merges", merges);
    json_t *root = json_loads(PIPELINE, 0, NULL);
    if (root && model)
        json_object_set(root, "model", model);
    json_decref(model);
    return gq_write_json_atomic(path, root, JSON_COMPACT, err);
}

int gq_tokenizer_save_json(const gq_tokenizer *t, const char *path, gq_error *err)
{
    if (t->hf)
        return gq_write_file_atomic(path, t->hf->source, t->hf->source_len, err);
    return save_llama2c(t, path, err);
}

const char *gq_tokenizer_json_source(const gq_tokenizer *t, size_t *len)
{
    *len = t->hf ? t->hf->source_len : 0;
    return t->hf ? t->hf->source : NULL;
}
