#ifndef GQ_GRID_KERNELS_H
#define GQ_GRID_KERNELS_H
/* Kernels of the grid formats' fast path (grid_fast.c): AVX2 when the build targets it
 * (GRID_K_AVX2), scalar otherwise. Each computes, bit for bit, what the reference loop it
 * names computes (the formats' fit/encode in fmt_int.c, fmt_fp.c, fmt_mx.c), with codes as
 * one byte each. x, codes and y need no alignment; codes and y may be NULL. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/mf_table.h"

#if defined(__AVX2__)
#define GRID_K_AVX2 1
#else
#define GRID_K_AVX2 0
#endif

/* Whether int's kernels take their AVX-512 forms (grid_kernels_avx512.c): on a CPU with AVX-512
 * F, BW and VL unless grid_k_allow_avx512(false). The bytes are the same either way; tests
 * compare both with the reference. Set it before running work. */
bool grid_k_avx512(void);
void grid_k_allow_avx512(bool on);
/* The widest instruction set the int kernels use here: "avx512", "avx2" or "scalar". */
const char *grid_k_isa(void);
/* The kernels may write y and packed codes past the caches (streaming stores, whose order with
 * later stores is weak): a thread calls this after its last kernel call, before another reads
 * what it wrote. */
void grid_k_fence(void);

/* Largest bit pattern of |x[i]| over [0, n): the bits of max |x| when every x is finite,
 * >= 0x7f800000 when some x is Inf or NaN. 0 for n = 0. */
uint32_t grid_k_absmax_bits(const float *x, size_t n);

/* lo = min(0, min x), hi = max(0, max x) over finite x[0..n) (int's fit; a zero's sign may
 * differ from the sequential loop's, which no state depends on). */
void grid_k_minmax(const float *x, size_t n, float *lo, float *hi);

/* int's element rounding with one group's state: t = scale > 0 ? x / scale : 0,
 * q = clamp(round(t) + zero, lo, hi) (round: rintf, or roundf when away), code = q - lo,
 * y = scale * (q - zero). Returns how many leading elements it did, grid_k_int_lead of them;
 * the caller does the rest by the reference. Codes are one a byte, or with packed4 (codes below
 * 16) two a byte as grid_pack8 packs them, low nibble first; packed codes go to memory past the
 * caches where they fill aligned pieces, as grid_pack8's do. */
typedef struct grid_k_int {
    float scale, zero, lo, hi;
    bool away, packed4;
} grid_k_int;
int grid_k_int_encode(const grid_k_int *k, const float *x, int n, uint8_t *codes, float *y);

/* The leading elements of n that the int kernels round with this scale: a multiple of 8, none
 * without AVX2 or when the scale is not positive (the reference's t = 0 case). */
static inline int grid_k_int_lead(float scale, int n)
{
    return GRID_K_AVX2 && scale > 0.0f ? n & ~7 : 0;
}

/* int's fit of each group of gc columns of x[0..n) (the last may be shorter), lo[g] and hi[g]
 * as grid_k_minmax gives them for finite x, in the same pass as the largest magnitude: returns
 * grid_k_absmax_bits of x[0..n). */
uint32_t grid_k_group_range(const float *x, size_t n, size_t gc, float *lo, float *hi);

/* int's states (fmt_int.c state_from_range) of groups from their ranges [lo[g], hi[g]]
 * (lo <= 0 <= hi; both 0 means [-1, 1]), amax = max(-lo, hi):
 *   GRID_K_INT_SYM       scale = store(amax / qs), zero = 0
 *   GRID_K_INT_SYM_GPTQ  scale = store(2 amax / maxq), zero = zconst
 *   GRID_K_INT_ASYM      scale = store((hi - lo) / maxq),
 *                        zero = clamp(scale > 0 ? round(-lo / scale) : 0, 0, maxq)
 * store: fp16 rounding when fp16, else none; round as grid_k_int's. scale[g] and zero[g] (an
 * integer as a float) for the leading multiple of 8 of the n groups, whose count it returns;
 * the caller does the rest by the reference. */
enum { GRID_K_INT_SYM, GRID_K_INT_SYM_GPTQ, GRID_K_INT_ASYM };
typedef struct grid_k_int_rule {
    int zero_rule;
    float qs, maxq, zconst;
    bool fp16, away;
} grid_k_int_rule;
int grid_k_int_states(const grid_k_int_rule *r, const float *lo, const float *hi, int n,
                      float *scale, float *zero);

/* grid_k_int_encode of each group of gc columns of x[0..n) (the last may be shorter) with its
 * own scale[g] and zero[g]: of group g of m elements, the grid_k_int_lead(scale[g], m) leading
 * ones. The codes of the group at column c0 start at byte c0 of codes, or c0 / 2 with packed4
 * (gc even). */
typedef struct grid_k_int_groups {
    const float *scale, *zero;
    float lo, hi;
    bool away, packed4;
} grid_k_int_groups;
void grid_k_int_encode_groups(const grid_k_int_groups *k, const float *x, int n, int gc,
                              uint8_t *codes, float *y);

/* Small-float elements through the table t (E2M1 by comparisons with its midpoints instead):
 * the element of v = (divide ? (k > 0 ? x / k : 0) : x * k), code and value as
 * gq_mf_encode(t->f, v, &e), y = e * post. All n elements. */
void grid_k_mf_encode(const gq_mf_table *t, const float *x, int n, float k, bool divide,
                      float post, uint8_t *codes, float *y);

/* Largest-magnitude bits (grid_k_absmax_bits) of each group of gc columns of x[0..n) (the last
 * may be shorter) into bits[0..ceil(n / gc)); returns their maximum. */
uint32_t grid_k_group_absmax_bits(const float *x, size_t n, size_t gc, uint32_t *bits);

/* grid_k_mf_encode of each group of gc columns of x[0..n) (the last may be shorter) with its own
 * k[g] and post[g]. */
void grid_k_mf_encode_groups(const gq_mf_table *t, const float *x, int n, int gc, const float *k,
                             bool divide, const float *post, uint8_t *codes, float *y);

/* MXINT8 elements: q = clamp(rint(x * inv * 64), -127, 127) + 0, code = (uint8_t)(int8_t)q,
 * y = q / 64 * X. Returns how many leading elements it did (a multiple of 8). */
int grid_k_mxint8_encode(const float *x, int n, float inv, float X, uint8_t *codes, float *y);

/* grid_pack of byte codes (w <= 8): codes[0..n) as w-bit fields at stream bit pos. The bits
 * before pos in its byte are kept; every later bit up to the end of the last field's byte is
 * written (bits past the last field become 0), so the stream needs no clearing when rows are
 * packed in order. Whole 16-byte pieces of 4-bit fields that start on 16 bytes go to memory past
 * the caches (a large matrix's codes are read again only much later, and a streamed line is not
 * first read for ownership); the caller orders them by grid_k_fence before another thread
 * reads the stream. */
void grid_pack8(uint8_t *buf, size_t pos, const uint8_t *codes, size_t n, int w);

#endif
