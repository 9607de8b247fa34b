/* llama.cpp K-quants (q2_K .. q6_K): byte-exact quantization and bit-exact dequantization
 * against the reference vectors of tests/data/ggml (both the _ref path and the imatrix path),
 * zero padding of short rows, and the group interface used by GPTQ. */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_rng.h"
#include "formats/ggml_kquants.h"
#include "formats/gq_format.h"
#include "ggml_cases.h"

#define QK_K 256

/* Byte ranges of each block field, to say where a mismatch is. */
typedef struct {
    const char *name;
    int start, end;
} field;

typedef struct {
    const char *type;
    int block_bytes;
    field fields[6];
} layout;

static const layout layouts[] = {
    {"q2_K", 84, {{"scales", 0, 16}, {"qs", 16, 80}, {"d", 80, 82}, {"dmin", 82, 84}}},
    {"q3_K", 110, {{"hmask", 0, 32}, {"qs", 32, 96}, {"scales", 96, 108}, {"d", 108, 110}}},
    {"q4_K", 144, {{"d", 0, 2}, {"dmin", 2, 4}, {"scales", 4, 16}, {"qs", 16, 144}}},
    {"q5_K", 176,
     {{"d", 0, 2}, {"dmin", 2, 4}, {"scales", 4, 16}, {"qh", 16, 48}, {"qs", 48, 176}}},
    {"q6_K", 210, {{"ql", 0, 128}, {"qh", 128, 192}, {"scales", 192, 208}, {"d", 208, 210}}},
};

static const layout *find_layout(const char *type)
{
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++)
        if (strcmp(layouts[i].type, type) == 0)
            return &layouts[i];
    return NULL;
}

static const gq_format *format(const char *name)
{
    const gq_format *f = gq_format_find(name);
    if (!f)
        fail_msg("format %s is not registered", name);
    return f;
}

/* Fails with the row, super-block and field of the first differing byte. */
static void expect_bytes(const char *what, const layout *lay, int row_bytes, const uint8_t *got,
                         const uint8_t *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (got[i] == want[i])
            continue;
        int row = (int)(i / (size_t)row_bytes), in_row = (int)(i % (size_t)row_bytes);
        int blk = in_row / lay->block_bytes, off = in_row % lay->block_bytes;
        const char *fname = "?";
        for (int f = 0; f < 6 && lay->fields[f].name; f++)
            if (off >= lay->fields[f].start && off < lay->fields[f].end)
                fname = lay->fields[f].name;
        fail_msg("%s: first difference at byte %zu (row %d, super-block %d, byte %d = %s): "
                 "got 0x%02x, ggml 0x%02x",
                 what, i, row, blk, off, fname, got[i], want[i]);
    }
}

/* expect_bytes as the reference-vector loop's byte check. */
static void expect_case_bytes(const char *what, const ggml_case *c, const uint8_t *got,
                              const uint8_t *want, size_t n)
{
    expect_bytes(what, find_layout(c->type), c->row_bytes, got, want, n);
}

/* The K-quant types of cases.tsv, by their registered names. */
static const char *kquant_format(const char *type) { return find_layout(type) ? type : NULL; }

static void count_case(const ggml_case *c, void *ctx)
{
    int *n = ctx; /* [0]: cases, [1]: with importance weights */
    n[0]++;
    n[1] += c->imatrix;
}

static void test_reference_vectors(void **state)
{
    (void)state;
    int checked[2] = {0, 0};
    ggml_check_cases(kquant_format, expect_case_bytes, count_case, checked);
    /* 5 cases x 5 types, each with and without importance weights */
    assert_int_equal(checked[0], 50);
    assert_int_equal(checked[1], 25);
}

static float *random_matrix(uint64_t seed, size_t n, float scale)
{
    gq_rng r;
    gq_rng_seed(&r, seed);
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) /* heavy tails, so that sub-block scales differ a lot */
        x[i] = scale * (float)gq_rng_student_t(&r, 4.0);
    return x;
}

