#ifndef GQ_HALF_H
#define GQ_HALF_H
/* IEEE binary16 and bfloat16 conversions in portable C.
 * fp32 -> fp16 rounds to nearest, ties to even, with subnormals, overflow to +-Inf and NaN
 * kept quiet: bit-identical to the F16C instruction (_cvtss_sh with rounding mode 0) and to
 * ggml's GGML_FP32_TO_FP16. fp32 -> bf16 rounds to nearest even as well. */
#include <stdint.h>

uint16_t gq_fp32_to_fp16(float f);
float gq_fp16_to_fp32(uint16_t h);
/* Rounds a float through fp16 and back: the value a stored fp16 scale really has. */
static inline float gq_round_fp16(float f) { return gq_fp16_to_fp32(gq_fp32_to_fp16(f)); }

uint16_t gq_fp32_to_bf16(float f);
float gq_bf16_to_fp32(uint16_t h);

/* Reinterpret helpers. */
static inline uint32_t gq_f32_bits(float f)
{
    union { float f; uint32_t u; } v = { .f = f };
    return v.u;
}
static inline float gq_f32_from_bits(uint32_t u)
{
    union { uint32_t u; float f; } v = { .u = u };
    return v.f;
}

#endif
