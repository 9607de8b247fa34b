/* Tokenizer tests: the fast encode against a straightforward O(n^2) version of the reference
 * algorithm (written here, in the test only), known ids, decode round trips, bad files. */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gq_fileio.h"
#include "core/gq_rng.h"
#include "text/gq_dataset.h"
#include "text/gq_tokenizer.h"

/* ---- reference: sorted vocabulary + binary search, rescan all pairs after every merge ---- */

typedef struct {
    const char *s;
    size_t n;
    int id;
} ref_entry;

typedef struct {
    const gq_tokenizer *t;
    int vocab;
    ref_entry *sorted;
} ref_vocab;

static int ref_cmp(const void *a, const void *b)
{
    const ref_entry *x = a, *y = b;
    size_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->s, y->s, n);
    if (c)
        return c;
    return (x->n > y->n) - (x->n < y->n);
}

static ref_vocab ref_init(const gq_tokenizer *t)
{
    ref_vocab v = {t, gq_tokenizer_vocab_size(t), NULL};
    v.sorted = malloc((size_t)v.vocab * sizeof *v.sorted);
    for (int i = 0; i < v.vocab; i++) {
        const char *p = gq_tokenizer_piece(t, i);
        v.sorted[i] = (ref_entry){p, strlen(p), i};
    }
    qsort(v.sorted, (size_t)v.vocab, sizeof *v.sorted, ref_cmp);
    return v;
}

static int ref_lookup(const ref_vocab *v, const char *s, size_t n)
{
    ref_entry key = {s, n, -1};
    ref_entry *e = bsearch(&key, v->sorted, (size_t)v->vocab, sizeof key, ref_cmp);
    return e ? e->id : -1;
}

static int *ref_encode(const ref_vocab *v, const char *text, size_t len, bool bos, size_t *n_out)
{
    int *tok = malloc((len + 3) * sizeof *tok);
    size_t n = 0;
    if (bos)
        tok[n++] = 1;
    if (len > 0)
        tok[n++] = ref_lookup(v, " ", 1);
    char buf[8];
    size_t bl = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c & 0xC0) != 0x80)
            bl = 0;
        buf[bl++] = (char)c;
        unsigned char next = i + 1 < len ? (unsigned char)text[i + 1] : 0;
        if ((next & 0xC0) == 0x80 && bl < 4)
            continue;
        int id = ref_lookup(v, buf, bl);
        if (id >= 0)
            tok[n++] = id;
        else
            for (size_t k = 0; k < bl; k++)
                tok[n++] = (unsigned char)buf[k] + 3;
        bl = 0;
    }
    char pair[256];
    for (;;) {
        float best = -1e10f;
        int best_id = -1;
        size_t best_i = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            const char *a = gq_tokenizer_piece(v->t, tok[i]), *b = gq_tokenizer_piece(v->t, tok[i + 1]);
            size_t na = strlen(a), nb = strlen(b);
            if (na + nb > sizeof pair)
                continue;
            memcpy(pair, a, na);
            memcpy(pair + na, b, nb);
            int id = ref_lookup(v, pair, na + nb);
            if (id >= 0 && gq_tokenizer_score(v->t, id) > best) {
                best = gq_tokenizer_score(v->t, id);
                best_id = id;
                best_i = i;
            }
        }
        if (best_id < 0)
            break;
        tok[best_i] = best_id;
        memmove(tok + best_i + 1, tok + best_i + 2, (n - best_i - 2) * sizeof *tok);
        n--;
    }
    *n_out = n;
    return tok;
}

/* ---- fixtures ---- */

typedef struct {
    gq_tokenizer *tok;
    ref_vocab ref;
} fixture;

static fixture load(const char *rel)
{
    char path[4096];
    fixture f = {0};
    if (!test_asset(rel, path, sizeof path))
        return f;
    gq_error err = {{0}};
    if (gq_tokenizer_load(path, 0, &f.tok, &err) != 0)
        fail_msg("%s", err.msg);
    f.ref = ref_init(f.tok);
    return f;
}

static void unload(fixture *f)
{
    gq_tokenizer_free(f->tok);
    free(f->ref.sorted);
}

/* Encodes with both implementations and checks equality; also checks the decode round trip
 * when the text has no NUL byte. */
