/* Core utilities: fp16/bf16 conversion, SHA-256, RNG determinism, strict parameter parsing. */
#include "test_support.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "core/gq_half.h"
#include "core/gq_params.h"
#include "core/gq_rng.h"
#include "core/gq_sha256.h"

static void test_fp16_matches_f16c_on_many_floats(void **state)
{
    (void)state;
    gq_rng r;
    gq_rng_seed(&r, 1);
    /* Every fp16 value round-trips exactly, and random fp32 bit patterns (all exponents,
     * including the subnormal and overflow ranges) convert like the F16C instruction. */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = gq_fp16_to_fp32((uint16_t)h);
        float hw = _cvtsh_ss((unsigned short)h);
        if (isnan(hw)) {
            assert_true(isnan(f));
            continue;
        }
        assert_memory_equal(&f, &hw, sizeof f);
        assert_int_equal(gq_fp32_to_fp16(f), h);
    }
    for (int i = 0; i < 2000000; i++) {
        uint32_t bits = (uint32_t)gq_rng_u64(&r);
        float f = gq_f32_from_bits(bits);
        if (isnan(f))
            continue;
        uint16_t want = _cvtss_sh(f, 0);
        assert_int_equal(gq_fp32_to_fp16(f), want);
    }
}

static void test_fp16_ties_to_even(void **state)
{
    (void)state;
    /* 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to the even mantissa (1.0). */
    assert_int_equal(gq_fp32_to_fp16(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(gq_fp32_to_fp16(1.0f + 3 * 0x1p-11f), 0x3c02);
    assert_int_equal(gq_fp32_to_fp16(65520.0f), 0x7c00); /* rounds up to Inf */
    assert_int_equal(gq_fp32_to_fp16(65519.0f), 0x7bff);
    assert_int_equal(gq_fp32_to_fp16(0x1p-25f), 0x0000); /* half the smallest subnormal: even */
    assert_int_equal(gq_fp32_to_fp16(0x1.8p-25f), 0x0001);
}

static void test_bf16(void **state)
{
    (void)state;
    assert_int_equal(gq_fp32_to_bf16(1.0f), 0x3f80);
    assert_true(gq_bf16_to_fp32(gq_fp32_to_bf16(3.140625f)) == 3.140625f);
    /* 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even -> 1. */
    assert_int_equal(gq_fp32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
}

static void test_sha256_known_vectors(void **state)
{
    (void)state;
    char hex[65];
    gq_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    gq_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    gq_sha256_hex(m, strlen(m), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* Incremental updates in odd pieces give the same digest. */
    gq_sha256 s;
    gq_sha256_init(&s);
    for (size_t i = 0; i < strlen(m); i += 7)
        gq_sha256_update(&s, m + i, strlen(m) - i < 7 ? strlen(m) - i : 7);
    char hex2[65];
    gq_sha256_final_hex(&s, hex2);
    assert_string_equal(hex2, hex);
}

static void test_rng_deterministic(void **state)
{
    (void)state;
    gq_rng a, b;
    gq_rng_seed(&a, 42);
    gq_rng_seed(&b, 42);
    for (int i = 0; i < 1000; i++)
        assert_true(gq_rng_u64(&a) == gq_rng_u64(&b));
    gq_rng_seed(&b, 43);
    assert_true(gq_rng_u64(&a) != gq_rng_u64(&b));
    double sum = 0, sum2 = 0;
    for (int i = 0; i < 100000; i++) {
        double x = gq_rng_normal(&a);
        sum += x;
        sum2 += x * x;
    }
    assert_true(fabs(sum / 100000) < 0.02);
    assert_true(fabs(sum2 / 100000 - 1.0) < 0.03);
    for (int i = 0; i < 1000; i++)
        assert_true(gq_rng_below(&a, 7) < 7);
}

typedef struct {
    int bits;
    double damp;
    bool sym;
    int mode;
} demo_params;

static const char *const demo_modes[] = {"tensor", "channel", "group", NULL};
static const gq_param_spec demo_specs[] = {
    {"bits", GQ_PARAM_INT, offsetof(demo_params, bits), "4", 2, 8, NULL, "bits"},
    {"damp", GQ_PARAM_FLOAT, offsetof(demo_params, damp), "0.01", 0, 1, NULL, "damping"},
    {"sym", GQ_PARAM_BOOL, offsetof(demo_params, sym), "true", 0, 0, NULL, "symmetric"},
    {"mode", GQ_PARAM_CHOICE, offsetof(demo_params, mode), "group", 0, 0, demo_modes, "mode"},
    {0},
};

static int parse_text(const char *text, demo_params *p, gq_error *err)
{
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    int rc = gq_params_parse(demo_specs, j, "$.methods[2].format", p, err);
    json_decref(j);
    return rc;
}

static void test_params_parse_and_errors(void **state)
{
    (void)state;
    demo_params p;
    gq_error err = {{0}};
    assert_int_equal(parse_text("{}", &p, &err), 0);
    assert_int_equal(p.bits, 4);
    assert_true(p.damp == 0.01);
    assert_true(p.sym);
    assert_int_equal(p.mode, 2);
    assert_int_equal(parse_text("{\"bits\": 3, \"damp\": 1, \"sym\": false, \"mode\": \"channel\"}", &p, &err), 0);
    assert_int_equal(p.bits, 3);
    assert_true(p.damp == 1.0);
    assert_false(p.sym);
    assert_int_equal(p.mode, 1);

    assert_int_equal(parse_text("{\"bits\": 9}", &p, &err), -1);
    assert_string_equal(err.msg, "$.methods[2].format.bits: 9 is outside 2..8");
    assert_int_equal(parse_text("{\"bits\": 1}", &p, &err), -1);
    assert_int_equal(parse_text("{\"bits\": 4.5}", &p, &err), -1);
    assert_string_equal(err.msg, "$.methods[2].format.bits: expected an integer");
    assert_int_equal(parse_text("{\"bitz\": 4}", &p, &err), -1);
    assert_non_null(strstr(err.msg, "$.methods[2].format.bitz: unknown key"));
    assert_int_equal(parse_text("{\"sym\": 1}", &p, &err), -1);
    assert_string_equal(err.msg, "$.methods[2].format.sym: expected true or false");
    assert_int_equal(parse_text("{\"mode\": \"row\"}", &p, &err), -1);
    assert_non_null(strstr(err.msg, "\"row\" is not one of \"tensor\", \"channel\", \"group\""));
    assert_int_equal(parse_text("{\"damp\": \"x\"}", &p, &err), -1);
    assert_string_equal(err.msg, "$.methods[2].format.damp: expected a number");

    /* Canonical JSON lists every key; --set style overrides parse values as JSON. */
    json_t *obj = NULL;
    assert_int_equal(gq_params_apply_set(&obj, "bits=3", &err), 0);
    assert_int_equal(gq_params_apply_set(&obj, "mode=channel", &err), 0);
    assert_int_equal(gq_params_apply_set(&obj, "novalue", &err), -1);
    assert_int_equal(gq_params_parse(demo_specs, obj, NULL, &p, &err), 0);
    assert_int_equal(p.bits, 3);
    assert_int_equal(p.mode, 1);
    json_decref(obj);
    json_t *canon = gq_params_to_json(demo_specs, &p);
    assert_int_equal(json_object_size(canon), 4);
    assert_string_equal(json_string_value(json_object_get(canon, "mode")), "channel");
    json_decref(canon);
}

/* Strings of any length (owned, released), 64-bit unsigned integers, required keys. */
typedef struct {
    char *text;
    uint64_t seed;
    char *note;
} demo_section;

static const gq_param_spec section_specs[] = {
    {"text", GQ_PARAM_STRING, offsetof(demo_section, text), NULL, 0, 0, NULL, "a file"},
    {"seed", GQ_PARAM_U64, offsetof(demo_section, seed), "7", 0, (double)INT64_MAX, NULL, "seed"},
    {"note", GQ_PARAM_STRING, offsetof(demo_section, note), "", 0, 0, NULL, "optional"},
    {0},
};

static void test_params_strings_and_required(void **state)
{
    (void)state;
    demo_section p;
    gq_error err = {{0}};
    size_t n = 100000;
    char *long_text = malloc(n + 64);
    memset(long_text, 'x', n);
    snprintf(long_text + n, 64, "\", \"seed\": 9223372036854775807}");
    char *doc = malloc(n + 128);
    snprintf(doc, n + 128, "{\"text\": \"%s", long_text);
    json_t *j = json_loads(doc, 0, NULL);
    assert_non_null(j);
    assert_int_equal(gq_params_parse(section_specs, j, "$.eval", &p, &err), 0);
    assert_int_equal(strlen(p.text), n);
    assert_true(p.seed == (uint64_t)INT64_MAX);
    assert_null(p.note);
    json_t *canon = gq_params_to_json(section_specs, &p);
    assert_int_equal(json_string_length(json_object_get(canon, "text")), n);
    json_decref(canon);
    gq_params_release(section_specs, &p);
    assert_null(p.text);
    json_decref(j);
    free(doc);
    free(long_text);

    j = json_loads("{\"seed\": 3}", 0, NULL);
    assert_int_equal(gq_params_parse(section_specs, j, "$.eval", &p, &err), -1);
    assert_string_equal(err.msg, "$.eval: missing \"text\"");
    gq_params_release(section_specs, &p);
    json_decref(j);
    j = json_loads("{\"text\": \"\", \"seed\": -1}", 0, NULL);
    assert_int_equal(gq_params_parse(section_specs, j, "$.eval", &p, &err), -1);
    assert_true(strstr(err.msg, "must not be empty") || strstr(err.msg, "-1 is outside 0.."));
    gq_params_release(section_specs, &p);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp16_matches_f16c_on_many_floats),
        cmocka_unit_test(test_fp16_ties_to_even),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_sha256_known_vectors),
        cmocka_unit_test(test_rng_deterministic),
        cmocka_unit_test(test_params_parse_and_errors),
        cmocka_unit_test(test_params_strings_and_required),
    };
    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
