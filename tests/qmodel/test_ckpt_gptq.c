/* GPTQ checkpoints written by `export --format gptq` and loaded back with --model: for each
 * method x bits x group x act_order the writer allows, the loaded block linears equal bit for
 * bit those of the fake-quantized model `quantize --out-format llama2c` writes with the same
 * settings, and where the format has a packed kernel (int4/int8, groups of 32k) the packed
 * model built from the loaded codes dequantizes to exactly those weights. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "qmodel/gq_qmodel.h"
#include "test_quant.h"

static char out[65536], errb[16384];

static long file_bytes(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void assert_packed_matches(const gq_model *m, const gq_qcodes *q, bool want_packed)
{
    gq_packed_model pm;
    char why[256];
    gq_error err = {{0}};
    assert_int_equal(gq_qcodes_packed_build(m, q, &pm, why, sizeof why, &err), 0);
    if (!want_packed) {
        assert_null(pm.lin);
        return;
    }
    if (!pm.lin)
        fail_msg("no packed model: %s", why);
    test_assert_packed_equals(&pm, m);
    gq_packed_model_free(&pm);
}

static void round_trip(const char *model, const char *settings, bool packed)
{
    char *dir = test_tmpdir("ckpt-gptq");
    char q[4200], ck[4200], common[10240];
    snprintf(q, sizeof q, "%s/q.bin", dir);
    snprintf(ck, sizeof ck, "%s", dir); /* the checkpoint, with q.bin beside its files */
    snprintf(common, sizeof common,
             "--model assets:models/%s/%s.bin --tokenizer assets:models/%s/tok512.bin %s "
             "--eval-windows 4 --eval-ctx 64 --n-calib 2 --calib-ctx 32", model, model, model,
             settings);
    if (test_run_clif(out, sizeof out, errb, sizeof errb,
                      "export --format gptq %s --quant int --out '%s'", common, ck) != 0 ||
        test_run_clif(out, sizeof out, errb, sizeof errb,
                      "quantize %s --format int --out-format llama2c --out '%s'", common, q) != 0)
        fail_msg("%s: %s", settings, errb);
    gq_model fake, back;
    gq_qcodes qc;
    gq_error err = {{0}};
    if (gq_model_load(q, &fake, &err) || gq_model_open_any(ck, &back, &qc, &err))
        fail_msg("%s: %s", settings, err.msg);
    assert_string_equal(qc.source, "gptq");
    test_assert_linears_equal(&fake, &back);
    assert_packed_matches(&back, &qc, packed);
    char st[4300];
    snprintf(st, sizeof st, "%s/model.safetensors", ck);
    print_message("%-15s %-70s %ld bytes, linears bit-identical\n", model, settings,
                  file_bytes(st));
    gq_qcodes_free(&qc);
    gq_model_free(&back);
    gq_model_free(&fake);
    test_remove_dir(dir);
}

static void test_round_trips(void **state)
{
    (void)state;
    test_assets_or_skip();
    static const struct {
        const char *model, *settings;
        bool packed;
    } cases[] = {
        {"tinystories-3M", "--method rtn --set bits=4 --set group_size=32 --set zero=sym_gptq", true},
        {"tinystories-3M", "--method gptq --set bits=4 --set group_size=64 --set zero=sym_gptq", true},
        {"tinystories-3M", "--method gptq --method-set act_order=true --set bits=4 "
                           "--set group_size=32 --set zero=sym_gptq", true},
        {"tinystories-3M", "--method gptq --method-set act_order=true --set bits=8 "
                           "--set granularity=channel --set zero=sym_gptq", true},
        {"tinystories-3M", "--method gptq --set bits=2 --set group_size=32 --set zero=sym_gptq", false},
        {"tinystories-3M", "--method rtn --set bits=8 --set group_size=64 --set zero=sym", true},
        {"tinystories-3M", "--method gptq --method-set act_order=true --set bits=2 "
                           "--set granularity=channel --set zero=sym", false},
        /* stories260K's 172-wide MLP holds int8 per channel (4 codes per word) */
        {"stories260K", "--method rtn --set bits=8 --set granularity=channel --set zero=sym", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        round_trip(cases[i].model, cases[i].settings, cases[i].packed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_round_trips)};
    test_setup_assets();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
