/* The grid formats int, fp and mx: exactness on representable values, error trends, element
 * special cases (saturation, subnormals, ties, E4M3/E5M2 limits), MX scale rules on crafted
 * blocks, exact storage sizes, dequantize(codes) == reconstruction, thread-count independence,
 * the group interface, parameter validation, and quantize-tensor CLI errors. */
#include "test_support.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gq_half.h"
#include "core/gq_rng.h"
#include "formats/gq_format.h"
#include "formats/minifloat.h"
#include "formats/quant_error.h"

/* ---- helpers -------------------------------------------------------------------------- */

/* A quantizer from a JSON text; fails the test on error. */
static gq_quantizer make_q(const char *json)
{
    json_error_t jerr;
    json_t *spec = json_loads(json, 0, &jerr);
    if (!spec)
        fail_msg("bad test JSON %s: %s", json, jerr.text);
    gq_quantizer q;
    gq_error err = {{0}};
    if (gq_quantizer_from_json(spec, "$", &q, &err))
        fail_msg("%s: %s", json, err.msg);
    json_decref(spec);
    return q;
}

/* Parsing must fail with a message containing `needle`. */
static void expect_reject(const char *json, const char *needle)
{
    json_t *spec = json_loads(json, 0, NULL);
    assert_non_null(spec);
    gq_quantizer q;
    gq_error err = {{0}};
    if (gq_quantizer_from_json(spec, "$", &q, &err) == 0)
        fail_msg("%s was accepted", json);
    if (!strstr(err.msg, needle))
        fail_msg("%s: message \"%s\" does not mention \"%s\"", json, err.msg, needle);
    json_decref(spec);
}

static float *heavy_tailed(int rows, int cols, uint64_t seed)
{
    float *w = malloc((size_t)rows * cols * sizeof *w);
    gq_rng r;
    gq_rng_seed(&r, seed);
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        w[i] = (float)(0.02 * gq_rng_student_t(&r, 4.0));
    return w;
}

/* Quantizes, returns the reconstruction; checks dequantize(codes) reproduces it bit for bit. */
static float *roundtrip(const gq_quantizer *q, const float *w, int rows, int cols)
{
    size_t n = (size_t)rows * cols, bytes = gq_quantizer_bytes(q, rows, cols);
    uint8_t *codes = malloc(bytes);
    float *y = malloc(n * sizeof *y), *y2 = malloc(n * sizeof *y2);
    gq_error err = {{0}};
    if (gq_quantizer_run(q, w, rows, cols, NULL, codes, y, &err))
        fail_msg("quantize: %s", err.msg);
    if (q->fmt->dequantize(q->params, codes, rows, cols, y2, &err))
        fail_msg("dequantize: %s", err.msg);
    for (size_t i = 0; i < n; i++)
        if (memcmp(&y[i], &y2[i], sizeof(float)) != 0)
            fail_msg("%s: dequantize(codes)[%zu] = %a, reconstruction %a", q->fmt->name, i,
                     (double)y2[i], (double)y[i]);
    free(codes);
    free(y2);
    return y;
}

static double sqnr(const gq_quantizer *q, const float *w, int rows, int cols)
{
    float *y = roundtrip(q, w, rows, cols);
    double s = gq_quant_error_compute(w, y, (size_t)rows * cols).sqnr_db;
    free(y);
    return s;
}

/* ---- exactness ------------------------------------------------------------------------ */

static void expect_exact(const char *json, const float *x, int rows, int cols)
{
    gq_quantizer q = make_q(json);
    float *y = roundtrip(&q, x, rows, cols);
    for (int i = 0; i < rows * cols; i++)
        if (y[i] != x[i])
            fail_msg("%s: value %d = %g came back as %g", json, i, (double)x[i], (double)y[i]);
    free(y);
    gq_quantizer_free(&q);
}

static void test_grid_values_roundtrip(void **state)
{
    (void)state;
    float x[2 * 32];
    /* asym: s = 0.125, z = 5: values s*(q - 5) for q = 0..15 twice, in a shuffled order. */
    for (int i = 0; i < 32; i++)
        x[i] = 0.125f * (float)((i * 7) % 16 - 5);
    expect_exact("{\"name\": \"int\", \"bits\": 4, \"group_size\": 16}", x, 2, 16);
    /* sym: s = 2^-4, levels -7..7 with both ends present. */
    for (int i = 0; i < 30; i++)
        x[i] = 0.0625f * (float)(i % 15 - 7);
    expect_exact("{\"name\": \"int\", \"bits\": 4, \"granularity\": \"channel\", \"zero\": \"sym\"}",
                 x, 2, 15);
    /* int8 asym per tensor: s = 1/255 is not a power of two but z*s reproduces the grid only
     * approximately, so use the sym grid: k/127 * amax with amax = 127 * 2^-7. */
    for (int i = 0; i < 64; i++)
        x[i] = (float)((i * 37) % 255 - 127) * 0x1p-7f;
    x[9] = 127 * 0x1p-7f;
    expect_exact("{\"name\": \"int\", \"bits\": 8, \"granularity\": \"tensor\", \"zero\": \"sym\"}",
                 x, 4, 16);
    /* fp e4m3 per channel: s = 2^-5 (amax = 448 s); every code value times s, subnormals too. */
    for (int i = 0; i < 64; i++)
        x[i] = gq_mf_decode(&gq_mf_e4m3, (uint32_t)(i * 2 + (i & 1) * 0x80)) * 0x1p-5f;
    x[5] = 448.0f * 0x1p-5f;
    x[40] = 448.0f * 0x1p-5f;
    expect_exact("{\"name\": \"fp\", \"element\": \"e4m3\"}", x, 2, 32);
    /* mx fp4: block max 6 * 2^-3 (floor rule: X = 2^-3), every E2M1 value. */
    for (int i = 0; i < 64; i++)
        x[i] = gq_mf_decode(&gq_mf_e2m1, (uint32_t)(i % 16)) * 0x1p-3f;
    expect_exact("{\"name\": \"mx\"}", x, 2, 32);
    /* mx int8: block max 127/64 (X = 1). */
    for (int i = 0; i < 64; i++)
        x[i] = (float)((i * 29) % 255 - 127) / 64.0f;
    x[0] = 127.0f / 64.0f;
    x[32] = -127.0f / 64.0f;
    expect_exact("{\"name\": \"mx\", \"element\": \"int8\"}", x, 2, 32);
}

