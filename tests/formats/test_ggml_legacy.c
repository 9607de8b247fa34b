/* llama.cpp legacy block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, MXFP4): byte-exact quantization
 * and bit-exact dequantization against ggml's reference vectors (tests/data/ggml), padding of
 * short rows, the group interface, AVX2 vs scalar dequantization, and input errors. */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_half.h"
#include "core/gq_rng.h"
#include "formats/ggml_legacy.h"
#include "formats/gq_format.h"
#include "ggml_cases.h"

/* Vector file type name -> registered format name (NULL: not one of ours). */
static const char *format_for_type(const char *type)
{
    static const char *const ours[][2] = {{"q4_0", "q4_0"}, {"q4_1", "q4_1"},
                                          {"q5_0", "q5_0"}, {"q5_1", "q5_1"},
                                          {"q8_0", "q8_0"}, {"mxfp4", "mxfp4_ggml"}};
    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++)
        if (strcmp(type, ours[i][0]) == 0)
            return ours[i][1];
    return NULL;
}

/* Position of a vector type in the per-type counters of test_reference_vectors. */
static int type_index(const char *type)
{
    static const char *const order[6] = {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "mxfp4"};
    for (int k = 0; k < 6; k++)
        if (strcmp(order[k], type) == 0)
            return k;
    fail_msg("unexpected type %s", type);
    return 0;
}

/* Fails with the first differing byte, located by row, block and byte within the block
 * (ggml_bytes_check; 32 values per block). */
static void expect_same_codes(const char *what, const ggml_case *c, const uint8_t *got,
                              const uint8_t *want, size_t n)
{
    const size_t row_bytes = (size_t)c->row_bytes, block_bytes = row_bytes * 32 / (size_t)c->cols;
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i])
            fail_msg("%s: first differing byte %zu (row %zu, block %zu, byte %zu): got 0x%02x, "
                     "ggml 0x%02x",
                     what, i, i / row_bytes, (i % row_bytes) / block_bytes,
                     (i % row_bytes) % block_bytes, got[i], want[i]);
}

static void count_case(const ggml_case *c, void *ctx)
{
    int (*checked)[2] = ctx; /* per type, per path (ref, imatrix) */
    checked[type_index(c->type)][c->imatrix ? 1 : 0]++;
}

static void test_reference_vectors(void **state)
{
    (void)state;
    int checked[6][2] = {{0}};
    ggml_check_cases(format_for_type, expect_same_codes, count_case, checked);
    /* every case shape (gauss, outlier, skewed, degenerate, wide) for every type; with importance
     * weights for Q4_0, Q4_1 and Q8_0 */
    for (int k = 0; k < 6; k++)
        assert_int_equal(checked[k][0], 5);
    assert_int_equal(checked[0][1], 5);
    assert_int_equal(checked[1][1], 5);
    assert_int_equal(checked[4][1], 5);
}

static const char *const all_formats[] = {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "mxfp4_ggml"};

static void fill_gauss(float *x, size_t n, uint64_t seed, double sd)
{
    gq_rng r;
    gq_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(sd * gq_rng_normal(&r));
}

/* A 3 x 40 matrix is stored as 3 x 64 with zero padding: same bytes as quantizing the padded
 * matrix, and the reconstruction of the 40 real columns, with and without importance. */
static void test_padding(void **state)
{
    (void)state;
    enum { R = 3, C = 40, P = 64 };
    float w[R * C], wp[R * P] = {0}, imp[C], impp[P] = {0};
    fill_gauss(w, R * C, 7, 0.05);
    for (int j = 0; j < C; j++)
        imp[j] = impp[j] = 0.5f + (float)(j % 7);
    for (int r = 0; r < R; r++)
        memcpy(wp + r * P, w + r * C, C * sizeof(float));
    for (size_t k = 0; k < sizeof all_formats / sizeof *all_formats; k++) {
        const gq_format *f = gq_format_find(all_formats[k]);
        assert_non_null(f);
        size_t bytes = f->storage_bytes(NULL, R, C);
        assert_int_equal(bytes, f->storage_bytes(NULL, R, P));
        for (int with_imp = 0; with_imp < 2; with_imp++) {
            uint8_t a[R * 2 * 34], b[R * 2 * 34];
            float da[R * C], db[R * P];
            assert_true(bytes <= sizeof a);
            gq_error err;
            assert_int_equal(f->quantize(NULL, w, R, C, with_imp ? imp : NULL, a, da, &err), 0);
            assert_int_equal(f->quantize(NULL, wp, R, P, with_imp ? impp : NULL, b, db, &err), 0);
            assert_memory_equal(a, b, bytes);
            for (int r = 0; r < R; r++)
                assert_memory_equal(da + r * C, db + r * P, C * sizeof(float));
            /* deq without codes and dequantize() agree with the above */
            float dc[R * C];
            assert_int_equal(f->quantize(NULL, w, R, C, with_imp ? imp : NULL, NULL, dc, &err), 0);
            assert_memory_equal(dc, da, sizeof dc);
            assert_int_equal(f->dequantize(NULL, a, R, C, dc, &err), 0);
            assert_memory_equal(dc, da, sizeof dc);
        }
    }
}

/* The group interface (fit on a 32-column block, then element by element) reproduces the
 * reference-path row quantizer, including a short last segment of a 45-column row. */
