/* gq-bench with GGUF files: `eval` of llama.cpp's f32 GGUF equals `eval` of the llama2.c
 * checkpoint bit for bit; `export --format gguf` round-trips (its eval equals the eval of the
 * same quantization written by `quantize --out`), and refuses what GGUF cannot hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_support.h"

static char out[65536], errb[16384];

/* The "ppl" and "mean_nll" members of eval --json, as printed (17 digits). */
static void eval_numbers(const char *model, const char *extra, char *buf, size_t n)
{
    int rc = test_run_clif(out, sizeof out, errb, sizeof errb,
                           "eval --model '%s' %s --data assets:text/tinystories/tinystories_val.txt "
                           "--ctx 128 --max-windows 4 --json", model, extra);
    if (rc != 0)
        fail_msg("eval %s: %s", model, errb);
    const char *p = strstr(out, "\"ppl\":"), *q = strstr(out, "\"mean_nll\":");
    assert_non_null(p);
    assert_non_null(q);
    snprintf(buf, n, "%.28s %.32s", p, q);
}

static void test_eval_f32_gguf_equals_checkpoint(void **state)
{
    (void)state;
    char vec[4096], a[256], b[256];
    test_assets_or_skip();
    if (!test_asset("testvectors/gguf/stories260K-f32.gguf", vec, sizeof vec))
        skip();
    eval_numbers(vec, "", a, sizeof a);
    eval_numbers("assets:models/stories260K/stories260K.bin",
                 "--tokenizer assets:models/stories260K/tok512.bin", b, sizeof b);
    assert_string_equal(a, b);
}

static void test_export_round_trip(void **state)
{
    (void)state;
    test_assets_or_skip();
    char *dir = test_tmpdir("gguf-cli");
    char q[4200], g[4200], a[256], b[256];
    snprintf(q, sizeof q, "%s/q.bin", dir);
    snprintf(g, sizeof g, "%s/q.gguf", dir);
    const char *common =
        "--model assets:models/stories260K/stories260K.bin --tokenizer "
        "assets:models/stories260K/tok512.bin --method gptq --eval-windows 4 --eval-ctx 128 "
        "--n-calib 4 --calib-ctx 64";
    /* down_proj rows are 172 wide: not whole blocks of 32 */
    assert_int_equal(test_run_clif(out, sizeof out, errb, sizeof errb,
                                   "export --format gguf %s --quant q4_0 --out '%s' --rule "
                                   "'layers.*.mlp.down_proj={\"name\":\"q5_1\"}'", common, g),
                     2);
    test_contains_all(errb, "layers.0.mlp.down_proj", "not whole q5_1 blocks of 32", NULL);
    assert_int_equal(access(g, F_OK), -1);
    const char *keep = "--rule 'layers.*.mlp.down_proj=fp'";
    char args[2048];
    snprintf(args, sizeof args, "%s %s", common, keep);
    if (test_run_clif(out, sizeof out, errb, sizeof errb,
                      "quantize %s --format q4_0 --out '%s'", args, q) != 0 ||
        test_run_clif(out, sizeof out, errb, sizeof errb,
                      "export --format gguf %s --quant q4_0 --out '%s'", args, g) != 0)
        fail_msg("%s", errb);
    eval_numbers(q, "--tokenizer assets:models/stories260K/tok512.bin", a, sizeof a);
    eval_numbers(g, "", b, sizeof b);
    assert_string_equal(a, b);
    unlink(q);
    unlink(g);
    test_remove_dir(dir);
}

static void test_export_refusals(void **state)
{
    (void)state;
    test_assets_or_skip();
    const char *model = "--model assets:models/stories260K/stories260K.bin --tokenizer "
                        "assets:models/stories260K/tok512.bin --eval-windows 4 --out x.gguf";
    static const struct { const char *args, *want; } cases[] = {
        {"--method rtn --quant int --set bits=4", "format int4 g128 asym has no ggml type"},
        {"--method rtn --quant q4_K", "rows of 64 columns are not whole q4_K blocks of 256"},
        {"--method affinequant --quant q4_0", "explicit input transforms"},
        {"--method rtn --quant q4_0 --rule 'layers.*.mlp.down_proj=fp' --rule "
         "'tok_embeddings={\"name\":\"fp\"}'", "tok_embeddings: format fp8_e4m3"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = test_run_clif(out, sizeof out, errb, sizeof errb, "export --format gguf %s %s",
                               model, cases[i].args);
        assert_int_equal(rc, 2);
        test_contains_all(errb, "export --format gguf", cases[i].want, NULL);
    }
    assert_int_equal(test_run_clif(out, sizeof out, errb, sizeof errb, "export --format onnx"),
                     2);
    test_contains_all(errb, "--format onnx: not an export format", "gguf", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_f32_gguf_equals_checkpoint),
        cmocka_unit_test(test_export_round_trip),
        cmocka_unit_test(test_export_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