/* ---- error trends --------------------------------------------------------------------- */

static void test_error_falls_with_bits_and_group_size(void **state)
{
    (void)state;
    const int rows = 16, cols = 512;
    float *w = heavy_tailed(rows, cols, 7);
    char json[256];
    double prev = -INFINITY;
    for (int b = 2; b <= 8; b++) {
        snprintf(json, sizeof json, "{\"name\": \"int\", \"bits\": %d}", b);
        gq_quantizer q = make_q(json);
        double s = sqnr(&q, w, rows, cols);
        if (!(s > prev + 3.0))
            fail_msg("int%d g128: SQNR %.2f dB not above %d bits' %.2f + 3", b, s, b - 1, prev);
        prev = s;
        gq_quantizer_free(&q);
    }
    static const char *const gran[] = {"\"granularity\": \"tensor\"",
                                       "\"granularity\": \"channel\"", "\"group_size\": 256",
                                       "\"group_size\": 64", "\"group_size\": 16"};
    prev = -INFINITY;
    for (int i = 0; i < 5; i++) {
        snprintf(json, sizeof json, "{\"name\": \"int\", \"bits\": 3, %s}", gran[i]);
        gq_quantizer q = make_q(json);
        double s = sqnr(&q, w, rows, cols);
        if (!(s > prev))
            fail_msg("%s: SQNR %.2f dB not above the coarser %.2f", json, s, prev);
        prev = s;
        gq_quantizer_free(&q);
    }
    static const char *const ladder[] = {
        "{\"name\": \"mx\", \"element\": \"fp4_e2m1\"}",
        "{\"name\": \"mx\", \"element\": \"fp6_e3m2\"}",
        "{\"name\": \"mx\", \"element\": \"fp8_e4m3\"}",
        "{\"name\": \"mx\", \"element\": \"int8\"}"};
    prev = -INFINITY;
    for (int i = 0; i < 4; i++) {
        gq_quantizer q = make_q(ladder[i]);
        double s = sqnr(&q, w, rows, cols);
        if (!(s > prev))
            fail_msg("%s: SQNR %.2f dB not above %.2f", ladder[i], s, prev);
        prev = s;
        gq_quantizer_free(&q);
    }
    /* Same width, one more mantissa bit: E2M3 beats E3M2 on block-scaled data. */
    gq_quantizer m32 = make_q("{\"name\": \"mx\", \"element\": \"fp6_e3m2\"}");
    gq_quantizer m23 = make_q("{\"name\": \"mx\", \"element\": \"fp6_e2m3\"}");
    assert_true(sqnr(&m32, w, rows, cols) + 3.0 < sqnr(&m23, w, rows, cols));
    gq_quantizer_free(&m32);
    gq_quantizer_free(&m23);
    gq_quantizer a = make_q("{\"name\": \"fp\", \"element\": \"e2m1\", \"granularity\": \"group\"}");
    gq_quantizer b = make_q("{\"name\": \"fp\", \"element\": \"e4m3\", \"granularity\": \"group\"}");
    assert_true(sqnr(&a, w, rows, cols) + 6.0 < sqnr(&b, w, rows, cols));
    gq_quantizer_free(&a);
    gq_quantizer_free(&b);
    free(w);
}

static void test_clip_search_never_worse(void **state)
{
    (void)state;
    const int rows = 8, cols = 256;
    float *w = heavy_tailed(rows, cols, 11);
    gq_quantizer plain = make_q("{\"name\": \"int\", \"bits\": 3, \"norm\": 2}");
    gq_quantizer mse = make_q("{\"name\": \"int\", \"bits\": 3, \"clip_search\": \"mse\", \"norm\": 2}");
    float *y0 = roundtrip(&plain, w, rows, cols), *y1 = roundtrip(&mse, w, rows, cols);
    /* p = 1 is the first candidate, so every group's squared error can only fall; on
     * heavy-tailed data it falls strictly overall. */
    double e0 = 0, e1 = 0;
    for (int g = 0; g < rows * cols / 128; g++) {
        double a = 0, b = 0;
        for (int i = g * 128; i < (g + 1) * 128; i++) {
            a += (double)(y0[i] - w[i]) * (y0[i] - w[i]);
            b += (double)(y1[i] - w[i]) * (y1[i] - w[i]);
        }
        assert_true(b <= a * (1 + 1e-6));
        e0 += a;
        e1 += b;
    }
    assert_true(e1 < e0);
    free(y0);
    free(y1);
    free(w);
    gq_quantizer_free(&plain);
    gq_quantizer_free(&mse);
}