static float *random_importance(uint64_t seed, int n)
{
    gq_rng r;
    gq_rng_seed(&r, seed);
    float *w = malloc((size_t)n * sizeof *w);
    for (int i = 0; i < n; i++)
        w[i] = (float)(gq_rng_uniform(&r) * gq_rng_uniform(&r) * 10.0);
    return w;
}

static const char *const ktypes[] = {"q2_K", "q3_K", "q4_K", "q5_K", "q6_K"};

/* A row that is not a multiple of 256 is quantized as if zero-padded (importance 0), and the
 * padding is stored. */
static void test_zero_padding(void **state)
{
    (void)state;
    const int rows = 3, cols = 300, pad = 512;
    float *x = random_matrix(7, (size_t)rows * cols, 0.05f);
    float *xp = calloc((size_t)rows * pad, sizeof *xp);
    for (int r = 0; r < rows; r++)
        memcpy(xp + (size_t)r * pad, x + (size_t)r * cols, (size_t)cols * sizeof *x);
    float *imp = random_importance(8, cols);
    float *impp = calloc(pad, sizeof *impp);
    memcpy(impp, imp, (size_t)cols * sizeof *imp);
    for (size_t t = 0; t < sizeof ktypes / sizeof ktypes[0]; t++) {
        const gq_format *f = format(ktypes[t]);
        const layout *lay = find_layout(ktypes[t]);
        size_t nbytes = f->storage_bytes(NULL, rows, cols);
        assert_int_equal(nbytes, (size_t)rows * 2 * lay->block_bytes);
        for (int with_imp = 0; with_imp < 2; with_imp++) {
            uint8_t *q = malloc(nbytes), *qp = malloc(nbytes);
            float *deq = malloc((size_t)rows * cols * sizeof *deq);
            float *deqp = malloc((size_t)rows * pad * sizeof *deqp);
            gq_error err = {0};
            assert_int_equal(f->quantize(NULL, x, rows, cols, with_imp ? imp : NULL, q, deq,
                                         &err), 0);
            assert_int_equal(f->quantize(NULL, xp, rows, pad, with_imp ? impp : NULL, qp,
                                         deqp, &err), 0);
            expect_bytes(ktypes[t], lay, 2 * lay->block_bytes, q, qp, nbytes);
            for (int r = 0; r < rows; r++)
                ggml_expect_floats(ktypes[t], deq + (size_t)r * cols, deqp + (size_t)r * pad,
                              (size_t)cols, cols);
            free(q);
            free(qp);
            free(deq);
            free(deqp);
        }
    }
    free(x);
    free(xp);
    free(imp);
    free(impp);
}

/* fit_group + quant_elem on each 256-column span reproduces quantize()'s reconstruction
 * exactly, including the short last span of a row, with and without importance weights. */
