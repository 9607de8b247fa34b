/* GPTQ checkpoints (runner/gq_gptq_export.h): hand-built int4 and int3 linears whose int32
 * words are written out below from the AutoGPTQ layout (not from the packer); round trips of
 * `export --format gptq` against the fake-quantized model `quantize` writes with the same
 * settings, dequantized here with the GPTQ formula; refusals before any work. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/gq_half.h"
#include "model/gq_hf_packed.h"
#include "model/gq_model.h"
#include "model/gq_safetensors.h"
#include "qmodel/gq_qmodel.h"
#include "runner/gq_gptq_export.h"
#include "ckpt_check.h"
#include "test_support.h"

#define INT4_G32 "--set bits=4 --set group_size=32 --set zero=sym_gptq"

/* The hand-built case: 8 outputs x 8 inputs, int4 g4 sym_gptq (z = 8). Output r, group g has
 * scale s = (1 + r + 8g) / 2 (exact in fp16); column 4g holds -7.5 s (amax, code 0), the
 * others k s with code k + 8 = (3r + j) % 15 + 1. */
static float hand_weight(int r, int j)
{
    float s = (float)(1 + r + 8 * (j / 4)) / 2.0f;
    return j % 4 == 0 ? -7.5f * s : (float)((3 * r + j) % 15 + 1 - 8) * s;
}

/* Packs the hand-built matrix as the storage; its column i is weight column perm[i]. */
static void pack_hand(const int32_t *perm, int head_size, gq_gptq_linear *l)
{
    gq_quantizer q;
    gq_error err = {{0}};
    json_t *p = json_pack("{s:i,s:i,s:s}", "bits", 4, "group_size", 4, "zero", "sym_gptq");
    assert_int_equal(gq_quantizer_init(&q, "int", p, "test", &err), 0);
    json_decref(p);
    float stored[64];
    for (int r = 0; r < 8; r++)
        for (int i = 0; i < 8; i++)
            stored[r * 8 + i] = hand_weight(r, i);
    uint8_t codes[256];
    assert_true(gq_quantizer_bytes(&q, 8, 8) <= sizeof codes);
    assert_int_equal(q.fmt->quantize(q.params, stored, 8, 8, NULL, codes, NULL, &err), 0);
    assert_int_equal(gq_gptq_pack(&q, codes, perm, 8, 8, head_size, l, &err), 0);
    gq_quantizer_free(&q);
}

static void assert_words(const int32_t *got, const uint32_t *want, int n)
{
    for (int i = 0; i < n; i++)
        if ((uint32_t)got[i] != want[i])
            fail_msg("word %d: 0x%08x, want 0x%08x", i, (uint32_t)got[i], want[i]);
}

/* Packs the hand-built matrix under perm and head_size and checks every tensor: qweight
 * (one word per output), scales of output c = those of model row out_row[c], zeros
 * 0x77777777 (z - 1 = 7, eight per word), g_idx. */
static void check_hand(const int32_t *perm, int head_size, const uint32_t *qweight,
                       const int *out_row, const int32_t *g_idx)
{
    gq_gptq_linear l;
    pack_hand(perm, head_size, &l);
    assert_int_equal(l.bits, 4);
    assert_int_equal(l.groups, 2);
    assert_words(l.qweight, qweight, 8);
    static const uint32_t zeros[2] = {0x77777777u, 0x77777777u};
    assert_words(l.qzeros, zeros, 2);
    for (int g = 0; g < 2; g++)
        for (int c = 0; c < 8; c++)
            assert_true(gq_fp16_to_fp32(l.scales[g * 8 + c]) ==
                        (float)(1 + out_row[c] + 8 * g) / 2.0f);
    assert_memory_equal(l.g_idx, g_idx, 8 * sizeof *g_idx);
    gq_gptq_linear_free(&l);
}

static const int in_order[8] = {0, 1, 2, 3, 4, 5, 6, 7};
static const int32_t two_groups[8] = {0, 0, 0, 0, 1, 1, 1, 1};

static void test_pack_hand_built(void **state)
{
    (void)state;
    /* word c = codes of output c, input column j in bits [4j, 4j+4): row 0's codes
     * 0,2,3,4,0,6,7,8 read from the top nibble down are 8 7 6 0 4 3 2 0 */
    static const uint32_t qweight[8] = {0x87604320u, 0xba907650u, 0xedc0a980u, 0x21f0dcb0u,
                                        0x54301fe0u, 0x87604320u, 0xba907650u, 0xedc0a980u};
    check_hand(NULL, 0, qweight, in_order, two_groups);
}

static void test_pack_act_order(void **state)
{
    (void)state;
    /* storage column i is weight column 7 - i: input j's code is storage column 7 - j's, its
     * group that of storage column 7 - j; scales and zeros stay per storage group */
    static const int32_t perm[8] = {7, 6, 5, 4, 3, 2, 1, 0};
    static const uint32_t qweight[8] = {0x02340678u, 0x056709abu, 0x089a0cdeu, 0x0bcd0f12u,
                                        0x0ef10345u, 0x02340678u, 0x056709abu, 0x089a0cdeu};
    static const int32_t g_idx[8] = {1, 1, 1, 1, 0, 0, 0, 0};
    check_hand(perm, 0, qweight, in_order, g_idx);
}

