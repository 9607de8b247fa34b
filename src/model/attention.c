/* Batched causal attention: RoPE and softmax(q k^T / sqrt(hs)) v per (window, head). With a
 * sliding window W (Mistral), position t attends to keys max(0, t-W+1) .. t, as transformers'
 * sliding-window mask: windows longer than W are evaluated exactly, not refused. */
#include <cblas.h>
#include <math.h>
#include <omp.h>

#include "core/gq_gemm.h"
#include "model/attention_internal.h"

/* Llama 3.1's rescaling of one frequency (transformers' _compute_llama3_parameters): wave
 * lengths beyond original/low_freq_factor are divided by factor, those below
 * original/high_freq_factor kept, and the band between interpolated. */
static float llama3_freq(const gq_rope_scaling *r, float freq)
{
    float orig = (float)r->original_max_positions;
    float wavelen = 2.0f * (float)M_PI / freq;
    if (wavelen < orig / r->high_freq_factor)
        return freq;
    if (wavelen > orig / r->low_freq_factor)
        return freq / r->factor;
    float smooth = (orig / wavelen - r->low_freq_factor) /
                   (r->high_freq_factor - r->low_freq_factor);
    return (1.0f - smooth) * freq / r->factor + smooth * freq;
}

float gq_rope_freq(const gq_config *c, int i)
{
    int hs = gq_head_size(c);
    float freq = 1.0f / powf(gq_rope_theta(c), (float)(2 * i) / (float)hs);
    switch (c->rope_scaling.kind) {
    case GQ_ROPE_LINEAR: return freq / c->rope_scaling.factor;
    case GQ_ROPE_LLAMA3: return llama3_freq(&c->rope_scaling, freq);
    default: return freq; /* plain; dynamic within seq_len (see gq_rope_kind) */
    }
}

int gq_attention_first_key(const gq_config *c, int t)
{
    int w = c->sliding_window;
    return w > 0 && t + 1 > w ? t + 1 - w : 0;
}

void gq_rope_tables(const gq_config *c, float *cos_t, float *sin_t)
{
    int hs = gq_head_size(c), half = hs / 2;
    for (int p = 0; p < c->seq_len; p++)
        for (int i = 0; i < half; i++) {
            float freq = gq_rope_freq(c, i);
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

/* One (window, head) task: queries q0, keys k0, values v0 of T positions (row strides dim and
 * kv_dim), in blocks of GQ_ATT_QBLOCK query rows. Block [t0, t0+nq) needs keys [0, t0+nq):
 *   S (nq, nk) = q_blk k^T / sqrt(hs)                      (sgemm)
 *   row t: softmax over s <= t (s > t set to 0)             (fixed order)
 *   ctx_blk (nq, hs) = S v                                  (sgemm)
 * Only the diagonal block computes masked scores, so the work stays close to causal. */
static void attend_task(const gq_config *c, const float *q0, const float *k0, const float *v0,
                        float *ctx0, int T, int hs, int dim, int kv_dim, float *S)
{
    float scale = 1.0f / sqrtf((float)hs);
    for (int t0 = 0; t0 < T; t0 += GQ_ATT_QBLOCK) {
        int nq = T - t0 < GQ_ATT_QBLOCK ? T - t0 : GQ_ATT_QBLOCK, nk = t0 + nq;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hs, scale,
                    q0 + (size_t)t0 * dim, dim, k0, kv_dim, 0.0f, S, nk);
        for (int i = 0; i < nq; i++) {
            float *row = S + (size_t)i * nk;
            int n = t0 + i + 1; /* keys lo .. t0+i (lo > 0 only with a sliding window) */
            int lo = gq_attention_first_key(c, t0 + i);
            float mx = row[lo];
            for (int s = lo + 1; s < n; s++)
                mx = row[s] > mx ? row[s] : mx;
            float sum = 0.0f;
            for (int s = lo; s < n; s++) {
                row[s] = expf(row[s] - mx);
                sum += row[s];
            }
            float inv = 1.0f / sum;
            for (int s = lo; s < n; s++)
                row[s] *= inv;
            for (int s = 0; s < lo; s++)
                row[s] = 0.0f;
            for (int s = n; s < nk; s++)
                row[s] = 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hs, nk, 1.0f, S, nk, v0,
                    kv_dim, 0.0f, ctx0 + (size_t)t0 * dim, dim);
    }
}

void gq_causal_attention(const gq_config *c, const float *q, const float *k, const float *v,
                         float *ctx, int B, int T, float *scores, int n_threads)
{
    int hs = gq_head_size(c), kv_dim = gq_kv_dim(c), kv_mul = c->n_heads / c->n_kv_heads;
    int n_tasks = B * c->n_heads;
    int nt = omp_get_max_threads() < n_threads ? omp_get_max_threads() : n_threads;
    /* multiply-adds of q k^T and p v over all tasks: below ~1M a fork/join costs more */
    double work = 2.0 * n_tasks * hs * ((double)T * (T + 1) / 2);
#pragma omp parallel num_threads(nt) if (n_tasks > 1 && work >= 1e6)
    {
        gq_blas_single_threaded(); /* also when the region runs on one thread */
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < n_tasks; task++) {
            int b = task / c->n_heads, h = task % c->n_heads;
            float *S = scores + (size_t)omp_get_thread_num() * GQ_ATT_QBLOCK * T;
            size_t row0 = (size_t)b * T;
            size_t qoff = row0 * gq_q_dim(c) + (size_t)h * hs;
            size_t kvoff = row0 * kv_dim + (size_t)(h / kv_mul) * hs;
            attend_task(c, q + qoff, k + kvoff, v + kvoff, ctx + qoff, T, hs, gq_q_dim(c), kv_dim,
                        S);
        }
    }
}
