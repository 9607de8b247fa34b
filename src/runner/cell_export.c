/* The quantization pipeline's result as a GGUF file (gq_export.h): the plan says which format
 * each tensor has, the report gives the codes (src/gguf/gguf_export.c writes them). */
#include "runner/gq_export.h"

#include <string.h>

#include "gguf/gq_gguf_model.h"

int gq_export_gguf_check(const gq_quant_plan *plan, const gq_config *c, gq_error *err)
{
    if (gq_method_cfg_adds_transforms(&plan->method))
        return gq_fail(err, "method %s leaves explicit input transforms or an online rotation in the "
                            "model, which GGUF cannot hold", gq_method_name(plan->method.method));
    gq_gguf_export x = {.quant_of = gq_plan_tensor_quantizer, .quant_ctx = plan};
    return gq_gguf_check_plan(&x, c, err);
}

int gq_export_gguf(const char *path, const gq_quant_plan *plan, const gq_model *q,
                   const gq_quant_report *rep, const gq_tokenizer *tok, const char *name,
                   const char *float_type, gq_error *err)
{
    gq_gguf_export x = {
        .model = q, .tok = tok, .name = name, .quant_of = gq_plan_tensor_quantizer,
        .quant_ctx = plan, .linear_codes = (const uint8_t *const *)rep->linear_codes,
        .embd_codes = rep->embd_codes, .cls_codes = rep->cls_codes,
        .float_type = strcmp(float_type, "f16") == 0    ? GQ_GGML_F16
                      : strcmp(float_type, "bf16") == 0 ? GQ_GGML_BF16
                                                        : GQ_GGML_F32};
    return gq_gguf_write_model(path, &x, err);
}