/* ---- int conventions ------------------------------------------------------------------ */

static void test_int_conventions(void **state)
{
    (void)state;
    float x[4] = {7.5f, -7.5f, 2.0f, 0.0f}, *y;
    /* sym_gptq 4-bit: amax 7.5 -> s = 2*7.5/15 = 1, z = 8: +7.5 -> 8 + 8 = 16 clamps to 15
     * -> +7; -7.5 -> -8 (even) + 8 = 0 -> -8. Levels -8..7. */
    gq_quantizer q = make_q("{\"name\": \"int\", \"zero\": \"sym_gptq\"}");
    y = roundtrip(&q, x, 1, 4);
    assert_true(y[0] == 7.0f && y[1] == -8.0f && y[2] == 2.0f && y[3] == 0.0f);
    free(y);
    gq_quantizer_free(&q);
    /* sym 4-bit: amax 1.75 -> s = 1.75/7 = 0.25, levels -7..7; 0.625 = 2.5 s ties to 2 (even)
     * or 3 (away); 0.875 = 3.5 s ties to 4 either way. */
    float x2[4] = {1.75f, -1.75f, 0.625f, 0.875f};
    q = make_q("{\"name\": \"int\", \"zero\": \"sym\"}");
    y = roundtrip(&q, x2, 1, 4);
    assert_true(y[0] == 1.75f && y[1] == -1.75f && y[2] == 0.5f && y[3] == 1.0f);
    free(y);
    gq_quantizer_free(&q);
    q = make_q("{\"name\": \"int\", \"zero\": \"sym\", \"rounding\": \"away\"}");
    y = roundtrip(&q, x2, 1, 4);
    assert_true(y[2] == 0.75f && y[3] == 1.0f);
    free(y);
    gq_quantizer_free(&q);
    /* Ties: 2.5 steps -> 2 with even, 3 with away (asym, s = 1, z = 0: range [0, 15]). */
    float x3[3] = {15.0f, 2.5f, 0.0f};
    q = make_q("{\"name\": \"int\", \"rounding\": \"even\"}");
    y = roundtrip(&q, x3, 1, 3);
    assert_true(y[1] == 2.0f);
    free(y);
    gq_quantizer_free(&q);
    q = make_q("{\"name\": \"int\", \"rounding\": \"away\"}");
    y = roundtrip(&q, x3, 1, 3);
    assert_true(y[1] == 3.0f);
    free(y);
    gq_quantizer_free(&q);
    /* All-zero groups and an fp16 scale: zeros stay zeros; the used scale is the fp16 one. */
    float x4[8] = {0, 0, 0, 0, 0.1f, -0.3f, 0.2f, 0.05f};
    q = make_q("{\"name\": \"int\", \"group_size\": 4}");
    y = roundtrip(&q, x4, 1, 8);
    for (int i = 0; i < 4; i++)
        assert_true(y[i] == 0.0f);
    float sh = gq_round_fp16(0.5f / 15.0f); /* range [-0.3, 0.2] */
    for (int i = 4; i < 8; i++) {
        float k = y[i] / sh;
        assert_true(fabsf(k - rintf(k)) < 1e-4f);
    }
    free(y);
    gq_quantizer_free(&q);
}

/* ---- element special cases ------------------------------------------------------------ */

static float mf(const gq_minifloat *f, float x, uint32_t *code)
{
    float y;
    uint32_t c = gq_mf_encode(f, x, &y);
    if (code)
        *code = c;
    assert_true(gq_mf_decode(f, c) == y);
    return y;
}

