/* llama2.c tokenizer.bin: loading, validation, BPE encode with a priority queue, decode.
 *
 * Encode follows the reference algorithm exactly (see gq_tokenizer.h) but replaces its
 * "rescan every adjacent pair after each merge" loop (O(n^2)) by a doubly linked list of
 * symbols and a max-heap of candidate merges ordered by (merged-piece score, position of the
 * left symbol), with lazy invalidation: an entry is checked when it is popped and dropped if
 * either symbol has changed since it was pushed. Because symbols are only ever removed, the
 * position order of the initial symbols is the left-to-right order the reference scans in,
 * so "highest score, leftmost on ties" is the heap order.
 *
 * Locality: a merged piece that spans the boundary between two adjacent symbols contains the
 * byte pair (last byte of the left piece, first byte of the right piece). When no vocabulary
 * piece contains that byte pair, nothing can ever merge across the boundary, and merges on
 * either side commute. The symbol list is cut at such boundaries (in practice at most word
 * starts) and each segment is merged on its own with a small heap that stays in cache; the
 * result is the same as merging the whole text at once. */
#include "text/gq_tokenizer.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_fileio.h"

/* The reference starts its best-score search at -1e10: pieces scoring at or below never merge. */
#define MERGE_SCORE_FLOOR (-1e10f)
#define MAX_TOKEN_LENGTH_LIMIT 4096

struct gq_tokenizer {
    int vocab_size;
    int max_token_length;
    char **pieces;      /* vocab_size NUL-terminated pieces, pointing into arena */
    int *lens;          /* piece lengths in bytes */
    float *scores;
    char *arena;
    int *table;         /* open-addressing hash: piece -> id, -1 empty; size table_mask+1 */
    uint32_t table_mask;
    int space_id;       /* id of " " (dummy prefix), or -1 */
    uint8_t bigram[256 * 256 / 8]; /* bit (a << 8 | b): some piece contains bytes a, b */
};

static bool has_bigram(const gq_tokenizer *t, unsigned char a, unsigned char b)
{
    unsigned k = (unsigned)a << 8 | b;
    return t->bigram[k >> 3] >> (k & 7) & 1;
}

/* ---- hashing: FNV-1a, continuable so that a pair's concatenation is hashed in place ---- */

static uint64_t fnv_start(void) { return 1469598103934665603ULL; }

