/* GPTQ and AWQ checkpoints built by hand in a tiny model directory (dim 32, hidden 64, one
 * layer, every width whole int32 words of 3-bit codes), their int32 words packed here from the published layouts, not by gq-bench's code:
 *   AWQ GEMM: qweight (in, out/8), nibble i of a word holds output order[i] of its 8 with
 *     order = 0, 2, 4, 6, 1, 3, 5, 7; qzeros (groups, out/8) likewise; w = (q - z) * scale;
 *   GPTQ 3-bit: AutoGPTQ's procedure for each 32 input rows and 3 words (10 codes, one code
 *     split across the word boundary, 10 codes, another split, 10 codes), zeros stored minus
 *     one (v1), a desc_act g_idx that permutes the groups.
 * Loading must give w = scale * (q - z) (scale fp16) for every output, with q and k rows moved
 * to llama2.c's RoPE order; then refusals of inconsistent directories. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/gq_half.h"
#include "model/gq_hf.h"
#include "model/gq_hf_packed.h"
#include "qmodel/gq_qmodel.h"
#include "test_support.h"

enum { GS = 8 };
static const gq_config TINY = {.dim = 32, .hidden_dim = 64, .n_layers = 1, .n_heads = 4,
                               .n_kv_heads = 4, .vocab_size = 16, .seq_len = 16,
                               .family = GQ_FAMILY_LLAMA};

/* The hand-built codes, zero points and scales of output c, input j (group g). */
static uint32_t code_of(int bits, int c, int j) { return (uint32_t)(c + 3 * j) % (1u << bits); }
static int32_t zero_of(int bits, int c, int g) { return (c + 5 * g) % ((1 << bits) - 1) + 1; }
static uint16_t scale_of(int c, int g) { return gq_fp32_to_fp16((float)(1 + (c + g) % 4) / 8.0f); }

/* GPTQ act_order: input j belongs to group g_idx(j) (a bijection j -> 5j mod cols keeps every
 * group GS columns). */
static int g_idx_of(int j, int cols) { return (5 * j) % cols / GS; }

typedef struct {
    bool awq;
    const char *corrupt; /* NULL, or which tensor part to damage (refusal tests) */
} hand_ctx;

static void blob(gq_st_blob *b, const char *prefix, const char *part, gq_st_dtype t, int ndim,
                 int64_t d0, int64_t d1, void *data)
{
    memset(b, 0, sizeof *b);
    snprintf(b->name, sizeof b->name, "%s.%s", prefix, part);
    b->dtype = t, b->ndim = ndim, b->shape[0] = d0, b->shape[1] = d1, b->data = data;
}

/* AWQ words of one linear: word [row][k] packs outputs 8k .. 8k+7 of `row` in AWQ's order. */
static uint32_t *awq_words(int n_rows, int out, uint32_t (*val)(int row, int c))
{
    static const int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    uint32_t *w = calloc((size_t)n_rows * (out / 8), sizeof *w);
    for (int r = 0; r < n_rows; r++)
        for (int k = 0; k < out / 8; k++)
            for (int i = 0; i < 8; i++)
                w[(size_t)r * (out / 8) + k] |= val(r, 8 * k + order[i]) << (4 * i);
    return w;
}
static uint32_t awq_code(int j, int c) { return code_of(4, c, j); }
static uint32_t awq_zero(int g, int c) { return (uint32_t)zero_of(4, c, g); }

/* AutoGPTQ's 3-bit packing of one column of 32*n codes into 3*n words (stride apart). */
static void gptq3_column(const uint32_t *v, int n_codes, uint32_t *w, size_t stride)
{
    for (int i = 0, row = 0; i < n_codes; row += 3) {
        uint32_t *w0 = &w[(size_t)row * stride], *w1 = w0 + stride, *w2 = w1 + stride;
        for (int j = 0; j < 10; j++)
            *w0 |= v[i + j] << (3 * j);
        i += 10;
        *w0 |= v[i] << 30;
        *w1 |= (v[i] >> 2) & 1u;
        i++;
        for (int j = 0; j < 10; j++)
            *w1 |= v[i + j] << (3 * j + 1);
        i += 10;
        *w1 |= v[i] << 31;
        *w2 |= (v[i] >> 1) & 3u;
        i++;
        for (int j = 0; j < 10; j++)
            *w2 |= v[i + j] << (3 * j + 2);
        i += 10;
    }
}

static int pack_awq(const gq_hf_linear_site *s, gq_st_blob *out, int *n)
{
    int groups = s->cols / GS;
    uint16_t *sc = malloc((size_t)groups * s->rows * 2);
    for (int g = 0; g < groups; g++)
        for (int c = 0; c < s->rows; c++)
            sc[(size_t)g * s->rows + c] = scale_of(c, g);
    blob(&out[0], s->prefix, "qweight", GQ_ST_I32, 2, s->cols, s->rows / 8,
         awq_words(s->cols, s->rows, awq_code));
    blob(&out[1], s->prefix, "qzeros", GQ_ST_I32, 2, groups, s->rows / 8,
         awq_words(groups, s->rows, awq_zero));
    blob(&out[2], s->prefix, "scales", GQ_ST_F16, 2, groups, s->rows, sc);
    *n = 3;
    return 0;
}

