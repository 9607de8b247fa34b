#ifndef GQ_EXPORT_H
#define GQ_EXPORT_H
/* A quantized model, as the pipeline left it (the plan, the reconstructions and the report's
 * codes), written as a llama GGUF; used by `gq-bench export --format gguf` and by `run
 * --export-gguf CELL`. */
#include "core/gq_error.h"
#include "methods/gq_pipeline.h"
#include "model/gq_model.h"
#include "text/gq_tokenizer.h"

/* Refuses, before any work, a plan GGUF cannot hold: explicit input transforms, a tensor
 * format without a ggml type, rows that are not whole blocks. The message names the tensor. */
int gq_export_gguf_check(const gq_quant_plan *plan, const gq_config *c, gq_error *err);

/* Writes q (quantized under plan; rep holds the codes) with tok's vocabulary to path
 * atomically. float_type: "f32", "f16" or "bf16" for unquantized matrices; name:
 * general.name. */
int gq_export_gguf(const char *path, const gq_quant_plan *plan, const gq_model *q,
                   const gq_quant_report *rep, const gq_tokenizer *tok, const char *name,
                   const char *float_type, gq_error *err);

#endif
