/* The native format through the gq-bench binary on tinystories-3M: `quantize --out` writes it by
 * default and `eval --model` scores it exactly as the fake-quantized llama2.c checkpoint of the
 * same run (same ppl and mean NLL digits); affinequant, which a llama2.c checkpoint cannot hold,
 * saves and evaluates; an experiment on the native file measures its baseline's throughput on
 * the packed kernels from the file's codes; damaged files exit 2 naming the file and what;
 * data-free RTN (--n-calib 0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_eval_cli.h"
#include "test_support.h"

static char out[65536], errb[16384];
#define MODEL "--model assets:models/tinystories-3M/tinystories-3M.bin " \
              "--tokenizer assets:models/tinystories-3M/tok512.bin"
#define TOK "--tokenizer assets:models/tinystories-3M/tok512.bin"

/* eval --json numbers of a model on 4 windows of 64 tokens */
static void eval_numbers(const char *model, char *buf, size_t n)
{
    test_eval_numbers(model, TOK " --ctx 64 --max-windows 4", buf, n);
}

static long file_bytes(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void quantize(const char *settings, const char *outopt, const char *path)
{
    if (test_run_clif(out, sizeof out, errb, sizeof errb,
                      "quantize " MODEL " %s --eval-windows 4 --eval-ctx 64 --n-calib 2 "
                      "--calib-ctx 32 %s --out '%s'", settings, outopt, path) != 0)
        fail_msg("quantize %s: %s", settings, errb);
}

static void test_native_equals_fake_quant(void **state)
{
    (void)state;
    test_assets_or_skip();
    char *dir = test_tmpdir("native-cli");
    char nat[4200], l2c[4200], a[256], b[256];
    snprintf(nat, sizeof nat, "%s/q", dir);
    snprintf(l2c, sizeof l2c, "%s/q.bin", dir);
    static const char *const cases[] = {
        "--method gptq --method-set act_order=true --format int --set bits=4 --set group_size=32",
        "--method rtn --format q4_K",
        "--method awq --method-set n_grid=4 --format mx",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        quantize(cases[i], "", nat);
        quantize(cases[i], "--out-format llama2c", l2c);
        eval_numbers(nat, a, sizeof a);
        eval_numbers(l2c, b, sizeof b);
        if (strcmp(a, b) != 0)
            fail_msg("%s: native %s, llama2c %s", cases[i], a, b);
        print_message("%-75s native %ld bytes, llama2c %ld bytes: %s\n", cases[i],
                      file_bytes(nat), file_bytes(l2c), a);
    }
    quantize("--method affinequant --method-set epochs=1 --format int --set bits=4 "
             "--set group_size=32", "", nat);
    eval_numbers(nat, a, sizeof a);
    print_message("affinequant int4 g32: native %ld bytes: %s\n", file_bytes(nat), a);
    unlink(nat);
    unlink(l2c);
    test_remove_dir(dir);
}

/* --n-calib 0: RTN reads no calibration text (no --eval-windows either) and writes the weights
 * a calibrated run writes, without reconstruction errors; methods and static activation scales
 * that need windows are refused. */
static void test_data_free_rtn(void **state)
{
    (void)state;
    test_assets_or_skip();
    char *dir = test_tmpdir("native-nocalib");
    char q0[4200], q2[4200], a[256], b[256];
    snprintf(q0, sizeof q0, "%s/q0", dir);
    snprintf(q2, sizeof q2, "%s/q2", dir);
    const char *rtn = "--method rtn --format int --set bits=4 --set group_size=32";
    if (test_run_clif(out, sizeof out, errb, sizeof errb, "quantize " MODEL " %s --n-calib 0 "
                      "--out '%s'", rtn, q0) != 0)
        fail_msg("quantize --n-calib 0: %s", errb);
    assert_non_null(strstr(out, "calibration none"));
    assert_non_null(strstr(out, "layers.0.attn.q_proj          int4 g32 asym            4.625"
                                "            -"));
    quantize(rtn, "", q2);
    eval_numbers(q0, a, sizeof a);
    eval_numbers(q2, b, sizeof b);
    assert_string_equal(a, b);
    assert_int_equal(test_run_clif(out, sizeof out, errb, sizeof errb, "quantize " MODEL
                                   " --method gptq --format int --n-calib 0 --out '%s'", q0),
                     2);
    assert_non_null(strstr(errb, "--n-calib 0: method \"gptq\" needs calibration windows"));
    assert_int_equal(test_run_clif(out, sizeof out, errb, sizeof errb, "quantize " MODEL
                                   " %s --n-calib 0 --act-format int --act-granularity tensor "
                                   "--act-scales static --out '%s'", rtn, q0),
                     2);
    assert_non_null(strstr(errb, "--n-calib 0: activations.scales: static scales"));
    unlink(q0);
    unlink(q2);
    test_remove_dir(dir);
}

/* The baseline row of an experiment on the native file: the checkpoint's label, bits per weight
 * and packed int4 bytes, not fp32's. */
static void test_run_on_native(void **state)
{
    (void)state;
    test_assets_or_skip();
    char *dir = test_tmpdir("native-run");
    char nat[4200], exp[4200];
    snprintf(nat, sizeof nat, "%s/q", dir);
    snprintf(exp, sizeof exp, "%s/e.json", dir);
    quantize("--method rtn --format int --set bits=4 --set group_size=32", "", nat);
    test_write_textf(exp, "{\"name\": \"native_run\", \"model\": {\"path\": \"%s\", \"tokenizer\": "
                          "\"models/tinystories-3M/tok512.bin\"}, \"eval\": {\"text\": "
                          "\"text/tinystories/tinystories_val.txt\", \"ctx\": 32, "
                          "\"max_windows\": 2}, \"methods\": [{\"label\": \"rtn\", \"method\": "
                          "\"rtn\", \"format\": {\"name\": \"int\", \"bits\": 8}}]}", nat);
    if (test_run_clif(out, sizeof out, errb, sizeof errb, "run '%s' --out-dir '%s' --no-plots "
                      "--quiet", exp, dir) != 0)
        fail_msg("run: %s", errb);
    char csv[4300];
    snprintf(csv, sizeof csv, "%s/results/native_run/results.csv", dir);
    size_t n;
    char *text = test_read_file(csv, &n);
    assert_non_null(text);
    /* the baseline's packed_bytes: tinystories-3M's linears packed as int4 g32 asym from the
     * file's codes (codes, fp16 scales, uint8 zero points per 8-row set and group), not the
     * 12 MiB of fp32 */
    assert_non_null(strstr(text, ",1867776,"));
    /* and its row names the checkpoint: series, format, and the codes' bits per weight
     * (4 + (fp16 scale + 4-bit zero point) / 32) and bytes, not fp32's 32 */
    assert_non_null(strstr(text, "native_run,baseline,native checkpoint baseline,q,none,"
                                 "int4 g32 asym,"));
    assert_non_null(strstr(text, ",4.625,1818624,"));
    free(text);
    char cmd[8600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(dir);
}

/* A copy of the native file with `len` bytes at `off` replaced by `with`. */
static void damaged(const char *src, const char *dst, const char *find, const char *with)
{
    size_t n;
    char *d = test_read_file(src, &n);
    char *p = memmem(d, n, find, strlen(find));
    assert_non_null(p);
    memcpy(p, with, strlen(with));
    test_write_file(dst, d, n);
    free(d);
}

static void expect_eval_refused(const char *model, const char *want)
{
    test_eval_refused(model, TOK " --max-windows 1", want);
}

static void test_damaged_files(void **state)
{
    (void)state;
    test_assets_or_skip();
    char *dir = test_tmpdir("native-bad");
    char nat[4200], bad[4200];
    snprintf(nat, sizeof nat, "%s/q", dir);
    snprintf(bad, sizeof bad, "%s/bad", dir);
    quantize("--method gptq --method-set act_order=true --format int --set bits=4 "
             "--set group_size=32", "", nat);
    /* a codes tensor renamed: its format names no codes, the renamed one is unexpected */
    damaged(nat, bad, "layers.1.mlp.up_proj.codes", "layers.1.mlp.up_proj.cod_s");
    expect_eval_refused(bad, "missing tensor layers.1.mlp.up_proj.codes");
    /* the format's bits changed: the codes no longer have its size */
    damaged(nat, bad, "q_proj\\\":{\\\"name\\\":\\\"int\\\",\\\"bits\\\":4",
            "q_proj\\\":{\\\"name\\\":\\\"int\\\",\\\"bits\\\":3");
    expect_eval_refused(bad, "tensor layers.0.attn.q_proj.codes is U8");
    /* the config's width changed */
    damaged(nat, bad, "\\\"dim\\\":256", "\\\"dim\\\":255");
    expect_eval_refused(bad, bad);
    /* the metadata marker gone: not a native file, and not a llama2.c checkpoint either */
    damaged(nat, bad, "gq-bench-native", "gq-bench-nativX");
    expect_eval_refused(bad, bad);
    unlink(nat);
    unlink(bad);
    test_remove_dir(dir);
}

/* `--model DIR` and an experiment's "model": {"path": DIR} where DIR holds the native file as
 * model.safetensors: the file's numbers; with a config.json beside it, refused as ambiguous. */
static void test_directory_of_native_file(void **state)
{
    (void)state;
    test_assets_or_skip();
    char *dir = test_tmpdir("native-dir");
    char nat[4200], cfg[4200], exp[4200], a[256], b[256];
    snprintf(nat, sizeof nat, "%s/model.safetensors", dir);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(exp, sizeof exp, "%s.json", dir);
    quantize("--method rtn --format int --set bits=4 --set group_size=32", "", nat);
    eval_numbers(nat, a, sizeof a);
    eval_numbers(dir, b, sizeof b);
    assert_string_equal(a, b);
    test_write_textf(exp, "{\"name\": \"native_dir\", \"model\": {\"path\": \"%s\", "
                          "\"tokenizer\": \"models/tinystories-3M/tok512.bin\"}, \"eval\": "
                          "{\"text\": \"text/tinystories/tinystories_val.txt\"}, \"methods\": "
                          "[{\"method\": \"rtn\", \"format\": {\"name\": \"int\"}}]}", dir);
    if (test_run_clif(out, sizeof out, errb, sizeof errb, "run '%s' --dry-run", exp) != 0)
        fail_msg("run --dry-run on %s: %s", dir, errb);
    test_write_text(cfg, "{\"model_type\": \"llama\"}");
    expect_eval_refused(dir, "ambiguous");
    assert_int_equal(test_run_clif(out, sizeof out, errb, sizeof errb, "run '%s' --dry-run", exp),
                     2);
    test_contains_all(errb, "$.model.path", dir, "both config.json and a gq-bench native", NULL);
    unlink(exp);
    unlink(cfg);
    unlink(nat);
    test_remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_native_equals_fake_quant),
        cmocka_unit_test(test_data_free_rtn),
        cmocka_unit_test(test_run_on_native),
        cmocka_unit_test(test_damaged_files),
        cmocka_unit_test(test_directory_of_native_file),
    };
    test_setup_assets();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
