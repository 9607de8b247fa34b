/* Malformed and hostile GGUF files: each is refused with one message naming the key or tensor,
 * never a crash, an out-of-bounds read or a huge allocation (the suite runs under ASan/UBSan).
 * The files are mutations of the fuzz seed tests/fuzz/corpus/gguf/f32_tiny.gguf (a valid
 * 1-layer llama of dim 32), and the whole seed corpus is replayed as the fuzz target reads it. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gguf/gq_gguf_model.h"
#include "gguf/gq_gguf_write.h"
#include "test_support.h"

static char corpus_dir[4096];

static uint8_t *seed(size_t *len)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/f32_tiny.gguf", corpus_dir);
    return test_read_file(p, len);
}

/* Parse, model and vocabulary, as the fuzz target; returns the first error (or "" if none). */
static const char *load_all(const uint8_t *d, size_t n, gq_error *err)
{
    gq_gguf g;
    err->msg[0] = '\0';
    if (gq_gguf_parse("t.gguf", d, n, &g, err))
        return err->msg;
    gq_model m;
    gq_gguf_weights w;
    int rc = gq_gguf_model_from(&g, &m, &w, err);
    gq_model_free(&m);
    gq_gguf_weights_free(&w);
    gq_tokenizer *tok = NULL;
    if (rc == 0 && gq_gguf_tokenizer_from(&g, 0, &tok, err) == 0)
        gq_tokenizer_free(tok);
    gq_gguf_close(&g);
    return err->msg;
}

static void expect_error(const uint8_t *d, size_t n, const char *want)
{
    gq_error err;
    const char *msg = load_all(d, n, &err);
    if (!strstr(msg, want))
        fail_msg("expected an error naming \"%s\", got \"%s\"", want, msg);
    assert_null(strchr(msg, '\n'));
}

/* Offset of the first occurrence of the string `s` (as bytes) in d. */
static size_t find(const uint8_t *d, size_t n, const char *s)
{
    size_t k = strlen(s);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(d + i, s, k) == 0)
            return i;
    fail_msg("%s not in the seed", s);
    return 0;
}

static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

static void test_seed_loads(void **state)
{
    (void)state;
    size_t n;
    uint8_t *d = seed(&n);
    gq_error err;
    assert_string_equal(load_all(d, n, &err), "");
    free(d);
}

static void test_every_truncation_is_refused(void **state)
{
    (void)state;
    size_t n;
    uint8_t *d = seed(&n);
    for (size_t len = 0; len < n; len += len < 8192 ? 1 : 7) {
        uint8_t *cut = malloc(len ? len : 1); /* exactly len bytes: ASan sees any overread */
        memcpy(cut, d, len);
        gq_error err;
        if (!load_all(cut, len, &err)[0])
            fail_msg("a file cut to %zu of %zu bytes was accepted", len, n);
        free(cut);
    }
    free(d);
}

static void test_hostile_counts(void **state)
{
    (void)state;
    size_t n;
    uint8_t *d = seed(&n);
    uint8_t *m = malloc(n);
    struct { size_t off; uint64_t v; const char *want; } cases[] = {
        {16, 1ull << 62, "key/value pairs"},         /* n_kv */
        {8, 1ull << 62, "tensors; the file cannot hold them"}, /* n_tensors */
        {24, 1ull << 62, "string length"},           /* the first key's length */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(m, d, n);
        put_u64(m + cases[i].off, cases[i].v);
        expect_error(m, n, cases[i].want);
    }
    /* the token array's element count */
    memcpy(m, d, n);
    size_t k = find(m, n, "tokenizer.ggml.tokens") + strlen("tokenizer.ggml.tokens");
    put_u64(m + k + 8, 1ull << 61);
    expect_error(m, n, "tokenizer.ggml.tokens");
    /* a string inside it */
    memcpy(m, d, n);
    put_u64(m + k + 16, UINT64_MAX);
    expect_error(m, n, "tokenizer.ggml.tokens");
    free(m);
    free(d);
}

/* The tensor info of `name`: offset of its type field (after name, n_dims and dims). */
static size_t tensor_type_at(const uint8_t *d, size_t n, const char *name, uint32_t *n_dims)
{
    size_t p = find(d, n, name) + strlen(name);
    memcpy(n_dims, d + p, 4);
    return p + 4 + 8 * (size_t)*n_dims;
}

