/* The activation options through the gq-bench binary on stories260K: quantize --act-* writes
 * Q.bin.act.json beside Q.bin; eval applies it (its --json names the quantizers) and gives the
 * same perplexity on every reload; options beside the file, static scales in eval and a file of
 * another checkpoint are refused with exit status 2; quantize without the options removes a
 * stale file. */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_fileio.h"

static char g_out[1 << 16], g_err[1 << 16];
#define run(...) test_run_clif(g_out, sizeof g_out, g_err, sizeof g_err, __VA_ARGS__)

static char g_model[4096], g_tok[4096], g_text[4096];

static void quantize(const char *out, const char *act)
{
    int rc = run("quantize --model %s --tokenizer %s --method rtn --format int --set bits=8 "
                 "--set granularity=channel --set zero=sym --eval-windows 8 --eval-ctx 256 "
                 "--n-calib 2 --calib-ctx 128 --threads 2 --out %s %s", g_model, g_tok, out, act);
    if (rc != 0)
        fail_msg("quantize exit %d: %s", rc, g_err);
}

/* eval --json of Q: the ppl text (17 digits) into buf. */
static void eval_ppl(const char *q, char *buf, size_t n)
{
    int rc = run("eval --model %s --tokenizer %s --data %s --max-windows 4 --ctx 256 --json "
                 "--threads 2", q, g_tok, g_text);
    if (rc != 0)
        fail_msg("eval exit %d: %s", rc, g_err);
    const char *p = strstr(g_out, "\"ppl\":");
    assert_non_null(p);
    snprintf(buf, n, "%.*s", (int)strcspn(p, ","), p);
}

static void test_quantize_eval_reload(void **state)
{
    (void)state;
    test_stories_files_or_skip(g_model, g_tok, g_text, sizeof g_model);
    char q[4096], file[4200], p1[64], p2[64];
    char *dir = test_tmpdir_file("act_cli", "q.bin", q, sizeof q);
    snprintf(file, sizeof file, "%s.act.json", q);
    quantize(q, "--act-format int --act-set bits=8 --act-set zero=sym --act-granularity tensor "
                "--act-scales static --act-calibration percentile --kv-format int "
                "--kv-set bits=4");
    assert_true(gq_file_exists(file));
    eval_ppl(q, p1, sizeof p1);
    assert_non_null(strstr(g_out, "\"a_scales\":\"static p99.99\""));
    assert_non_null(strstr(g_out, "\"kv_format\":\"int4 asym head\""));
    assert_non_null(strstr(g_out, "\"a_bits\":8"));
    eval_ppl(q, p2, sizeof p2);
    assert_string_equal(p1, p2);
    /* refusals, exit 2 */
    assert_int_equal(run("eval --model %s --tokenizer %s --data %s --act-format int", q, g_tok,
                         g_text), 2);
    assert_non_null(strstr(g_err, "holds this checkpoint's activation settings"));
    assert_int_equal(run("eval --model %s --tokenizer %s --data %s --act-format int "
                         "--act-scales static --act-granularity tensor", g_model, g_tok, g_text),
                     2);
    assert_non_null(strstr(g_err, "--act-scales static"));
    assert_int_equal(run("eval --model %s --tokenizer %s --data %s --act-format int "
                         "--act-granularity group --act-group-size 48", g_model, g_tok, g_text),
                     2);
    assert_non_null(strstr(g_err, "activations.group_size: 48 does not divide"));
    /* another checkpoint under the file, then a run without options removes it */
    quantize(q, "");
    assert_false(gq_file_exists(file));
    eval_ppl(q, p2, sizeof p2);
    assert_null(strstr(g_out, "\"a_bits\""));
    assert_string_not_equal(p1, p2);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_quantize_eval_reload)};
    return cmocka_run_group_tests_name("act_cli", tests, NULL, NULL);
}