static void test_group_interface_matches_quantize(void **state)
{
    (void)state;
    const int rows = 4, cols = 1000; /* 3 full spans and one of 232 */
    float *x = random_matrix(11, (size_t)rows * cols, 0.02f);
    /* a sub-block of exact zeros and one constant sub-block exercise the degenerate paths */
    memset(x + 32, 0, 32 * sizeof *x);
    for (int i = 0; i < 32; i++)
        x[cols + 64 + i] = 0.25f;
    float *imp = random_importance(12, cols);
    for (size_t t = 0; t < sizeof ktypes / sizeof ktypes[0]; t++) {
        const gq_format *f = format(ktypes[t]);
        assert_non_null(f->fit_group);
        assert_non_null(f->quant_elem);
        assert_int_equal(f->group_cols(NULL, cols), QK_K);
        void *st = malloc(f->group_state_bytes);
        float *deq = malloc((size_t)rows * cols * sizeof *deq);
        for (int with_imp = 0; with_imp < 2; with_imp++) {
            const float *im = with_imp ? imp : NULL;
            gq_error err = {0};
            assert_int_equal(f->quantize(NULL, x, rows, cols, im, NULL, deq, &err), 0);
            for (int r = 0; r < rows; r++)
                for (int g = 0; g < cols; g += QK_K) {
                    int n = cols - g < QK_K ? cols - g : QK_K;
                    const float *xs = x + (size_t)r * cols + g;
                    f->fit_group(NULL, xs, n, im ? im + g : NULL, st);
                    for (int k = 0; k < n; k++) {
                        float got = f->quant_elem(NULL, st, k, xs[k]);
                        float want = deq[(size_t)r * cols + g + k];
                        if (got != want)
                            fail_msg("%s%s row %d col %d: group interface %.9g, quantize %.9g",
                                     ktypes[t], with_imp ? " imatrix" : "", r, g + k,
                                     (double)got, (double)want);
                    }
                    /* values far outside the span saturate to an end of the code range */
                    float hi = f->quant_elem(NULL, st, 0, 1e30f);
                    float lo = f->quant_elem(NULL, st, 0, -1e30f);
                    assert_true(isfinite(hi) && isfinite(lo) && hi >= lo);
                }
        }
        free(st);
        free(deq);
    }
    free(x);
    free(imp);
}

/* One sub-block of n values of a randomly chosen kind: heavy-tailed noise at a magnitude from
 * 1e-30 to 1e15, values on a coarse grid (rounding ties), zeros, a constant, alternating
 * +-tiny, a single non-zero, all-positive or all-negative values, a few values repeated. */
static void adversarial_subblock(gq_rng *r, int n, float *x)
{
    const int kind = (int)gq_rng_below(r, 9);
    const float mag = powf(10.f, (float)gq_rng_below(r, 46) - 30.f);
    const float c = (float)(gq_rng_uniform(r) - 0.5) * mag;
    for (int i = 0; i < n; i++) {
        float t = (float)gq_rng_student_t(r, 3.0) * mag;
        switch (kind) {
        case 0: x[i] = t; break;
        case 1: x[i] = 0.25f * (float)((int)gq_rng_below(r, 17) - 8); break; /* ties */
        case 2: x[i] = gq_rng_below(r, 4) ? 0.f : t; break;
        case 3: x[i] = c; break;
        case 4: x[i] = i % 2 ? 1e-8f : -1e-8f; break;
        case 5: x[i] = i == n / 3 ? c : 0.f; break;
        case 6: x[i] = fabsf(t); break;
        case 7: x[i] = -fabsf(t); break;
        default: x[i] = i > 0 && gq_rng_below(r, 2) ? x[i - 1] : t; break;
        }
    }
}

/* n weights: none (NULL), random with some exact zeros, all equal, or all zero. */
static const float *adversarial_weights(gq_rng *r, int n, float *w)
{
    const int kind = (int)gq_rng_below(r, 4);
    if (kind == 0)
        return NULL;
    for (int i = 0; i < n; i++)
        w[i] = kind == 1 ? (gq_rng_below(r, 5) ? (float)(gq_rng_uniform(r) * 4.0) : 0.f)
                         : kind == 2 ? 0.5f
                                     : 0.f;
    return w;
}

static void expect_same_float(const char *what, int seed, int lane, float got, float want)
{
    if (memcmp(&got, &want, sizeof got) != 0)
        fail_msg("%s, batch %d, sub-block %d: batched %.9g, scalar %.9g", what, seed, lane,
                 (double)got, (double)want);
}

static void expect_same_levels(const char *what, int seed, int lane, const uint8_t *got,
                               const uint8_t *want, int n)
{
    for (int i = 0; i < n; i++)
        if (got[i] != want[i])
            fail_msg("%s, batch %d, sub-block %d, element %d: batched level %d, scalar %d",
                     what, seed, lane, i, got[i], want[i]);
}

/* The batched searches (sub-blocks in the AVX2 float lanes) against the scalar ggml searches, one
 * sub-block at a time, bit for bit, with the parameters of every K-quant path. */
