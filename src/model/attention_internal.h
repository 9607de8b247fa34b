#ifndef GQ_ATTENTION_INTERNAL_H
#define GQ_ATTENTION_INTERNAL_H
/* Kernels of the batched attention (attention.c), used by forward.c. */
#include "model/gq_model.h"

/* Frequency of pair i of a head: 1 / theta^(2i / head_size) (float, as run.c), rescaled as
 * cfg.rope_scaling says. */
float gq_rope_freq(const gq_config *c, int i);

/* First key position query t attends to: 0, or t-W+1 with a sliding window W. */
int gq_attention_first_key(const gq_config *c, int t);

/* RoPE tables as llama2.c run.c computes them (theta and scaling from the configuration): for position p and pair i of a head
 * (head_dim = 2i), freq = 1 / 10000^(head_dim / head_size), angle = p * freq (float);
 * cos_t/sin_t are (seq_len, head_size/2). */
void gq_rope_tables(const gq_config *c, float *cos_t, float *sin_t);

/* Rotates the pairs (2i, 2i+1) of every head of x (n_rows, width) in place, row r being at
 * position r % T (each window starts at 0). */
void gq_rope_rows(float *x, int n_rows, int T, int width, int head_size, const float *cos_t,
                  const float *sin_t);

/* The same for rows r0 .. r0+n_rows-1 of q (rows of q_width) and, when k is not NULL, of k
 * (rows of k_width), in one parallel loop over the rows. */
void gq_rope_qk_rows(float *q, int q_width, float *k, int k_width, int r0, int n_rows, int T,
                     int head_size, const float *cos_t, const float *sin_t);

/* Causal grouped-query attention for B windows of T tokens:
 * q (B*T, n_heads*hs), k, v (B*T, n_kv_heads*hs) -> ctx (B*T, n_heads*hs); keys before
 * gq_attention_first_key get no weight.
 * Query head h reads kv head h / (n_heads / n_kv_heads). scores is per-thread scratch,
 * n_threads * gq_attention_scratch_floats(c) floats. Each (window, head) is computed by one
 * thread in a fixed order, so the result does not depend on the thread count: heads of 8 to 32
 * (a multiple of 8) by a fused AVX2 kernel (scores, exponentials and P v for 4 query rows at a
 * time; products of width 8 are too small for sgemm), other heads by blocks of GQ_ATT_QBLOCK
 * query rows through single-threaded sgemm (gq_blas_single_threaded); the softmax is
 * gq_vmath.h's in both. */
#define GQ_ATT_QBLOCK 64
size_t gq_attention_scratch_floats(const gq_config *c);
void gq_causal_attention(const gq_config *c, const float *q, const float *k, const float *v,
                         float *ctx, int B, int T, float *scores, int n_threads);

#endif
