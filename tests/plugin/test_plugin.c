/* Plugins: loader errors, run-time registration, the example nf4 format (exact round trip on
 * its own levels, nearest-level rounding, bits per weight, group interface) and the CLI with
 * --plugin / GQ_PLUGINS / experiment "plugins", the generic registry behind both registries,
 * the undo of a failed init, and the packed kernel the plugin declares (gq_format.packing). argv: nf4.so bad_abi.so no_init.so dup_name.so late_fail.so
 * (tests/plugin/meson.build). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_support.h"

#include "core/gq_half.h"
#include "core/gq_registry.h"
#include "formats/gq_format.h"
#include "model/gq_synth.h"
#include "packed/gq_packed.h"
#include "methods/gq_pipeline.h"
#include "plugin/gq_plugin.h"

static const char *g_nf4, *g_bad_abi, *g_no_init, *g_dup, *g_late;
static const char *g_abi_func; /* argv[6]: abi_func.so, gq_plugin_abi a function */

/* The published NF4 levels (QLoRA), independent of the plugin's copy. */
static const float nf4_levels[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

static void expect_fail(int rc, const gq_error *e, const char *a, const char *b)
{
    assert_int_equal(rc, -1);
    if (!strstr(e->msg, a) || (b && !strstr(e->msg, b)))
        fail_msg("message \"%s\" lacks \"%s\" / \"%s\"", e->msg, a, b ? b : "");
}

static void test_load_errors(void **state)
{
    (void)state;
    gq_error e;
    expect_fail(gq_plugin_load("/nonexistent/p.so", &e), &e, "/nonexistent/p.so",
                "No such file");
    char txt[4200];
    char *dir = test_tmpdir_file("plugin-bad", "text.so", txt, sizeof txt);
    test_write_text(txt, "not an ELF file\n");
    expect_fail(gq_plugin_load(txt, &e), &e, txt, "not a loadable shared object");
    expect_fail(gq_plugin_load(dir, &e), &e, dir, "not a regular file");
    expect_fail(gq_plugin_load(g_no_init, &e), &e, g_no_init, "missing symbol gq_plugin_init");
    expect_fail(gq_plugin_load(g_bad_abi, &e), &e, g_bad_abi, "built for plugin ABI 999");
    /* read as an int, a function's first bytes would be a misaligned load (UBSan) */
    expect_fail(gq_plugin_load(g_abi_func, &e), &e, g_abi_func, "gq_plugin_abi is a function");
    expect_fail(gq_plugin_load(g_dup, &e), &e, g_dup, "format \"int\" is already registered");
    assert_int_equal(gq_plugin_count(), 0);
    free(dir);
}

/* A plugin whose init registers a format and a method and then fails: the load fails with the
 * plugin's message, both entries are gone (so a second attempt fails the same way, not on a
 * taken name) and the registries and plugin count are as before. */
static void test_failed_init_rolls_back(void **state)
{
    (void)state;
    int nf0, nm0, nf, nm;
    gq_format_all(&nf0);
    gq_method_all(&nm0);
    int plugins0 = gq_plugin_count();
    gq_error e;
    for (int attempt = 0; attempt < 2; attempt++) {
        expect_fail(gq_plugin_load(g_late, &e), &e, g_late, "late_fail: the device is not ready");
        assert_null(gq_format_find("late_fail"));
        assert_null(gq_method_find("late_fail"));
        const gq_format *const *fmts = gq_format_all(&nf);
        const gq_method *const *meths = gq_method_all(&nm);
        assert_int_equal(nf, nf0);
        assert_int_equal(nm, nm0);
        assert_null(fmts[nf]);
        assert_null(meths[nm]);
        assert_int_equal(gq_plugin_count(), plugins0);
    }
}

typedef struct {
    const char *name;
    int ok;
} entry;

static const char *entry_name(const void *p) { return ((const entry *)p)->name; }

static int entry_check(const void *p, gq_error *err)
{
    const entry *x = p;
    return x->ok ? 0 : gq_fail(err, "thing \"%s\": not ok", x->name);
}

/* The generic table on its own, with room for 2 entries: order, lookup, every rejection with
 * its message, a full table, truncation and the names list (cut to the buffer). */
static void test_generic_registry(void **state)
{
    (void)state;
    const void *slots[3] = {0};
    gq_registry r = {"thing", entry_name, entry_check, slots, 2};
    static const entry a = {"alpha", 1}, b = {"beta_2", 1}, c = {"gamma", 1}, bad = {"Bad", 1},
                       nok = {"delta", 0}, a2 = {"alpha", 1};
    gq_error e;
    assert_int_equal(gq_registry_count(&r), 0);
    assert_null(gq_registry_find(&r, "alpha"));
    assert_int_equal(gq_registry_add(&r, &a, &e), 0);
    expect_fail(gq_registry_add(&r, NULL, &e), &e, "thing registration: NULL thing", NULL);
    expect_fail(gq_registry_add(&r, &bad, &e), &e, "thing registration: invalid name \"Bad\"",
                NULL);
    expect_fail(gq_registry_add(&r, &nok, &e), &e, "thing \"delta\": not ok", NULL);
    expect_fail(gq_registry_add(&r, &a2, &e), &e, "thing \"alpha\" is already registered", NULL);
    assert_int_equal(gq_registry_add(&r, &b, &e), 0);
    expect_fail(gq_registry_add(&r, &c, &e), &e, "thing \"gamma\": the registry is full (2 things)",
                NULL);
    assert_int_equal(gq_registry_count(&r), 2);
    assert_ptr_equal(gq_registry_at(&r, 0), &a);
    assert_ptr_equal(gq_registry_at(&r, 1), &b);
    assert_null(gq_registry_at(&r, 2));
    assert_null(gq_registry_at(&r, -1));
    assert_ptr_equal(gq_registry_find(&r, "beta_2"), &b);
    char names[16];
    gq_registry_names(&r, names, sizeof names);
    assert_string_equal(names, "alpha, beta_2");
    gq_registry_names(&r, names, 9);
    assert_string_equal(names, "alpha, b");
    gq_registry_truncate(&r, 5); /* beyond the count: nothing */
    assert_int_equal(gq_registry_count(&r), 2);
    gq_registry_truncate(&r, 1);
    assert_int_equal(gq_registry_count(&r), 1);
    assert_null(gq_registry_find(&r, "beta_2"));
    assert_int_equal(gq_registry_add(&r, &c, &e), 0); /* the freed slot is reused */
    assert_ptr_equal(gq_registry_at(&r, 1), &c);
    gq_registry_truncate(&r, 0);
    assert_int_equal(gq_registry_count(&r), 0);
    gq_registry_names(&r, names, sizeof names);
    assert_string_equal(names, "");
}

static int noop_block(const void *p, gq_block_ctx *ctx, gq_error *err)
{
    (void)p, (void)ctx, (void)err;
    return 0;
}

static void test_register_rejects(void **state)
{
    (void)state;
    gq_error e;
    expect_fail(gq_format_register(NULL, &e), &e, "NULL format", NULL);
    gq_format bad = *gq_format_find("int");
    bad.name = "Bad-Name";
    expect_fail(gq_format_register(&bad, &e), &e, "invalid name \"Bad-Name\"", NULL);
    bad.name = "int2";
    bad.quantize = NULL;
    expect_fail(gq_format_register(&bad, &e), &e, "format \"int2\": missing quantize", NULL);
    expect_fail(gq_method_register(NULL, &e), &e, "NULL method", NULL);
    static const gq_param_spec none[] = {{0}};
    gq_method m = {.name = "rtn", .summary = "again", .params = none,
                   .propagate = GQ_PROPAGATE_FP, .quantize_block = noop_block};
    expect_fail(gq_method_register(&m, &e), &e, "method \"rtn\" is already registered", NULL);
    m.name = "noop";
    m.propagate = GQ_PROPAGATE_METHOD_DEFAULT;
    expect_fail(gq_method_register(&m, &e), &e, "propagate must be", NULL);
}

/* Loads nf4 (once: a second load of the same file is a no-op) and configures it. */
static void nf4_quantizer(gq_quantizer *q, int group_size)
{
    gq_error e;
    if (gq_plugin_load(g_nf4, &e) || gq_plugin_load(g_nf4, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(gq_plugin_count(), 1);
    json_t *p = json_pack("{s:i}", "group_size", group_size);
    if (gq_quantizer_init(q, "nf4", p, "$", &e))
        fail_msg("%s", e.msg);
    json_decref(p);
}

static void test_nf4_registered(void **state)
{
    (void)state;
    gq_quantizer q;
    nf4_quantizer(&q, 64);
    int n;
    const gq_format *const *all = gq_format_all(&n);
    assert_ptr_equal(all[n - 1], gq_format_find("nf4"));
    assert_null(all[n]);
    char label[64];
    gq_quantizer_label(&q, label, sizeof label);
    assert_string_equal(label, "nf4 g64");
    /* rows * (2 bytes per group + cols/2): 4.25 bits per weight at g64, 4.125 at g128 */
    assert_int_equal(gq_quantizer_bytes(&q, 4, 256), 4 * (2 * 4 + 128));
    assert_true(gq_quantizer_bpw(&q, 4, 256) == 4.25);
    assert_int_equal(gq_quantizer_bytes(&q, 1, 131), 2 * 3 + 66); /* short last group, odd */
    gq_quantizer_free(&q);
    nf4_quantizer(&q, 128);
    assert_true(gq_quantizer_bpw(&q, 8, 512) == 4.125);
    gq_quantizer_free(&q);
}

/* Values s * level with an fp16 scale s that is each group's absmax come back exactly, from
 * the reconstruction and from dequantize(codes); an all-zero group gives zeros. */
static void test_nf4_roundtrip_exact(void **state)
{
    (void)state;
    gq_quantizer q;
    nf4_quantizer(&q, 64);
    enum { R = 3, C = 131 };
    static const float scales[3] = {0.75f, 3.5f, 0.0009765625f};
    float *w = malloc(sizeof(float) * R * C), *deq = malloc(sizeof(float) * R * C),
          *back = malloc(sizeof(float) * R * C);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            int k = (c * 7 + r * 3) % 16;
            if (c % 64 == 0) /* each group reaches +-1: its absmax is the scale */
                k = (c / 64 + r) % 2 ? 15 : 0;
            w[r * C + c] = r == 1 && c >= 64 && c < 128 ? 0.0f : scales[r] * nf4_levels[k];
        }
    uint8_t *codes = malloc(gq_quantizer_bytes(&q, R, C));
    gq_error e;
    if (gq_quantizer_run(&q, w, R, C, NULL, codes, deq, &e) ||
        q.fmt->dequantize(q.params, codes, R, C, back, &e))
        fail_msg("%s", e.msg);
    for (int i = 0; i < R * C; i++)
        if (deq[i] != w[i] || back[i] != w[i])
            fail_msg("element %d: %.9g came back as %.9g / %.9g", i, w[i], deq[i], back[i]);
    for (int c = 64; c < 128; c++)
        assert_true(deq[C + c] == 0.0f);
    free(w), free(deq), free(back), free(codes);
    gq_quantizer_free(&q);
}

/* On random data every reconstruction is the nearest of the 16 scaled levels, where the
 * scale is the group's fp16-rounded absmax; the GPTQ group interface agrees element by
 * element; a non-finite weight is an error naming its row and column. */
static void test_nf4_nearest_and_group_interface(void **state)
{
    (void)state;
    gq_quantizer q;
    nf4_quantizer(&q, 32);
    enum { R = 5, C = 100 };
    float w[R * C], deq[R * C];
    srand(7);
    for (int i = 0; i < R * C; i++)
        w[i] = (float)rand() / RAND_MAX * 4.0f - 2.0f;
    gq_error e;
    if (gq_quantizer_run(&q, w, R, C, NULL, NULL, deq, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(q.fmt->group_cols(q.params, C), 32);
    float st[4];
    assert_true(q.fmt->group_state_bytes <= sizeof st);
    for (int r = 0; r < R; r++)
        for (int c0 = 0; c0 < C; c0 += 32) {
            int n = C - c0 < 32 ? C - c0 : 32;
            const float *x = w + r * C + c0;
            float a = 0.0f;
            for (int k = 0; k < n; k++)
                a = fmaxf(a, fabsf(x[k]));
            float s = gq_fp16_to_fp32(gq_fp32_to_fp16(a));
            q.fmt->fit_group(q.params, x, n, NULL, st);
            for (int k = 0; k < n; k++) {
                float d = deq[r * C + c0 + k];
                assert_true(q.fmt->quant_elem(q.params, st, k, x[k]) == d);
                /* nearest: no scaled level is strictly closer */
                float best = INFINITY;
                for (int j = 0; j < 16; j++)
                    best = fminf(best, fabsf(s * nf4_levels[j] - x[k]));
                if (fabsf(d - x[k]) != best)
                    fail_msg("row %d col %d: %.7g -> %.7g, a level is %.7g away", r, c0 + k,
                             x[k], d, best);
            }
        }
    w[2 * C + 37] = NAN;
    expect_fail(gq_quantizer_run(&q, w, R, C, NULL, NULL, deq, &e), &e,
                "nf4: non-finite weight at row 2, column 37", NULL);
    gq_quantizer_free(&q);
}

/* The plugin's packed kernel (its row decoder): the packed weights dequantize bit for bit to
 * the format's dequantize() of the same codes (a width that is not a multiple of 32 included),
 * decode and prefill products agree with the dequantized weights, and a packed model of a
 * synthetic Llama measures decode and prefill throughput. */
static void test_nf4_packed(void **state)
{
    (void)state;
    gq_quantizer q;
    nf4_quantizer(&q, 32);
    enum { R = 37, C = 100, N = 6 };
    char why[256];
    assert_true(gq_packed_supported(&q, R, C, why, sizeof why));
    float *w = malloc(sizeof(float) * R * C), *deq = malloc(sizeof(float) * R * C),
          *back = malloc(sizeof(float) * R * C), *x = malloc(sizeof(float) * N * C),
          *y = malloc(sizeof(float) * N * R);
    uint64_t s = 12345;
    for (int i = 0; i < R * C; i++)
        w[i] = (float)((s = s * 6364136223846793005ull + 1442695040888963407ull) >> 40) /
                   (float)(1 << 24) - 0.5f;
    for (int i = 0; i < N * C; i++)
        x[i] = (float)((i * 37) % 23) / 11.0f - 1.0f;
    uint8_t *codes = malloc(gq_quantizer_bytes(&q, R, C));
    gq_error e;
    if (gq_quantizer_run(&q, w, R, C, NULL, codes, deq, &e))
        fail_msg("%s", e.msg);
    gq_packed_linear *P = gq_packed_linear_from_codes(&q, codes, R, C, &e);
    if (!P)
        fail_msg("%s", e.msg);
    assert_int_equal(gq_packed_linear_bytes(P), gq_quantizer_bytes(&q, R, C));
    for (int ref = 0; ref < 2; ref++) {
        gq_packed_linear_dequantize(P, back, ref);
        assert_memory_equal(back, deq, sizeof(float) * R * C);
    }
    for (int n = 1; n <= N; n += N - 1) { /* one token (fused dots), N tokens (tiles) */
        gq_packed_linear_apply(P, y, x, n);
        for (int t = 0; t < n; t++)
            for (int r = 0; r < R; r++) {
                double want = 0.0, mag = 0.0;
                for (int c = 0; c < C; c++) {
                    want += (double)deq[r * C + c] * x[t * C + c];
                    mag += fabs((double)deq[r * C + c] * x[t * C + c]);
                }
                assert_true(fabs(y[t * R + r] - want) <= 1e-5 * mag + 1e-6);
            }
    }
    gq_packed_linear_free(P);
    gq_model m;
    assert_int_equal(gq_model_synth("tiny", 3, &m, &e), 0);
    gq_packed_bench_opts o = gq_packed_bench_defaults();
    o.decode_tokens = 2;
    o.prefill_tokens = 8;
    o.reps = 1;
    gq_packed_throughput t;
    if (gq_packed_measure(&m, &q, NULL, &o, &t, &e))
        fail_msg("%s", e.msg);
    assert_true(t.packed && t.decode_tok_s > 0 && t.prefill_tok_s > 0 && t.packed_bytes > 0);
    gq_model_free(&m);
    free(w), free(deq), free(back), free(x), free(y), free(codes);
    gq_quantizer_free(&q);
}

static char g_out[16384], g_err[4096];

/* Runs gq-bench with printf-formatted arguments; output in g_out / g_err. */
#define cli(...) test_run_clif(g_out, sizeof g_out, g_err, sizeof g_err, __VA_ARGS__)

static void test_cli(void **state)
{
    (void)state;
    assert_int_equal(cli("list formats"), 0);
    assert_null(strstr(g_out, "nf4"));
    assert_int_equal(cli("--plugin %s list formats", g_nf4), 0);
    assert_non_null(strstr(g_out, "nf4: QLoRA NormalFloat4"));
    assert_int_equal(cli("--plugin=%s --plugin %s list formats", g_nf4, g_nf4), 0);

    char in[4200];
    char *dir = test_tmpdir_file("plugin-cli", "w.f32", in, sizeof in);
    float w[4 * 128];
    for (int i = 0; i < 4 * 128; i++)
        w[i] = sinf(0.37f * (float)i) * (1.0f + (float)(i % 5));
    FILE *f = fopen(in, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(w, sizeof w, 1, f), 1);
    fclose(f);
    int rc = cli("--plugin %s quantize-tensor --format nf4 --rows 4 --cols 128 --in %s --json",
                 g_nf4, in);
    if (rc)
        fail_msg("exit %d: %s", rc, g_err);
    assert_non_null(strstr(g_out, "\"label\": \"nf4 g64\""));
    assert_non_null(strstr(g_out, "\"bpw\": 4.25"));
    assert_non_null(strstr(g_out, "\"roundtrip_exact\": true"));

    /* GQ_PLUGINS, with an empty item */
    rc = cli("--help >/dev/null; GQ_PLUGINS=:%s %s quantize-tensor --format nf4 --set "
             "group_size=128 --rows 4 --cols 128 --in %s --json", g_nf4, getenv("GQ_BENCH"), in);
    if (rc)
        fail_msg("exit %d: %s", rc, g_err);
    assert_non_null(strstr(g_out, "\"bpw\": 4.125"));

    assert_int_equal(cli("--plugin %s list formats", g_bad_abi), 2);
    assert_non_null(strstr(g_err, "gq-bench: --plugin: plugin "));
    assert_non_null(strstr(g_err, "built for plugin ABI 999"));
    assert_int_equal(cli("--plugin"), 2);
    assert_non_null(strstr(g_err, "--plugin: missing path"));
    free(dir);
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: test_plugin nf4.so bad_abi.so no_init.so dup_name.so "
                        "late_fail.so abi_func.so\n");
        return 2;
    }
    g_nf4 = argv[1], g_bad_abi = argv[2], g_no_init = argv[3], g_dup = argv[4], g_late = argv[5];
    g_abi_func = argv[6];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_failed_init_rolls_back),
        cmocka_unit_test(test_generic_registry),
        cmocka_unit_test(test_register_rejects),
        cmocka_unit_test(test_nf4_registered),
        cmocka_unit_test(test_nf4_roundtrip_exact),
        cmocka_unit_test(test_nf4_nearest_and_group_interface),
        cmocka_unit_test(test_nf4_packed),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
