/* gq-bench with GGUF files: `eval` of llama.cpp's f32 GGUF equals `eval` of the llama2.c
 * checkpoint bit for bit; `export --format gguf` round-trips (its eval equals the eval of the
 * same quantization written by `quantize --out`), and refuses what GGUF cannot hold. */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_eval_cli.h"
#include "test_support.h"

static char out[65536], errb[16384];

/* eval --json numbers of a model on 4 windows of 128 tokens; `extra` names its tokenizer */
static void eval_numbers(const char *model, const char *extra, char *buf, size_t n)
{
    char args[1024];
    snprintf(args, sizeof args, "%s --ctx 128 --max-windows 4", extra);
    test_eval_numbers(model, args, buf, n);
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

/* Column `col` (1-based) of line `line` (1-based) of a CSV (quoted fields double their
 * quotes); the field must not be quoted itself. */
static void csv_field(const char *csv, int line, int col, char *buf, size_t n)
{
    const char *p = csv;
    for (int l = 1; l < line; l++)
        p = strchr(p, '\n') + 1;
    for (int c = 1; c < col; c++) {
        if (*p == '"')
            for (p++; !(p[0] == '"' && p[1] != '"'); p += p[0] == '"' ? 2 : 1)
                assert_true(*p);
        p = strchr(p, ',');
        assert_non_null(p);
        p++;
    }
    size_t len = strcspn(p, ",\n");
    if (len >= n)
        len = n - 1;
    memcpy(buf, p, len);
    buf[len] = '\0';
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(path);
}

static void test_run_exports_a_cell(void **state)
{
    (void)state;
    test_assets_or_skip();
    char *dir = test_tmpdir("gguf-run");
    char exp[4200], gguf[4200], csv[4200], want[64], got[256];
    snprintf(exp, sizeof exp, "%s/e.json", dir);
    test_write_text(exp, "{\"name\": \"e\", \"model\": {\"path\": \"models/stories260K/stories260K.bin\","
                         " \"tokenizer\": \"models/stories260K/tok512.bin\"},"
                         " \"eval\": {\"text\": \"text/tinystories/tinystories_val.txt\","
                         " \"ctx\": 128, \"max_windows\": 4},"
                         " \"methods\": [{\"method\": \"rtn\", \"format\": \"q4_0\"}],"
                         " \"overrides\": [{\"pattern\": \"layers.*.mlp.down_proj\","
                         " \"keep_fp\": true}], \"throughput\": {\"enabled\": false}}");
    assert_int_equal(test_run_clif(out, sizeof out, errb, sizeof errb,
                                   "run %s --out-dir %s --export-gguf c002", exp, dir), 2);
    test_contains_all(errb, "--export-gguf c002: not a quantized cell", NULL);
    if (test_run_clif(out, sizeof out, errb, sizeof errb,
                      "run %s --out-dir %s --export-gguf c001 --no-plots", exp, dir) != 0)
        fail_msg("%s", errb);
    snprintf(gguf, sizeof gguf, "%s/results/e/c001.gguf", dir);
    snprintf(csv, sizeof csv, "%s/results/e/results.csv", dir);
    size_t n;
    char *table = test_read_file(csv, &n);
    int col = 1;
    for (;; col++) { /* the mean_nll column */
        csv_field(table, 1, col, want, sizeof want);
        assert_true(want[0]);
        if (strcmp(want, "mean_nll") == 0)
            break;
    }
    csv_field(table, 3, col, want, sizeof want); /* c001's row */
    free(table);
    eval_numbers(gguf, "", got, sizeof got);
    if (!strstr(got, want))
        fail_msg("the exported cell evaluates to %s, its row says mean_nll %s", got, want);
    assert_int_equal(nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
    free(dir);
}

/* bench prefill --model: a mixed GGUF gets a row packed from its own bytes; a GGUF whose
 * linears are floats gets the reason instead. Not timed: only the rows are checked. */
static void test_bench_own_bytes(void **state)
{
    (void)state;
    static const struct { const char *file, *want; } cases[] = {
        {"testvectors/gguf/tinystories-3M-Q4_K_M-default.gguf", "gguf (own types)          "},
        {"testvectors/gguf/tinystories-3M-f32.gguf",
         "gguf (own types)         layers.0.attn.q_proj (f32): no packed kernel"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char vec[4096];
        if (!test_asset(cases[i].file, vec, sizeof vec))
            skip();
        if (test_run_clif(out, sizeof out, errb, sizeof errb,
                          "bench prefill --model '%s' --tokens 8 --rounds 1 --reps 1", vec) != 0)
            fail_msg("%s: %s", cases[i].file, errb);
        if (!strstr(out, cases[i].want))
            fail_msg("%s: no row \"%s\" in:\n%s", cases[i].file, cases[i].want, out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_f32_gguf_equals_checkpoint),
        cmocka_unit_test(test_export_round_trip),
        cmocka_unit_test(test_export_refusals),
        cmocka_unit_test(test_run_exports_a_cell),
        cmocka_unit_test(test_bench_own_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
