/* GGUF `gpt2` vocabularies: a synthetic model carrying the real Llama 3 and Qwen3
 * tokenizer.json files (assets tokenizers/hf) written as a GGUF and read back gives, on every
 * text of the committed goldens (tests/data/tokenizers, from npm @huggingface/tokenizers), the
 * golden ids; the keys written are llama.cpp's; unknown pre-tokenizers are refused, named. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gguf/gq_gguf_model.h"
#include "gguf/gq_gguf_write.h"
#include "model/gq_synth.h"
#include "test_support.h"

static const gq_quantizer *all_float(const void *ctx, const gq_config *c, const char *tensor)
{
    (void)ctx, (void)c, (void)tensor;
    return NULL;
}

/* Writes the `tiny` synthetic model widened to tok's vocabulary, with tok, as path. */
static void write_model(const gq_tokenizer *tok, const char *path)
{
    gq_config c;
    gq_model m;
    gq_error err = {{0}};
    assert_int_equal(gq_synth_preset("tiny", &c, &err), 0);
    c.vocab_size = gq_tokenizer_vocab_size(tok);
    assert_int_equal(gq_model_synth_config(&c, 1, &m, &err), 0);
    gq_gguf_export x = {.model = &m, .tok = tok, .name = "bpe", .quant_of = all_float,
                        .float_type = GQ_GGML_F16};
    if (gq_gguf_write_model(path, &x, &err))
        fail_msg("%s", err.msg);
    gq_model_free(&m);
}

/* The ids of hex-encoded text under t. */
static int *encode_hex(const gq_tokenizer *t, const char *hex, size_t *n)
{
    char text[1024];
    size_t len = strlen(hex) / 2;
    assert_true(len < sizeof text);
    for (size_t i = 0; i < len; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        text[i] = (char)v;
    }
    int *ids = NULL;
    gq_error err = {{0}};
    assert_int_equal(gq_tokenizer_encode(t, text, len, true, false, &ids, n, &err), 0);
    return ids;
}

/* tokenizer.json `family` through a GGUF: the file's keys, the model, and the golden ids. */
static void round_trip(const char *family, const char *pre)
{
    char src[4096], rel[256], path[4096];
    snprintf(rel, sizeof rel, "tokenizers/hf/%s/tokenizer.json", family);
    if (!test_asset(rel, src, sizeof src))
        skip();
    gq_tokenizer *json_tok, *gguf_tok;
    gq_error err = {{0}};
    assert_int_equal(gq_tokenizer_load(src, 0, &json_tok, &err), 0);
    char *dir = test_tmpdir_file("gguf-bpe", "m.gguf", path, sizeof path);
    write_model(json_tok, path);
    gq_gguf g;
    assert_int_equal(gq_gguf_open(path, &g, &err), 0);
    const char *s;
    size_t n;
    assert_int_equal(gq_gguf_get_str(&g, "tokenizer.ggml.model", false, &s, &n, &err), 0);
    assert_true(n == 4 && memcmp(s, "gpt2", 4) == 0);
    assert_int_equal(gq_gguf_get_str(&g, "tokenizer.ggml.pre", false, &s, &n, &err), 0);
    assert_true(n == strlen(pre) && memcmp(s, pre, n) == 0);
    gq_gguf_close(&g);
    gq_model m;
    if (gq_gguf_load_model(path, &m, NULL, &err) ||
        gq_gguf_load_tokenizer(path, m.cfg.vocab_size, &gguf_tok, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(gq_tokenizer_vocab_size(gguf_tok), gq_tokenizer_vocab_size(json_tok));
    assert_int_equal(gq_tokenizer_bos_id(gguf_tok) >= 0, 0); /* neither asset adds a BOS */
    snprintf(rel, sizeof rel, "tokenizers/golden_%s.json", family);
    json_t *golden = json_load_file(test_data_path(rel), JSON_ALLOW_NUL, NULL);
    const json_t *cases = json_object_get(golden, "cases"), *cs;
    size_t c;
    assert_true(json_array_size(cases) >= 40);
    json_array_foreach(cases, c, cs) {
        const json_t *want = json_object_get(cs, "ids");
        size_t got_n;
        int *got = encode_hex(gguf_tok, json_string_value(json_object_get(cs, "hex")), &got_n);
        bool same = got_n == json_array_size(want);
        for (size_t i = 0; same && i < got_n; i++)
            same = got[i] == json_integer_value(json_array_get(want, i));
        if (!same)
            fail_msg("%s case %zu (%s): the GGUF vocabulary gives %zu ids, the golden %zu",
                     family, c, json_string_value(json_object_get(cs, "text")), got_n,
                     json_array_size(want));
        free(got);
    }
    json_decref(golden);
    gq_tokenizer_free(gguf_tok);
    gq_tokenizer_free(json_tok);
    gq_model_free(&m);
    test_remove_dir(dir);
}

static void test_llama3(void **state)
{
    (void)state;
    round_trip("llama3", "llama-bpe");
}

static void test_qwen3(void **state)
{
    (void)state;
    round_trip("qwen3", "qwen2");
}

static const char *two_tokens(void *ctx, size_t i, size_t *len)
{
    (void)ctx;
    *len = 1;
    return i ? "b" : "a";
}

static const char *one_merge(void *ctx, size_t i, size_t *len)
{
    (void)ctx, (void)i;
    *len = 3;
    return "a b";
}

/* A gpt2 vocabulary whose pre-tokenizer gq-bench does not know is refused, named. */
static void test_unknown_pre(void **state)
{
    (void)state;
    char path[4096];
    gq_error err = {{0}};
    char *dir = test_tmpdir_file("gguf-bpe-pre", "v.gguf", path, sizeof path);
    gq_gguf_writer *w = gq_gguf_writer_new(&err);
    assert_non_null(w);
    gq_gguf_put_str(w, "tokenizer.ggml.model", "gpt2");
    gq_gguf_put_str(w, "tokenizer.ggml.pre", "falcon");
    gq_gguf_put_str_array(w, "tokenizer.ggml.tokens", 2, two_tokens, NULL);
    gq_gguf_put_str_array(w, "tokenizer.ggml.merges", 1, one_merge, NULL);
    assert_int_equal(gq_gguf_writer_commit(w, path, &err), 0);
    gq_gguf_writer_free(w);
    gq_tokenizer *t = NULL;
    assert_int_equal(gq_gguf_load_tokenizer(path, 0, &t, &err), -1);
    if (!strstr(err.msg, "key tokenizer.ggml.pre = \"falcon\""))
        fail_msg("%s", err.msg);
    test_remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_qwen3),
        cmocka_unit_test(test_unknown_pre),
    };
    test_setup_assets();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