static void test_tensor_infos(void **state)
{
    (void)state;
    size_t n;
    uint8_t *d = seed(&n);
    uint8_t *m = malloc(n);
    uint32_t nd;
    size_t t = tensor_type_at(d, n, "blk.0.attn_q.weight", &nd);
    memcpy(m, d, n);
    put_u32(m + t, 16);
    expect_error(m, n, "tensor blk.0.attn_q.weight has ggml type iq2_xxs (16)");
    memcpy(m, d, n);
    put_u32(m + t, 200);
    expect_error(m, n, "blk.0.attn_q.weight has ggml type unknown (200)");
    memcpy(m, d, n);
    put_u64(m + t + 4, 32); /* offset */
    expect_error(m, n, "tensor blk.0.attn_q.weight: data offset 32");
    memcpy(m, d, n);
    put_u32(m + t - 8 * nd - 4, 7); /* n_dims */
    expect_error(m, n, "blk.0.attn_q.weight: 7 dimensions");
    memcpy(m, d, n);
    put_u64(m + t - 8 * nd, 16); /* (16, 64): as many elements, not the metadata's shape */
    put_u64(m + t - 8 * nd + 8, 64);
    expect_error(m, n, "tensor blk.0.attn_q.weight has shape [16, 64] (2 dims); the metadata "
                       "implies [32, 32]");
    memcpy(m, d, n);
    put_u64(m + t - 8 * nd, 1ull << 40); /* dimension far beyond the file */
    expect_error(m, n, "blk.0.attn_q.weight");
    memcpy(m, d, n);
    memcpy(m + find(m, n, "blk.0.ffn_up.weight"), "blk.0.ffn_xx.weight", 19);
    expect_error(m, n, "blk.0.ffn_xx.weight");
    free(m);
    free(d);
}

static void test_metadata(void **state)
{
    (void)state;
    size_t n;
    uint8_t *d = seed(&n);
    uint8_t *m = malloc(n);
    size_t k = find(d, n, "llama.embedding_length") + strlen("llama.embedding_length");
    memcpy(m, d, n);
    put_u32(m + k, 6); /* u32 -> float32: same size, wrong type */
    expect_error(m, n, "key llama.embedding_length is a float32, expected an integer");
    memcpy(m, d, n);
    size_t f = find(d, n, "llama.feed_forward_length") + strlen("llama.feed_forward_length");
    put_u32(m + f + 4, 128);
    expect_error(m, n, "tensor blk.0.ffn_gate.weight has shape [32, 64]");
    memcpy(m, d, n);
    put_u32(m + k, 40); /* not a GGUF type */
    expect_error(m, n, "key llama.embedding_length: value type 40");
    memcpy(m, d, n);
    size_t a = find(m, n, "general.architecture") + strlen("general.architecture") + 12;
    memcpy(m + a, "mamba", 5);
    expect_error(m, n, "key general.architecture = \"mamba\"");
    memcpy(m, d, n);
    memcpy(m + find(m, n, "llama.block_count"), "llama.block_xxxxx", 17);
    expect_error(m, n, "key llama.block_count is missing");
    memcpy(m, d, n);
    memcpy(m + find(m, n, "llama.context_length"), "general.architecture", 20);
    expect_error(m, n, "key general.architecture appears twice");
    free(m);
    free(d);
}

/* Files written with the GGUF writer: a gpt2 vocabulary without tokenizer.ggml.pre, an
 * unsupported RMS epsilon. */
static void write_and_expect(void (*fill)(gq_gguf_writer *w), bool vocab, const char *want)
{
    char *dir = test_tmpdir("gguf-bad");
    char path[4200];
    snprintf(path, sizeof path, "%s/x.gguf", dir);
    gq_error err = {{0}};
    gq_gguf_writer *w = gq_gguf_writer_new(&err);
    fill(w);
    assert_int_equal(gq_gguf_writer_commit(w, path, &err), 0);
    gq_gguf_writer_free(w);
    size_t n;
    uint8_t *d = test_read_file(path, &n);
    if (vocab) {
        gq_tokenizer *tok;
        assert_int_equal(gq_gguf_load_tokenizer(path, 0, &tok, &err), -1);
        assert_non_null(strstr(err.msg, want));
    } else {
        expect_error(d, n, want);
    }
    free(d);
    unlink(path);
    test_remove_dir(dir);
}