static void test_minifloat_special_cases(void **state)
{
    (void)state;
    uint32_t c;
    /* E4M3: max 448 (S.1111.110), no Inf: everything above saturates; 464 ties to 448. */
    assert_true(mf(&gq_mf_e4m3, 448.0f, &c) == 448.0f && c == 0x7e);
    assert_true(mf(&gq_mf_e4m3, 464.0f, &c) == 448.0f && c == 0x7e);
    assert_true(mf(&gq_mf_e4m3, 1e30f, NULL) == 448.0f);
    assert_true(mf(&gq_mf_e4m3, -1e30f, &c) == -448.0f && c == 0xfe);
    assert_true(mf(&gq_mf_e4m3, 0x1p-6f, &c) == 0x1p-6f && c == 0x08);   /* min normal */
    assert_true(mf(&gq_mf_e4m3, 0x1p-9f, &c) == 0x1p-9f && c == 0x01);   /* min subnormal */
    assert_true(mf(&gq_mf_e4m3, 0x1p-10f, &c) == 0.0f && c == 0);        /* tie -> even 0 */
    assert_true(mf(&gq_mf_e4m3, 0x1.8p-9f, NULL) == 0x1p-8f);            /* tie -> even 2 */
    assert_true(mf(&gq_mf_e4m3, 0x1.4p-9f, NULL) == 0x1p-9f);
    assert_true(mf(&gq_mf_e4m3, 7 * 0x1p-9f, NULL) == 7 * 0x1p-9f);     /* top subnormal */
    /* E5M2: max 57344, saturating, subnormal 2^-16. */
    assert_true(mf(&gq_mf_e5m2, 57344.0f, &c) == 57344.0f && c == 0x7b);
    assert_true(mf(&gq_mf_e5m2, 61440.0f, NULL) == 57344.0f);  /* tie with the Inf slot */
    assert_true(mf(&gq_mf_e5m2, 1e9f, NULL) == 57344.0f);
    assert_true(mf(&gq_mf_e5m2, 0x1p-16f, &c) == 0x1p-16f && c == 0x01);
    assert_true(mf(&gq_mf_e5m2, 0x1p-17f, NULL) == 0.0f);
    /* E2M1: ties to even mantissa (0.25 -> 0, 0.75 -> 1, 1.25 -> 1, 1.75 -> 2, 2.5 -> 2,
     * 3.5 -> 4, 5 -> 4), saturation at 6. */
    const float in[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 7.0f, 100.0f, -0.75f};
    const float out[] = {0.0f, 1.0f, 1.0f, 2.0f, 2.0f, 4.0f, 4.0f, 6.0f, 6.0f, -1.0f};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
        if (mf(&gq_mf_e2m1, in[i], NULL) != out[i])
            fail_msg("e2m1(%g) = %g, expected %g", (double)in[i],
                     (double)mf(&gq_mf_e2m1, in[i], NULL), (double)out[i]);
    /* FP6 maxima. */
    assert_true(mf(&gq_mf_e3m2, 1e3f, NULL) == 28.0f);
    assert_true(mf(&gq_mf_e2m3, 1e3f, NULL) == 7.5f);
    /* Every finite non-negative-zero code decodes and encodes back to itself. */
    const gq_minifloat *all[] = {&gq_mf_e2m1, &gq_mf_e3m2, &gq_mf_e2m3, &gq_mf_e4m3, &gq_mf_e5m2};
    for (int k = 0; k < 5; k++) {
        const gq_minifloat *f = all[k];
        uint32_t ncodes = 1u << gq_mf_bits(f);
        for (uint32_t code = 0; code < ncodes; code++) {
            float v = gq_mf_decode(f, code);
            if (fabsf(v) > f->max || (code & ((ncodes >> 1) - 1)) == 0)
                continue; /* Inf/NaN slots, +-0 */
            uint32_t back;
            mf(f, v, &back);
            if (back != code)
                fail_msg("%s: code 0x%x (%g) encodes back to 0x%x", f->name, code, (double)v, back);
        }
    }
    /* Exponents from the bits, subnormal floats included. */
    assert_int_equal(gq_floor_log2f(0x1p-149f), -149);
    assert_int_equal(gq_floor_log2f(0x1.fffffcp-127f), -127);
    assert_int_equal(gq_ceil_log2f(0x1p-140f), -140);
    assert_int_equal(gq_ceil_log2f(0x1.8p-140f), -139);
    assert_int_equal(gq_floor_log2f(8.0f), 3);
    assert_int_equal(gq_ceil_log2f(8.0f), 3);
    assert_int_equal(gq_ceil_log2f(8.5f), 4);
}

/* ---- MX scale rules -------------------------------------------------------------------- */

/* Quantizes one 32-element block whose largest element is amax; returns the stored E8M0
 * byte and the reconstruction of amax. */
static int mx_block(const char *rule, const char *element, float amax, float *y_amax)
{
    char json[160];
    snprintf(json, sizeof json, "{\"name\": \"mx\", \"element\": \"%s\", \"scale_rule\": \"%s\"}",
             element, rule);
    gq_quantizer q = make_q(json);
    float x[32] = {0};
    x[3] = amax;
    x[4] = -0.5f * amax;
    uint8_t codes[64];
    float y[32];
    gq_error err = {{0}};
    assert_true(gq_quantizer_bytes(&q, 1, 32) <= sizeof codes);
    if (gq_quantizer_run(&q, x, 1, 32, NULL, codes, y, &err))
        fail_msg("%s", err.msg);
    gq_quantizer_free(&q);
    *y_amax = y[3];
    return codes[0];
}

