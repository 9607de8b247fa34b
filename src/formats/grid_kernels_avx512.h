#ifndef GQ_GRID_KERNELS_AVX512_H
#define GQ_GRID_KERNELS_AVX512_H
/* AVX-512 forms of int's kernels, with the contracts of grid_kernels.h's grid_k_int_encode
 * (one group; grid_k_int_encode_groups calls it per group) and grid_k_group_range. Built with
 * the AVX2 kernels on x86-64 (GRID_K_AVX512); grid_kernels.c calls them only when
 * grid_k_avx512() is true. */
#include "formats/grid_kernels.h"

#if GRID_K_AVX2 && defined(__x86_64__) && defined(__GNUC__)
#define GRID_K_AVX512 1
#else
#define GRID_K_AVX512 0
#endif

int grid_k512_int_group(const grid_k_int *k, const float *x, int n, uint8_t *codes, float *y);
uint32_t grid_k512_group_range(const float *x, size_t n, size_t gc, float *lo, float *hi);

#endif
