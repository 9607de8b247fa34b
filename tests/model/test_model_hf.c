/* Hugging Face model directories: the real checkpoints exported as HF directories load back
 * with the same weights and give the same logits bit for bit (f32), or exactly the logits of
 * the bf16-rounded weights (bf16); every malformed header, config or directory is refused with
 * a message naming the file and the tensor or field. */
#include "test_model_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gq_half.h"
#include "model/gq_forward.h"
#include "model/gq_hf.h"
#include "model/gq_synth.h"

/* Prefill logits (B, T) and reference (decode) logits of the first window. */
static void logits_of(const gq_model *m, int B, int T, float *prefill, float *ref)
{
    gq_error err = {{0}};
    int *tok = malloc((size_t)B * T * sizeof *tok);
    for (int i = 0; i < B * T; i++)
        tok[i] = (i * 7919 + 13) % m->cfg.vocab_size;
    gq_forward_ws *ws = gq_forward_ws_new(&m->cfg, B * T, &err);
    assert_non_null(ws);
    assert_int_equal(gq_forward_prefill(m, tok, B, T, ws, prefill, &err), 0);
    assert_int_equal(gq_forward_ref(m, tok, T, ref, &err), 0);
    gq_forward_ws_free(ws);
    free(tok);
}

/* a and b compute bit-identical logits on the batched and the reference path. */
static void assert_same_logits(const gq_model *a, const gq_model *b)
{
    int B = 2, T = 48, V = a->cfg.vocab_size;
    size_t n = (size_t)B * T * V;
    float *pa = malloc(n * 4), *pb = malloc(n * 4), *ra = malloc(n * 4), *rb = malloc(n * 4);
    logits_of(a, B, T, pa, ra);
    logits_of(b, B, T, pb, rb);
    assert_memory_equal(pa, pb, n * 4);
    assert_memory_equal(ra, rb, (size_t)T * V * 4);
    free(pa), free(pb), free(ra), free(rb);
}

static void round_all(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = gq_bf16_to_fp32(gq_fp32_to_bf16(x[i]));
}

/* The bf16 rounding of every tensor of m (a heap clone). */
static void bf16_rounded(const gq_model *m, gq_model *out)
{
    gq_error err = {{0}};
    assert_int_equal(gq_model_clone(m, out, &err), 0);
    round_all(out->heap, out->heap_floats);
}

static void roundtrip(const char *asset)
{
    char path[4200];
    TEST_ASSET_OR_SKIP(asset, path);
    gq_error err = {{0}};
    gq_model src, f32, bf;
    assert_int_equal(gq_model_load(path, &src, &err), 0);
    char *d32 = test_tmpdir("hf_f32"), *d16 = test_tmpdir("hf_bf16");
    assert_int_equal(gq_model_save_hf(&src, d32, GQ_ST_F32, NULL, &err), 0);
    assert_int_equal(gq_model_load(d32, &f32, &err), 0);
    /* the same shapes; the family and explicit eps and theta are llama2.c's values */
    assert_int_equal(f32.cfg.family, GQ_FAMILY_LLAMA);
    assert_true(f32.cfg.norm_eps == 1e-5f && f32.cfg.rope_theta == 10000.0f);
    gq_model same_cfg = f32; /* a view with the source's configuration */
    same_cfg.cfg = src.cfg;
    assert_same_weights(&src, &same_cfg);
    assert_same_logits(&src, &f32);

    assert_int_equal(gq_model_save_hf(&src, d16, GQ_ST_BF16, NULL, &err), 0);
    assert_int_equal(gq_model_load(d16, &bf, &err), 0);
    gq_model rounded;
    bf16_rounded(&src, &rounded);
    assert_same_logits(&rounded, &bf);
    gq_model_free(&rounded);
    gq_model_free(&bf);
    gq_model_free(&f32);
    gq_model_free(&src);
    test_remove_dir(d32);
    test_remove_dir(d16);
}

static void test_hf_stories260k(void **state)
{
    (void)state;
    roundtrip("models/stories260K/stories260K.bin");
}

static void test_hf_tinystories3m(void **state)
{
    (void)state;
    roundtrip("models/tinystories-3M/tinystories-3M.bin");
}

/* ---- the four families on hand-built fixtures ------------------------------------------- */

