/* libFuzzer target: the native quantized-model reader (safetensors header, gq-bench metadata
 * and configuration, each tensor's codes against its format's storage size, permutations,
 * transforms). A loaded model is read end to end and its codes dequantized again. */
#include <stddef.h>
#include <stdint.h>

#include "qmodel/gq_qmodel.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file("q.gqn", data, size);
    gq_model m;
    gq_qcodes q;
    gq_error err = {{0}};
    if (gq_native_load(path, &m, &q, NULL, &err) == 0) {
        volatile float sum = 0.0f;
        const gq_config *c = &m.cfg;
        for (int l = 0; l < c->n_layers; l++)
            for (int k = 0; k < GQ_N_LINEAR; k++) {
                int rows, cols;
                gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
                sum += m.layers[l].w[k][(size_t)rows * cols - 1];
            }
        sum += m.wcls[(size_t)c->vocab_size * c->dim - 1] + m.rms_final[c->dim - 1];
        (void)sum;
        gq_qcodes_free(&q);
        gq_model_free(&m);
    }
    return 0;
}
