/* tokenizer.json: ids against goldens of the reference implementation (@huggingface/tokenizers,
 * tests/data/tokenizers/golden_*.json) for the three real families, a Metaspace variant and
 * the tokenizer.json exports of llama2.c tokenizers; llama2.c tokenizer.bin against its export
 * on whole texts; decoding; files that are refused. */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "core/gq_fileio.h"
#include "core/gq_sha256.h"
#include "text/gq_tokenizer.h"

static char *g_dir; /* scratch directory of this run */

static int setup(void **state)
{
    (void)state;
    g_dir = test_tmpdir("hftok");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        return -1;
    free(g_dir);
    return 0;
}

static gq_tokenizer *load_ok(const char *path, int expected_vocab)
{
    gq_tokenizer *t = NULL;
    gq_error err = {{0}};
    if (gq_tokenizer_load(path, expected_vocab, &t, &err) != 0)
        fail_msg("%s", err.msg);
    return t;
}

static char *file_sha256(const char *path, char hex[65])
{
    size_t len;
    char *data = test_read_file(path, &len);
    gq_sha256_hex(data, len, hex);
    free(data);
    return hex;
}

/* ---- goldens ---- */

static size_t unhex(const char *h, char *out)
{
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
        out[i] = (char)v;
    }
    return n;
}

/* Decoding the ids gives the text back (bos: the first id is the BOS, whose next token's
 * leading space the decoder drops). */
static void check_decode(const gq_tokenizer *t, const int *ids, size_t n, const char *text,
                         size_t len)
{
    char out[4096];
    size_t m = 0;
    char scratch[2];
    int bos = gq_tokenizer_bos_id(t);
    for (size_t i = (n && ids[0] == bos) ? 1 : 0; i < n; i++) {
        const char *p = gq_tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], scratch);
        size_t pl = strlen(p);
        assert_true(m + pl < sizeof out);
        memcpy(out + m, p, pl);
        m += pl;
    }
    if (m != len || memcmp(out, text, len) != 0)
        fail_msg("decode gives \"%.*s\", expected \"%.*s\"", (int)m, out, (int)len, text);
}

/* Every case of golden `name` (under tests/data) with tokenizer file `path`, made from the file
 * sha_from (the golden records its sha256); decode_check: also decode the cases whose text is
 * valid UTF-8 without special tokens, NUL or U+2581 (which stands for the space). */
static void run_golden(const char *name, const char *sha_from, const char *path,
                       bool decode_check)
{
    char gpath[4096], sha[65];
    snprintf(gpath, sizeof gpath, "%s", test_data_path(name));
    json_error_t je;
    json_t *g = json_load_file(gpath, JSON_ALLOW_NUL, &je);
    if (!g)
        fail_msg("%s: %s", gpath, je.text);
    const char *want_sha = json_string_value(json_object_get(g, "tokenizer_sha256"));
    if (strcmp(file_sha256(sha_from, sha), want_sha) != 0)
        fail_msg("%s: %s has sha256 %s, the golden was made from %s", name, sha_from, sha,
                 want_sha);
    gq_tokenizer *t = load_ok(path, 0);
    const json_t *cases = json_object_get(g, "cases");
    assert_true(json_array_size(cases) >= 40);
    for (size_t c = 0; c < json_array_size(cases); c++) {
        const json_t *cs = json_array_get(cases, c), *want = json_object_get(cs, "ids");
        char text[1024];
        size_t len = unhex(json_string_value(json_object_get(cs, "hex")), text);
        int *ids = NULL;
        size_t n = 0;
        gq_error err = {{0}};
        assert_int_equal(gq_tokenizer_encode(t, text, len, true, false, &ids, &n, &err), 0);
        bool same = n == json_array_size(want);
        for (size_t i = 0; same && i < n; i++)
            same = ids[i] == json_integer_value(json_array_get(want, i));
        if (!same)
            fail_msg("%s case %zu (%s): %zu ids, the reference has %zu (first ids %d ...)", name,
                     c, json_string_value(json_object_get(cs, "hex")), n,
                     json_array_size(want), n ? ids[0] : -1);
        const char *s = json_string_value(json_object_get(cs, "text"));
        if (decode_check && s && !memchr(text, 0, len) && !strchr(s, '<') &&
            !strstr(s, "\xE2\x96\x81"))
            check_decode(t, ids, n, text, len);
        free(ids);
    }
    gq_tokenizer_free(t);
    json_decref(g);
}