static void check_same(const fixture *f, const char *text, size_t len)
{
    int *fast = NULL;
    size_t nf = 0;
    gq_error err = {{0}};
    assert_int_equal(gq_tokenizer_encode(f->tok, text, len, true, false, &fast, &nf, &err), 0);
    size_t nr = 0;
    int *ref = ref_encode(&f->ref, text, len, true, &nr);
    if (nf != nr || memcmp(fast, ref, nf * sizeof *fast) != 0) {
        size_t i = 0;
        while (i < nf && i < nr && fast[i] == ref[i])
            i++;
        fail_msg("encode differs from the reference at token %zu (fast %zu tokens, ref %zu) "
                 "for %zu bytes of text", i, nf, nr, len);
    }
    if (!memchr(text, 0, len)) {
        char *dec = malloc(len * 8 + 16);
        size_t dl = 0;
        char scratch[2];
        for (size_t i = 1; i < nf; i++) {
            const char *p = gq_tokenizer_decode(f->tok, fast[i - 1], fast[i], scratch);
            size_t pl = strlen(p);
            memcpy(dec + dl, p, pl);
            dl += pl;
        }
        assert_int_equal(dl, len);
        assert_memory_equal(dec, text, len);
        free(dec);
    }
    free(fast);
    free(ref);
}

static void put_utf8(char *out, size_t *n, uint32_t cp)
{
    if (cp < 0x80) {
        out[(*n)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*n)++] = (char)(0xC0 | (cp >> 6));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[(*n)++] = (char)(0xE0 | (cp >> 12));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*n)++] = (char)(0xF0 | (cp >> 18));
        out[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    }
}

/* Random text mixing ASCII words, spaces/newline runs, 2-4 byte code points (CJK, emoji),
 * stray continuation bytes, invalid lead bytes, NULs, literal "<0x41>" strings and runs of one
 * character (where the leftmost-on-ties rule matters). */
static size_t random_text(gq_rng *r, char *out, size_t max)
{
    static const char *words[] = {"the", " cat", "Hello", " world", "ing", "Once", " upon",
                                  " a", " time", "<0x41>", "\n\n", "   ", "\t", "é", "ü"};
    size_t n = 0;
    while (n + 16 < max) {
        switch (gq_rng_below(r, 11)) {
        case 0: case 1: case 2: {
            const char *w = words[gq_rng_below(r, sizeof words / sizeof *words)];
            memcpy(out + n, w, strlen(w));
            n += strlen(w);
            break;
        }
        case 3: out[n++] = (char)(' ' + gq_rng_below(r, 95)); break;
        case 4:
            for (size_t k = 1 + gq_rng_below(r, 6); k > 0; k--)
                out[n++] = gq_rng_below(r, 3) ? ' ' : '\n';
            break;
        case 5: put_utf8(out, &n, 0x80 + (uint32_t)gq_rng_below(r, 0x780)); break;
        case 6: put_utf8(out, &n, 0x4E00 + (uint32_t)gq_rng_below(r, 0x5000)); break;
        case 7: put_utf8(out, &n, 0x1F600 + (uint32_t)gq_rng_below(r, 0x50)); break;
        case 8: out[n++] = (char)(0x80 + gq_rng_below(r, 0x80)); break; /* invalid byte */
        case 9: { /* runs of one character: equal-score pairs overlap, so ties decide */
            char c = " .-=!aeo0"[gq_rng_below(r, 9)];
            for (size_t k = 2 + gq_rng_below(r, 8); k > 0; k--)
                out[n++] = c;
            break;
        }
        default: out[n++] = gq_rng_below(r, 8) ? (char)('a' + gq_rng_below(r, 26)) : '\0';
        }
    }
    return n;
}

static void run_random(const char *rel)
{
    fixture f = load(rel);
    if (!f.tok) {
        skip();
        return;
    }
    gq_rng r;
    gq_rng_seed(&r, 1234);
    char buf[512];
    for (int i = 0; i < 200; i++) {
        size_t n = random_text(&r, buf, 20 + gq_rng_below(&r, sizeof buf - 20));
        check_same(&f, buf, n);
    }
    unload(&f);
}

static void test_random_tok512(void **state) { (void)state; run_random("models/stories260K/tok512.bin"); }
static void test_random_llama2(void **state) { (void)state; run_random("tokenizers/llama2/tokenizer.bin"); }

/* Slices of real text at random offsets and lengths (up to 1 KB: the reference is O(n^2)). */
static void run_slices(const char *tok_rel, const char *text_rel)
{
    fixture f = load(tok_rel);
    char tpath[4096];
    if (!f.tok || !test_asset(text_rel, tpath, sizeof tpath)) {
        if (f.tok)
            unload(&f);
        skip();
        return;
    }
    size_t len;
    char *text = test_read_file(tpath, &len);
    gq_rng r;
    gq_rng_seed(&r, 99);
    for (int i = 0; i < 20; i++) {
        size_t n = 1 + gq_rng_below(&r, 1024);
        size_t off = gq_rng_below(&r, len - n);
        check_same(&f, text + off, n);
    }
    free(text);
    unload(&f);
}