static uint64_t fnv_add(uint64_t h, const char *s, int n)
{
    for (int i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static void table_insert(gq_tokenizer *t, int id)
{
    uint64_t h = fnv_add(fnv_start(), t->pieces[id], t->lens[id]);
    uint32_t i = (uint32_t)h & t->table_mask;
    while (t->table[i] >= 0) {
        int o = t->table[i];
        if (t->lens[o] == t->lens[id] && memcmp(t->pieces[o], t->pieces[id], t->lens[id]) == 0)
            return; /* duplicate piece: the lowest id wins */
        i = (i + 1) & t->table_mask;
    }
    t->table[i] = id;
}

/* Id of the piece a (na bytes) followed by b (nb bytes), or -1. */
static int lookup2(const gq_tokenizer *t, const char *a, int na, const char *b, int nb)
{
    if (na + nb > t->max_token_length)
        return -1;
    uint64_t h = fnv_add(fnv_add(fnv_start(), a, na), b, nb);
    uint32_t i = (uint32_t)h & t->table_mask;
    for (;;) {
        int id = t->table[i];
        if (id < 0)
            return -1;
        if (t->lens[id] == na + nb && memcmp(t->pieces[id], a, na) == 0 &&
            memcmp(t->pieces[id] + na, b, nb) == 0)
            return id;
        i = (i + 1) & t->table_mask;
    }
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

/* Arrays for n tokens: pieces, lengths, scores, an arena of the file's size (pieces plus NULs
 * fit in it) and an empty open-addressing table of at least 2n slots. */
static int alloc_tables(gq_tokenizer *t, size_t n, size_t size, const char *path, gq_error *err)
{
    t->vocab_size = (int)n;
    t->pieces = malloc(n * sizeof *t->pieces);
    t->lens = malloc(n * sizeof *t->lens);
    t->scores = malloc(n * sizeof *t->scores);
    t->arena = malloc(size); /* pieces plus NULs fit in the file size */
    size_t cap = 1;
    while (cap < 2 * n)
        cap <<= 1;
    t->table = malloc(cap * sizeof *t->table);
    if (!t->pieces || !t->lens || !t->scores || !t->arena || !t->table)
        return gq_fail(err, "%s: out of memory for %zu tokens", path, n);
    t->table_mask = (uint32_t)(cap - 1);
    memset(t->table, 0xff, cap * sizeof *t->table);
    return 0;
}

/* Second pass: copy the (already validated) pieces into the arena, NUL-terminated. */
static void copy_pieces(gq_tokenizer *t, const unsigned char *d)
{
    size_t off = 4, a = 0;
    for (size_t i = 0; i < (size_t)t->vocab_size; i++) {
        t->scores[i] = read_f32(d + off);
        t->lens[i] = read_i32(d + off + 4);
        t->pieces[i] = t->arena + a;
        memcpy(t->arena + a, d + off + 8, (size_t)t->lens[i]);
        t->arena[a + (size_t)t->lens[i]] = '\0';
        a += (size_t)t->lens[i] + 1;
        off += 8 + (size_t)t->lens[i];
    }
}

/* Piece lookup table and the bigram bitmap (one bit per adjacent byte pair in any piece). */
static void build_index(gq_tokenizer *t)
{
    for (size_t i = 0; i < (size_t)t->vocab_size; i++) {
        table_insert(t, (int)i);
        const unsigned char *p = (const unsigned char *)t->pieces[i];
        for (int k = 0; k + 1 < t->lens[i]; k++) {
            unsigned bg = (unsigned)p[k] << 8 | p[k + 1];
            t->bigram[bg >> 3] |= (uint8_t)(1u << (bg & 7));
        }
    }
    t->space_id = lookup2(t, " ", 1, "", 0);
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
        if (!is_byte_piece(t->pieces[b + 3], t->lens[b + 3], b))
            return gq_fail(err, "%s: token %d should be the byte token <0x%02X> (byte fallback "
                           "ids are byte + 3)", path, b + 3, b);
    return 0;
}

int gq_tokenizer_parse(const char *path, const void *bytes, size_t size, int expected_vocab,
                       gq_tokenizer **out, gq_error *err)
{
    *out = NULL;
    const unsigned char *d = bytes;
    gq_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return gq_fail(err, "%s: out of memory", path);
    size_t n = 0;
    if (check_header(path, d, size, &t->max_token_length, err) ||
        count_entries(path, d, size, t->max_token_length, &n, err) ||
        check_count(path, n, expected_vocab, err) || alloc_tables(t, n, size, path, err))
        goto fail;
    copy_pieces(t, d);
    if (check_byte_pieces(t, path, err))
        goto fail;
    build_index(t);
    *out = t;
    return 0;
fail:
    gq_tokenizer_free(t);
    return -1;
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
    free(t->pieces);
    free(t->lens);
    free(t->scores);
    free(t->arena);
    free(t->table);
    free(t);
}

int gq_tokenizer_vocab_size(const gq_tokenizer *t) { return t->vocab_size; }

const char *gq_tokenizer_piece(const gq_tokenizer *t, int token)
{
    return token >= 0 && token < t->vocab_size ? t->pieces[token] : NULL;
}

float gq_tokenizer_score(const gq_tokenizer *t, int token)
{
    return t->scores[token];
}

/* ---- encode ---- */

typedef struct {
    int id;
    int prev, next; /* neighbours in the live list, -1 at the ends */
} symbol;

/* A candidate merge of symbols (left, right). key orders the heap: the score mapped to an
 * order-preserving unsigned integer in the high half, ~left in the low half (leftmost wins). */
typedef struct {
    uint64_t key;
    int right;
    int right_id;
} candidate;

typedef struct {
    candidate *a;
    size_t n, cap;
} heap;

static uint32_t score_bits(float s)
{
    uint32_t u;
    memcpy(&u, &s, 4);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static void heap_sift_up(heap *h, size_t i)
{
    candidate c = h->a[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->a[p].key >= c.key)
            break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = c;
}

static void heap_sift_down(heap *h, size_t i)
{
    candidate c = h->a[i];
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= h->n)
            break;
        if (l + 1 < h->n && h->a[l + 1].key > h->a[l].key)
            l++;
        if (h->a[l].key <= c.key)
            break;
        h->a[i] = h->a[l];
        i = l;
    }
    h->a[i] = c;
}

static int heap_push(heap *h, candidate c)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 1024;
        candidate *a = realloc(h->a, cap * sizeof *a);
        if (!a)
            return -1;
        h->a = a;
        h->cap = cap;
    }
    h->a[h->n++] = c;
    heap_sift_up(h, h->n - 1);
    return 0;
}

static candidate heap_pop(heap *h)
{
    candidate top = h->a[0];
    h->a[0] = h->a[--h->n];
    if (h->n)
        heap_sift_down(h, 0);
    return top;
}

/* Merged id of symbols l and r (adjacent), or -1 when the pair does not merge. */
static int pair_merge(const gq_tokenizer *t, const symbol *s, int l, int r)
{
    int a = s[l].id, b = s[r].id;
    int id = lookup2(t, t->pieces[a], t->lens[a], t->pieces[b], t->lens[b]);
    return id >= 0 && t->scores[id] > MERGE_SCORE_FLOOR ? id : -1;
}

