/* libFuzzer target: the llama2.c checkpoint loader (legacy and version-1 headers, file size
 * against the header, tensor mapping). A loaded model is read end to end, so a tensor mapped
 * past the file would be caught. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_model.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gq_model m;
    gq_error err = {{0}};
    if (gq_model_load(fuzz_write_file("model.bin", data, size), &m, &err))
        return 0;
    fuzz_read_model(&m);
    gq_model_free(&m);
    return 0;
}
