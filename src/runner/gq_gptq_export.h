#ifndef GQ_GPTQ_EXPORT_H
#define GQ_GPTQ_EXPORT_H
/* GPTQ checkpoints (AutoGPTQ / GPTQModel layout, checkpoint_format "gptq", i.e. v1) from a
 * model quantized in the int format; used by `gq-bench export --format gptq`.
 *
 * Per block linear of (out, in) = (rows, cols), with b bits (2, 3, 4 or 8):
 *   qweight (in * b / 32, out) int32: column c of qweight is one little-endian bit stream of
 *           output c's codes along the input, input column j in stream bits [b*j, b*j + b)
 *           (stream bit n is bit n % 32 of word [n / 32][c]); at b = 2, 4, 8 word [i][c]
 *           holds inputs p*i .. p*i+p-1 (p = 32 / b), low bits first; at b = 3 a code
 *           crosses a word boundary every 32 bits (inputs 10 and 21 of every 32 span two
 *           words), as AutoGPTQ packs them: 32 codes in 3 words;
 *   qzeros  (groups, out * b / 32) int32: row g is the same bit stream of (z - 1) of the
 *           outputs: v1 stores the zero point minus one;
 *   scales  (groups, out) fp16;
 *   g_idx   (in) int32: the group of each input column (act_order: the groups follow GPTQ's
 *           column order, so g_idx is not monotone);
 * and w[c][j] = scales[g][c] * (q[c][j] - z[g][c]) with g = g_idx[j] and z = stored + 1.
 * The codes, scales and zero points are the int format's own (formats/fmt_int.c), not
 * re-quantized: zero sym_gptq is GPTQ's sym=True (z = 2^(b-1)); sym (z = 2^(b-1) - 1) is
 * written with sym=False and its zero points explicit. Refused: bits other than 2, 3, 4, 8,
 * fp32 scales, zero asym (its zero point 0 has no v1 encoding), group sizes that do not divide
 * a linear's input, dimensions that are not whole int32 words (multiples of 32 / b codes; of
 * 32 at 3 bits), formats other than int, linears kept in float, quantized embeddings or
 * classifier, linears with different settings (gq_ckpt_export.h). */
#include <stdint.h>

#include "core/gq_error.h"
#include "formats/gq_format.h"
#include "methods/gq_pipeline.h"
#include "model/gq_model.h"

typedef struct gq_gptq_linear {
    int bits, rows, cols, groups; /* rows = out features, cols = in features */
    int32_t *qweight;             /* (cols * bits / 32, rows) */
    int32_t *qzeros;              /* (groups, rows * bits / 32) */
    uint16_t *scales;             /* (groups, rows), fp16 bits */
    int32_t *g_idx;               /* (cols) */
} gq_gptq_linear;

/* The GPTQ tensors of one (rows, cols) linear whose int-format storage is `storage`, its
 * columns in the order perm (NULL: in order; see gq_quant_report.linear_perm). Output c of
 * the checkpoint is storage row gq_hf_model_row(c, head_size). */
int gq_gptq_pack(const gq_quantizer *q, const uint8_t *storage, const int32_t *perm, int rows,
                 int cols, int head_size, gq_gptq_linear *out, gq_error *err);
void gq_gptq_linear_free(gq_gptq_linear *l);

/* Refuses, before any work, a plan a GPTQ checkpoint cannot hold (list above); the message
 * names the tensor and the setting. */
int gq_export_gptq_check(const gq_quant_plan *plan, const gq_config *c, gq_error *err);

/* Writes q (quantized under plan, rep holding the codes) as the directory dir: config.json
 * with quantization_config, quantize_config.json, model.safetensors (float tensors fp16). */
int gq_export_gptq(const char *dir, const gq_quant_plan *plan, const gq_model *q,
                   const gq_quant_report *rep, gq_error *err);

#endif
