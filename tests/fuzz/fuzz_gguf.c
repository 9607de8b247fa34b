/* libFuzzer target: the GGUF reader (header, key/value pairs, tensor infos and offsets), the
 * llama model built from it (config keys, tensor shapes, dequantization of every ggml type) and
 * its SentencePiece vocabulary. A loaded model is read end to end. */
#include <stddef.h>
#include <stdint.h>

#include "gguf/gq_gguf_model.h"
#include "fuzz_model.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gq_gguf g;
    gq_error err = {{0}};
    if (gq_gguf_parse("fuzz.gguf", data, size, &g, &err))
        return 0;
    gq_model m;
    gq_gguf_weights w;
    if (gq_gguf_model_from(&g, &m, &w, &err) == 0)
        fuzz_read_model(&m);
    gq_model_free(&m);
    gq_gguf_weights_free(&w);
    err.msg[0] = '\0';
    gq_tokenizer *tok;
    if (gq_gguf_tokenizer_from(&g, 0, &tok, &err) == 0)
        gq_tokenizer_free(tok);
    gq_gguf_close(&g);
    return 0;
}
