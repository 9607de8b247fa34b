/* tokenizer.json encoding: added tokens split off the raw text, then for each remaining section
 * the normalizer, the pre-tokenizer and the BPE model (priority-queue merging of gq_bpe.h, the
 * priority being the merge's rank), then the post-processor's special tokens. Invalid UTF-8 is
 * first replaced by U+FFFD (tokenizer.json tokenizers take Unicode text). */
#include "text/gq_hf.h"

#include <stdlib.h>
#include <string.h>

#include "text/gq_bpe.h"

typedef struct {
    size_t off, len;
} span;

/* Pieces of the pre-tokenizer: spans into one buffer. */
typedef struct {
    hf_buf text;
    span *a;
    size_t n, cap;
} pieces;

typedef struct {
    const gq_tokenizer *t;
    const gq_hf_tok *hf;
    int *ids;
    size_t n_ids, cap_ids;
    gq_bpe_symbol *sym;
    size_t cap_sym;
    gq_bpe_heap heap;
    pcre2_match_data *md;
    hf_buf norm[2];
    pieces pre[2];
} enc;

/* Array a (capacity *cap elements of `size` bytes) with room for `need` (the capacity
 * doubles); NULL when out of memory, a then unchanged. */
static void *reserve(void *a, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return a;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *p = realloc(a, c * size);
    if (p)
        *cap = c;
    return p;
}

static int push_id(enc *e, int id)
{
    int *a = reserve(e->ids, &e->cap_ids, e->n_ids + 1, sizeof *e->ids);
    if (!a)
        return -1;
    e->ids = a;
    e->ids[e->n_ids++] = id;
    return 0;
}

static int push_piece(pieces *p, const char *s, size_t n)
{
    if (n == 0)
        return 0;
    span *a = reserve(p->a, &p->cap, p->n + 1, sizeof *p->a);
    if (!a)
        return -1;
    p->a = a;
    p->a[p->n++] = (span){p->text.n, n};
    return hf_buf_put(&p->text, s, n);
}

/* ---- normalizer ---- */

static int replace_all(const char *s, size_t n, const char *from, const char *to, hf_buf *out)
{
    size_t nf = strlen(from), nt = strlen(to), i = 0;
    while (i < n) {
        const char *hit = nf <= n - i ? memmem(s + i, n - i, from, nf) : NULL;
        size_t run = hit ? (size_t)(hit - (s + i)) : n - i;
        if (hf_buf_put(out, s + i, run) != 0 || (hit && hf_buf_put(out, to, nt) != 0))
            return -1;
        i += run + (hit ? nf : 0);
    }
    return hf_buf_put(out, "", 0);
}

/* Runs the normalizer steps on s; the result is e->norm[0]. */
static int normalize(enc *e, const char *s, size_t n)
{
    e->norm[0].n = 0;
    if (hf_buf_put(&e->norm[0], s, n) != 0)
        return -1;
    for (int k = 0; k < e->hf->n_norm; k++) {
        const hf_norm *st = &e->hf->norm[k];
        hf_buf *in = &e->norm[0], *out = &e->norm[1];
        out->n = 0;
        int rc = st->kind == HF_PREPEND   ? (in->n ? hf_buf_put(out, st->to, strlen(st->to)) ||
                                                         hf_buf_put(out, in->p, in->n)
                                                   : hf_buf_put(out, "", 0))
                 : st->kind == HF_REPLACE ? replace_all(in->p, in->n, st->from, st->to, out)
                                          : hf_unicode_normalize(st->kind, in->p, in->n, out);
        if (rc != 0)
            return -1;
        hf_buf tmp = *in;
        *in = *out;
        *out = tmp;
    }
    return 0;
}

/* ---- pre-tokenizer ---- */

/* Splits s by the step's pattern: gaps and matches (Isolated), gaps only (Removed) or matches
 * only (invert; ByteLevel's regex). An empty match advances by one character. */
static int regex_split(enc *e, const hf_pre *st, const char *s, size_t n, pieces *out)
{
    size_t prev = 0, at = 0;
    while (at <= n) {
        int rc = pcre2_match(st->re, (PCRE2_SPTR)s, n, at, PCRE2_NO_UTF_CHECK, e->md,
                             e->hf->mctx);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0)
            return -2;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t m0 = ov[0], m1 = ov[1];
        if (!st->keep_matches_only && push_piece(out, s + prev, m0 - prev) != 0)
            return -1;
        if (!st->removed && push_piece(out, s + m0, m1 - m0) != 0)
            return -1;
        prev = m1;
        at = m1 > m0 ? m1 : m1 + (m1 < n ? (size_t)hf_utf8_len((unsigned char)s[m1]) : 1);
    }
    if (!st->keep_matches_only && prev < n && push_piece(out, s + prev, n - prev) != 0)
        return -1;
    return 0;
}

