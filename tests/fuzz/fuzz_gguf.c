/* libFuzzer target: the GGUF reader (header, key/value pairs, tensor infos and offsets), the
 * llama model built from it (config keys, tensor shapes, dequantization of every ggml type) and
 * its SentencePiece vocabulary. A loaded model is read end to end. */
#include <stddef.h>
#include <stdint.h>

#include "gguf/gq_gguf_model.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gq_gguf g;
    gq_error err = {{0}};
    if (gq_gguf_parse("fuzz.gguf", data, size, &g, &err))
        return 0;
    gq_model m;
    gq_gguf_weights w;
    if (gq_gguf_model_from(&g, &m, &w, &err) == 0) {
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
    }
    gq_model_free(&m);
    gq_gguf_weights_free(&w);
    err.msg[0] = '\0';
    gq_tokenizer *tok;
    if (gq_gguf_tokenizer_from(&g, 0, &tok, &err) == 0)
        gq_tokenizer_free(tok);
    gq_gguf_close(&g);
    return 0;
}
