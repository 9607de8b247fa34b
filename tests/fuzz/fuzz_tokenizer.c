/* libFuzzer target: the llama2.c tokenizer loader, then the encoder and decoder on a text.
 * Input: a 2-byte little-endian text length n, n bytes of text (fewer if the input ends), then
 * the tokenizer file (fuzz_tokenizer_run.h). */
#include "fuzz_tokenizer_run.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_tokenizer_run(data, size, "tokenizer.bin");
}
