/* libFuzzer target: the native quantized-model reader (safetensors header, gq-bench metadata
 * and configuration, each tensor's codes against its format's storage size, permutations,
 * transforms). A loaded model is read end to end and its codes dequantized again. */
#include <stddef.h>
#include <stdint.h>

#include "qmodel/gq_qmodel.h"
#include "fuzz_model.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file("q.gqn", data, size);
    gq_model m;
    gq_qcodes q;
    gq_error err = {{0}};
    if (gq_native_load(path, &m, &q, NULL, &err) == 0) {
        fuzz_read_model(&m);
        gq_qcodes_free(&q);
        gq_model_free(&m);
    }
    return 0;
}
