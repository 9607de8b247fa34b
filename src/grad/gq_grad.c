/* Instantiates the gradient operations (grad_*.inc) for float and for double. */
#include "grad/gq_grad.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_alloc.h"
#include "core/gq_gemm.h"

#if defined(__AVX2__)
#include "grad/lwc_avx2.inc"
#define GQ_LWC_EXTREMES lwc_extremes_avx2
#define GQ_LWC_BWD_TERMS lwc_bwd_terms_avx2
#endif

#define GQ_T float
#define GQ_S(name) name##_f
#define GQ_GEMM gq_sgemm
#define GQ_BLAS_GEMM cblas_sgemm
#define GQ_GEMM_NT_SHARED gq_sgemm_nt_shared
#include "grad/grad_linear.inc"
#include "grad/grad_pointwise.inc"
#include "grad/grad_attention.inc"
#include "grad/grad_quant.inc"
#include "grad/grad_block.inc"
#undef GQ_T
#undef GQ_S
#undef GQ_GEMM
#undef GQ_BLAS_GEMM
#undef GQ_GEMM_NT_SHARED
#undef GQ_LWC_EXTREMES
#undef GQ_LWC_BWD_TERMS
#undef GQ_RMS_EPS
#undef GQ_LWC_SMIN
#undef GQ_LWC_SMAX
#undef GQ_LWC_ZMAX

#define GQ_T double
#define GQ_S(name) name##_d
#define GQ_GEMM gq_dgemm
#define GQ_BLAS_GEMM cblas_dgemm
#include "grad/grad_linear.inc"
#include "grad/grad_pointwise.inc"
#include "grad/grad_attention.inc"
#include "grad/grad_quant.inc"
#include "grad/grad_block.inc"