static void test_mx_scale_rules(void **state)
{
    (void)state;
    float y;
    /* amax 7 = 1.75 * 2^2, FP4 (emax 2, max 6). */
    assert_int_equal(mx_block("floor", "fp4_e2m1", 7.0f, &y), 127); /* X = 1, saturates */
    assert_true(y == 6.0f);
    assert_int_equal(mx_block("ceil", "fp4_e2m1", 7.0f, &y), 128);  /* X = 2: 3.5 -> 4 */
    assert_true(y == 8.0f);
    assert_int_equal(mx_block("even", "fp4_e2m1", 7.0f, &y), 128);  /* 1.75 -> 2.0, carries */
    assert_int_equal(mx_block("rceil", "fp4_e2m1", 7.0f, &y), 128); /* ceil(log2(7/6)) = 1 */
    /* amax 6 = 1.5 * 2^2: on the grid for floor/even/rceil, ceil goes one up. */
    assert_int_equal(mx_block("floor", "fp4_e2m1", 6.0f, &y), 127);
    assert_true(y == 6.0f);
    assert_int_equal(mx_block("even", "fp4_e2m1", 6.0f, &y), 127);
    assert_int_equal(mx_block("rceil", "fp4_e2m1", 6.0f, &y), 127);
    assert_int_equal(mx_block("ceil", "fp4_e2m1", 6.0f, &y), 128);
    /* amax 1.25 * 2^-10: floor -> 2^(-10-2); rceil: ceil(log2(1.25*2^-10 / 6)) = -12. */
    assert_int_equal(mx_block("floor", "fp4_e2m1", 0x1.4p-10f, &y), 127 - 12);
    assert_int_equal(mx_block("rceil", "fp4_e2m1", 0x1.4p-10f, &y), 127 - 12);
    /* FP8 E4M3 (emax 8): amax 500 -> floor(log2 500) - 8 = 0, saturates to 448. */
    assert_int_equal(mx_block("floor", "fp8_e4m3", 500.0f, &y), 127);
    assert_true(y == 448.0f);
    /* E5M2 emax 15, E3M2 emax 4, E2M3 emax 2. */
    assert_int_equal(mx_block("floor", "fp8_e5m2", 1.0f, &y), 127 - 15);
    assert_int_equal(mx_block("floor", "fp6_e3m2", 1.0f, &y), 127 - 4);
    assert_int_equal(mx_block("floor", "fp6_e2m3", 1.0f, &y), 127 - 2);
    /* MXINT8: emax 0, values k/64 of X, clamped to 127/64. */
    assert_int_equal(mx_block("floor", "int8", 1.999f, &y), 127);
    assert_true(y == 127.0f / 64.0f);
    assert_int_equal(mx_block("floor", "int8", 3.0f, &y), 128);
    assert_true(y == 3.0f);
    /* All-zero block: byte 0 (2^-127) and zero elements; the tiniest floats stay finite. */
    assert_int_equal(mx_block("floor", "fp4_e2m1", 0.0f, &y), 0);
    assert_true(y == 0.0f);
    assert_int_equal(mx_block("floor", "fp4_e2m1", 0x1p-149f, &y), 0); /* clamped to -127 */
    assert_true(isfinite(y));
}

static void test_mx_zero_and_partial_blocks(void **state)
{
    (void)state;
    /* Rows of 40 = a full block and a zero-padded block of 8; row 1 is all zeros. */
    float x[2 * 40] = {0};
    for (int i = 0; i < 40; i++)
        x[i] = (float)(i % 7) - 3.0f;
    gq_quantizer q = make_q("{\"name\": \"mx\"}");
    assert_int_equal(gq_quantizer_bytes(&q, 2, 40), 2 * (2 + 2 * 16));
    float *y = roundtrip(&q, x, 2, 40);
    for (int i = 40; i < 80; i++)
        assert_true(y[i] == 0.0f);
    for (int i = 0; i < 40; i++)
        assert_true(y[i] == x[i]); /* amax 3: X = 2^-1, x/X in {0, 2, 4, 6} */
    free(y);
    gq_quantizer_free(&q);
}

/* ---- storage sizes ---------------------------------------------------------------------- */

/* The storage of a (rows, cols) matrix is `bytes`, and its bits per weight say the same. */
static void expect_bytes(const char *json, int rows, int cols, size_t bytes)
{
    gq_quantizer q = make_q(json);
    size_t got = gq_quantizer_bytes(&q, rows, cols);
    if (got != bytes)
        fail_msg("%s on %d x %d: %zu bytes, expected %zu", json, rows, cols, got, bytes);
    double bpw = 8.0 * (double)bytes / ((double)rows * cols);
    if (gq_quantizer_bpw(&q, rows, cols) != bpw)
        fail_msg("%s on %d x %d: %.6f bpw, expected %.6f", json, rows, cols,
                 gq_quantizer_bpw(&q, rows, cols), bpw);
    gq_quantizer_free(&q);
}

/* expect_bytes for a bits-per-weight figure that is a whole number of bytes. */
static void expect_bpw(const char *json, int rows, int cols, double bpw)
{
    double bytes = bpw * rows * cols / 8.0;
    assert_true(bytes == (double)(size_t)bytes);
    expect_bytes(json, rows, cols, (size_t)bytes);
}

