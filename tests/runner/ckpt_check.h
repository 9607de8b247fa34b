#ifndef GQ_TEST_CKPT_CHECK_H
#define GQ_TEST_CKPT_CHECK_H
/* Checks the GPTQ and AWQ export tests share: a checkpoint's tensors, its quantization_config,
 * and a round trip of `export --format F` against the fake-quantized model `quantize` writes
 * with the same settings, each linear dequantized by the test's own reading of the layout. */
#include "model/gq_model.h"
#include "model/gq_safetensors.h"

/* Tensor "<prefix>.<part>" of f (fails the test when missing). */
const gq_st_tensor *ckpt_part(const gq_st_file *f, const char *prefix, const char *part);

/* Weight (c, j) of the (rows, cols) linear `prefix` as the checkpoint format defines it. */
typedef float (*ckpt_weight_fn)(const gq_st_file *f, const char *prefix, int bits, int rows,
                                int cols, int c, int j);

/* quantization_config of dir/config.json has `key` equal to the JSON value text `want`. */
void ckpt_assert_config(const char *dir, const char *key, const char *want);

/* Runs `export --format target SETTINGS --quant int` and `quantize SETTINGS --format int` on
 * assets model `model` (2 calibration windows of 32 tokens of a short story), then requires
 * every block linear of the checkpoint (read by weight, and loaded back with `--model`) to
 * equal the fake-quantized model's bit for bit. Returns the checkpoint directory (free with test_remove_dir). */
char *ckpt_round_trip(const char *target, const char *model, const char *settings, int bits,
                      ckpt_weight_fn weight);

/* `export --format target` on stories260K with args must exit 2 with `want` in its message
 * and write nothing. */
void ckpt_assert_refused(const char *target, const char *args, const char *want);

#endif
