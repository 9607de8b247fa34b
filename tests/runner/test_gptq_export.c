/* GPTQ checkpoints (runner/gq_gptq_export.h): a hand-built int4 linear whose int32 words are
 * written out below from the AutoGPTQ layout (not from the packer); round trips of
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

static char out[65536], errb[16384];

static const gq_st_tensor *tensor(const gq_st_file *f, const char *prefix, const char *part)
{
    char name[160];
    snprintf(name, sizeof name, "%s.%s", prefix, part);
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0)
            return &f->t[i];
    fail_msg("%s: missing tensor %s", f->path, name);
    return NULL;
}

/* Weight (c, j) of a GPTQ v1 linear: scale * (q - (stored zero + 1)), the group from g_idx. */
static float gptq_weight(const gq_st_file *f, const char *prefix, int bits, int rows, int c,
                         int j)
{
    const int per = 32 / bits;
    const uint32_t mask = (1u << bits) - 1u;
    const uint32_t *qw = tensor(f, prefix, "qweight")->data;
    const uint32_t *qz = tensor(f, prefix, "qzeros")->data;
    const uint16_t *sc = tensor(f, prefix, "scales")->data;
    const int32_t *gi = tensor(f, prefix, "g_idx")->data;
    int g = gi[j];
    int q = (int)((qw[(size_t)(j / per) * rows + c] >> (bits * (j % per))) & mask);
    int z = (int)((qz[(size_t)g * (rows / per) + c / per] >> (bits * (c % per))) & mask) + 1;
    return gq_fp16_to_fp32(sc[(size_t)g * rows + c]) * (float)(q - z);
}

/* Every block linear of the checkpoint in dir equals the fake-quantized model's bit for bit. */
static void assert_checkpoint_equals(const char *dir, const gq_model *m, int bits)
{
    static const char *const hf[GQ_N_LINEAR] = {
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    char path[4300];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    gq_st_file f;
    gq_error err = {{0}};
    if (gq_st_open(path, &f, &err))
        fail_msg("%s", err.msg);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            char prefix[96];
            int rows, cols, hs = k == GQ_LIN_Q || k == GQ_LIN_K ? gq_head_size(&m->cfg) : 0;
            snprintf(prefix, sizeof prefix, "model.layers.%d.%s", l, hf[k]);
            gq_linear_shape(&m->cfg, (gq_linear_kind)k, &rows, &cols);
            assert_int_equal(tensor(&f, prefix, "qweight")->dtype, GQ_ST_I32);
            for (int c = 0; c < rows; c++)
                for (int j = 0; j < cols; j++) {
                    float w = gptq_weight(&f, prefix, bits, rows, c, j);
                    float want = m->layers[l].w[k][(size_t)gq_hf_model_row(c, hs) * cols + j];
                    if (memcmp(&w, &want, sizeof w) != 0)
                        fail_msg("%s (%d, %d): %.9g, fake-quantized %.9g", prefix, c, j, w,
                                 want);
                }
        }
    gq_st_close(&f);
}

/* quantization_config of dir/config.json has `key` equal to the JSON value text `want`. */
static void assert_config(const char *dir, const char *key, const char *want)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *root = json_load_file(path, 0, NULL), *v = json_loads(want, JSON_DECODE_ANY, NULL);
    assert_non_null(root);
    json_t *got = json_object_get(json_object_get(root, "quantization_config"), key);
    if (!json_equal(got, v))
        fail_msg("%s: quantization_config.%s is not %s", path, key, want);
    json_decref(root);
    json_decref(v);
}