static void test_golden_spm(void **state)
{
    (void)state;
    char p[4096];
    TEST_ASSET_OR_SKIP("tokenizers/hf/spm-bpe-32k/tokenizer.json", p);
    run_golden("tokenizers/golden_spm-bpe-32k.json", p, p, true);
}

static void test_golden_llama3(void **state)
{
    (void)state;
    char p[4096];
    TEST_ASSET_OR_SKIP("tokenizers/hf/llama3/tokenizer.json", p);
    run_golden("tokenizers/golden_llama3.json", p, p, true);
}

/* NFC changes some texts, so no decode check. */
static void test_golden_qwen3(void **state)
{
    (void)state;
    char p[4096];
    TEST_ASSET_OR_SKIP("tokenizers/hf/qwen3/tokenizer.json", p);
    run_golden("tokenizers/golden_qwen3.json", p, p, false);
}

/* The SentencePiece-style file with a Metaspace pre-tokenizer (prepend_scheme first, split
 * false) in place of its normalizer, as newer Mistral files have. */
static void test_golden_metaspace(void **state)
{
    (void)state;
    char p[4096], out[4200];
    TEST_ASSET_OR_SKIP("tokenizers/hf/spm-bpe-32k/tokenizer.json", p);
    json_t *j = json_load_file(p, 0, NULL);
    assert_non_null(j);
    json_object_set_new(j, "normalizer", json_null());
    json_object_set_new(j, "pre_tokenizer",
                        json_pack("{s:s,s:s,s:s,s:b}", "type", "Metaspace", "replacement",
                                  "\xE2\x96\x81", "prepend_scheme", "first", "split", 0));
    snprintf(out, sizeof out, "%s/metaspace", g_dir);
    gq_error err = {{0}};
    assert_int_equal(gq_mkdir_p(out, &err), 0);
    snprintf(out, sizeof out, "%s/metaspace/tokenizer.json", g_dir);
    assert_int_equal(json_dump_file(j, out, JSON_COMPACT), 0);
    json_decref(j);
    /* no decode check: a leading space is absorbed by the prepended "▁", which the decoder strips */
    run_golden("tokenizers/golden_spm-bpe-32k-metaspace.json", p, out, false);
}

/* Exports tokenizer.bin `rel` to <scratch>/<name>/tokenizer.json (in out). */
static bool export_asset(const char *rel, const char *name, char *bin, char *out, size_t n)
{
    if (!test_asset(rel, bin, n))
        return false;
    gq_tokenizer *t = load_ok(bin, 0);
    gq_error err = {{0}};
    snprintf(out, n, "%s/%s", g_dir, name);
    assert_int_equal(gq_mkdir_p(out, &err), 0);
    snprintf(out, n, "%s/%s/tokenizer.json", g_dir, name);
    if (gq_tokenizer_save_json(t, out, &err) != 0)
        fail_msg("%s", err.msg);
    gq_tokenizer_free(t);
    return true;
}

static void test_golden_exports(void **state)
{
    (void)state;
    char bin[4096], out[4096];
    if (!export_asset("models/stories260K/tok512.bin", "tok512", bin, out, sizeof out)) {
        skip();
        return;
    }
    run_golden("tokenizers/golden_tok512-export.json", out, out, true);
    if (!export_asset("tokenizers/llama2/tokenizer.bin", "llama2", bin, out, sizeof out)) {
        skip();
        return;
    }
    run_golden("tokenizers/golden_llama2-export.json", out, out, true);
}

/* ---- llama2.c tokenizer.bin against its tokenizer.json export ---- */