static int pack_gptq3(const gq_hf_linear_site *s, gq_st_blob *out, int *n)
{
    int groups = s->cols / GS, rows = s->rows, cols = s->cols;
    uint32_t *qw = calloc((size_t)cols * 3 / 32 * rows, 4), *qz = calloc((size_t)groups * rows * 3 / 32, 4);
    uint32_t *v = malloc((size_t)(cols > rows ? cols : rows) * 4);
    uint16_t *sc = malloc((size_t)groups * rows * 2);
    int32_t *gi = malloc((size_t)cols * 4);
    for (int c = 0; c < rows; c++) {
        for (int j = 0; j < cols; j++)
            v[j] = code_of(3, c, j);
        gptq3_column(v, cols, qw + c, (size_t)rows);
    }
    for (int g = 0; g < groups; g++) {
        for (int c = 0; c < rows; c++)
            v[c] = (uint32_t)(zero_of(3, c, g) - 1), sc[(size_t)g * rows + c] = scale_of(c, g);
        gptq3_column(v, rows, qz + (size_t)g * rows * 3 / 32, 1);
    }
    for (int j = 0; j < cols; j++)
        gi[j] = g_idx_of(j, cols);
    free(v);
    blob(&out[0], s->prefix, "qweight", GQ_ST_I32, 2, cols * 3 / 32, rows, qw);
    blob(&out[1], s->prefix, "qzeros", GQ_ST_I32, 2, groups, rows * 3 / 32, qz);
    blob(&out[2], s->prefix, "scales", GQ_ST_F16, 2, groups, rows, sc);
    blob(&out[3], s->prefix, "g_idx", GQ_ST_I32, 1, cols, 0, gi);
    *n = 4;
    return 0;
}

/* Damages one part of layer 0's q_proj for a refusal test. */
static void corrupt(const hand_ctx *x, const gq_hf_linear_site *s, gq_st_blob *out, int *n)
{
    if (!x->corrupt || s->kind != GQ_LIN_Q)
        return;
    if (strcmp(x->corrupt, "g_idx") == 0)
        ((int32_t *)out[3].data)[5] = 99;
    else if (strcmp(x->corrupt, "scales") == 0)
        out[2].shape[1] = s->rows / 2, out[2].dtype = GQ_ST_F16;
    else if (strcmp(x->corrupt, "qzeros") == 0)
        free(out[1].data), out[1] = out[--*n]; /* drop qzeros */
}

static int pack(void *pv, const gq_hf_linear_site *s, gq_st_blob *out, int *n, gq_error *err)
{
    (void)err;
    const hand_ctx *x = pv;
    int rc = x->awq ? pack_awq(s, out, n) : pack_gptq3(s, out, n);
    corrupt(x, s, out, n);
    return rc;
}

/* The tiny model directory; returns its path (test_remove_dir frees it). */
static char *make_dir(const hand_ctx *x, const char *qconfig)
{
    gq_model m;
    gq_error err = {{0}};
    assert_int_equal(gq_model_alloc(&TINY, &m, &err), 0);
    for (size_t i = 0; i < m.heap_floats; i++)
        m.heap[i] = (float)((int)(i % 13) - 6) / 16.0f;
    char *dir = test_tmpdir("ckpt-hand");
    if (gq_model_save_hf_packed(&m, dir, GQ_ST_F32, qconfig, pack, (void *)x, &err))
        fail_msg("%s", err.msg);
    gq_model_free(&m);
    return dir;
}

static const char AWQ_CONFIG[] = "{\"quant_method\":\"awq\",\"bits\":4,\"group_size\":8,"
                                 "\"zero_point\":true,\"version\":\"gemm\"}";
static const char GPTQ3_CONFIG[] = "{\"quant_method\":\"gptq\",\"bits\":3,\"group_size\":8,"
                                   "\"desc_act\":true,\"sym\":false,"
                                   "\"checkpoint_format\":\"gptq\"}";

/* Every loaded linear equals scale * (q - z) of the hand-built values. */
static void assert_weights(const gq_model *m, int bits, bool act_order)
{
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        int rows, cols, hs = k == GQ_LIN_Q || k == GQ_LIN_K ? 8 : 0;
        gq_linear_shape(&m->cfg, (gq_linear_kind)k, &rows, &cols);
        for (int c = 0; c < rows; c++)
            for (int j = 0; j < cols; j++) {
                int g = act_order ? g_idx_of(j, cols) : j / GS;
                float want = gq_fp16_to_fp32(scale_of(c, g)) *
                             (float)((int)code_of(bits, c, j) - zero_of(bits, c, g));
                float got = m->layers[0].w[k][(size_t)gq_hf_model_row(c, hs) * cols + j];
                if (got != want)
                    fail_msg("linear %d output %d input %d: %g, want %g", k, c, j, got, want);
            }
    }
}