static void test_batched_searches_match_scalar(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        int n, nmax;
        float rmin, rdelta;
        int nstep;
        bool use_mad, v3;
    } qkx[] = {
        {"qkx2 q2_K", 16, 3, -0.5f, 0.1f, 15, true, false},
        {"qkx2 q4_K", 32, 15, -1.f, 0.1f, 20, false, false},
        {"qkx2 q5_K", 32, 31, -0.5f, 0.1f, 15, false, false},
        {"qkx3 q2_K", 16, 3, -0.9f, 0.05f, 36, false, true},
        {"qkx3 q4_K", 32, 15, -0.9f, 0.05f, 36, false, true},
        {"qkx3 q5_K", 32, 31, -0.9f, 0.05f, 36, false, true},
    };
    static const struct {
        const char *what;
        int n, nmax;
    } qx[] = {{"qx q6_K", 16, 32}, {"qx q3_K", 16, 4}};
    /* 8, 16 and 24 sub-blocks per call: one vector, two vectors, and two then one */
    float x[24 * 32], wbuf[24 * 32], sb[24], mb[24];
    uint8_t Lb[24 * 32], Ls[32], Laux[32];
    gq_rng r;
    gq_rng_seed(&r, 2024);
    for (int seed = 0; seed < 300; seed++) {
        const int nsub = 8 * (1 + seed % 3);
        for (size_t c = 0; c < sizeof qkx / sizeof qkx[0]; c++) {
            const int n = qkx[c].n;
            for (int j = 0; j < nsub; j++)
                adversarial_subblock(&r, n, x + n * j);
            const float *w = adversarial_weights(&r, nsub * n, wbuf);
            gq_kq_qkx_quants_batch(nsub, n, qkx[c].nmax, x, w, Lb, sb, mb, qkx[c].rmin,
                                   qkx[c].rdelta, qkx[c].nstep, qkx[c].use_mad, qkx[c].v3);
            for (int j = 0; j < nsub; j++) {
                float m;
                float sc = (qkx[c].v3 ? gq_make_qkx3_quants : gq_make_qkx2_quants)(
                    n, qkx[c].nmax, x + n * j, w ? w + n * j : NULL, Ls, &m, Laux, qkx[c].rmin,
                    qkx[c].rdelta, qkx[c].nstep, qkx[c].use_mad);
                expect_same_float(qkx[c].what, seed, j, sb[j], sc);
                expect_same_float(qkx[c].what, seed, j, mb[j], m);
                expect_same_levels(qkx[c].what, seed, j, Lb + n * j, Ls, n);
            }
        }
        for (size_t c = 0; c < sizeof qx / sizeof qx[0]; c++) {
            const int n = qx[c].n;
            for (int j = 0; j < nsub; j++)
                adversarial_subblock(&r, n, x + n * j);
            const float *w = adversarial_weights(&r, nsub * n, wbuf);
            gq_kq_qx_quants_batch(nsub, n, qx[c].nmax, x, w, (int8_t *)Lb, sb);
            for (int j = 0; j < nsub; j++) {
                float sc = gq_make_qx_quants(n, qx[c].nmax, x + n * j, (int8_t *)Ls, 1,
                                             w ? w + n * j : NULL);
                expect_same_float(qx[c].what, seed, j, sb[j], sc);
                expect_same_levels(qx[c].what, seed, j, Lb + n * j, Ls, n);
            }
        }
    }
}

/* The re-quantization of a sub-block (gq_kq_levels, 8 values per AVX2 vector) gives
 * gq_kq_level's levels for each K-quant code range: scales of either sign and any magnitude,
 * values at and beyond the range ends, exact rounding ties, inf and nan. */