static void test_group_interface(void **state)
{
    (void)state;
    enum { C = 45 };
    float w[C], deq[C];
    fill_gauss(w, C, 11, 0.1);
    w[3] = -0.9f; /* an outlier in the first block */
    for (size_t k = 0; k < sizeof all_formats / sizeof *all_formats; k++) {
        const gq_format *f = gq_format_find(all_formats[k]);
        assert_non_null(f->group_cols);
        assert_int_equal(f->group_cols(NULL, C), 32);
        assert_true(f->group_state_bytes <= 64);
        gq_error err;
        assert_int_equal(f->quantize(NULL, w, 1, C, NULL, NULL, deq, &err), 0);
        for (int g = 0; g < C; g += 32) {
            int n = C - g < 32 ? C - g : 32;
            _Alignas(16) unsigned char st[64];
            f->fit_group(NULL, w + g, n, NULL, st);
            for (int j = 0; j < n; j++) {
                float v = f->quant_elem(NULL, st, j, w[g + j]);
                if (memcmp(&v, &deq[g + j], sizeof v) != 0)
                    fail_msg("%s: column %d: group path %.9g, row path %.9g", all_formats[k],
                             g + j, (double)v, (double)deq[g + j]);
            }
            /* values far outside the fitted range saturate instead of wrapping */
            float big = f->quant_elem(NULL, st, 0, 1e6f), small = f->quant_elem(NULL, st, 0, -1e6f);
            assert_true(isfinite(big) && isfinite(small) && big >= small);
        }
    }
}

/* AVX2 dequantizers equal the scalar references on random blocks (every code value, random
 * fp16 scales including subnormals). */
static void test_avx2_matches_scalar(void **state)
{
    (void)state;
#if GQ_HAVE_AVX2_DEQUANT
    enum { NB = 257 };
    gq_rng r;
    gq_rng_seed(&r, 3);
    gq_block_q4_0 *b4 = malloc(NB * sizeof *b4);
    gq_block_q8_0 *b8 = malloc(NB * sizeof *b8);
    float *ya = malloc(NB * 32 * sizeof(float)), *yb = malloc(NB * 32 * sizeof(float));
    assert_true(b4 && b8 && ya && yb);
    for (int i = 0; i < NB; i++) {
        uint16_t h;
        do
            h = (uint16_t)gq_rng_below(&r, 65536);
        while ((h & 0x7c00) == 0x7c00); /* finite scales */
        b4[i].d = b8[i].d = h;
        for (int j = 0; j < 16; j++)
            b4[i].qs[j] = (uint8_t)gq_rng_below(&r, 256);
        for (int j = 0; j < 32; j++)
            b8[i].qs[j] = (int8_t)(gq_rng_below(&r, 256) - 128);
    }
    gq_dequant_row_q4_0_ref(b4, NB * 32, ya);
    gq_dequant_row_q4_0_avx2(b4, NB * 32, yb);
    assert_memory_equal(ya, yb, NB * 32 * sizeof(float));
    gq_dequant_row_q8_0_ref(b8, NB * 32, ya);
    gq_dequant_row_q8_0_avx2(b8, NB * 32, yb);
    assert_memory_equal(ya, yb, NB * 32 * sizeof(float));
    free(b4);
    free(b8);
    free(ya);
    free(yb);
#else
    skip();
#endif
}

static void test_storage_and_errors(void **state)
{
    (void)state;
    static const struct { const char *name; double bpw; } bpw[] = {
        {"q4_0", 4.5}, {"q4_1", 5.0}, {"q5_0", 5.5}, {"q5_1", 6.0}, {"q8_0", 8.5},
        {"mxfp4_ggml", 4.25}};
    for (size_t k = 0; k < sizeof bpw / sizeof *bpw; k++) {
        gq_quantizer q;
        gq_error err;
        assert_int_equal(gq_quantizer_init(&q, bpw[k].name, NULL, NULL, &err), 0);
        assert_true(gq_quantizer_bpw(&q, 64, 4096) == bpw[k].bpw);
        char label[64];
        gq_quantizer_label(&q, label, sizeof label);
        assert_string_equal(label, bpw[k].name);
        /* unknown parameters are rejected */
        json_t *p = json_pack("{s:i}", "bits", 4);
        gq_quantizer bad;
        assert_int_not_equal(gq_quantizer_init(&bad, bpw[k].name, p, "$.format", &err), 0);
        json_decref(p);

        float w[64] = {0}, imp[64];
        for (int j = 0; j < 64; j++)
            imp[j] = 1;
        float deq[64];
        w[37] = NAN;
        assert_int_not_equal(gq_quantizer_run(&q, w, 1, 64, NULL, NULL, deq, &err), 0);
        assert_non_null(strstr(err.msg, "column 37"));
        w[37] = 0;
        imp[5] = -1;
        assert_int_not_equal(gq_quantizer_run(&q, w, 1, 64, imp, NULL, deq, &err), 0);
        assert_non_null(strstr(err.msg, "imatrix[5]"));
        gq_quantizer_free(&q);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_vectors),
        cmocka_unit_test(test_padding),
        cmocka_unit_test(test_group_interface),
        cmocka_unit_test(test_avx2_matches_scalar),
        cmocka_unit_test(test_storage_and_errors),
    };
    return cmocka_run_group_tests_name("ggml_legacy", tests, NULL, NULL);
}