static void test_awq_hand(void **state)
{
    (void)state;
    /* the published order on one word: outputs 0..7 holding codes 0..7 */
    uint32_t *w = awq_words(1, 8, awq_code);
    assert_int_equal(w[0], 0x75316420u);
    free(w);
    hand_ctx x = {true, NULL};
    char *dir = make_dir(&x, AWQ_CONFIG);
    gq_model m;
    gq_qcodes q;
    gq_error err = {{0}};
    if (gq_model_open_any(dir, &m, &q, &err))
        fail_msg("%s", err.msg);
    assert_string_equal(q.source, "awq");
    assert_weights(&m, 4, false);
    gq_packed_model pm;
    char why[256];
    /* groups of 8 columns have no packed kernel: said, nothing built */
    assert_int_equal(gq_qcodes_packed_build(&m, &q, &pm, why, sizeof why, &err), 0);
    assert_null(pm.lin);
    assert_non_null(strstr(why, "group"));
    gq_qcodes_free(&q);
    gq_model_free(&m);
    test_remove_dir(dir);
}

static void test_gptq3_hand(void **state)
{
    (void)state;
    hand_ctx x = {false, NULL};
    char *dir = make_dir(&x, GPTQ3_CONFIG);
    gq_model m;
    gq_qcodes q;
    gq_error err = {{0}};
    if (gq_model_open_any(dir, &m, &q, &err))
        fail_msg("%s", err.msg);
    assert_string_equal(q.source, "gptq");
    assert_non_null(q.perm[0]); /* desc_act: the codes are in group order */
    assert_weights(&m, 3, true);
    gq_qcodes_free(&q);
    gq_model_free(&m);
    test_remove_dir(dir);
}

/* One refused directory: gq_model_open_any fails naming `want`, and eval exits 2. */
static void expect_refused(const hand_ctx *x, const char *qconfig, const char *want)
{
    char *dir = make_dir(x, qconfig);
    gq_model m;
    gq_error err = {{0}};
    if (gq_model_open_any(dir, &m, NULL, &err) == 0)
        fail_msg("loaded, expected a refusal naming '%s'", want);
    if (!strstr(err.msg, want))
        fail_msg("refusal '%s' does not name '%s'", err.msg, want);
    char out[4096], errb[4096], other[4200];
    snprintf(other, sizeof other, "%s/other.txt", dir); /* tokenizer and text: never reached */
    test_write_text(other, "x");
    int rc = test_run_clif(out, sizeof out, errb, sizeof errb,
                           "eval --model '%s' --tokenizer '%s' --data '%s'", dir, other, other);
    if (rc != 2 || !strstr(errb, want))
        fail_msg("eval: exit %d, stderr %s", rc, errb);
    test_remove_dir(dir);
}

static void test_refusals(void **state)
{
    (void)state;
    hand_ctx awq = {true, NULL}, gptq = {false, NULL};
    hand_ctx bad_gidx = {false, "g_idx"}, bad_scales = {false, "scales"},
             no_zeros = {true, "qzeros"};
    expect_refused(&bad_gidx, GPTQ3_CONFIG,
                   "model.layers.0.self_attn.q_proj.g_idx: entry 5 is 99, outside 0..3");
    expect_refused(&bad_scales, GPTQ3_CONFIG,
                   "tensor model.layers.0.self_attn.q_proj.scales is F16 [4, 16], expected F16 "
                   "[4, 32]");
    expect_refused(&no_zeros, AWQ_CONFIG,
                   "model.safetensors: missing tensor model.layers.0.self_attn.q_proj.qzeros");
    expect_refused(&gptq, "{\"quant_method\":\"gptq\",\"bits\":5,\"group_size\":8}",
                   "quantization_config.bits 5: GPTQ packs 2, 3, 4 or 8 bits");
    expect_refused(&gptq, "{\"quant_method\":\"gptq\",\"bits\":3,\"group_size\":8,"
                          "\"checkpoint_format\":\"marlin\"}", "checkpoint_format \"marlin\"");
    expect_refused(&awq, "{\"quant_method\":\"awq\",\"bits\":4,\"group_size\":8,"
                         "\"zero_point\":true,\"version\":\"gemv\"}",
                   "version \"gemv\": only AWQ's \"gemm\" layout");
    expect_refused(&awq, "{\"quant_method\":\"awq\",\"bits\":4,\"group_size\":8,"
                         "\"zero_point\":false,\"version\":\"gemm\"}", "zero_point must be true");
    expect_refused(&awq, "{\"quant_method\":\"bitsandbytes\"}",
                   "quant_method \"bitsandbytes\" cannot be loaded");
    /* AWQ words read as GPTQ: qweight has the wrong shape */
    expect_refused(&awq, "{\"quant_method\":\"gptq\",\"bits\":4,\"group_size\":8}",
                   "tensor model.layers.0.self_attn.q_proj.qweight is I32 [32, 4], expected I32 "
                   "[4, 32]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_awq_hand),
        cmocka_unit_test(test_gptq3_hand),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