static void test_storage_bytes(void **state)
{
    (void)state;
    expect_bpw("{\"name\": \"int\"}", 4, 4096, 4.15625);
    expect_bpw("{\"name\": \"int\", \"zero\": \"sym\"}", 4, 4096, 4.125);
    expect_bpw("{\"name\": \"int\", \"zero\": \"sym_gptq\"}", 4, 4096, 4.125);
    expect_bpw("{\"name\": \"int\", \"group_size\": 64}", 4, 4096, 4.3125);
    expect_bpw("{\"name\": \"int\", \"group_size\": 32}", 4, 4096, 4.625);
    expect_bpw("{\"name\": \"int\", \"zero\": \"sym\", \"scale_dtype\": \"fp32\"}", 4, 4096, 4.25);
    expect_bpw("{\"name\": \"mx\"}", 4, 4096, 4.25);
    expect_bpw("{\"name\": \"mx\", \"element\": \"fp6_e2m3\"}", 4, 4096, 6.25);
    expect_bpw("{\"name\": \"mx\", \"element\": \"int8\"}", 4, 4096, 8.25);
    expect_bpw("{\"name\": \"fp\", \"element\": \"e2m1\", \"granularity\": \"group\"}", 4, 4096, 4.5);
    /* Partial last group: 300 = 128 + 128 + 44 -> 3 records of 16 + 4 bits per row. */
    expect_bytes("{\"name\": \"int\"}", 1, 300, 8 + 150);
    expect_bytes("{\"name\": \"int\"}", 3, 300, (3 * 3 * 20 + 7) / 8 + (3 * 300 * 4 + 7) / 8);
    /* int3 on odd shapes: bit streams cross bytes. */
    expect_bytes("{\"name\": \"int\", \"bits\": 3, \"group_size\": 5}", 7, 13,
                 (7 * 3 * 19 + 7) / 8 + (7 * 13 * 3 + 7) / 8);
    /* Per tensor: one scale (and zero). Per channel: one per row. */
    expect_bytes("{\"name\": \"int\", \"granularity\": \"tensor\"}", 10, 100, 3 + 500);
    expect_bytes("{\"name\": \"fp\"}", 10, 100, 20 + 1000);
    /* MX: the padding of a partial block is stored: 33 cols = 2 blocks. */
    expect_bytes("{\"name\": \"mx\", \"element\": \"fp6_e3m2\"}", 3, 33, 3 * (2 + 2 * 24));
}

/* ---- codes, threads and the group interface -------------------------------------------- */

static const char *const configs[] = {
    "{\"name\": \"int\"}",
    "{\"name\": \"int\", \"bits\": 3, \"group_size\": 5, \"zero\": \"asym\"}",
    "{\"name\": \"int\", \"bits\": 2, \"zero\": \"sym_gptq\", \"group_size\": 7}",
    "{\"name\": \"int\", \"bits\": 5, \"zero\": \"sym\", \"granularity\": \"channel\"}",
    "{\"name\": \"int\", \"bits\": 6, \"granularity\": \"tensor\", \"scale_dtype\": \"fp32\"}",
    "{\"name\": \"int\", \"bits\": 4, \"clip_search\": \"mse\", \"group_size\": 16}",
    "{\"name\": \"fp\"}",
    "{\"name\": \"fp\", \"element\": \"e2m1\", \"granularity\": \"group\", \"group_size\": 6}",
    "{\"name\": \"fp\", \"element\": \"e5m2\", \"granularity\": \"tensor\"}",
    "{\"name\": \"mx\"}",
    "{\"name\": \"mx\", \"element\": \"fp6_e3m2\", \"scale_rule\": \"ceil\"}",
    "{\"name\": \"mx\", \"element\": \"fp6_e2m3\", \"scale_rule\": \"even\"}",
    "{\"name\": \"mx\", \"element\": \"fp8_e5m2\", \"scale_rule\": \"rceil\"}",
    "{\"name\": \"mx\", \"element\": \"int8\"}",
};

static void test_codes_threads_and_group_interface(void **state)
{
    (void)state;
    const int rows = 9, cols = 45;
    float *w = heavy_tailed(rows, cols, 3);
    w[5] = 0.0f; /* and a zero row segment */
    for (int c = 0; c < cols; c++)
        w[4 * cols + c] = 0.0f;
    int nthreads = omp_get_max_threads();
    for (size_t k = 0; k < sizeof configs / sizeof configs[0]; k++) {
        gq_quantizer q = make_q(configs[k]);
        omp_set_num_threads(1);
        float *y1 = roundtrip(&q, w, rows, cols); /* also checks dequantize(codes) */
        omp_set_num_threads(4);
        float *y4 = roundtrip(&q, w, rows, cols);
        omp_set_num_threads(nthreads);
        if (memcmp(y1, y4, sizeof(float) * rows * cols) != 0)
            fail_msg("%s: 1 and 4 threads differ", configs[k]);
        /* GPTQ's view: fit each group, quantize element by element. */
        const gq_format *f = q.fmt;
        int gc = f->group_cols(q.params, cols);
        unsigned char st[64];
        assert_true(f->group_state_bytes <= sizeof st);
        if (gc == 0)
            f->fit_group(q.params, w, rows * cols, NULL, st);
        for (int r = 0; r < rows; r++)
            for (int c0 = 0; c0 < cols; c0 += gc ? gc : cols) {
                int n = gc ? (cols - c0 < gc ? cols - c0 : gc) : cols;
                const float *x = w + r * cols + c0;
                if (gc)
                    f->fit_group(q.params, x, n, NULL, st);
                for (int i = 0; i < n; i++) {
                    float v = f->quant_elem(q.params, st, i, x[i]);
                    if (v != y1[r * cols + c0 + i])
                        fail_msg("%s: group interface gives %g at (%d, %d), quantize %g",
                                 configs[k], (double)v, r, c0 + i,
                                 (double)y1[r * cols + c0 + i]);
                }
            }
        free(y1);
        free(y4);
        gq_quantizer_free(&q);
    }
    free(w);
}

/* ---- errors ---------------------------------------------------------------------------- */

