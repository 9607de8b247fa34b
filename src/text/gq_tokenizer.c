/* The tokenizer entry points (dispatch by file type) and llama2.c tokenizer.bin: loading,
 * validation, BPE encode, decode.
 *
 * Encode follows the reference algorithm exactly (see gq_tokenizer.h) but replaces its
 * "rescan every adjacent pair after each merge" loop (O(n^2)) by the priority-queue merging of
 * gq_bpe.h, the merge priority being the merged piece's score.
 */
#include "text/gq_tokenizer.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_fileio.h"
#include "text/gq_bpe.h"
#include "text/gq_tokenizer_impl.h"

/* The reference starts its best-score search at -1e10: pieces scoring at or below never merge. */
#define MERGE_SCORE_FLOOR (-1e10f)
#define MAX_TOKEN_LENGTH_LIMIT 4096

static int lookup(const gq_tokenizer *t, const char *s, int n)
{
    return gq_vocab_find2(&t->v, s, n, "", 0);
}

/* ---- loading ---- */

static int read_i32(const unsigned char *p) { int32_t v; memcpy(&v, p, 4); return v; }
static float read_f32(const unsigned char *p) { float v; memcpy(&v, p, 4); return v; }

static bool is_byte_piece(const char *s, int len, int byte)
{
    char want[8];
    snprintf(want, sizeof want, "<0x%02X>", byte);
    return len == 6 && memcmp(s, want, 6) == 0;
}

/* First pass over the entries after the 4-byte header (score float32, len int32, len bytes):
 * validate each and count them into *n. */
static int count_entries(const char *path, const unsigned char *d, size_t size,
                         int max_token_length, size_t *n_out, gq_error *err)
{
    size_t off = 4, n = 0;
    while (off < size) {
        if (size - off < 8)
            return gq_fail(err, "%s: truncated at token %zu (offset %zu): %zu bytes left, need 8 "
                           "for score and length", path, n, off, size - off);
        float score = read_f32(d + off);
        int len = read_i32(d + off + 4);
        if (!isfinite(score))
            return gq_fail(err, "%s: token %zu (offset %zu) has a non-finite score", path, n, off);
        if (len <= 0 || len > max_token_length)
            return gq_fail(err, "%s: token %zu (offset %zu) has length %d, outside "
                           "1..max_token_length %d", path, n, off, len, max_token_length);
        if (size - off - 8 < (size_t)len)
            return gq_fail(err, "%s: truncated in token %zu (offset %zu): piece of %d bytes, %zu "
                           "left", path, n, off, len, size - off - 8);
        off += 8 + (size_t)len;
        if (++n > (1u << 24))
            return gq_fail(err, "%s: more than %u tokens: not a tokenizer file", path, 1u << 24);
    }
    *n_out = n;
    return 0;
}

/* Second pass: the (already validated) pieces and scores (pieces plus NULs fit in the file
 * size), then the piece index. */
static int copy_pieces(gq_tokenizer *t, const unsigned char *d, size_t n, size_t size,
                       const char *path, gq_error *err)
{
    t->scores = malloc(n * sizeof *t->scores);
    if (!t->scores || gq_vocab_alloc(&t->v, n, size) != 0)
        return gq_fail(err, "%s: out of memory for %zu tokens", path, n);
    size_t off = 4;
    for (size_t i = 0; i < n; i++) {
        int len = read_i32(d + off + 4);
        t->scores[i] = read_f32(d + off);
        if (gq_vocab_set(&t->v, (int)i, (const char *)d + off + 8, (size_t)len) != 0)
            return gq_fail(err, "%s: out of memory for %zu tokens", path, n);
        off += 8 + (size_t)len;
    }
    gq_vocab_index(&t->v);
    t->space_id = lookup(t, " ", 1);
    return 0;
}

/* Checks of a parsed tokenizer file: header, token count, expected vocabulary, byte tokens. */
static int check_header(const char *path, const unsigned char *d, size_t size,
                        int *max_token_length, gq_error *err)
{
    if (size < 4)
        return gq_fail(err, "%s: not a tokenizer file: %zu bytes, need at least a 4-byte header",
                       path, size);
    *max_token_length = read_i32(d);
    if (*max_token_length <= 0 || *max_token_length > MAX_TOKEN_LENGTH_LIMIT)
        return gq_fail(err, "%s: max_token_length %d is outside 1..%d (not a llama2.c "
                       "tokenizer.bin?)", path, *max_token_length, MAX_TOKEN_LENGTH_LIMIT);
    return 0;
}