/* Tiny synthetic models exercising every architecture field. Their expected logits
 * (tests/data/hf/<name>.logits: positions FIX_POS, every vocabulary entry) were computed once
 * by an independent float32 PyTorch implementation of transformers' semantics (rotate-half
 * RoPE, rope_scaling, biases, q/k norms, sliding-window mask) reading the directory this test
 * writes (GQ_HF_FIXTURE_OUT=DIR keeps a copy there). */
#define FIX_T 40
#define FIX_VOCAB 128
static const int fix_pos[] = {0, 13, 39};

static gq_config fixture_cfg(const char *name)
{
    gq_config c = {.dim = 64, .hidden_dim = 96, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                   .vocab_size = FIX_VOCAB, .seq_len = 64};
    if (strcmp(name, "llama") == 0) { /* head_dim 32 (q 128 wide), all biases, llama3 RoPE */
        c.family = GQ_FAMILY_LLAMA, c.head_dim = 32, c.norm_eps = 1e-6f;
        c.rope_theta = 500000.0f, c.bias_mask = (1u << GQ_N_LINEAR) - 1;
        c.rope_scaling = (gq_rope_scaling){GQ_ROPE_LLAMA3, 8.0f, 1.0f, 4.0f, 16};
    } else if (strcmp(name, "mistral") == 0) { /* sliding window 12 < 40 tokens, MQA */
        c.family = GQ_FAMILY_MISTRAL, c.n_kv_heads = 1, c.sliding_window = 12;
        c.norm_eps = 1e-5f, c.rope_theta = 10000.0f;
    } else if (strcmp(name, "qwen2") == 0) { /* q/k/v biases, tied, linear RoPE scaling */
        c.family = GQ_FAMILY_QWEN2, c.bias_mask = 7u, c.shared_classifier = true;
        c.norm_eps = 1e-6f, c.rope_theta = 1000000.0f;
        c.rope_scaling = (gq_rope_scaling){.kind = GQ_ROPE_LINEAR, .factor = 2.0f};
    } else { /* qwen3: head_dim 32 independent of 64 / 4, q/k norms, tied */
        c.family = GQ_FAMILY_QWEN3, c.head_dim = 32, c.qk_norm = true;
        c.shared_classifier = true, c.norm_eps = 1e-6f, c.rope_theta = 1000000.0f;
    }
    return c;
}

static float *read_expected(const char *name)
{
    char rel[64];
    snprintf(rel, sizeof rel, "hf/%s.logits", name);
    size_t n;
    char *text = test_read_file(test_data_path(rel), &n);
    size_t want = sizeof fix_pos / sizeof fix_pos[0] * FIX_VOCAB;
    float *v = malloc(want * sizeof *v);
    char *p = text;
    for (size_t i = 0; i < want; i++) {
        char *end;
        v[i] = strtof(p, &end);
        assert_true(end != p);
        p = end;
    }
    free(text);
    return v;
}

static void check_family(const char *name)
{
    gq_error err = {{0}};
    gq_config c = fixture_cfg(name);
    gq_model syn, m;
    assert_int_equal(gq_model_synth_config(&c, 7, &syn, &err), 0);
    char *dir = test_tmpdir("hf_family");
    const char *keep = getenv("GQ_HF_FIXTURE_OUT");
    char kept[4200];
    snprintf(kept, sizeof kept, "%s/%s", keep ? keep : "", name);
    assert_int_equal(gq_model_save_hf(&syn, keep ? kept : dir, GQ_ST_F32, NULL, &err), 0);
    assert_int_equal(gq_model_save_hf(&syn, dir, GQ_ST_F32, NULL, &err), 0);
    assert_int_equal(gq_model_load(dir, &m, &err), 0);
    assert_memory_equal(m.heap, syn.heap, syn.heap_floats * sizeof(float));
    float *pre = malloc((size_t)2 * FIX_T * FIX_VOCAB * 4), *ref = malloc(FIX_T * FIX_VOCAB * 4);
    logits_of(&m, 2, FIX_T, pre, ref);
    float *want = read_expected(name);
    for (size_t i = 0; i < sizeof fix_pos / sizeof fix_pos[0]; i++)
        for (int v = 0; v < FIX_VOCAB; v++) {
            double w = want[i * FIX_VOCAB + v], tol = 1e-4 * (1 + fabs(w));
            size_t at = (size_t)fix_pos[i] * FIX_VOCAB + (size_t)v;
            if (!(fabs(ref[at] - w) <= tol && fabs(pre[at] - w) <= tol))
                fail_msg("%s: position %d token %d: reference %.7g, batched %.7g, PyTorch %.7g",
                         name, fix_pos[i], v, (double)ref[at], (double)pre[at], w);
        }
    free(want), free(pre), free(ref);
    gq_model_free(&m);
    gq_model_free(&syn);
    test_remove_dir(dir);
}