static void test_parameter_validation(void **state)
{
    (void)state;
    expect_reject("{\"name\": \"int\", \"bitz\": 4}", "$.bitz: unknown key");
    expect_reject("{\"name\": \"int\", \"bits\": 1}", "$.bits: 1 is outside 2..8");
    expect_reject("{\"name\": \"int\", \"bits\": 9}", "$.bits: 9 is outside 2..8");
    expect_reject("{\"name\": \"int\", \"bits\": \"4\"}", "$.bits: expected an integer");
    expect_reject("{\"name\": \"int\", \"group_size\": 0}", "$.group_size: 0 is outside");
    expect_reject("{\"name\": \"int\", \"group_size\": -128}", "$.group_size: -128 is outside");
    expect_reject("{\"name\": \"int\", \"granularity\": \"block\"}", "$.granularity: \"block\"");
    expect_reject("{\"name\": \"int\", \"zero\": \"none\"}", "$.zero");
    expect_reject("{\"name\": \"int\", \"clip_search\": \"mse\", \"maxshrink\": 0.001}",
                  "$.maxshrink");
    expect_reject("{\"name\": \"fp\", \"element\": \"e3m4\"}", "$.element");
    expect_reject("{\"name\": \"fp\", \"bits\": 4}", "$.bits: unknown key");
    expect_reject("{\"name\": \"mx\", \"group_size\": 32}", "$.group_size: unknown key");
    expect_reject("{\"name\": \"mx\", \"scale_rule\": \"round\"}", "$.scale_rule");
    expect_reject("{\"name\": \"nope\"}", "unknown format \"nope\"");

    gq_error err = {{0}};
    gq_quantizer q = make_q("{\"name\": \"int\"}");
    float x[4] = {1.0f, NAN, 0.0f, 2.0f}, y[4];
    assert_int_equal(gq_quantizer_run(&q, x, 2, 2, NULL, NULL, y, &err), -1);
    assert_non_null(strstr(err.msg, "row 0, column 1"));
    x[1] = 1e6f; /* int4 scale 1e6 * 2/15 overflows fp16 */
    assert_int_equal(gq_quantizer_run(&q, x, 2, 2, NULL, NULL, y, &err), -1);
    assert_non_null(strstr(err.msg, "scale_dtype fp32"));
    gq_quantizer_free(&q);
    q = make_q("{\"name\": \"int\", \"scale_dtype\": \"fp32\"}");
    assert_int_equal(gq_quantizer_run(&q, x, 2, 2, NULL, NULL, y, &err), 0);
    gq_quantizer_free(&q);
}

static void write_f32(const char *path, const float *v, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(v, sizeof *v, n, f), n);
    fclose(f);
}

static void expect_cli(const char *args, int status, const char *needle)
{
    char out[8192], err[8192];
    int st = test_run_cli(args, out, sizeof out, err, sizeof err);
    if (st != status || (needle && !strstr(status ? err : out, needle)))
        fail_msg("gq-bench %s: status %d (expected %d)\nstdout: %s\nstderr: %s\nexpected: %s",
                 args, st, status, out, err, needle ? needle : "");
}

static void test_quantize_tensor_cli(void **state)
{
    (void)state;
    char *dir = test_tmpdir("qt");
    char x[4200], bad[4200], nan[4200], out[4200], deq[4200], args[16384];
    snprintf(x, sizeof x, "%s/x.f32", dir);
    snprintf(bad, sizeof bad, "%s/bad.f32", dir);
    snprintf(nan, sizeof nan, "%s/nan.f32", dir);
    snprintf(out, sizeof out, "%s/q.bin", dir);
    snprintf(deq, sizeof deq, "%s/y.f32", dir);
    float *w = heavy_tailed(4, 256, 5);
    write_f32(x, w, 4 * 256);
    write_f32(bad, w, 4 * 256 - 1);
    w[300] = INFINITY;
    write_f32(nan, w, 4 * 256);

    snprintf(args, sizeof args, "quantize-tensor --format int --set bits=3 --rows 4 --cols 256 "
             "--in %s --out %s --dequant %s", x, out, deq);
    expect_cli(args, 0, "int3 g128 asym");
    size_t len;
    free(test_read_file(out, &len));
    assert_int_equal(len, (4 * 2 * 19 + 7) / 8 + 4 * 256 * 3 / 8);
    free(test_read_file(deq, &len));
    assert_int_equal(len, 4 * 256 * 4);
    snprintf(args, sizeof args, "quantize-tensor --format mx --rows 4 --cols 256 --in %s --json", x);
    expect_cli(args, 0, "\"bpw\": 4.25");

    snprintf(args, sizeof args, "quantize-tensor --format int --rows 4 --cols 256 --in %s", bad);
    expect_cli(args, 2, "4092 bytes, expected 4096");
    snprintf(args, sizeof args, "quantize-tensor --format int --rows 4 --cols 256 --in %s", nan);
    expect_cli(args, 2, "value 300 is inf");
    snprintf(args, sizeof args, "quantize-tensor --format int --set bits=9 --rows 4 --cols 256 "
             "--in %s", x);
    expect_cli(args, 2, "bits: 9 is outside 2..8");
    snprintf(args, sizeof args, "quantize-tensor --format int8 --rows 4 --cols 256 --in %s", x);
    expect_cli(args, 2, "unknown format \"int8\"");
    snprintf(args, sizeof args, "quantize-tensor --format int --rows 4 --cols 256 --in %s/none", dir);
    expect_cli(args, 2, "/none");
    /* a bad second output is found before the first one is written */
    char fresh[4300];
    snprintf(fresh, sizeof fresh, "%s/fresh.bin", dir);
    snprintf(args, sizeof args, "quantize-tensor --format int --rows 4 --cols 256 --in %s "
             "--out %s --dequant %s/none/y.f32", x, fresh, dir);
    expect_cli(args, 2, "--dequant");
    assert_int_equal(access(fresh, F_OK), -1);
    snprintf(args, sizeof args, "quantize-tensor --format int --rows 4 --cols 256 --in %s "
             "--out %s", x, dir);
    expect_cli(args, 2, "is a directory");
    snprintf(args, sizeof args, "quantize-tensor --format int --rows 4 --cols 256 --in %s", dir);
    expect_cli(args, 2, "not a regular file");
    snprintf(args, sizeof args, "quantize-tensor --format nope --rows 4 --cols 256 --in %s", x);
    expect_cli(args, 2, "--format.name: unknown format");
    snprintf(args, sizeof args, "quantize-tensor --format int --rows 4 --cols 256 --in %s "
             "--set bits", x);
    expect_cli(args, 2, "--set: 'bits': expected key=value");
    expect_cli("quantize-tensor --format int --rows 4 --cols 256 --in /nonexistent/x.f32", 2,
               "--in /nonexistent/x.f32: cannot open");
    expect_cli("quantize-tensor --format int --rows 4 --cols 256", 2, "--in is required");
    expect_cli("quantize-tensor --format int --bogus 1", 2, "unknown option");
    expect_cli("list formats", 0, "mx: OCP MX");
    expect_cli("list nothing", 2, "unknown list");
    free(w);
    free(dir);
}

