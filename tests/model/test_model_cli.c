/* The model's subcommands: synth writes the library's synthetic model (legacy and v1, the same
 * bytes in every process), generate samples deterministically for a seed and reports bad
 * inputs, bench forward runs on a tiny preset; decode rejects out-of-order positions. */
#include "test_model_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/gq_forward.h"
#include "model/gq_synth.h"

static char out[16384], errb[8192];

static int run(const char *fmt, const char *a, const char *b)
{
    char args[12288];
    snprintf(args, sizeof args, fmt, a, b);
    return test_run_cli(args, out, sizeof out, errb, sizeof errb);
}

static void test_synth_command(void **state)
{
    (void)state;
    char *dir = test_tmpdir("model_synth");
    char a[4200], b[4200], v[4200];
    snprintf(a, sizeof a, "%s/a.bin", dir);
    snprintf(b, sizeof b, "%s/b.bin", dir);
    snprintf(v, sizeof v, "%s/v.bin", dir);
    assert_int_equal(run("synth --preset tiny --seed 5 --out '%s'%s", a, ""), 0);
    assert_int_equal(run("synth --preset tiny --seed 5 --out '%s'%s", b, ""), 0);
    assert_int_equal(run("synth --preset tiny --seed 5 --out '%s' %s", v, "--format v1"), 0);
    size_t na, nb;
    void *ba = test_read_file(a, &na), *bb = test_read_file(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(ba, bb, na);
    gq_model lib, la, lv;
    gq_error err = {{0}};
    assert_int_equal(gq_model_synth("tiny", 5, &lib, &err), 0);
    assert_int_equal(gq_model_load(a, &la, &err), 0);
    assert_int_equal(gq_model_load(v, &lv, &err), 0);
    assert_same_weights(&lib, &la);
    assert_same_weights(&lib, &lv);
    assert_int_equal(run("synth --preset %s --seed 1 --out '%s'", "huge", a), 2);
    assert_non_null(strstr(errb, "huge"));
    assert_int_equal(run("synth --preset tiny --out '%s' --format %s", a, "gguf"), 2);
    assert_non_null(strstr(errb, "gguf"));
    gq_model_free(&lib);
    gq_model_free(&la);
    gq_model_free(&lv);
    free(ba);
    free(bb);
    unlink(a);
    unlink(b);
    unlink(v);
    rmdir(dir);
    free(dir);
}

static void test_generate_sampling_and_errors(void **state)
{
    (void)state;
    char model[4096], tok[4096];
    TEST_ASSET_OR_SKIP("models/stories260K/stories260K.bin", model);
    TEST_ASSET_OR_SKIP("models/stories260K/tok512.bin", tok);
    const char *fmt = "generate --model '%s' --tokenizer '%s' --prompt 'Once' --steps 60 "
                      "--temperature 1";
    char args[9000];
    snprintf(args, sizeof args, "%s --seed 3", fmt);
    assert_int_equal(run(args, model, tok), 0);
    char first[16384];
    memcpy(first, out, sizeof first);
    assert_int_equal(run(args, model, tok), 0);
    assert_string_equal(out, first); /* same seed, same text */
    snprintf(args, sizeof args, "%s --seed 4", fmt);
    assert_int_equal(run(args, model, tok), 0);
    assert_string_not_equal(out, first);
    assert_int_equal(strncmp(out, "Once", 4), 0);

    assert_int_equal(run("generate --model '%s/missing.bin' --tokenizer '%s'", "/nonexistent", tok), 2);
    assert_non_null(strstr(errb, "missing.bin"));
    /* a tokenizer whose vocabulary does not match the model */
    char big[4096];
    if (test_asset("tokenizers/llama2/tokenizer.bin", big, sizeof big)) {
        assert_int_equal(run("generate --model '%s' --tokenizer '%s'", model, big), 2);
        assert_non_null(strstr(errb, "tokenizer.bin"));
    }
    assert_int_equal(run("generate --model '%s' --tokenizer '%s' --steps -1", model, tok), 2);
    assert_int_equal(run("generate --model '%s' --tokenizer '%s' --bogus", model, tok), 2);
}

static void test_bench_forward_runs(void **state)
{
    (void)state;
    assert_int_equal(run("bench forward --preset tiny --ctx 32 --batch 2 --reps 1 "
                         "--decode-steps 4%s%s", "", ""), 0);
    assert_non_null(strstr(out, "prefill"));
    assert_non_null(strstr(out, "decode"));
    assert_int_equal(run("bench forward --preset tiny --ctx 4096%s%s", "", ""), 2);
    assert_non_null(strstr(errb, "seq_len"));
}

static void test_decode_positions(void **state)
{
    (void)state;
    gq_model m;
    gq_error err = {{0}};
    assert_int_equal(gq_model_synth("tiny", 2, &m, &err), 0);
    gq_decode *d = gq_decode_new(&m, &err);
    float *logits = malloc((size_t)m.cfg.vocab_size * sizeof(float));
    assert_int_equal(gq_decode_step(d, 1, 0, logits, &err), 0);
    assert_int_equal(gq_decode_step(d, 1, 2, logits, &err), -1); /* skips position 1 */
    assert_non_null(strstr(err.msg, "position 2"));
    assert_int_equal(gq_decode_step(d, 600, 1, logits, &err), -1);
    assert_non_null(strstr(err.msg, "token 600"));
    assert_int_equal(gq_decode_step(d, 1, 0, logits, &err), 0); /* restarting is allowed */
    free(logits);
    gq_decode_free(d);
    gq_model_free(&m);
}

/* A version-1 checkpoint of 135 KB whose header claims seq_len 2^20 and 1024 layers of width 2
 * (a 16 GiB KV cache): refused at load, before any allocation; a plausible model's decode
 * state holds only the positions asked for. */
static void test_absurd_header_refused(void **state)
{
    (void)state;
    char path[4200], tok[4096];
    char *dir = test_tmpdir_file("model_absurd", "absurd.bin", path, sizeof path);
    const int32_t dim = 2, hid = 2, L = 1024, vocab = 512, p[7] = {dim, hid, L, 1, 1, vocab, 1 << 20};
    size_t floats = (size_t)L * dim * 2 + dim + (size_t)vocab * dim +
                    (size_t)L * (dim * dim * 4 + hid * dim * 3);
    size_t bytes = 256 + floats * sizeof(float);
    unsigned char *file = calloc(1, bytes);
    const uint32_t magic = 0x616b3432u;
    const int32_t version = 1;
    memcpy(file, &magic, 4);
    memcpy(file + 4, &version, 4);
    memcpy(file + 8, p, sizeof p);
    file[8 + sizeof p] = 1; /* shared classifier */
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(file, 1, bytes, f), bytes);
    assert_int_equal(fclose(f), 0);
    free(file);
    gq_model m;
    gq_error err = {{0}};
    assert_int_equal(gq_model_load(path, &m, &err), -1);
    assert_non_null(strstr(err.msg, "seq_len = 1048576"));
    assert_non_null(strstr(err.msg, "not a plausible checkpoint"));
    if (test_asset("models/stories260K/tok512.bin", tok, sizeof tok)) {
        assert_int_equal(run("generate --model '%s' --tokenizer '%s' --steps 0", path, tok), 2);
        assert_non_null(strstr(errb, "not a plausible checkpoint"));
    }
    unlink(path);
    rmdir(dir);
    free(dir);

    assert_int_equal(gq_model_synth("tiny", 2, &m, &err), 0);
    assert_true(gq_decode_bytes(&m.cfg, 16) < gq_decode_bytes(&m.cfg, m.cfg.seq_len));
    gq_decode *d = gq_decode_new_n(&m, 4, &err);
    assert_non_null(d);
    float *logits = malloc((size_t)m.cfg.vocab_size * sizeof(float));
    for (int pos = 0; pos < 4; pos++)
        assert_int_equal(gq_decode_step(d, 1, pos, logits, &err), 0);
    assert_int_equal(gq_decode_step(d, 1, 4, logits, &err), -1); /* beyond its 4 positions */
    assert_non_null(strstr(err.msg, "outside 0..3"));
    assert_null(gq_decode_new_n(&m, m.cfg.seq_len + 1, &err));
    free(logits);
    gq_decode_free(d);
    gq_model_free(&m);
}

const struct CMUnitTest model_cli_tests[] = {
    cmocka_unit_test(test_synth_command),
    cmocka_unit_test(test_generate_sampling_and_errors),
    cmocka_unit_test(test_bench_forward_runs),
    cmocka_unit_test(test_decode_positions),
    cmocka_unit_test(test_absurd_header_refused),
};
const size_t model_cli_tests_n = sizeof model_cli_tests / sizeof model_cli_tests[0];