static void test_hf_families(void **state)
{
    (void)state;
    const char *names[] = {"llama", "mistral", "qwen2", "qwen3"};
    for (int i = 0; i < 4; i++)
        check_family(names[i]);
}

/* ---- malformed input --------------------------------------------------------------------- */

static void expect_refused(const char *dir, const char *n1, const char *n2)
{
    gq_model m;
    gq_error err = {{0}};
    assert_int_equal(gq_model_load(dir, &m, &err), -1);
    const char *needles[] = {n1, n2};
    for (int i = 0; i < 2; i++)
        if (needles[i] && !strstr(err.msg, needles[i]))
            fail_msg("message '%s' lacks '%s'", err.msg, needles[i]);
    assert_null(strchr(err.msg, '\n'));
}

/* A fresh HF directory of the synthetic tiny model (separate classifier, 2 layers). */
static void make_tiny(const char *dir)
{
    gq_model m;
    gq_error err = {{0}};
    assert_int_equal(gq_model_synth("tiny", 5, &m, &err), 0);
    assert_int_equal(gq_model_save_hf(&m, dir, GQ_ST_F32, NULL, &err), 0);
    gq_model_free(&m);
}

/* Replaces the first `from` in file path by `to` (any length). */
static void edit_file(const char *path, const char *from, const char *to)
{
    size_t n;
    char *b = test_read_file(path, &n);
    char *at = memmem(b, n, from, strlen(from));
    assert_non_null(at);
    size_t pre = (size_t)(at - b), fl = strlen(from), tl = strlen(to);
    char *o = malloc(n - fl + tl);
    memcpy(o, b, pre);
    memcpy(o + pre, to, tl);
    memcpy(o + pre + tl, at + fl, n - pre - fl);
    test_write_file(path, o, n - fl + tl);
    free(o);
    free(b);
}

static void test_hf_refuses_bad_configs(void **state)
{
    (void)state;
    char *dir = test_tmpdir("hf_bad_config");
    char cfg[4300];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    /* each edit of a good config.json, and what the refusal names (NULL: the file) */
    static const struct {
        const char *from, *to, *n1, *n2;
    } edits[] = {
        {"\"hidden_size\": 64", "\"hidden_size\": 64,,", NULL, "not valid JSON"},
        {"LlamaForCausalLM", "GPT2LMHeadModel", NULL, "architecture GPT2LMHeadModel is not"},
        {"\"float32\"", "\"int8\"", NULL, "torch_dtype"},
        {"\"intermediate_size\": 172", "\"intermediate_size\": 171",
         "model.layers.0.mlp.gate_proj.weight", "[171, 64]"},
        {"\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3", "missing tensor",
         "model.layers.2.input_layernorm.weight"},
        {"\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true",
         "unexpected tensor", "lm_head.weight"},
        {"\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"yarn\"}", NULL, "yarn"},
        {"\"vocab_size\": 512", "\"vocab_size\": \"512\"", NULL, "\"vocab_size\""},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        make_tiny(dir);
        edit_file(cfg, edits[i].from, edits[i].to);
        expect_refused(dir, edits[i].n1 ? edits[i].n1 : cfg, edits[i].n2);
    }
    unlink(cfg);
    expect_refused(dir, dir, "no config.json");
    test_remove_dir(dir);
}

