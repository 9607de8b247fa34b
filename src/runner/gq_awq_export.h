#ifndef GQ_AWQ_EXPORT_H
#define GQ_AWQ_EXPORT_H
/* AWQ checkpoints (AutoAWQ's GEMM layout, `version` "gemm") from a model quantized in the int
 * format with zero asym; used by `gq-bench export --format awq`.
 *
 * Per block linear of (out, in) = (rows, cols), 4-bit codes, groups of g input columns:
 *   qweight (in, out / 8) int32: word [j][m] holds the codes of outputs 8m .. 8m+7 at input
 *           j, output 8m + t in bits [4n, 4n + 4) where n is its position in AWQ's order
 *           (0, 2, 4, 6, 1, 3, 5, 7): nibbles 0..7 hold outputs 8m + 0, 2, 4, 6, 1, 3, 5, 7;
 *   qzeros  (in / g, out / 8) int32: the zero points z (not minus one), packed the same way;
 *   scales  (in / g, out) fp16;
 * and w[c][j] = scales[j / g][c] * (q[c][j] - z[j / g][c]): the int format's asym convention
 * (min-max, integer zero point in 0..15), its codes, scales and zero points as the method
 * chose them, not re-quantized. Refused: bits other than 4, zero other than asym, fp32
 * scales, granularity other than group, a group size that does not divide a linear's input,
 * outputs that are not a multiple of 8, GPTQ's act_order (a column order AWQ cannot hold),
 * and what gq_ckpt_export.h refuses for every checkpoint. */
#include <stdint.h>

#include "core/gq_error.h"
#include "formats/gq_format.h"
#include "methods/gq_pipeline.h"
#include "model/gq_model.h"

typedef struct gq_awq_linear {
    int rows, cols, groups; /* rows = out features, cols = in features */
    int32_t *qweight;       /* (cols, rows / 8) */
    int32_t *qzeros;        /* (groups, rows / 8) */
    uint16_t *scales;       /* (groups, rows), fp16 bits */
} gq_awq_linear;

/* Nibble of output 8m + t within its word: AWQ's order puts output 8m + order[n] at nibble n
 * with order = 0, 2, 4, 6, 1, 3, 5, 7, so t sits at nibble 4 (t % 2) + t / 2. */
int gq_awq_nibble(int t);

/* The AWQ tensors of one (rows, cols) linear whose int-format storage (4 bits, zero asym,
 * groups dividing cols) is `storage`. Output c of the checkpoint is storage row
 * gq_hf_model_row(c, head_size). */
int gq_awq_pack(const gq_quantizer *q, const uint8_t *storage, int rows, int cols,
                int head_size, gq_awq_linear *out, gq_error *err);
void gq_awq_linear_free(gq_awq_linear *l);

/* Refuses, before any work, a plan an AWQ GEMM checkpoint cannot hold (list above). */
int gq_export_awq_check(const gq_quant_plan *plan, const gq_config *c, gq_error *err);

/* Writes q (quantized under plan, rep holding the codes) as the directory dir: config.json
 * with quantization_config and model.safetensors (float tensors fp16). */
int gq_export_awq(const char *dir, const gq_quant_plan *plan, const gq_model *q,
                  const gq_quant_report *rep, gq_error *err);

#endif
