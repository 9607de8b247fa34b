/* libFuzzer target: the Hugging Face readers. The first byte picks the parser: even, the
 * safetensors header checks (gq_st_parse on the rest; every accepted tensor is read end to
 * end, so a tensor reaching past the input would be caught); odd, config.json
 * (gq_hf_config_parse, then the shapes it implies). */
#include <stddef.h>
#include <stdint.h>

#include "model/gq_hf.h"
#include "model/gq_safetensors.h"
#include "fuzz_util.h"

static void read_tensors(const gq_st_file *f)
{
    volatile float sum = 0.0f;
    for (int i = 0; i < f->n; i++) {
        float v;
        if (f->t[i].count == 0 || !gq_st_dtype_is_float(f->t[i].dtype))
            continue; /* integer tensors (I32, U8) hold codes, not floats */
        gq_st_to_f32(&f->t[i], &v, 0, 1);
        sum += v;
        gq_st_to_f32(&f->t[i], &v, f->t[i].count - 1, 1);
        sum += v;
    }
    (void)sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    gq_error err = {{0}};
    if (data[0] % 2 == 0) {
        gq_st_file f;
        if (gq_st_parse("fuzz.safetensors", data + 1, size - 1, &f, &err) == 0) {
            read_tensors(&f);
            gq_st_close(&f);
        }
        return 0;
    }
    gq_config c;
    if (gq_hf_config_parse("config.json", (const char *)data + 1, size - 1, &c, &err) == 0) {
        int rows, cols;
        for (int k = 0; k < GQ_N_LINEAR; k++)
            gq_linear_shape(&c, (gq_linear_kind)k, &rows, &cols);
        (void)gq_model_param_count(&c);
    }
    return 0;
}