/* ByteLevel: optional prefix space, optional GPT-2 split, then every byte as its character. */
static int byte_level(enc *e, const hf_pre *st, const char *s, size_t n, pieces *out)
{
    hf_buf in = {0};
    pieces parts = {0};
    int rc = (st->add_prefix_space && s[0] != ' ') ? hf_buf_put(&in, " ", 1) : 0;
    rc = rc ? rc : hf_buf_put(&in, s, n);
    rc = rc ? rc : st->re ? regex_split(e, st, in.p, in.n, &parts) : push_piece(&parts, in.p, in.n);
    for (size_t k = 0; k < parts.n && rc == 0; k++) {
        hf_buf mapped = {0};
        for (size_t i = 0; i < parts.a[k].len && rc == 0; i++) {
            char c[2];
            rc = hf_buf_put(&mapped, c, (size_t)hf_byte_char(
                (unsigned char)parts.text.p[parts.a[k].off + i], c));
        }
        rc = rc ? rc : push_piece(out, mapped.p, mapped.n);
        free(mapped.p);
    }
    free(in.p);
    free(parts.text.p);
    free(parts.a);
    return rc;
}

/* Metaspace (split false): spaces become the replacement, which is prepended by the scheme
 * unless the result starts with it. */
static int metaspace(const hf_pre *st, const char *s, size_t n, size_t section, pieces *out)
{
    hf_buf b = {0}, r = {0};
    size_t nr = strlen(st->replacement);
    int rc = replace_all(s, n, " ", st->replacement, &r);
    bool starts = rc == 0 && r.n >= nr && memcmp(r.p, st->replacement, nr) == 0;
    bool prepend = !starts && (st->prepend == HF_PREPEND_ALWAYS ||
                               (st->prepend == HF_PREPEND_FIRST && section == 0));
    rc = rc ? rc : prepend ? hf_buf_put(&b, st->replacement, nr) : 0;
    rc = rc ? rc : hf_buf_put(&b, r.p, r.n);
    rc = rc ? rc : push_piece(out, b.p, b.n);
    free(b.p);
    free(r.p);
    return rc;
}

/* Runs the pre-tokenizer steps on e->norm[0]; the pieces are e->pre[0]. -2: a match failed. */
static int pre_tokenize(enc *e, size_t section)
{
    pieces *cur = &e->pre[0], *next = &e->pre[1];
    cur->n = cur->text.n = 0;
    if (push_piece(cur, e->norm[0].p, e->norm[0].n) != 0)
        return -1;
    for (int k = 0; k < e->hf->n_pre; k++) {
        const hf_pre *st = &e->hf->pre[k];
        next->n = next->text.n = 0;
        for (size_t i = 0; i < cur->n; i++) {
            const char *s = cur->text.p + cur->a[i].off;
            size_t n = cur->a[i].len;
            int rc = st->kind == HF_SPLIT        ? regex_split(e, st, s, n, next)
                     : st->kind == HF_BYTE_LEVEL ? byte_level(e, st, s, n, next)
                                                 : metaspace(st, s, n, section, next);
            if (rc != 0)
                return rc;
        }
        pieces tmp = *cur;
        *cur = *next;
        *next = tmp;
    }
    return 0;
}

/* ---- model ---- */

static int rank_rule(const void *ctx, int a, int b, uint32_t *priority)
{
    const hf_merge *m = hf_merge_find(ctx, a, b);
    if (!m)
        return -1;
    *priority = UINT32_MAX - (uint32_t)m->rank;
    return m->merged;
}

/* One character's symbols: its token, its bytes' <0xXX> tokens (byte fallback), or the
 * unknown token (fused with a preceding unknown when fuse_unk); nothing when there is none. */
static int char_symbols(enc *e, const char *c, int len, int *n)
{
    const gq_hf_tok *hf = e->hf;
    int id = gq_vocab_find2(&e->t->v, c, len, "", 0);
    if (id >= 0) {
        e->sym[(*n)++].id = id;
        return 0;
    }
    bool bytes = hf->byte_fallback;
    for (int i = 0; i < len && bytes; i++)
        bytes = hf->byte_id[(unsigned char)c[i]] >= 0;
    if (bytes) {
        for (int i = 0; i < len; i++)
            e->sym[(*n)++].id = hf->byte_id[(unsigned char)c[i]];
    } else if (hf->unk_id >= 0 && !(hf->fuse_unk && *n > 0 && e->sym[*n - 1].id == hf->unk_id)) {
        e->sym[(*n)++].id = hf->unk_id;
    }
    return 0;
}

