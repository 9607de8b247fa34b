/* AWQ checkpoints (runner/gq_awq_export.h): a hand-built int4 g4 linear whose int32 words are
 * written out below from AutoAWQ's GEMM layout (not from the packer); round trips of
 * `export --format awq` against the fake-quantized model `quantize` writes with the same
 * settings, dequantized here with AWQ's formula; refusals before any work. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ckpt_check.h"
#include "core/gq_half.h"
#include "runner/gq_awq_export.h"
#include "test_support.h"

/* The hand-built case: 8 outputs x 8 inputs, int4 g4 asym. Output r, group g has scale
 * s = (1 + r + 8g) / 8 (exact in fp16) and zero point z = (5r + 3g) % 16 (0 and 15 among
 * them: all weights >= 0, all <= 0); its codes are 0 and 15 (which make the min-max range
 * exactly 15 s and fix z), in alternating order, then (r + 2g + 1) % 16 and (3r + g + 7) % 16.
 * The weight of code k is s (k - z). */
static int hand_code(int r, int j)
{
    int g = j / 4, low_first = (r + g) % 2 == 0;
    switch (j % 4) {
    case 0: return low_first ? 0 : 15;
    case 1: return low_first ? 15 : 0;
    case 2: return (r + 2 * g + 1) % 16;
    default: return (3 * r + g + 7) % 16;
    }
}

static float hand_scale(int r, int g)
{
    return (float)(1 + r + 8 * g) / 8.0f;
}

static int hand_zero(int r, int g)
{
    return (5 * r + 3 * g) % 16;
}

static void pack_hand(int head_size, gq_awq_linear *l)
{
    gq_quantizer q;
    gq_error err = {{0}};
    json_t *p = json_pack("{s:i,s:i,s:s}", "bits", 4, "group_size", 4, "zero", "asym");
    assert_int_equal(gq_quantizer_init(&q, "int", p, "test", &err), 0);
    json_decref(p);
    float w[64];
    for (int r = 0; r < 8; r++)
        for (int j = 0; j < 8; j++)
            w[r * 8 + j] = hand_scale(r, j / 4) * (float)(hand_code(r, j) - hand_zero(r, j / 4));
    uint8_t codes[256];
    assert_true(gq_quantizer_bytes(&q, 8, 8) <= sizeof codes);
    assert_int_equal(q.fmt->quantize(q.params, w, 8, 8, NULL, codes, NULL, &err), 0);
    if (gq_awq_pack(&q, codes, 8, 8, head_size, l, &err))
        fail_msg("%s", err.msg);
    gq_quantizer_free(&q);
}

static void assert_words(const int32_t *got, const uint32_t *want, int n)
{
    for (int i = 0; i < n; i++)
        if ((uint32_t)got[i] != want[i])
            fail_msg("word %d: 0x%08x, want 0x%08x", i, (uint32_t)got[i], want[i]);
}

static void test_nibble_order(void **state)
{
    (void)state;
    /* AWQ's order: nibble n holds output order[n] of its 8 */
    static const int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    for (int n = 0; n < 8; n++)
        assert_int_equal(gq_awq_nibble(order[n]), n);
}

static void test_pack_hand_built(void **state)
{
    (void)state;
    gq_awq_linear l;
    pack_hand(0, &l);
    assert_int_equal(l.groups, 2);
    /* qweight (8, 1): word j = the 8 outputs' codes at input j, nibbles 0..7 = outputs
     * 0, 2, 4, 6, 1, 3, 5, 7. Input 0: even outputs code 0, odd ones 15: 0xffff0000 (the
     * plain order would be 0xf0f0f0f0). Input 2: codes r + 1 = 1..8 of outputs 0..7, i.e.
     * nibbles 1, 3, 5, 7, 2, 4, 6, 8 from the bottom: 0x86427531. */
    static const uint32_t qweight[8] = {0xffff0000u, 0x0000ffffu, 0x86427531u, 0xc60a93d7u,
                                        0x0000ffffu, 0xffff0000u, 0xa8649753u, 0xd71ba4e8u};
    assert_words(l.qweight, qweight, 8);
    /* qzeros (2, 1): group 0's zero points 0, 5, 10, 15, 4, 9, 14, 3 of outputs 0..7 in the
     * same order: nibbles 0, 10, 4, 14, 5, 15, 9, 3 from the bottom */
    static const uint32_t qzeros[2] = {0x39f5e4a0u, 0x6c2817d3u};
    assert_words(l.qzeros, qzeros, 2);
    for (int g = 0; g < 2; g++)
        for (int c = 0; c < 8; c++)
            assert_true(gq_fp16_to_fp32(l.scales[g * 8 + c]) == hand_scale(c, g));
    gq_awq_linear_free(&l);
}

