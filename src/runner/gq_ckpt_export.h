#ifndef GQ_CKPT_EXPORT_H
#define GQ_CKPT_EXPORT_H
/* What the packed-checkpoint exporters (GPTQ: gq_gptq_export.h, AWQ: gq_awq_export.h) share:
 * the int format's settings of a block linear, the plan checks common to both (no explicit
 * transforms, embeddings and classifier in floats, every block linear quantized alike), the
 * codes of a linear as the method handed them over, and the packed words. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/gq_error.h"
#include "formats/gq_format.h"
#include "methods/gq_pipeline.h"
#include "model/gq_hf_packed.h"
#include "model/gq_plan_linear.h"
#include "model/gq_st_write.h"

/* The int format's settings of one linear, as its quantizer's JSON says them. */
typedef struct gq_int_spec {
    int bits;
    int group_size;       /* granularity group: its group_size; else -1 (one group per row) */
    char granularity[16]; /* "tensor", "channel", "group" */
    char zero[16];        /* "sym", "sym_gptq", "asym" */
    bool fp16;            /* scale_dtype fp16 */
} gq_int_spec;

/* A target's own refusals of one linear's settings (message naming b->name). */
typedef int (*gq_int_spec_check)(const gq_plan_linear *b, const gq_int_spec *s,
                                 gq_error *err);

/* Refuses, before any work, a plan that `target` ("GPTQ", "AWQ") cannot hold: explicit input
 * transforms, quantized embeddings or classifier, a block linear kept in floats or in a
 * format other than int, what check refuses, and linears whose bits / group size / zero
 * differ from the first's. first (optional) receives the first linear's settings. */
int gq_ckpt_check_plan(const gq_quant_plan *plan, const gq_config *c, const char *target,
                       gq_int_spec_check check, gq_int_spec *first, gq_error *err);

/* A quantized model on its way into a checkpoint: the pack function's context. */
typedef struct gq_ckpt_ctx {
    const gq_quant_plan *plan;
    const gq_model *model;          /* the reconstructions (float tensors written from them) */
    const gq_quant_report *rep;     /* the codes */
} gq_ckpt_ctx;

/* The block linear at site s with the report's codes; refused (naming the tensor) when the
 * method handed over reconstructions only. */
int gq_ckpt_linear(const gq_ckpt_ctx *x, const gq_hf_linear_site *s, gq_plan_linear *b,
                   gq_error *err);

/* Writes x's model as the directory dir (gq_model_save_hf_packed, float tensors fp16) with
 * quantization_config qc (JSON text, freed here; NULL: out of memory) and the block linears
 * packed by pack (its context x). */
int gq_ckpt_save(const gq_ckpt_ctx *x, const char *dir, char *qc, gq_hf_pack_fn pack,
                 gq_error *err);

/* The integer codes, fp16 scales and zero points of an int-format storage (its packing's
 * description, GQ_PACK_INT; free with gq_pack_codes_free), or a refusal. */
int gq_ckpt_int_codes(const gq_quantizer *q, const uint8_t *storage, int rows, int cols,
                      gq_pack_codes *pc, gq_error *err);

/* ORs the low `bits` bits of v into a little-endian bit stream at bit `pos`, whose 32-bit word
 * n is words[n * stride] (a code may straddle two words, as 3-bit codes do). */
void gq_ckpt_put_bits(uint32_t *words, size_t stride, size_t pos, uint32_t v, int bits);

/* One safetensors blob "<prefix>.<part>" of shape (d0) or (d0, d1) over data (moved). */
void gq_ckpt_blob(gq_st_blob *b, const char *prefix, const char *part, gq_st_dtype dtype,
                  int ndim, int64_t d0, int64_t d1, void *data);

#endif