static void same_ids(const char *bin, const char *json, const char *text_rel)
{
    char tp[4096];
    if (!test_asset(text_rel, tp, sizeof tp))
        return;
    size_t len;
    char *text = test_read_file(tp, &len);
    gq_tokenizer *a = load_ok(bin, 0), *b = load_ok(json, 0);
    assert_int_equal(gq_tokenizer_vocab_size(a), gq_tokenizer_vocab_size(b));
    assert_int_equal(gq_tokenizer_bos_id(a), gq_tokenizer_bos_id(b));
    int *ia, *ib;
    size_t na, nb;
    gq_error err = {{0}};
    assert_int_equal(gq_tokenizer_encode(a, text, len, true, false, &ia, &na, &err), 0);
    assert_int_equal(gq_tokenizer_encode(b, text, len, true, false, &ib, &nb, &err), 0);
    size_t i = 0;
    while (i < na && i < nb && ia[i] == ib[i])
        i++;
    if (i < na || i < nb)
        fail_msg("%s: %s and its export differ at id %zu of %zu / %zu", text_rel, bin, i, na, nb);
    free(ia);
    free(ib);
    free(text);
    gq_tokenizer_free(a);
    gq_tokenizer_free(b);
}

static void test_export_same_ids(void **state)
{
    (void)state;
    static const char *const bins[][2] = {{"models/stories260K/tok512.bin", "x512"},
                                         {"tokenizers/llama2/tokenizer.bin", "xllama2"}};
    for (int k = 0; k < 2; k++) {
        char bin[4096], out[4096];
        if (!export_asset(bins[k][0], bins[k][1], bin, out, sizeof out)) {
            skip();
            return;
        }
        same_ids(bin, out, "text/tinystories/tinystories_val.txt");
        same_ids(bin, out, "text/wikitext-2-raw/wiki.test.raw");
    }
}

/* A tokenizer read from tokenizer.json is written back as read. */
static void test_save_json_roundtrip(void **state)
{
    (void)state;
    char p[4096], out[4200];
    TEST_ASSET_OR_SKIP("tokenizers/hf/llama3/tokenizer.json", p);
    gq_tokenizer *t = load_ok(p, 128256);
    snprintf(out, sizeof out, "%s/copy.json", g_dir);
    gq_error err = {{0}};
    assert_int_equal(gq_tokenizer_save_json(t, out, &err), 0);
    char a[65], b[65];
    assert_string_equal(file_sha256(p, a), file_sha256(out, b));
    gq_tokenizer_free(t);
    /* a vocabulary larger than the model's embedding */
    assert_int_equal(gq_tokenizer_load(p, 128000, &t, &err), -1);
    assert_non_null(strstr(err.msg, "128256 tokens, more than the model's 128000 embedding"));
}

/* ---- refused files ---- */

/* A minimal valid tokenizer.json: "ab" merges from "a" + "b". */
#define TINY_MODEL "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, " \
                   "\"merges\": [\"a b\"]}"

/* Writes `json` and expects loading to fail with a message holding `needle`. */
static void expect_refused(const char *json, const char *needle)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/bad.json", g_dir);
    gq_error err = {{0}};
    assert_int_equal(gq_write_file_atomic(path, json, strlen(json), &err), 0);
    gq_tokenizer *t = NULL;
    assert_int_equal(gq_tokenizer_load(path, 0, &t, &err), -1);
    assert_null(t);
    if (!strstr(err.msg, path) || !strstr(err.msg, needle))
        fail_msg("error '%s' does not name the file and '%s'", err.msg, needle);
}

