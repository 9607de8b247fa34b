/* Batched causal attention: RoPE and softmax(q k^T / sqrt(hs)) v per (window, head). */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "model/attention_internal.h"

void gq_rope_tables(const gq_config *c, float *cos_t, float *sin_t)
{
    int hs = gq_head_size(c), half = hs / 2;
    for (int p = 0; p < c->seq_len; p++)
        for (int i = 0; i < half; i++) {
            float freq = 1.0f / powf(10000.0f, (float)(2 * i) / (float)hs);
            float val = (float)p * freq;
            cos_t[(size_t)p * half + i] = cosf(val);
            sin_t[(size_t)p * half + i] = sinf(val);
        }
}

void gq_rope_rows(float *x, int n_rows, int T, int width, int head_size, const float *cos_t,
                  const float *sin_t)
{
    int half = head_size / 2;
#pragma omp parallel for schedule(static) if ((long)n_rows * width >= 65536)
    for (int r = 0; r < n_rows; r++) {
        const float *cr = cos_t + (size_t)(r % T) * half, *sr = sin_t + (size_t)(r % T) * half;
        float *row = x + (size_t)r * width;
        for (int h0 = 0; h0 < width; h0 += head_size)
            for (int i = 0; i < half; i++) {
                float *v = row + h0 + 2 * i;
                float v0 = v[0], v1 = v[1];
                v[0] = v0 * cr[i] - v1 * sr[i];
                v[1] = v0 * sr[i] + v1 * cr[i];
            }
    }
}

/* Dot product with 8 partial sums combined in a fixed order (vectorizes without -ffast-math). */
static float dot(const float *a, const float *b, int n)
{
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += a[i + j] * b[i + j];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* One query row against keys 0..t of its window: ctx_row (hs) = sum_s p_s v_s. */
static void attend_row(const float *qrow, const float *k0, const float *v0, int t, int hs,
                       int kv_stride, float scale, float *scores, float *ctx_row)
{
    float mx = -INFINITY;
    for (int s = 0; s <= t; s++) {
        scores[s] = dot(qrow, k0 + (size_t)s * kv_stride, hs) * scale;
        mx = scores[s] > mx ? scores[s] : mx;
    }
    float sum = 0.0f;
    for (int s = 0; s <= t; s++) {
        scores[s] = expf(scores[s] - mx);
        sum += scores[s];
    }
    float inv = 1.0f / sum;
    memset(ctx_row, 0, (size_t)hs * sizeof(float));
    for (int s = 0; s <= t; s++) {
        const float *vs = v0 + (size_t)s * kv_stride;
        float p = scores[s] * inv;
        for (int d = 0; d < hs; d++)
            ctx_row[d] += p * vs[d];
    }
}

void gq_causal_attention(const gq_config *c, const float *q, const float *k, const float *v,
                         float *ctx, int B, int T, float *scores, int n_threads)
{
    int hs = gq_head_size(c), kv_dim = gq_kv_dim(c), kv_mul = c->n_heads / c->n_kv_heads;
    int n_tasks = B * c->n_heads;
    float scale = 1.0f / sqrtf((float)hs);
    int nt = omp_get_max_threads() < n_threads ? omp_get_max_threads() : n_threads;
    /* multiply-adds of q k^T and p v over all tasks: below ~1M a fork/join costs more */
    double work = 2.0 * n_tasks * hs * ((double)T * (T + 1) / 2);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (n_tasks > 1 && work >= 1e6)
    for (int task = 0; task < n_tasks; task++) {
        int b = task / c->n_heads, h = task % c->n_heads;
        float *sc = scores + (size_t)omp_get_thread_num() * T;
        size_t row0 = (size_t)b * T;
        const float *k0 = k + row0 * kv_dim + (size_t)(h / kv_mul) * hs;
        const float *v0 = v + row0 * kv_dim + (size_t)(h / kv_mul) * hs;
        for (int t = 0; t < T; t++)
            attend_row(q + (row0 + t) * c->dim + (size_t)h * hs, k0, v0, t, hs, kv_dim, scale,
                       sc, ctx + (row0 + t) * c->dim + (size_t)h * hs);
    }
}