/* Finite inputs near the float32 limit overflow the reconstruction of most llama.cpp formats:
 * the statistics are then reported as non-finite (JSON null, a count of non-finite values),
 * never a crash or a made-up number (max_abs 0, SQNR inf). */
static void test_quantize_tensor_huge_values(void **state)
{
    (void)state;
    float x[4] = {1.0f, 2.0f, 3.0f, 4.0f}, y[4] = {1.0f, NAN, 3.0f, 4.0f};
    gq_quant_error e = gq_quant_error_compute(x, y, 4);
    assert_true(isnan(e.rmse) && isnan(e.max_abs) && isnan(e.sqnr_db));
    assert_int_equal(e.nonfinite, 1);
    y[1] = INFINITY;
    e = gq_quant_error_compute(x, y, 4);
    assert_true(isinf(e.rmse) && isinf(e.max_abs) && !isfinite(e.sqnr_db));

    char *dir = test_tmpdir("qt_huge");
    char in[4200], args[8400], out[8192], err[8192];
    snprintf(in, sizeof in, "%s/huge.f32", dir);
    float *w = heavy_tailed(2, 256, 9);
    for (int i = 0; i < 512; i++)
        w[i] = (w[i] < 0 ? -3.3e38f : 3.3e38f) + w[i] * 1e36f;
    write_f32(in, w, 512);
    static const char *const fmts[] = {"q2_K", "q4_K", "q5_K", "q4_0", "q4_1",
                                       "q5_0", "q5_1", "q8_0", "q6_K", "q3_K"};
    for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
        snprintf(args, sizeof args, "quantize-tensor --format %s --rows 2 --cols 256 --in %s "
                 "--json", fmts[f], in);
        int st = test_run_cli(args, out, sizeof out, err, sizeof err);
        if (st != 0)
            fail_msg("%s: status %d\n%s", args, st, err);
        json_error_t je;
        json_t *j = json_loads(out, 0, &je);
        if (!j)
            fail_msg("%s: not JSON: %s", args, out);
        json_int_t bad = json_integer_value(json_object_get(j, "nonfinite_values"));
        const char *keys[] = {"rmse", "max_abs_err", "sqnr_db"};
        for (int k = 0; k < 3; k++) {
            json_t *v = json_object_get(j, keys[k]);
            assert_non_null(v);
            if (bad > 0 && !json_is_null(v))
                fail_msg("%s: %d non-finite values but %s = %s", fmts[f], (int)bad, keys[k], out);
            if (bad == 0 && k < 2 && !json_is_real(v))
                fail_msg("%s: %s is not a number: %s", fmts[f], keys[k], out);
        }
        json_decref(j);
    }
    /* the text form says so too */
    snprintf(args, sizeof args, "quantize-tensor --format q4_K --rows 2 --cols 256 --in %s", in);
    assert_int_equal(test_run_cli(args, out, sizeof out, err, sizeof err), 0);
    assert_non_null(strstr(out, "max abs error   nan"));
    assert_non_null(strstr(out, "non-finite      512 reconstructed values"));
    free(w);
    unlink(in);
    rmdir(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grid_values_roundtrip),
        cmocka_unit_test(test_error_falls_with_bits_and_group_size),
        cmocka_unit_test(test_clip_search_never_worse),
        cmocka_unit_test(test_int_conventions),
        cmocka_unit_test(test_minifloat_special_cases),
        cmocka_unit_test(test_mx_scale_rules),
        cmocka_unit_test(test_mx_zero_and_partial_blocks),
        cmocka_unit_test(test_storage_bytes),
        cmocka_unit_test(test_codes_threads_and_group_interface),
        cmocka_unit_test(test_parameter_validation),
        cmocka_unit_test(test_quantize_tensor_cli),
        cmocka_unit_test(test_quantize_tensor_huge_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