static void test_hf_refuses_bad_weights(void **state)
{
    (void)state;
    char *dir = test_tmpdir("hf_bad_weights");
    char st[4300], idx[4300];
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    make_tiny(dir);
    size_t n;
    unsigned char *good = test_read_file(st, &n);
    test_write_file(st, good, n - 4); /* truncated: the last tensor ends past the file */
    expect_refused(dir, st, "lm_head.weight");
    test_write_file(st, good, 6);
    expect_refused(dir, st, "too short");
    unsigned char *big = malloc(n);
    memcpy(big, good, n);
    big[6] = 1; /* header length 2^48 */
    test_write_file(st, big, n);
    expect_refused(dir, st, "larger than the file");
    test_write_file(st, good, n);
    edit_file(st, "\"dtype\":\"F32\"", "\"dtype\":\"F64\"");
    expect_refused(dir, "model.embed_tokens.weight", "dtype F64 is not supported");
    test_write_file(st, good, n);
    edit_file(st, "\"dtype\":\"F32\"", "\"dtype\":\"I32\""); /* packed codes, not weights */
    expect_refused(dir, "model.embed_tokens.weight", "dtype I32 holds no float weights");
    test_write_file(st, good, n);
    edit_file(st, "\"shape\":[512,64]", "\"shape\":[512,63]");
    expect_refused(dir, "model.embed_tokens.weight", "shape x F32 needs");
    test_write_file(st, good, n);
    edit_file(st, "{\"model.embed", "[\"model.embed");
    expect_refused(dir, st, "not valid JSON");
    test_write_file(st, good, n);
    unlink(st);
    expect_refused(dir, dir, "neither model.safetensors");
    /* sharded: an index naming a missing shard, then a complete index */
    test_write_textf(idx, "{\"weight_map\": {\"model.embed_tokens.weight\": "
                          "\"model-00001-of-00002.safetensors\"}}");
    expect_refused(dir, idx, "model-00001-of-00002.safetensors, which is missing");
    test_write_textf(idx, "{\"weight_map\": {\"x\": \"../model.safetensors\"}}");
    expect_refused(dir, idx, "weight_map.x");
    test_write_file(st, good, n);
    test_write_textf(idx, "{\"weight_map\": {\"model.embed_tokens.weight\": "
                          "\"model.safetensors\"}}");
    expect_refused(dir, "model.layers.0.input_layernorm.weight", "is not in");
    free(big);
    free(good);
    test_remove_dir(dir);
}

/* Overlapping tensors and headers parsed without a directory. */
static void test_safetensors_overlap(void **state)
{
    (void)state;
    const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[6,10]}}";
    size_t hn = strlen(h), n = 8 + hn + 12;
    unsigned char *buf = calloc(n, 1);
    buf[0] = (unsigned char)hn;
    memcpy(buf + 8, h, hn);
    gq_st_file f;
    gq_error err = {{0}};
    assert_int_equal(gq_st_parse("x.safetensors", buf, n, &f, &err), -1);
    assert_non_null(strstr(err.msg, "tensors a and b overlap"));
    memcpy(buf + 8 + hn - 8, "[8,12]}}", 8);
    assert_int_equal(gq_st_parse("x.safetensors", buf, n, &f, &err), 0);
    assert_int_equal(f.n, 2);
    gq_st_close(&f);
    free(buf);
}

/* ---- the commands ----------------------------------------------------------------------- */

static char cli_out[65536], cli_err[8192];

/* The value after `key` on its line of text (up to the line's end), copied into v. */
static void line_value(const char *text, const char *key, char *v, size_t n)
{
    const char *p = strstr(text, key);
    if (!p)
        fail_msg("'%s' not in:\n%s", key, text);
    p += strlen(key);
    size_t len = strcspn(p, "\n");
    snprintf(v, n, "%.*s", (int)len, p);
}

/* export writes an HF directory that info describes and eval scores exactly like the
 * llama2.c file; quantize --out-format hf writes a quantization_config; bad directories exit 2
 * naming the problem; an experiment takes the directory as $.model.path. */