static void test_pack_rope_rows(void **state)
{
    (void)state;
    /* heads of 4 rows: transformers output c of a head is model row 0, 2, 1, 3, so outputs 1
     * and 2 (and 5 and 6) trade places: input 2's codes become 1, 3, 2, 4, 5, 7, 6, 8 */
    static const int rope_rows[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    gq_awq_linear l;
    pack_hand(4, &l);
    assert_int_equal((uint32_t)l.qweight[2], 0x87436521u);
    for (int c = 0; c < 8; c++)
        assert_true(gq_fp16_to_fp32(l.scales[c]) == hand_scale(rope_rows[c], 0));
    gq_awq_linear_free(&l);
}

/* Weight (c, j) of an AWQ GEMM linear: scale * (q - z), nibbles in AWQ's order. */
static float awq_weight(const gq_st_file *f, const char *prefix, int bits, int rows, int cols,
                        int c, int j)
{
    static const int nibble_of[8] = {0, 4, 1, 5, 2, 6, 3, 7}; /* inverse of 0,2,4,6,1,3,5,7 */
    const uint32_t *qw = ckpt_part(f, prefix, "qweight")->data;
    const uint32_t *qz = ckpt_part(f, prefix, "qzeros")->data;
    const uint16_t *sc = ckpt_part(f, prefix, "scales")->data;
    int groups = (int)ckpt_part(f, prefix, "scales")->shape[0], g = j / (cols / groups);
    int shift = 4 * nibble_of[c % 8], words = rows / 8;
    assert_int_equal(bits, 4);
    int q = (int)((qw[(size_t)j * words + c / 8] >> shift) & 15u);
    int z = (int)((qz[(size_t)g * words + c / 8] >> shift) & 15u);
    return gq_fp16_to_fp32(sc[(size_t)g * rows + c]) * (float)(q - z);
}

static void test_round_trips(void **state)
{
    (void)state;
    test_assets_or_skip();
    static const struct { const char *settings, *group; } cases[] = {
        {"--method awq --method-set n_grid=5 --method-set clip_grid=5 --set bits=4 "
         "--set group_size=32 --set zero=asym", "32"},
        {"--method rtn --set bits=4 --set group_size=128 --set zero=asym", "128"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *ck = ckpt_round_trip("awq", "tinystories-3M", cases[i].settings, 4, awq_weight);
        ckpt_assert_config(ck, "quant_method", "\"awq\"");
        ckpt_assert_config(ck, "version", "\"gemm\"");
        ckpt_assert_config(ck, "zero_point", "true");
        ckpt_assert_config(ck, "bits", "4");
        ckpt_assert_config(ck, "group_size", cases[i].group);
        test_remove_dir(ck);
    }
}

static void test_refusals(void **state)
{
    (void)state;
    test_assets_or_skip();
    static const struct { const char *args, *want; } cases[] = {
        {"--method rtn --quant int --set bits=8 --set group_size=32",
         "layers.0.attn.q_proj: int8: AWQ's GEMM kernels hold 4-bit codes only"},
        {"--method rtn --quant int --set bits=4 --set group_size=32 --set zero=sym",
         "layers.0.attn.q_proj: zero sym: AWQ stores a zero point"},
        {"--method rtn --quant int --set bits=4 --set group_size=32 --set scale_dtype=fp32",
         "scale_dtype fp32: AWQ stores fp16 scales"},
        {"--method rtn --quant int --set bits=4 --set granularity=channel",
         "granularity channel: an AWQ checkpoint holds one group_size"},
        {"--method rtn --quant int --set bits=4 --set group_size=48",
         "layers.0.attn.q_proj: group_size 48 does not divide its 64 input columns"},
        {"--method rtn --quant int --set bits=4 --set group_size=4",
         "layers.0.mlp.gate_proj: 172 outputs are not whole int32 words of 8"},
        {"--method gptq --method-set act_order=true --quant int --set bits=4 --set group_size=4",
         "act_order stores its columns in its own order"},
        {"--method rtn --quant q4_0", "format q4_0: AWQ checkpoints hold int codes only"},
        {"--method rtn --quant int --set bits=4 --set group_size=4 --rule "
         "'layers.0.attn.q_proj=fp'", "layers.0.attn.q_proj: kept in float"},
        {"--method affinequant --quant int --set bits=4 --set group_size=4",
         "explicit input transforms"},
        {"--method rtn --quant int --float-type f16", "--float-type: AWQ checkpoints store"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ckpt_assert_refused("awq", cases[i].args, cases[i].want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nibble_order),
        cmocka_unit_test(test_pack_hand_built),
        cmocka_unit_test(test_pack_rope_rows),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_round_trips),
    };
    test_setup_assets();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
