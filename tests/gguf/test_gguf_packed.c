/* A loaded GGUF of mixed types (llama.cpp's Q4_K_M of tinystories-3M: q4_K and q6_K) as a
 * packed model built from its own bytes (gq_packed_model_build_mixed): every block linear
 * dequantizes bit for bit to the weights the fp32 path evaluates, and its products (decode
 * dots, their scalar reference, prefill tiles) equal that fp32 path's within float summation
 * error; the checks are tallied per tensor type, and both types must have been seen. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gguf/gq_gguf_model.h"
#include "packed/gq_packed.h"
#include "test_support.h"

/* Products of P on seeded inputs against the fp32 weights w (rows, cols), in double. */
static void check_products(const gq_packed_linear *P, const float *w, int rows, int cols,
                           const char *what)
{
    enum { N = 8 }; /* > GQ_PACKED_MATVEC_MAX_N: the prefill path */
    float *x = malloc((size_t)N * cols * sizeof *x), *y = malloc((size_t)N * rows * sizeof *y);
    float *y1 = malloc((size_t)rows * sizeof *y1), *yr = malloc((size_t)rows * sizeof *yr);
    uint32_t s = 7;
    for (int i = 0; i < N * cols; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((int)(s >> 8) % 2001 - 1000) / 1000.0f;
    }
    gq_packed_linear_apply(P, y, x, N);
    for (int t = 0; t < N; t++) {
        const float *xt = x + (size_t)t * cols;
        gq_packed_linear_apply(P, y1, xt, 1);
        gq_packed_linear_matvec_ref(P, yr, xt);
        for (int r = 0; r < rows; r++) {
            double want = 0.0, mag = 0.0;
            for (int j = 0; j < cols; j++) {
                want += (double)w[(size_t)r * cols + j] * xt[j];
                mag += fabs((double)w[(size_t)r * cols + j] * xt[j]);
            }
            const float got[3] = {y[(size_t)t * rows + r], y1[r], yr[r]};
            for (int i = 0; i < 3; i++)
                if (fabs(got[i] - want) > 1e-5 * mag + 1e-6)
                    fail_msg("%s row %d: product %d gives %g, the fp32 path %g", what, r, i,
                             (double)got[i], want);
        }
    }
    free(x), free(y), free(y1), free(yr);
}

static void test_q4_k_m_own_bytes(void **state)
{
    (void)state;
    char path[4096];
    TEST_ASSET_OR_SKIP("testvectors/gguf/tinystories-3M-Q4_K_M-default.gguf", path);
    gq_model m;
    gq_gguf_weights w;
    gq_error err = {{0}};
    if (gq_gguf_load_model(path, &m, &w, &err))
        fail_msg("%s", err.msg);
    const gq_quantizer **quant = calloc((size_t)w.n_linear, sizeof *quant);
    for (int i = 0; i < w.n_linear; i++)
        quant[i] = w.quant[i].fmt ? &w.quant[i] : NULL;
    const gq_packed_codes codes = {(const uint8_t *const *)w.codes, NULL};
    gq_packed_model pm;
    if (gq_packed_model_build_mixed(&m, quant, &codes, NULL, &pm, &err))
        fail_msg("%s", err.msg);
    const char *types[8] = {0};
    int counts[8] = {0}, n_types = 0;
    for (int i = 0; i < w.n_linear; i++) {
        int rows, cols, t = 0;
        char what[96];
        gq_linear_shape(&m.cfg, (gq_linear_kind)(i % GQ_N_LINEAR), &rows, &cols);
        gq_tensor_name(i / GQ_N_LINEAR, (gq_linear_kind)(i % GQ_N_LINEAR), what, sizeof what);
        const float *fp = m.layers[i / GQ_N_LINEAR].w[i % GQ_N_LINEAR];
        float *deq = malloc((size_t)rows * cols * sizeof *deq);
        for (int ref = 0; ref < 2; ref++) {
            gq_packed_linear_dequantize(pm.lin[i], deq, ref);
            if (memcmp(deq, fp, (size_t)rows * cols * sizeof *deq) != 0)
                fail_msg("%s (%s): the packed bytes dequantize to other weights", what,
                         w.type[i]->name);
        }
        free(deq);
        check_products(pm.lin[i], fp, rows, cols, what);
        while (t < n_types && strcmp(types[t], w.type[i]->name) != 0)
            t++;
        if (t == n_types)
            types[n_types++] = w.type[i]->name;
        counts[t]++;
    }
    for (int t = 0; t < n_types; t++)
        fprintf(stderr, "%s: %d block linears packed from the file's bytes, as evaluated\n",
                types[t], counts[t]);
    assert_int_equal(n_types, 2); /* Q4_K_M: q4_K and q6_K */
    assert_true(pm.packed_bytes > 0);
    gq_packed_model_free(&pm);
    free(quant);
    gq_gguf_weights_free(&w);
    gq_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q4_k_m_own_bytes),
    };
    test_setup_assets();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