static int check_count(const char *path, size_t n, int expected_vocab, gq_error *err)
{
    if (n < 259)
        return gq_fail(err, "%s: %zu tokens; need at least 259 (<unk>, <s>, </s> and 256 byte "
                       "tokens)", path, n);
    if (expected_vocab > 0 && (size_t)expected_vocab != n)
        return gq_fail(err, "%s: vocabulary has %zu tokens but the model expects %d", path, n,
                       expected_vocab);
    return 0;
}

static int check_byte_pieces(const gq_tokenizer *t, const char *path, gq_error *err)
{
    for (int b = 0; b < 256; b++)
        if (!is_byte_piece(t->v.pieces[b + 3], t->v.lens[b + 3], b))
            return gq_fail(err, "%s: token %d should be the byte token <0x%02X> (byte fallback "
                           "ids are byte + 3)", path, b + 3, b);
    return 0;
}

static int load_llama2c(const char *path, const char *data, size_t size, int expected_vocab,
                        gq_tokenizer *t, gq_error *err)
{
    const unsigned char *d = (const unsigned char *)data;
    size_t n = 0;
    int max_token_length = 0;
    if (check_header(path, d, size, &max_token_length, err) ||
        count_entries(path, d, size, max_token_length, &n, err) ||
        check_count(path, n, expected_vocab, err) || copy_pieces(t, d, n, size, path, err) ||
        check_byte_pieces(t, path, err))
        return -1;
    t->bos_id = GQ_TOKEN_BOS;
    t->eos_id = GQ_TOKEN_EOS;
    return 0;
}

/* A tokenizer.json starts with '{' and then, after optional white space, '"' or '}'; a llama2.c
 * file starts with a little-endian int32 below 4096, whose second byte is never a quote. */
