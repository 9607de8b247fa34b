#include "fuzz_tokenizer_run.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "text/gq_tokenizer.h"

int fuzz_tokenizer_run(const uint8_t *data, size_t size, const char *file_name)
{
    if (size < 2)
        return -1;
    size_t n = (size_t)data[0] | (size_t)data[1] << 8;
    if (n > size - 2)
        n = size - 2;
    const char *text = (const char *)data + 2;
    gq_tokenizer *t = NULL;
    gq_error err = {{0}};
    if (gq_tokenizer_load(fuzz_write_file(file_name, data + 2 + n, size - 2 - n), 0, &t, &err))
        return 0;
    int *ids = NULL;
    size_t n_ids = 0;
    if (gq_tokenizer_encode(t, text, n, true, true, &ids, &n_ids, &err) == 0) {
        int vocab = gq_tokenizer_vocab_size(t);
        char scratch[2];
        for (size_t i = 0; i < n_ids; i++) {
            if (ids[i] < 0 || ids[i] >= vocab)
                abort(); /* an id outside the vocabulary */
            (void)gq_tokenizer_decode(t, i ? ids[i - 1] : gq_tokenizer_bos_id(t), ids[i],
                                      scratch);
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