static void round_trip(const char *model, const char *settings, int bits, const char *desc_act)
{
    char *dir = test_tmpdir("gptq-export"), *ck = dir; /* the checkpoint and q.bin beside it */
    char q[4200], text[4200];
    snprintf(q, sizeof q, "%s/q.bin", dir);
    /* a short calibration text keeps the runs quick: 2 windows of 32 tokens */
    snprintf(text, sizeof text, "%s/calib.txt", dir);
    char story[4096] = "";
    for (int i = 0; i < 40; i++)
        strcat(story, "Once upon a time, a little cat found a red ball in the park. ");
    test_write_text(text, story);
    char common[10240];
    snprintf(common, sizeof common,
             "--model assets:models/%s/%s.bin --tokenizer assets:models/%s/tok512.bin %s "
             "--calib-data '%s' --n-calib 2 --calib-ctx 32", model, model, model, settings, text);
    if (test_run_clif(out, sizeof out, errb, sizeof errb,
                      "export --format gptq %s --quant int --out '%s'",
                      common, ck) != 0 ||
        test_run_clif(out, sizeof out, errb, sizeof errb, "quantize %s --format int --out '%s'",
                      common, q) != 0)
        fail_msg("%s: %s", settings, errb);
    gq_model m;
    gq_error err = {{0}};
    if (gq_model_open_any(q, &m, NULL, &err))
        fail_msg("%s", err.msg);
    assert_checkpoint_equals(ck, &m, bits);
    assert_config(ck, "desc_act", desc_act);
    assert_config(ck, "bits", bits == 4 ? "4" : "8");
    assert_config(ck, "checkpoint_format", "\"gptq\"");
    gq_model_free(&m);
    test_remove_dir(dir);
}

static void test_round_trips(void **state)
{
    (void)state;
    test_assets_or_skip();
    static const struct { const char *model, *settings, *desc_act; int bits; } cases[] = {
        {"tinystories-3M", "--method gptq " INT4_G32, "false", 4},
        {"tinystories-3M", "--method gptq --method-set act_order=true " INT4_G32, "true", 4},
        {"tinystories-3M", "--method rtn " INT4_G32, "false", 4},
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
    char *dir = test_tmpdir("gptq-refuse");
    char ck[4200];
    snprintf(ck, sizeof ck, "%s/ckpt", dir);
    const char *model = "--model assets:models/stories260K/stories260K.bin --tokenizer "
                        "assets:models/stories260K/tok512.bin --eval-windows 4";
    static const struct { const char *args, *want; } cases[] = {
        {"--method rtn --quant int --set bits=4 --set zero=sym_gptq --set granularity=channel",
         "layers.0.mlp.gate_proj: (172, 64) is not whole int32 words of 8 4-bit codes"},
        {"--method rtn --quant int --set bits=8 --set zero=sym_gptq --set group_size=32",
         "layers.0.mlp.down_proj: group_size 32 does not divide its 172 input columns"},
        {"--method rtn --quant int --set bits=4", "zero asym: checkpoint_format gptq (v1)"},
        {"--method rtn --quant int --set bits=3 --set zero=sym_gptq", "int3: 3-bit codes"},
        {"--method rtn --quant int --set bits=5 --set zero=sym_gptq", "GPTQ packs 2, 3, 4 or 8"},
        {"--method rtn --quant int --set bits=8 --set zero=sym --set granularity=channel "
         "--set scale_dtype=fp32", "scale_dtype fp32: GPTQ stores fp16 scales"},
        {"--method rtn --quant q4_0", "format q4_0: a GPTQ checkpoint holds int codes only"},
        {"--method rtn --quant int --set bits=8 --set zero=sym --set granularity=channel "
         "--rule 'layers.1.*=fp'", "layers.1.attn.q_proj: kept in float"},
        {"--method rtn --quant int --set bits=8 --set zero=sym --set granularity=channel "
         "--rule 'layers.1.attn.*={\"name\":\"int\",\"bits\":4,\"zero\":\"sym\",\"granularity\":"
         "\"channel\"}'", "layers.1.attn.q_proj: settings differ"},
        {"--method rtn --quant int --set bits=8 --set zero=sym --set granularity=channel "
         "--rule 'classifier={\"name\":\"int\"}'", "a GPTQ checkpoint keeps the embeddings"},
        {"--method affinequant --quant int --set bits=8 --set zero=sym", "explicit input transforms"},
        {"--method rtn --quant int --float-type f32", "--float-type: a GPTQ checkpoint stores"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = test_run_clif(out, sizeof out, errb, sizeof errb,
                               "export --format gptq %s %s --out '%s'", model, cases[i].args, ck);
        if (rc != 2 || !strstr(errb, cases[i].want))
            fail_msg("case %zu: exit %d, stderr: %s", i, rc, errb);
        assert_int_equal(access(ck, F_OK), -1);
    }
    test_remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_hand_built),
        cmocka_unit_test(test_pack_act_order),
        cmocka_unit_test(test_pack_rope_rows),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_refusals),
    };
    test_setup_assets();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