static const char *tok_name(void *ctx, size_t i, size_t *len)
{
    static char b[16];
    (void)ctx;
    *len = (size_t)snprintf(b, sizeof b, "t%zu", i);
    return b;
}

static void gpt2_vocab(gq_gguf_writer *w)
{
    gq_gguf_put_str(w, "tokenizer.ggml.model", "gpt2");
    gq_gguf_put_str_array(w, "tokenizer.ggml.tokens", 300, tok_name, NULL);
}

static void eps_1e6(gq_gguf_writer *w)
{
    gq_gguf_put_str(w, "general.architecture", "llama");
    gq_gguf_put_u32(w, "llama.embedding_length", 64);
    gq_gguf_put_u32(w, "llama.feed_forward_length", 64);
    gq_gguf_put_u32(w, "llama.block_count", 1);
    gq_gguf_put_u32(w, "llama.attention.head_count", 2);
    gq_gguf_put_u32(w, "llama.context_length", 16);
    gq_gguf_put_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-6f);
    gq_gguf_put_str_array(w, "tokenizer.ggml.tokens", 300, tok_name, NULL);
}

static void test_written_refusals(void **state)
{
    (void)state;
    write_and_expect(gpt2_vocab, true, "tokenizer.ggml.pre");
    /* an epsilon other than llama2.c's is read (the next problem is the missing tensors) */
    write_and_expect(eps_1e6, false, "0 tensors, expected 11");
}

/* The exporter refuses, before any work, configurations its llama tensors cannot hold. */
static void test_export_refuses_other_architectures(void **state)
{
    (void)state;
    const gq_config base = {.dim = 64, .hidden_dim = 172, .n_layers = 1, .n_heads = 8,
                            .n_kv_heads = 4, .vocab_size = 512, .seq_len = 64};
    gq_config cs[4] = {base, base, base, base};
    cs[0].bias_mask = 1u << GQ_LIN_Q;
    cs[1].qk_norm = true;
    cs[2].sliding_window = 16;
    cs[3].head_dim = 16;
    gq_gguf_export x;
    memset(&x, 0, sizeof x);
    for (int i = 0; i < 4; i++) {
        gq_error err = {{0}};
        assert_int_equal(gq_gguf_check_plan(&x, &cs[i], &err), -1);
        assert_non_null(strstr(err.msg, "cannot be written as a llama GGUF"));
    }
}

/* The committed fuzz corpus, read as the fuzz target reads it. */
static void test_corpus_replays(void **state)
{
    (void)state;
    DIR *dir = opendir(corpus_dir);
    assert_non_null(dir);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(dir))) {
        if (e->d_name[0] == '.')
            continue;
        char p[4400];
        size_t n;
        snprintf(p, sizeof p, "%s/%s", corpus_dir, e->d_name);
        uint8_t *d = test_read_file(p, &n);
        gq_error err;
        load_all(d, n, &err);
        free(d);
        files++;
    }
    closedir(dir);
    assert_true(files >= 4);
}

static void test_cli_names_the_file(void **state)
{
    (void)state;
    size_t n;
    uint8_t *d = seed(&n);
    char *dir = test_tmpdir("gguf-cli");
    char path[4200], out[4096], err[4096];
    snprintf(path, sizeof path, "%s/bad.gguf", dir);
    put_u64(d + 16, 1ull << 62);
    test_write_file(path, d, n);
    int rc = test_run_clif(out, sizeof out, err, sizeof err,
                           "eval --model %s --data %s/f32_tiny.gguf", path, corpus_dir);
    assert_int_equal(rc, 2);
    test_contains_all(err, path, "key/value pairs", NULL);
    unlink(path);
    test_remove_dir(dir);
    free(d);
}

int main(void)
{
    snprintf(corpus_dir, sizeof corpus_dir, "%s/tests/fuzz/corpus/gguf",
             getenv("GQ_SOURCE_ROOT") ? getenv("GQ_SOURCE_ROOT") : ".");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_loads),
        cmocka_unit_test(test_every_truncation_is_refused),
        cmocka_unit_test(test_hostile_counts),
        cmocka_unit_test(test_tensor_infos),
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_written_refusals),
        cmocka_unit_test(test_export_refuses_other_architectures),
        cmocka_unit_test(test_corpus_replays),
        cmocka_unit_test(test_cli_names_the_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