static void test_hf_commands(void **state)
{
    (void)state;
    char model[4200], tok[4200], text[4200];
    test_stories_files_or_skip(model, tok, text, sizeof model);
    char *dir = test_tmpdir("hf_cli"), *qdir = test_tmpdir("hf_cli_q"), *bad = test_tmpdir("hf_x");
    assert_int_equal(test_run_clif(cli_out, sizeof cli_out, cli_err, sizeof cli_err,
                                   "export --format hf --model '%s' --tokenizer '%s' --out '%s'",
                                   model, tok, dir), 0);
    assert_int_equal(test_run_clif(cli_out, sizeof cli_out, cli_err, sizeof cli_err,
                                   "info --model '%s'", dir), 0);
    test_contains_all(cli_out, "LlamaForCausalLM", "config.json sha256", "dim 64", "tied", NULL);
    char ppl_file[256], ppl_dir[256];
    const char *eval = "eval --model '%s' --tokenizer '%s' --data '%s' --max-windows 2";
    assert_int_equal(test_run_clif(cli_out, sizeof cli_out, cli_err, sizeof cli_err, eval, model,
                                   tok, text), 0);
    line_value(cli_out, "PPL", ppl_file, sizeof ppl_file);
    assert_int_equal(test_run_clif(cli_out, sizeof cli_out, cli_err, sizeof cli_err, eval, dir,
                                   tok, text), 0);
    line_value(cli_out, "PPL", ppl_dir, sizeof ppl_dir);
    assert_string_equal(ppl_file, ppl_dir);
    test_contains_all(cli_out, "config.json sha256", "weights sha256", NULL);
    /* the llama2.c tokenizer written as DIR/tokenizer.json tokenizes the text the same */
    char tok_json[4300];
    snprintf(tok_json, sizeof tok_json, "%s/tokenizer.json", dir);
    assert_int_equal(test_run_clif(cli_out, sizeof cli_out, cli_err, sizeof cli_err, eval, dir,
                                   tok_json, text), 0);
    line_value(cli_out, "PPL", ppl_dir, sizeof ppl_dir);
    assert_string_equal(ppl_file, ppl_dir);
    assert_int_equal(test_run_clif(cli_out, sizeof cli_out, cli_err, sizeof cli_err,
                                   "quantize --model '%s' --tokenizer '%s' --method rtn --format "
                                   "q8_0 --calib-data '%s' --n-calib 2 --calib-ctx 32 "
                                   "--out-format hf --dtype bf16 --out '%s'", dir, tok, text,
                                   qdir), 0);
    char cfg[4300];
    snprintf(cfg, sizeof cfg, "%s/config.json", qdir);
    size_t n;
    char *c = test_read_file(cfg, &n);
    test_contains_all(c, "\"quantization_config\"", "\"quant_method\": \"gq-bench\"",
                      "\"q8_0\"", "\"gq_bench_version\"", "bfloat16", NULL);
    free(c);
    assert_int_equal(test_run_clif(cli_out, sizeof cli_out, cli_err, sizeof cli_err,
                                   "info --model '%s'", bad), 2);
    test_contains_all(cli_err, "without config.json", NULL);
    assert_int_equal(test_run_clif(cli_out, sizeof cli_out, cli_err, sizeof cli_err,
                                   "export --format hf --model '%s' --out '%s' --dtype f64", dir, bad), 2);
    char exp[4300];
    snprintf(exp, sizeof exp, "%s/e.json", bad);
    test_write_textf(exp, "{\"model\": {\"path\": \"%s\", \"tokenizer\": \"%s\"}, "
                          "\"eval\": {\"text\": \"%s\", \"max_windows\": 2}, "
                          "\"methods\": [{\"method\": \"rtn\", \"format\": \"q8_0\"}]}",
                     dir, tok, text);
    assert_int_equal(test_run_clif(cli_out, sizeof cli_out, cli_err, sizeof cli_err,
                                   "run --dry-run '%s'", exp), 0);
    unlink(exp);
    test_remove_dir(dir);
    test_remove_dir(qdir);
    test_remove_dir(bad);
}

const struct CMUnitTest model_hf_tests[] = {
    cmocka_unit_test(test_hf_commands),
    cmocka_unit_test(test_hf_stories260k),
    cmocka_unit_test(test_hf_tinystories3m),
    cmocka_unit_test(test_hf_families),
    cmocka_unit_test(test_hf_refuses_bad_configs),
    cmocka_unit_test(test_hf_refuses_bad_weights),
    cmocka_unit_test(test_safetensors_overlap),
};
const size_t model_hf_tests_n = sizeof model_hf_tests / sizeof model_hf_tests[0];