static void test_pack_rope_rows(void **state)
{
    (void)state;
    /* heads of 4 rows: transformers row c of a head is model row 0, 2, 1, 3 */
    static const uint32_t qweight[8] = {0x87604320u, 0xedc0a980u, 0xba907650u, 0x21f0dcb0u,
                                        0x54301fe0u, 0xba907650u, 0x87604320u, 0xedc0a980u};
    static const int rows[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    check_hand(NULL, 4, qweight, rows, two_groups);
}

/* The 3-bit case: 32 outputs x 32 inputs, int3 g16 sym_gptq (z = 4, s = 2 amax / 7). Even
 * outputs have codes j % 8 along the input, odd ones 7 - j % 8; code k is the weight (k - 4) s
 * except code 0, which is -3.5 s (the amax: round(-3.5) = -4 to even). s of output r, group g
 * is (1 + r + 32 g) / 4 (exact in fp16). */
static int code3(int r, int j)
{
    return r % 2 ? 7 - j % 8 : j % 8;
}

static float hand_weight3(int r, int j)
{
    float s = (float)(1 + r + 32 * (j / 16)) / 4.0f;
    int k = code3(r, j);
    return k == 0 ? -3.5f * s : (float)(k - 4) * s;
}

static void test_pack_3bit(void **state)
{
    (void)state;
    gq_quantizer q;
    gq_error err = {{0}};
    json_t *p = json_pack("{s:i,s:i,s:s}", "bits", 3, "group_size", 16, "zero", "sym_gptq");
    assert_int_equal(gq_quantizer_init(&q, "int", p, "test", &err), 0);
    json_decref(p);
    static float w[32 * 32];
    static uint8_t codes[4096];
    for (int r = 0; r < 32; r++)
        for (int j = 0; j < 32; j++)
            w[r * 32 + j] = hand_weight3(r, j);
    assert_true(gq_quantizer_bytes(&q, 32, 32) <= sizeof codes);
    assert_int_equal(q.fmt->quantize(q.params, w, 32, 32, NULL, codes, NULL, &err), 0);
    gq_gptq_linear l;
    assert_int_equal(gq_gptq_pack(&q, codes, NULL, 32, 32, 0, &l, &err), 0);
    gq_quantizer_free(&q);
    assert_int_equal(l.bits, 3);
    assert_int_equal(l.groups, 2);
    /* qweight (3, 32): column c is one 96-bit stream of output c's 32 codes, input j in bits
     * [3j, 3j + 3), stream bit n in word n / 32 at bit n % 32. Codes 0..7 repeated make the
     * 24-bit pattern 0xfac688 (octal 76543210) every 24 bits, so word 0 = 0x88 | 0xfac688
     * (input 10's code 2 = 0b010 crosses into word 1 at bit 30), word 1 = 0xc688 | 0xfac6
     * (input 21's code 5 = 0b101 crosses at bit 63), word 2 = 0xfac688 | 0xfa; odd outputs
     * (7 - code) are the complements. */
    static const uint32_t even[3] = {0x88fac688u, 0xc688fac6u, 0xfac688fau};
    static const uint32_t odd[3] = {0x77053977u, 0x39770539u, 0x05397705u};
    for (int c = 0; c < 32; c++)
        for (int i = 0; i < 3; i++)
            if ((uint32_t)l.qweight[i * 32 + c] != (c % 2 ? odd : even)[i])
                fail_msg("qweight[%d][%d] = 0x%08x", i, c, (uint32_t)l.qweight[i * 32 + c]);
    /* qzeros (2, 3): z - 1 = 3 = 0b011 for all 32 outputs: stream bits n with n % 3 != 2 set */
    static const uint32_t zeros[6] = {0xdb6db6dbu, 0xb6db6db6u, 0x6db6db6du,
                                      0xdb6db6dbu, 0xb6db6db6u, 0x6db6db6du};
    assert_words(l.qzeros, zeros, 6);
    for (int g = 0; g < 2; g++)
        for (int c = 0; c < 32; c++)
            assert_true(gq_fp16_to_fp32(l.scales[g * 32 + c]) == (float)(1 + c + 32 * g) / 4.0f);
    for (int j = 0; j < 32; j++)
        assert_int_equal(l.g_idx[j], j / 16);
    gq_gptq_linear_free(&l);
}

/* Bits [pos, pos + bits) of a little-endian stream whose word n is w[n * stride]. */
static uint32_t stream_bits(const uint32_t *w, size_t stride, size_t pos, int bits)
{
    uint64_t two = w[pos / 32 * stride];
    if (pos % 32 + (size_t)bits > 32)
        two |= (uint64_t)w[(pos / 32 + 1) * stride] << 32;
    return (uint32_t)(two >> (pos % 32)) & ((1u << bits) - 1u);
}

/* Weight (c, j) of a GPTQ v1 linear: scale * (q - (stored zero + 1)), the group from g_idx. */
static float gptq_weight(const gq_st_file *f, const char *prefix, int bits, int rows, int cols,
                         int c, int j)
{
    (void)cols;
    const uint32_t *qw = ckpt_part(f, prefix, "qweight")->data;
    const uint32_t *qz = ckpt_part(f, prefix, "qzeros")->data;
    const uint16_t *sc = ckpt_part(f, prefix, "scales")->data;
    const int32_t *gi = ckpt_part(f, prefix, "g_idx")->data;
    int g = gi[j];
    int q = (int)stream_bits(qw + c, (size_t)rows, (size_t)j * bits, bits);
    int z = (int)stream_bits(qz + (size_t)g * ((size_t)rows * bits / 32), 1, (size_t)c * bits,
                             bits) + 1;
    return gq_fp16_to_fp32(sc[(size_t)g * rows + c]) * (float)(q - z);
}

static void round_trip(const char *model, const char *settings, int bits, const char *desc_act)
{
    char *ck = ckpt_round_trip("gptq", model, settings, bits, gptq_weight);
    ckpt_assert_config(ck, "desc_act", desc_act);
    char bits_text[8];
    snprintf(bits_text, sizeof bits_text, "%d", bits);
    ckpt_assert_config(ck, "bits", bits_text);
    ckpt_assert_config(ck, "checkpoint_format", "\"gptq\"");
    test_remove_dir(ck);
}

static void test_round_trips(void **state)
{
    (void)state;
    test_assets_or_skip();
    static const struct { const char *model, *settings, *desc_act; int bits; } cases[] = {
        {"tinystories-3M", "--method gptq " INT4_G32, "false", 4},
        {"tinystories-3M", "--method gptq --method-set act_order=true " INT4_G32, "true", 4},
        /* RTN's codes; 3 bits: 32 codes in 3 words */
        {"tinystories-3M", "--method rtn --set bits=3 --set group_size=64 --set zero=sym_gptq",
         "false", 3},
        /* stories260K's 172-wide MLP holds int8 per channel (4 codes per word), zero sym */
        {"stories260K", "--method rtn --set bits=8 --set granularity=channel --set zero=sym",
         "false", 8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        round_trip(cases[i].model, cases[i].settings, cases[i].bits, cases[i].desc_act);
}

static void test_refusals(void **state)
{
    (void)state;
    test_assets_or_skip();
    static const struct { const char *args, *want; } cases[] = {
        {"--method rtn --quant int --set bits=4 --set zero=sym_gptq --set granularity=channel",
         "layers.0.mlp.gate_proj: (172, 64) is not whole int32 words of 8 4-bit codes"},
        {"--method rtn --quant int --set bits=8 --set zero=sym_gptq --set group_size=32",
         "layers.0.mlp.down_proj: group_size 32 does not divide its 172 input columns"},
        {"--method rtn --quant int --set bits=4", "zero asym: checkpoint_format gptq (v1)"},
        {"--method rtn --quant int --set bits=3 --set group_size=32 --set zero=sym_gptq",
         "layers.0.mlp.gate_proj: (172, 64) is not whole int32 words of 32 3-bit codes"},
        {"--method rtn --quant int --set bits=5 --set zero=sym_gptq", "GPTQ packs 2, 3, 4 or 8"},
        {"--method rtn --quant int --set bits=4 --set zero=sym_gptq",
         "layers.0.attn.q_proj: group_size 128 does not divide its 64 input columns"},
        {"--method rtn --quant int --set bits=8 --set zero=sym --set granularity=channel "
         "--set scale_dtype=fp32", "scale_dtype fp32: GPTQ stores fp16 scales"},
        {"--method rtn --quant q4_0", "format q4_0: GPTQ checkpoints hold int codes only"},
        {"--method rtn --quant int --set bits=8 --set zero=sym --set granularity=channel "
         "--rule 'layers.1.*=fp'", "layers.1.attn.q_proj: kept in float"},
        {"--method rtn --quant int --set bits=8 --set zero=sym --set granularity=channel "
         "--rule 'layers.1.attn.*={\"name\":\"int\",\"bits\":4,\"zero\":\"sym\",\"granularity\":"
         "\"channel\"}'", "layers.1.attn.q_proj: settings differ"},
        {"--method rtn --quant int --set bits=8 --set zero=sym --set granularity=channel "
         "--rule 'classifier={\"name\":\"int\"}'", "GPTQ checkpoints keep the embeddings"},
        {"--method affinequant --quant int --set bits=8 --set zero=sym", "explicit input transforms"},
        {"--method rtn --quant int --float-type f32", "--float-type: GPTQ checkpoints store"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ckpt_assert_refused("gptq", cases[i].args, cases[i].want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_hand_built),
        cmocka_unit_test(test_pack_act_order),
        cmocka_unit_test(test_pack_rope_rows),
        cmocka_unit_test(test_pack_3bit),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_refusals),
    };
    test_setup_assets();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