/* test_slices_<text>_<tokenizer>: run_slices on that pair of assets. */
#define SLICES_TEST(text, tokenizer, text_path, tok_path)      \
    static void test_slices_##text##_##tokenizer(void **state) \
    {                                                          \
        (void)state;                                           \
        run_slices(tok_path, text_path);                       \
    }

#define TINYSTORIES "text/tinystories/tinystories_val.txt"
#define WIKI "text/wikitext-2-raw/wiki.test.raw"
#define TOK512 "models/stories260K/tok512.bin"
#define LLAMA2 "tokenizers/llama2/tokenizer.bin"
SLICES_TEST(tinystories, tok512, TINYSTORIES, TOK512)
SLICES_TEST(wiki, llama2, WIKI, LLAMA2)
SLICES_TEST(tinystories, llama2, TINYSTORIES, LLAMA2)
SLICES_TEST(wiki, tok512, WIKI, TOK512)

static void test_known_ids(void **state)
{
    (void)state;
    fixture f = load("tokenizers/llama2/tokenizer.bin");
    if (!f.tok) {
        skip();
        return;
    }
    int *ids;
    size_t n;
    gq_error err = {{0}};
    assert_int_equal(gq_tokenizer_encode(f.tok, "Hello world", 11, true, false, &ids, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 15043);
    assert_int_equal(ids[2], 3186);
    free(ids);
    /* EOS appended; empty text gives just BOS/EOS (no dummy prefix). */
    assert_int_equal(gq_tokenizer_encode(f.tok, "", 0, true, true, &ids, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 2);
    free(ids);
    assert_int_equal(gq_tokenizer_encode(f.tok, "", 0, false, false, &ids, &n, &err), 0);
    assert_int_equal(n, 0);
    free(ids);
    /* Byte fallback: an unassigned code point (U+E000, private use) becomes 3 byte tokens. */
    assert_int_equal(gq_tokenizer_encode(f.tok, "\xEE\x80\x80", 3, false, false, &ids, &n, &err), 0);
    assert_int_equal(n, 4);
    assert_int_equal(ids[1], 0xEE + 3);
    assert_int_equal(ids[2], 0x80 + 3);
    assert_int_equal(ids[3], 0x80 + 3);
    char scratch[2];
    assert_string_equal(gq_tokenizer_decode(f.tok, 1, ids[1], scratch), "\xEE");
    assert_string_equal(gq_tokenizer_decode(f.tok, 1, 15043, scratch), "Hello");
    assert_string_equal(gq_tokenizer_decode(f.tok, 5, 15043, scratch), " Hello");
    free(ids);
    unload(&f);
}

/* The whole TinyStories text at once with the fast encoder, checked by decoding it back. */
static void test_whole_text_roundtrip(void **state)
{
    (void)state;
    char tp[4096], xp[4096];
    TEST_ASSET_OR_SKIP("models/stories260K/tok512.bin", tp);
    TEST_ASSET_OR_SKIP("text/tinystories/tinystories_val.txt", xp);
    gq_error err = {{0}};
    gq_tokenizer *t;
    assert_int_equal(gq_tokenizer_load(tp, 512, &t, &err), 0);
    gq_dataset ds;
    if (gq_dataset_load(xp, t, &ds, &err) != 0)
        fail_msg("%s", err.msg);
    size_t len;
    char *text = test_read_file(xp, &len);
    assert_int_equal(ds.text_bytes, len);
    assert_int_equal(ds.tokens[0], GQ_TOKEN_BOS);
    assert_string_equal(ds.sha256, "5fc1fb0113df62b567fb271806cd645ce8d75f59c58ca0b764c03d3b6ff34ca6");
    assert_true(ds.n_tokens > len / 8 && ds.n_tokens < len);
    char *dec = malloc(len + 64);
    size_t dl = 0;
    char scratch[2];
    for (size_t i = 1; i < ds.n_tokens; i++) {
        const char *p = gq_tokenizer_decode(t, ds.tokens[i - 1], ds.tokens[i], scratch);
        size_t pl = strlen(p);
        assert_true(dl + pl <= len);
        memcpy(dec + dl, p, pl);
        dl += pl;
    }
    assert_int_equal(dl, len);
    assert_memory_equal(dec, text, len);
    /* windows and calibration offsets */
    assert_int_equal(gq_dataset_n_windows(&ds, 512), ds.n_tokens / 512);
    size_t *o1, *o2;
    assert_int_equal(gq_dataset_calib_offsets(&ds, 0, 16, 256, 7, &o1, &err), 0);
    assert_int_equal(gq_dataset_calib_offsets(&ds, 0, 16, 256, 7, &o2, &err), 0);
    assert_memory_equal(o1, o2, 16 * sizeof *o1);
    for (int i = 0; i < 16; i++) {
        assert_true(o1[i] + 256 <= ds.n_tokens);
        if (i)
            assert_true(o1[i - 1] <= o1[i]);
    }
    free(o2);
    assert_int_equal(gq_dataset_calib_offsets(&ds, 0, 16, 256, 8, &o2, &err), 0);
    assert_memory_not_equal(o1, o2, 16 * sizeof *o1);
    free(o2);
    assert_int_equal(gq_dataset_calib_offsets(&ds, 0, 4, (int)ds.n_tokens + 1, 7, &o2, &err), -1);
    assert_non_null(strstr(err.msg, "fewer than one calibration window"));
    /* A held-out prefix (the evaluated windows) is never drawn from. */
    size_t held = ds.n_tokens / 2;
    assert_int_equal(gq_dataset_calib_offsets(&ds, held, 64, 256, 7, &o2, &err), 0);
    for (int i = 0; i < 64; i++)
        assert_true(o2[i] >= held && o2[i] + 256 <= ds.n_tokens);
    free(o2);
    assert_int_equal(gq_dataset_calib_offsets(&ds, ds.n_tokens - 100, 4, 256, 7, &o2, &err), -1);
    assert_non_null(strstr(err.msg, "held out for evaluation"));
    free(o1);
    free(o2);
    free(dec);
    free(text);
    gq_dataset_free(&ds);
    gq_tokenizer_free(t);
}

/* Writes `n` bytes to a temporary file and expects loading it to fail with `needle`. */
static void expect_bad(const void *data, size_t n, int expected_vocab, const char *needle)
{
    char *dir = test_tmpdir("tok");
    char path[4200];
    snprintf(path, sizeof path, "%s/bad.bin", dir);
    gq_error err = {{0}};
    assert_int_equal(gq_write_file_atomic(path, data, n, &err), 0);
    gq_tokenizer *t = NULL;
    assert_int_equal(gq_tokenizer_load(path, expected_vocab, &t, &err), -1);
    assert_null(t);
    assert_non_null(strstr(err.msg, path));
    if (!strstr(err.msg, needle))
        fail_msg("error '%s' does not mention '%s'", err.msg, needle);
    remove(path);
    rmdir(dir);
    free(dir);
}

static void test_bad_files(void **state)
{
    (void)state;
    char tp[4096];
    TEST_ASSET_OR_SKIP("models/stories260K/tok512.bin", tp);
    size_t len;
    unsigned char *good = test_read_file(tp, &len);
    expect_bad(good, 2, 0, "header");
    expect_bad(good, len - 3, 0, "truncated");
    expect_bad(good, len - 5, 0, "truncated");
    expect_bad(good, len, 32000, "model expects 32000");
    unsigned char *bad = malloc(len);
    memcpy(bad, good, len);
    int32_t huge = 1 << 30;
    memcpy(bad, &huge, 4);
    expect_bad(bad, len, 0, "max_token_length");
    memcpy(bad, good, len);
    int32_t neg = -5;
    memcpy(bad + 4 + 4, &neg, 4); /* length of token 0 */
    expect_bad(bad, len, 0, "length -5");
    memcpy(bad, good, len);
    for (size_t i = 4; i < len; i++) /* garbage: pseudo-random bytes after the header */
        bad[i] = (unsigned char)(i * 2654435761u >> 13);
    gq_tokenizer *t = NULL;
    gq_error err = {{0}};
    char *dir = test_tmpdir("tok");
    char path[4200];
    snprintf(path, sizeof path, "%s/garbage.bin", dir);
    assert_int_equal(gq_write_file_atomic(path, bad, len, &err), 0);
    assert_int_equal(gq_tokenizer_load(path, 0, &t, &err), -1);
    assert_non_null(strstr(err.msg, path));
    remove(path);
    rmdir(dir);
    free(dir);
    assert_int_equal(gq_tokenizer_load("/nonexistent/tok.bin", 0, &t, &err), -1);
    assert_non_null(strstr(err.msg, "/nonexistent/tok.bin"));
    free(bad);
    free(good);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_ids),
        cmocka_unit_test(test_random_tok512),
        cmocka_unit_test(test_random_llama2),
        cmocka_unit_test(test_slices_tinystories_tok512),
        cmocka_unit_test(test_slices_wiki_tok512),
        cmocka_unit_test(test_slices_tinystories_llama2),
        cmocka_unit_test(test_slices_wiki_llama2),
        cmocka_unit_test(test_whole_text_roundtrip),
        cmocka_unit_test(test_bad_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
