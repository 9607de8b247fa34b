#ifndef GQ_GGML_LEGACY_H
#define GQ_GGML_LEGACY_H
/* llama.cpp legacy block formats (32 weights per block): Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and
 * llama.cpp's MXFP4 block. Registered as the formats "q4_0", "q4_1", "q5_0", "q5_1", "q8_0" and
 * "mxfp4_ggml"; this header exposes the row kernels for tests and benchmarks.
 *
 * Quantization is bit-exact with ggml's quantize_<type>(): without importance weights the
 * quantize_row_<type>_ref arithmetic, with them (Q4_0/Q4_1/Q5_0/Q5_1) the _impl path; Q8_0 and
 * MXFP4 ignore importance weights as ggml does. Dequantization is ggml's to_float. */
#include "formats/ggml_common.h"

extern const gq_ggml_type gq_ggml_q4_0, gq_ggml_q4_1, gq_ggml_q5_0, gq_ggml_q5_1, gq_ggml_q8_0,
    gq_ggml_mxfp4;

/* Scalar reference dequantizers: n (a multiple of 32) floats from n/32 blocks. */
void gq_dequant_row_q4_0_ref(const void *blocks, int n, float *y);
void gq_dequant_row_q8_0_ref(const void *blocks, int n, float *y);

/* AVX2 dequantizers, bit-identical to the reference ones (exact products, no FMA). Present when
 * GQ_HAVE_AVX2_DEQUANT is 1; the registered types use them then. */
#if defined(__AVX2__)
#define GQ_HAVE_AVX2_DEQUANT 1
void gq_dequant_row_q4_0_avx2(const void *blocks, int n, float *y);
void gq_dequant_row_q8_0_avx2(const void *blocks, int n, float *y);
#else
#define GQ_HAVE_AVX2_DEQUANT 0
#endif

/* llama.cpp's MXFP4 element values: doubled E2M1 magnitudes, codes 8..15 negative. */
extern const int8_t gq_kvalues_mxfp4[16];
/* 2^(e-127) / 2: the E8M0 scale halved, as a float (subnormal for e < 2). */
float gq_e8m0_to_fp32_half(uint8_t e);

#endif