static candidate make_candidate(const gq_tokenizer *t, const symbol *s, int l, int r, int id)
{
    candidate c;
    c.key = ((uint64_t)score_bits(t->scores[id]) << 32) | (uint32_t)~(uint32_t)l;
    c.right = r;
    c.right_id = s[r].id;
    return c;
}

/* Runs the reference merge loop on symbols [a, b) (linked in order; no pair with a symbol
 * outside the range can merge). h is an empty heap, left empty. */
static int merge_segment(const gq_tokenizer *t, symbol *s, int a, int b, heap *h)
{
    for (int i = a; i + 1 < b; i++) {
        int id = pair_merge(t, s, i, i + 1);
        if (id >= 0 && heap_push(h, make_candidate(t, s, i, i + 1, id)) != 0)
            return -1;
    }
    while (h->n) {
        candidate c = heap_pop(h);
        int l = (int)~(uint32_t)c.key, r = c.right;
        /* Stale when r is no longer l's right neighbour (l or r merged away) or r absorbed its
         * own right neighbour since the push (l's id cannot change while r stays its next). */
        if (s[l].next != r || s[r].id != c.right_id || s[l].id < 0)
            continue;
        int id = pair_merge(t, s, l, r);
        s[l].id = id;
        s[r].id = -1;
        s[l].next = s[r].next;
        if (s[r].next >= 0)
            s[s[r].next].prev = l;
        s[r].next = s[r].prev = -1;
        int p = s[l].prev, q = s[l].next;
        if (p >= 0 && (id = pair_merge(t, s, p, l)) >= 0 &&
            heap_push(h, make_candidate(t, s, p, l, id)) != 0)
            return -1;
        if (q >= 0 && (id = pair_merge(t, s, l, q)) >= 0 &&
            heap_push(h, make_candidate(t, s, l, q, id)) != 0)
            return -1;
    }
    return 0;
}

int gq_tokenizer_encode(const gq_tokenizer *t, const char *text, size_t len, bool bos, bool eos,
                        int **tokens, size_t *n_tokens, gq_error *err)
{
    *tokens = NULL;
    *n_tokens = 0;
    if (len > (size_t)INT32_MAX / 2 - 8)
        return gq_fail(err, "tokenizer: text of %zu bytes is too long (limit 1 GiB)", len);
    size_t cap = len + 3; /* BOS + dummy prefix + at most one symbol per byte (+ EOS) */
    symbol *s = malloc(cap * sizeof *s);
    heap h = {0};
    int *outv = NULL;
    if (!s)
        return gq_fail(err, "tokenizer: out of memory for %zu bytes of text", len);
    int n = 0;
    if (bos)
        s[n++].id = GQ_TOKEN_BOS;
    if (len > 0)
        s[n++].id = t->space_id >= 0 ? t->space_id : ' ' + 3;
    /* Code points looked up whole; up to 4 bytes (a lead byte and its continuation bytes, or a
     * run of stray continuation bytes) are grouped exactly as the reference groups them. */
    const unsigned char *u = (const unsigned char *)text;
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80)
            start = i;
        size_t glen = i - start + 1;
        bool next_cont = i + 1 < len && (u[i + 1] & 0xC0) == 0x80;
        if (next_cont && glen < 4)
            continue;
        int id = lookup2(t, text + start, (int)glen, "", 0);
        if (id >= 0) {
            s[n++].id = id;
        } else {
            for (size_t k = start; k <= i; k++)
                s[n++].id = u[k] + 3;
        }
        start = i + 1;
    }
    for (int i = 0; i < n; i++) {
        s[i].prev = i - 1;
        s[i].next = i + 1 < n ? i + 1 : -1;
    }
    for (int a = 0; a < n;) {
        /* Segment [a, b): up to the next boundary no merge can cross. */
        int b = a + 1;
        while (b < n) {
            const char *l = t->pieces[s[b - 1].id], *r = t->pieces[s[b].id];
            if (!has_bigram(t, (unsigned char)l[t->lens[s[b - 1].id] - 1], (unsigned char)r[0]))
                break;
            b++;
        }
        if (merge_segment(t, s, a, b, &h) != 0)
            goto oom;
        a = b;
    }
    size_t m = 0;
    for (int i = n ? 0 : -1; i >= 0; i = s[i].next)
        m++;
    outv = malloc((m + 1) * sizeof *outv);
    if (!outv)
        goto oom;
    m = 0;
    for (int i = n ? 0 : -1; i >= 0; i = s[i].next)
        outv[m++] = s[i].id;
    if (eos)
        outv[m++] = GQ_TOKEN_EOS;
    free(s);
    free(h.a);
    *tokens = outv;
    *n_tokens = m;
    return 0;
oom:
    free(s);
    free(h.a);
    return gq_fail(err, "tokenizer: out of memory encoding %zu bytes of text", len);
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
    if (token < 0 || token >= t->vocab_size)
        return "";
    const char *piece = t->pieces[token];
    int len = t->lens[token];
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