static void test_tiny_and_refused(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof path, "%s/tiny.json", g_dir);
    const char *tiny = "{" TINY_MODEL "}";
    gq_error err = {{0}};
    assert_int_equal(gq_write_file_atomic(path, tiny, strlen(tiny), &err), 0);
    gq_tokenizer *t = load_ok(path, 3);
    int *ids;
    size_t n;
    assert_int_equal(gq_tokenizer_encode(t, "abba", 4, true, true, &ids, &n, &err), 0);
    assert_int_equal(n, 3); /* no BOS/EOS: none defined */
    assert_int_equal(ids[0], 2);
    assert_int_equal(ids[1], 1);
    assert_int_equal(ids[2], 0);
    free(ids);
    gq_tokenizer_free(t);
    expect_refused("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "model.type: \"Unigram\"");
    expect_refused("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "model.type: \"WordPiece\"");
    expect_refused("{\"model\": {\"vocab\": {}}}", "model.type: missing");
    expect_refused("{" TINY_MODEL ", \"normalizer\": {\"type\": \"Lowercase\"}}", "normalizer.type");
    expect_refused("{" TINY_MODEL ", \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": "
                   "[{\"type\": \"Whitespace\"}]}}", "pre_tokenizer.pretokenizers[0].type");
    expect_refused("{" TINY_MODEL ", \"pre_tokenizer\": {\"type\": \"Metaspace\"}}", "split: true");
    expect_refused("{" TINY_MODEL ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": "
                   "{\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}}", "pre_tokenizer: pattern:");
    expect_refused("{" TINY_MODEL ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": "
                   "{\"Regex\": \"a\"}, \"behavior\": \"MergedWithPrevious\"}}", "behavior");
    expect_refused("{" TINY_MODEL ", \"post_processor\": {\"type\": \"BertProcessing\"}}",
                   "post_processor.type");
    expect_refused("{" TINY_MODEL ", \"added_tokens\": [{\"id\": 3, \"content\": \"<x>\", "
                   "\"lstrip\": true}]}", "added_tokens: [0].lstrip");
    expect_refused("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, "
                   "\"merges\": [\"a b\"]}}", "model.merges: [0]");
    expect_refused("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 2}, "
                   "\"merges\": []}}", "no token has id 1");
    expect_refused("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}",
                   "model.vocab");
    expect_refused("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], "
                   "\"dropout\": 0.1}}", "dropout");
    expect_refused("{\"model\": ", "JSON error");
    expect_refused("{" TINY_MODEL ", \"decoder\": {\"type\": \"CTC\"}}", "decoder.type");
}

/* The command line: --export-json, a refused tokenizer.json (exit 2), a vocabulary larger than
 * the model's embedding. */
static void test_cli(void **state)
{
    (void)state;
    char tok[4096], model[4096], spm[4096], out[8192], errb[8192];
    TEST_ASSET_OR_SKIP("models/stories260K/tok512.bin", tok);
    TEST_ASSET_OR_SKIP("models/stories260K/stories260K.bin", model);
    TEST_ASSET_OR_SKIP("tokenizers/hf/spm-bpe-32k/tokenizer.json", spm);
    char json[4200];
    snprintf(json, sizeof json, "%s/cli.json", g_dir);
    assert_int_equal(test_run_clif(out, sizeof out, errb, sizeof errb,
                                   "tokenize --tokenizer %s --export-json %s", tok, json), 0);
    assert_true(gq_file_exists(json));
    assert_int_equal(test_run_clif(out, sizeof out, errb, sizeof errb,
                                   "tokenize --tokenizer %s --data %s --head 3", json, json), 0);
    assert_non_null(strstr(out, "tokenizer.json BPE, SentencePiece-style"));
    expect_refused("{\"model\": {\"type\": \"Unigram\"}}", "Unigram");
    char bad[4200];
    snprintf(bad, sizeof bad, "%s/bad.json", g_dir);
    assert_int_equal(test_run_clif(out, sizeof out, errb, sizeof errb,
                                   "tokenize --tokenizer %s --data %s", bad, json), 2);
    assert_non_null(strstr(errb, "model.type: \"Unigram\" is not supported"));
    assert_int_equal(test_run_clif(out, sizeof out, errb, sizeof errb,
                                   "eval --model %s --tokenizer %s --data %s", model, spm, json), 2);
    assert_non_null(strstr(errb, "more than the model's 512 embedding rows"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_spm),
        cmocka_unit_test(test_golden_llama3),
        cmocka_unit_test(test_golden_qwen3),
        cmocka_unit_test(test_golden_metaspace),
        cmocka_unit_test(test_golden_exports),
        cmocka_unit_test(test_export_same_ids),
        cmocka_unit_test(test_save_json_roundtrip),
        cmocka_unit_test(test_tiny_and_refused),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
