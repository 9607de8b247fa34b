#ifndef GQ_FUZZ_TOKENIZER_RUN_H
#define GQ_FUZZ_TOKENIZER_RUN_H
/* Shared by the tokenizer fuzz targets. Input: a 2-byte little-endian text length n, n bytes of
 * text (fewer if the input ends), then the tokenizer file, written as `file_name`. The file is
 * loaded, the text encoded with BOS and EOS and every id decoded again (an id outside the
 * vocabulary aborts); a loaded tokenizer.json is also written back, which must succeed. */
#include <stddef.h>
#include <stdint.h>

int fuzz_tokenizer_run(const uint8_t *data, size_t size, const char *file_name);

#endif
