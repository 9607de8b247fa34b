/* libFuzzer target: the tokenizer.json loader, then the encoder and decoder on a text.
 * Input: a 2-byte little-endian text length n, n bytes of text (fewer if the input ends), then
 * the tokenizer.json file. Every id the encoder returns is decoded again; a loaded tokenizer is
 * also written back (gq_tokenizer_save_json). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "text/gq_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return -1;
    size_t n = (size_t)data[0] | (size_t)data[1] << 8;
    if (n > size - 2)
        n = size - 2;
    const char *text = (const char *)data + 2;
    gq_tokenizer *t = NULL;
    gq_error err = {{0}};
    if (gq_tokenizer_load(fuzz_write_file("tokenizer.json", data + 2 + n, size - 2 - n), 0, &t,
                          &err))
        return 0;
    int *ids = NULL;
    size_t n_ids = 0;
    if (gq_tokenizer_encode(t, text, n, true, true, &ids, &n_ids, &err) == 0) {
        int vocab = gq_tokenizer_vocab_size(t);
        char scratch[2];
        for (size_t i = 0; i < n_ids; i++) {
            if (ids[i] < 0 || ids[i] >= vocab)
                abort(); /* an id outside the vocabulary */
            (void)gq_tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], scratch);
        }
    }
    free(ids);
    bool json = strncmp(gq_tokenizer_describe(t), "tokenizer.json", 14) == 0;
    if (json && gq_tokenizer_save_json(t, fuzz_write_file("copy.json", (const uint8_t *)"", 0),
                                       &err))
        abort(); /* a loaded tokenizer.json is written back as read */
    gq_tokenizer_free(t);
    return 0;
}
