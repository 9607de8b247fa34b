/* A GGUF's SentencePiece (`llama`) vocabulary as a gq_tokenizer: the tokens and scores are
 * written into a tokenizer.bin image (the layout gq_tokenizer_parse checks), with U+2581
 * ("▁", SentencePiece's space) turned back into the space llama2.c's pieces hold. */
#include <stdlib.h>
#include <string.h>

#include "gguf/gq_gguf_model.h"

static const char SPM_SPACE[] = "\xe2\x96\x81";

/* Bytes of piece s (n bytes) with every U+2581 as one space; writes them to out if not NULL. */
static size_t unescape(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (n - i >= 3 && memcmp(s + i, SPM_SPACE, 3) == 0) {
            if (out)
                out[o] = ' ';
            o++;
            i += 2;
            continue;
        }
        if (out)
            out[o] = s[i];
        o++;
    }
    return o;
}

/* The special ids gq_tokenizer assumes (<unk> 0, <s> 1, </s> 2) must be the file's. */
static int check_special(const gq_gguf *g, gq_error *err)
{
    static const struct { const char *key; uint64_t id; } ids[] = {
        {"tokenizer.ggml.unknown_token_id", GQ_TOKEN_UNK},
        {"tokenizer.ggml.bos_token_id", GQ_TOKEN_BOS},
        {"tokenizer.ggml.eos_token_id", GQ_TOKEN_EOS}};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        uint64_t v = ids[i].id;
        if (gq_gguf_get_uint(g, ids[i].key, true, UINT32_MAX, &v, err) < 0)
            return -1;
        if (v != ids[i].id)
            return gq_fail(err, "%s: key %s = %llu; gq-bench's tokenizer uses id %llu",
                           g->path, ids[i].key, (unsigned long long)v,
                           (unsigned long long)ids[i].id);
    }
    return 0;
}

/* tokenizer.ggml.model: 0 for "llama" (SentencePiece), 1 for "gpt2" (byte-level BPE). */
static int model_kind(const gq_gguf *g, gq_error *err)
{
    const char *s;
    size_t n;
    if (gq_gguf_get_str(g, "tokenizer.ggml.model", false, &s, &n, err))
        return -1;
    if (n == 5 && memcmp(s, "llama", 5) == 0)
        return 0;
    if (n == 4 && memcmp(s, "gpt2", 4) == 0)
        return 1;
    return gq_fail(err, "%s: key tokenizer.ggml.model = \"%.*s\"; gq-bench reads \"llama\" "
                   "(SentencePiece) and \"gpt2\" (byte-level BPE) vocabularies", g->path,
                   (int)(n > 64 ? 64 : n), s);
}

/* The tokenizer.bin image: int32 max length, then per token f32 score, int32 length, bytes. */
static char *build_image(const gq_gguf *g, const gq_gguf_kv *tokens, const gq_gguf_kv *scores,
                         size_t *size, gq_error *err)
{
    gq_gguf_str_iter it = {tokens->data};
    size_t total = 4;
    int32_t maxlen = 1;
    for (uint64_t i = 0; i < tokens->n; i++) {
        const char *s;
        size_t n, u;
        gq_gguf_str_next(&it, &s, &n);
        u = unescape(s, n, NULL);
        if (u == 0 || u > 4096) {
            gq_fail(err, "%s: key tokenizer.ggml.tokens: token %llu has %zu bytes (1..4096)",
                    g->path, (unsigned long long)i, u);
            return NULL;
        }
        if ((int32_t)u > maxlen)
            maxlen = (int32_t)u;
        total += 8 + u;
    }
    char *img = malloc(total), *p = img + 4;
    if (!img) {
        gq_fail(err, "%s: out of memory for the vocabulary", g->path);
        return NULL;
    }
    memcpy(img, &maxlen, 4);
    it.p = tokens->data;
    for (uint64_t i = 0; i < tokens->n; i++) {
        const char *s;
        size_t n;
        float score = 0.0f;
        gq_gguf_str_next(&it, &s, &n);
        if (scores)
            memcpy(&score, scores->data + 4 * i, 4);
        int32_t len = (int32_t)unescape(s, n, p + 8);
        memcpy(p, &score, 4);
        memcpy(p + 4, &len, 4);
        p += 8 + len;
    }
    *size = total;
    return img;
}

int gq_gguf_tokenizer_from(const gq_gguf *g, int expected_vocab, gq_tokenizer **tok,
                           gq_error *err)
{
    const gq_gguf_kv *tokens, *scores = NULL;
    *tok = NULL;
    int kind = model_kind(g, err);
    if (kind < 0)
        return -1;
    if (kind == 1)
        return gq_gguf_bpe_tokenizer_from(g, expected_vocab, tok, err);
    if (check_special(g, err) ||
        gq_gguf_get_array(g, "tokenizer.ggml.tokens", GQ_GGUF_STRING, 0, &tokens, err))
        return -1;
    if (tokens->n > (1u << 22))
        return gq_fail(err, "%s: key tokenizer.ggml.tokens has %llu tokens (at most %u)",
                       g->path, (unsigned long long)tokens->n, 1u << 22);
    if (gq_gguf_find_kv(g, "tokenizer.ggml.scores") &&
        gq_gguf_get_array(g, "tokenizer.ggml.scores", GQ_GGUF_F32, tokens->n, &scores, err))
        return -1;
    size_t size = 0;
    char *img = build_image(g, tokens, scores, &size, err);
    if (!img)
        return -1;
    char what[4200];
    snprintf(what, sizeof what, "%s (tokenizer.ggml.tokens)", g->path);
    int rc = gq_tokenizer_parse(what, img, size, expected_vocab, tok, err);
    free(img);
    return rc;
}

int gq_gguf_load_tokenizer(const char *path, int expected_vocab, gq_tokenizer **tok,
                           gq_error *err)
{
    gq_gguf g;
    *tok = NULL;
    if (gq_gguf_open(path, &g, err))
        return -1;
    int rc = gq_gguf_tokenizer_from(&g, expected_vocab, tok, err);
    gq_gguf_close(&g);
    return rc;
}

int gq_model_open(const char *path, gq_model *m, gq_error *err)
{
    if (gq_gguf_is_gguf(path))
        return gq_gguf_load_model(path, m, NULL, err);
    return gq_model_load(path, m, err);
}

int gq_tokenizer_open(const char *path, int expected_vocab, gq_tokenizer **tok, gq_error *err)
{
    if (gq_gguf_is_gguf(path))
        return gq_gguf_load_tokenizer(path, expected_vocab, tok, err);
    return gq_tokenizer_load(path, expected_vocab, tok, err);
}