static int bpe_piece(enc *e, const char *s, size_t n)
{
    int whole = e->hf->ignore_merges ? gq_vocab_find2(&e->t->v, s, (int)n, "", 0) : -1;
    if (whole >= 0)
        return push_id(e, whole);
    gq_bpe_symbol *sym = reserve(e->sym, &e->cap_sym, n + 1, sizeof *e->sym);
    if (!sym)
        return -1; /* at most one symbol per byte */
    e->sym = sym;
    int m = 0;
    for (size_t i = 0; i < n;) {
        int l = hf_utf8_len((unsigned char)s[i]);
        char_symbols(e, s + i, l, &m);
        i += (size_t)l;
    }
    if (gq_bpe_merge_all(e->sym, m, &e->t->v, rank_rule, e->hf, &e->heap) != 0)
        return -1;
    for (int i = 0; i < m; i++)
        if (e->sym[i].id >= 0 && push_id(e, e->sym[i].id) != 0)
            return -1;
    return 0;
}

/* ---- sections ---- */

static int encode_section(enc *e, const char *s, size_t n, size_t section)
{
    int rc = normalize(e, s, n);
    if (rc == 0 && e->norm[0].n > 0)
        rc = pre_tokenize(e, section);
    else
        e->pre[0].n = 0;
    for (size_t i = 0; i < e->pre[0].n && rc == 0; i++)
        rc = bpe_piece(e, e->pre[0].text.p + e->pre[0].a[i].off, e->pre[0].a[i].len);
    return rc;
}

/* The added token starting at s (the longest), or NULL. */
static const hf_added *added_at(const gq_hf_tok *hf, const char *s, size_t n)
{
    unsigned char c = (unsigned char)s[0];
    if (!(hf->added_first[c >> 3] >> (c & 7) & 1))
        return NULL;
    for (int k = 0; k < hf->n_added; k++)
        if (hf->added[k].len <= n && memcmp(s, hf->added[k].text, hf->added[k].len) == 0)
            return &hf->added[k];
    return NULL;
}

/* Sections: runs of text between added tokens, and the added tokens; numbered in order. */
static int encode_text(enc *e, const char *s, size_t n)
{
    size_t start = 0, section = 0;
    for (size_t i = 0; i < n;) {
        const hf_added *a = added_at(e->hf, s + i, n - i);
        if (!a) {
            i++;
            continue;
        }
        int rc = i > start ? encode_section(e, s + start, i - start, section++) : 0;
        if (rc != 0 || (rc = push_id(e, a->id)) != 0)
            return rc;
        section++;
        i += a->len;
        start = i;
    }
    return start < n ? encode_section(e, s + start, n - start, section) : 0;
}

static void enc_free(enc *e)
{
    free(e->ids);
    free(e->sym);
    gq_bpe_heap_free(&e->heap);
    pcre2_match_data_free(e->md);
    for (int k = 0; k < 2; k++) {
        free(e->norm[k].p);
        free(e->pre[k].text.p);
        free(e->pre[k].a);
    }
}

int gq_hf_encode(const gq_tokenizer *t, const char *text, size_t len, bool bos, bool eos,
                 int **tokens, size_t *n_tokens, gq_error *err)
{
    const gq_hf_tok *hf = t->hf;
    enc e = {.t = t, .hf = hf};
    hf_buf clean = {0};
    int rc = (e.md = pcre2_match_data_create(1, NULL)) ? 0 : -1;
    rc = rc ? rc : hf_utf8_sanitize(text, len, &clean);
    for (int k = 0; bos && k < hf->n_prefix && rc == 0; k++)
        rc = push_id(&e, hf->prefix[k]);
    rc = rc ? rc : encode_text(&e, clean.p, clean.n);
    for (int k = 0; bos && k < hf->n_suffix && rc == 0; k++)
        rc = push_id(&e, hf->suffix[k]);
    bool has_eos = bos && hf->n_suffix > 0 && hf->suffix[hf->n_suffix - 1] == t->eos_id;
    if (rc == 0 && eos && t->eos_id >= 0 && !has_eos)
        rc = push_id(&e, t->eos_id);
    rc = rc ? rc : push_id(&e, 0); /* never an empty allocation */
    free(clean.p);
    if (rc != 0) {
        enc_free(&e);
        return rc == -2 ? gq_fail(err, "tokenizer: a pre-tokenizer pattern exceeded its match "
                                  "limit on this text")
                        : gq_fail(err, "tokenizer: out of memory encoding %zu bytes of text", len);
    }
    *tokens = e.ids;
    *n_tokens = e.n_ids - 1;
    e.ids = NULL;
    enc_free(&e);
    return 0;
}

const char *gq_hf_decode(const gq_tokenizer *t, int prev_token, int token)
{
    const char *s = t->hf->dec.pieces[token];
    if (t->hf->strip_after_bos && prev_token == t->bos_id && t->bos_id >= 0 && s[0] == ' ')
        s++;
    return s;
}