static void test_levels_match_scalar(void **state)
{
    (void)state;
    static const int range[][2] = {{0, 3}, {-4, 3}, {0, 15}, {0, 31}, {-32, 31}};
    const float specials[] = {INFINITY, -INFINITY, NAN, 0.f, -0.f, 1e30f, -1e30f, 4194304.5f};
    float x[32];
    uint8_t got[32];
    gq_rng r;
    gq_rng_seed(&r, 77);
    for (int t = 0; t < 4000; t++) {
        const int qmin = range[t % 5][0], qmax = range[t % 5][1];
        const int n = t % 2 ? 32 : 16;
        const float D =
            (float)(gq_rng_uniform(&r) - 0.3) * powf(10.f, (float)gq_rng_below(&r, 12) - 8.f);
        const float M = gq_rng_below(&r, 3) ? 0.f : (float)gq_rng_uniform(&r) * 8.f * fabsf(D);
        if (D == 0)
            continue;
        for (int i = 0; i < n; i++) {
            const int kind = (int)gq_rng_below(&r, 4);
            const float q = (float)((int)gq_rng_below(&r, 2 * (qmax - qmin) + 8) - 4) * 0.5f;
            x[i] = kind == 0   ? (q + (float)qmin) * D - M /* on or near a tie */
                   : kind == 1 ? (float)gq_rng_student_t(&r, 3.0) * (qmax - qmin) * D
                   : kind == 2 ? specials[gq_rng_below(&r, 8)]
                               : (float)gq_rng_uniform(&r) * (qmax - qmin) * D - M;
        }
        gq_kq_levels(x, n, D, M, qmin, qmax, got);
        for (int i = 0; i < n; i++) {
            int want = gq_kq_level(x[i], D, M, qmin, qmax);
            if (got[i] != want)
                fail_msg("codes [%d, %d], D %.9g, M %.9g, x %.9g: level %d, scalar %d", qmin,
                         qmax, (double)D, (double)M, (double)x[i], got[i], want);
        }
    }
}

/* Labels, bits per weight of a whole super-block, and bad inputs. */
static void test_labels_sizes_errors(void **state)
{
    (void)state;
    static const double bpw[] = {2.625, 3.4375, 4.5, 5.5, 6.5625};
    for (size_t t = 0; t < sizeof ktypes / sizeof ktypes[0]; t++) {
        gq_quantizer q;
        gq_error err = {0};
        assert_int_equal(gq_quantizer_init(&q, ktypes[t], NULL, "$", &err), 0);
        char label[64];
        gq_quantizer_label(&q, label, sizeof label);
        assert_string_equal(label, ktypes[t]);
        assert_true(gq_quantizer_bpw(&q, 16, 4096) == bpw[t]);
        assert_int_equal(gq_quantizer_bytes(&q, 1, 1), (size_t)(bpw[t] * 32)); /* one block */

        float w[512];
        for (int i = 0; i < 512; i++)
            w[i] = (float)i / 512;
        uint8_t codes[2 * 210];
        w[300] = NAN;
        assert_int_equal(gq_quantizer_run(&q, w, 1, 512, NULL, codes, NULL, &err), -1);
        assert_non_null(strstr(err.msg, "column 300"));
        w[300] = 0;
        float imp[512] = {0};
        imp[5] = -1;
        assert_int_equal(gq_quantizer_run(&q, w, 1, 512, imp, codes, NULL, &err), -1);
        assert_non_null(strstr(err.msg, "imatrix[5]"));

        json_t *bad = json_pack("{s:i}", "bits", 4); /* K-quants take no parameters */
        gq_quantizer q2;
        assert_int_equal(gq_quantizer_init(&q2, ktypes[t], bad, "$.format", &err), -1);
        json_decref(bad);
        gq_quantizer_free(&q);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_vectors),
        cmocka_unit_test(test_batched_searches_match_scalar),
        cmocka_unit_test(test_levels_match_scalar),
        cmocka_unit_test(test_zero_padding),
        cmocka_unit_test(test_group_interface_matches_quantize),
        cmocka_unit_test(test_labels_sizes_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
