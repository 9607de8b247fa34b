#ifndef GQ_QMODEL_SAVE_H
#define GQ_QMODEL_SAVE_H
/* The native save of a model quantized by gq_quantize_model (gq_qmodel.h's format): every
 * tensor whose codes the report holds is saved as those codes (checked to dequantize to the
 * model's weights), the rest as fp32. */
#include <jansson.h>

#include "methods/gq_pipeline.h"
#include "qmodel/gq_qmodel.h"

/* Writes m (quantized under plan, rep its report) to path atomically; meta (taken over) is
 * the description the caller adds (method, format, calibration, provenance). */
int gq_native_save_quantized(const char *path, const gq_quant_plan *plan, const gq_model *m,
                             const gq_quant_report *rep, json_t *meta, gq_error *err);

#endif