static bool looks_like_json(const char *d, size_t n)
{
    size_t i = 0;
    if (n >= 3 && memcmp(d, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    while (i < n && strchr(" \t\r\n", d[i]) && d[i])
        i++;
    if (i >= n || d[i] != '{')
        return false;
    for (i++; i < n && strchr(" \t\r\n", d[i]) && d[i]; i++)
        ;
    return i < n && (d[i] == '"' || d[i] == '}');
}

static int check_vocab_fits(const char *path, const gq_tokenizer *t, int expected_vocab,
                            gq_error *err)
{
    if (expected_vocab > 0 && t->v.n > expected_vocab)
        return gq_fail(err, "%s: vocabulary has %d tokens, more than the model's %d embedding "
                       "rows", path, t->v.n, expected_vocab);
    return 0;
}

int gq_tokenizer_parse(const char *path, const void *bytes, size_t size, int expected_vocab,
                       gq_tokenizer **out, gq_error *err)
{
    *out = NULL;
    const char *data = bytes;
    gq_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return gq_fail(err, "%s: out of memory", path);
    t->space_id = t->bos_id = t->eos_id = -1;
    int rc = looks_like_json(data, size)
                 ? (gq_hf_load(path, data, size, t, err) ||
                    check_vocab_fits(path, t, expected_vocab, err))
                 : load_llama2c(path, data, size, expected_vocab, t, err);
    if (rc != 0) {
        gq_tokenizer_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

int gq_tokenizer_load(const char *path, int expected_vocab, gq_tokenizer **out, gq_error *err)
{
    *out = NULL;
    char *data = NULL;
    size_t size = 0;
    if (gq_read_file(path, &data, &size, err) != 0)
        return -1;
    int rc = gq_tokenizer_parse(path, data, size, expected_vocab, out, err);
    free(data);
    return rc;
}

void gq_tokenizer_free(gq_tokenizer *t)
{
    if (!t)
        return;
    gq_vocab_free(&t->v);
    free(t->scores);
    gq_hf_free(t->hf);
    free(t);
}

int gq_tokenizer_vocab_size(const gq_tokenizer *t) { return t->v.n; }
int gq_tokenizer_bos_id(const gq_tokenizer *t) { return t->bos_id; }
int gq_tokenizer_eos_id(const gq_tokenizer *t) { return t->eos_id; }

const char *gq_tokenizer_describe(const gq_tokenizer *t)
{
    return t->hf ? gq_hf_describe(t) : "llama2.c tokenizer.bin";
}

const char *gq_tokenizer_piece(const gq_tokenizer *t, int token)
{
    return token >= 0 && token < t->v.n ? t->v.pieces[token] : NULL;
}

float gq_tokenizer_score(const gq_tokenizer *t, int token)
{
    return t->scores ? t->scores[token] : 0.0f;
}

/* ---- encode ---- */

static uint32_t score_bits(float s)
{
    uint32_t u;
    memcpy(&u, &s, 4);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* llama2.c's merge rule: any adjacent pair whose concatenation is a piece scoring above the
 * floor, highest score first. */
static int score_rule(const void *ctx, int a, int b, uint32_t *priority)
{
    const gq_tokenizer *t = ctx;
    int id = gq_vocab_find2(&t->v, t->v.pieces[a], t->v.lens[a], t->v.pieces[b], t->v.lens[b]);
    if (id < 0 || !(t->scores[id] > MERGE_SCORE_FLOOR))
        return -1;
    *priority = score_bits(t->scores[id]);
    return id;
}

/* The initial symbols: dummy prefix, then code points looked up whole; up to 4 bytes (a lead
 * byte and its continuation bytes, or a run of stray continuation bytes) are grouped exactly as
 * the reference groups them, unknown groups become byte tokens. Returns the count. */
static int initial_symbols(const gq_tokenizer *t, const char *text, size_t len, bool bos,
                           gq_bpe_symbol *s)
{
    int n = 0;
    if (bos)
        s[n++].id = GQ_TOKEN_BOS;
    if (len > 0)
        s[n++].id = t->space_id >= 0 ? t->space_id : ' ' + 3;
    const unsigned char *u = (const unsigned char *)text;
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80)
            start = i;
        size_t glen = i - start + 1;
        bool next_cont = i + 1 < len && (u[i + 1] & 0xC0) == 0x80;
        if (next_cont && glen < 4)
            continue;
        int id = lookup(t, text + start, (int)glen);
        if (id >= 0) {
            s[n++].id = id;
        } else {
            for (size_t k = start; k <= i; k++)
                s[n++].id = u[k] + 3;
        }
        start = i + 1;
    }
    return n;
}

static int encode_llama2c(const gq_tokenizer *t, const char *text, size_t len, bool bos,
                          bool eos, int **tokens, size_t *n_tokens, gq_error *err)
{
    gq_bpe_symbol *s = malloc((len + 3) * sizeof *s);
    gq_bpe_heap h = {0};
    if (!s)
        return gq_fail(err, "tokenizer: out of memory for %zu bytes of text", len);
    int n = initial_symbols(t, text, len, bos, s);
    int *outv = NULL;
    if (gq_bpe_merge_all(s, n, &t->v, score_rule, t, &h) != 0 || !(outv = malloc(((size_t)n + 1) * sizeof *outv))) {
        free(s);
        gq_bpe_heap_free(&h);
        return gq_fail(err, "tokenizer: out of memory encoding %zu bytes of text", len);
    }
    size_t m = 0;
    for (int i = 0; i < n; i++)
        if (s[i].id >= 0)
            outv[m++] = s[i].id;
    if (eos)
        outv[m++] = GQ_TOKEN_EOS;
    free(s);
    gq_bpe_heap_free(&h);
    *tokens = outv;
    *n_tokens = m;
    return 0;
}

int gq_tokenizer_encode(const gq_tokenizer *t, const char *text, size_t len, bool bos, bool eos,
                        int **tokens, size_t *n_tokens, gq_error *err)
{
    *tokens = NULL;
    *n_tokens = 0;
    if (len > (size_t)INT32_MAX / 8 - 8)
        return gq_fail(err, "tokenizer: text of %zu bytes is too long (limit 256 MiB)", len);
    return t->hf ? gq_hf_encode(t, text, len, bos, eos, tokens, n_tokens, err)
                 : encode_llama2c(t, text, len, bos, eos, tokens, n_tokens, err);
}

/* ---- decode ---- */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

const char *gq_tokenizer_decode(const gq_tokenizer *t, int prev_token, int token, char scratch[2])
{
    if (token < 0 || token >= t->v.n)
        return "";
    if (t->hf)
        return gq_hf_decode(t, prev_token, token);
    const char *piece = t->v.pieces[token];
    int len = t->v.lens[token];
    if (prev_token == GQ_TOKEN_BOS && piece[0] == ' ') {
        piece++;
        len--;
    }
    if (len == 6 && memcmp(piece, "<0x", 3) == 0 && piece[5] == '>') {
        int hi = hex_digit(piece[3]), lo = hex_digit(piece[4]);
        if (hi >= 0 && lo >= 0) {
            scratch[0] = (char)(hi * 16 + lo);
            scratch[1] = '\0';
            return scratch;
        }
    }
    return piece;
}
