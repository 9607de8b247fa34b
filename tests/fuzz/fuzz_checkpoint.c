/* libFuzzer target: the llama2.c checkpoint loader (legacy and version-1 headers, file size
 * against the header, tensor mapping). A loaded model is read end to end, so a tensor mapped
 * past the file would be caught. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_util.h"
#include "model/gq_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gq_model m;
    gq_error err = {{0}};
    if (gq_model_load(fuzz_write_file("model.bin", data, size), &m, &err))
        return 0;
    volatile float sum = 0.0f;
    const gq_config *c = &m.cfg;
    for (int i = 0; i < c->vocab_size * c->dim; i += c->dim)
        sum += m.tok_embeddings[i] + m.wcls[i];
    for (int i = 0; i < c->dim; i++)
        sum += m.rms_final[i];
    for (int l = 0; l < c->n_layers; l++) {
        const gq_layer *L = &m.layers[l];
        sum += L->rms_att[c->dim - 1] + L->rms_ffn[c->dim - 1];
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            int rows, cols;
            gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
            const float *w = L->w[k];
            sum += w[0] + w[(size_t)rows * cols - 1];
        }
    }
    (void)sum;
    gq_model_free(&m);
    return 0;
}
