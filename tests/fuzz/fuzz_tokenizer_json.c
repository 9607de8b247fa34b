/* libFuzzer target: the tokenizer.json loader, then the encoder, the decoder and the write-back.
 * Input: a 2-byte little-endian text length n, n bytes of text (fewer if the input ends), then
 * the tokenizer.json (fuzz_tokenizer_run.h). */
#include "fuzz_tokenizer_run.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_tokenizer_run(data, size, "tokenizer.json");
}
