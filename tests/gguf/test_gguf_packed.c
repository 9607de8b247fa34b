/* A loaded GGUF of mixed types (llama.cpp's Q4_K_M of tinystories-3M: q4_K and q6_K) as a
 * packed model built from its own bytes (gq_packed_model_build_mixed): every block linear
 * dequantizes bit for bit to the weights the fp32 path evaluates, and its products (decode
 * dots, their scalar reference, prefill tiles) equal that fp32 path's within float summation
 * error; the checks are tallied per tensor type, and both types must have been seen. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gguf/gq_gguf_model.h"
#include "packed/gq_packed.h"
#include "packed_products.h"
#include "test_support.h"

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
        free(packed_check_products(pm.lin[i], fp, rows, cols, what));
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
