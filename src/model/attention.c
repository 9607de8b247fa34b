/* Batched causal attention: RoPE and softmax(q k^T / sqrt(hs)) v per (window, head). With a
 * sliding window W (Mistral), position t attends to keys max(0, t-W+1) .. t, as transformers'
 * sliding-window mask: windows longer than W are evaluated exactly, not refused. */
#include <cblas.h>
#include <math.h>
#include <string.h>
#include <omp.h>

#include "core/gq_gemm.h"
#include "core/gq_vmath.h"
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

/* Rotates the pairs of every head of one row (width) at the position whose tables are cr, sr. */
static void rope_row(float *row, int width, int head_size, const float *cr, const float *sr)
{
    int half = head_size / 2;
    for (int h0 = 0; h0 < width; h0 += head_size)
        for (int i = 0; i < half; i++) {
            float *v = row + h0 + 2 * i;
            float v0 = v[0], v1 = v[1];
            v[0] = v0 * cr[i] - v1 * sr[i];
            v[1] = v0 * sr[i] + v1 * cr[i];
        }
}

void gq_rope_rows(float *x, int n_rows, int T, int width, int head_size, const float *cos_t,
                  const float *sin_t)
{
    gq_rope_qk_rows(x, width, NULL, 0, 0, n_rows, T, head_size, cos_t, sin_t);
}

void gq_rope_qk_rows(float *q, int q_width, float *k, int k_width, int r0, int n_rows, int T,
                     int head_size, const float *cos_t, const float *sin_t)
{
    int half = head_size / 2;
    /* dynamic chunks: a preempted thread does not hold the others at the barrier */
#pragma omp parallel for schedule(dynamic, 8) if ((long)n_rows * (q_width + k_width) >= 65536)
    for (int r = r0; r < r0 + n_rows; r++) {
        const float *cr = cos_t + (size_t)(r % T) * half, *sr = sin_t + (size_t)(r % T) * half;
        rope_row(q + (size_t)r * q_width, q_width, head_size, cr, sr);
        if (k)
            rope_row(k + (size_t)r * k_width, k_width, head_size, cr, sr);
    }
}

/* One (window, head) task: queries q0, keys k0, values v0 of T positions (row strides dim and
 * kv_dim), in blocks of GQ_ATT_QBLOCK query rows. Block [t0, t0+nq) needs keys [0, t0+nq):
 *   S (nq, nk) = q_blk k^T / sqrt(hs)                      (sgemm)
 *   row t: softmax over s <= t (s > t set to 0)             (gq_softmax_row)
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
        for (int i = 0; i < nq; i++) { /* row i sees keys lo .. t0+i (lo > 0: sliding window) */
            float *row = S + (size_t)i * nk;
            int lo = gq_attention_first_key(c, t0 + i);
            memset(row, 0, (size_t)lo * sizeof(float));
            gq_softmax_row(row + lo, t0 + i + 1 - lo, nk - lo);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hs, nk, 1.0f, S, nk, v0,
                    kv_dim, 0.0f, ctx0 + (size_t)t0 * dim, dim);
    }
}

#define FUSED_ROWS 4   /* query rows per step: each key vector loaded once serves 4 rows */
#define FUSED_MAX_HS 32

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

static int use_fused(int hs) { return hs % 8 == 0 && hs <= FUSED_MAX_HS; }

static int pad16(int n) { return (n + 15) & ~15; }

/* S[r][j] = scale * sum_d q_r[d] Kt[d][j] for 4 query rows (q + r*dim) and keys [0, nk):
 * one fma per d in increasing order, then the scale. Kt (hs, ldk) is zero beyond the keys. */
static void fused_scores(const float *q, int dim, const float *Kt, int ldk, int hs, int nk,
                         float scale, float *S, int lds)
{
    const __m256 sc = _mm256_set1_ps(scale);
    for (int j = 0; j < nk; j += 16) {
        __m256 acc[FUSED_ROWS][2];
        for (int r = 0; r < FUSED_ROWS; r++)
            acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        for (int d = 0; d < hs; d++) {
            __m256 k0 = _mm256_loadu_ps(Kt + (size_t)d * ldk + j);
            __m256 k1 = _mm256_loadu_ps(Kt + (size_t)d * ldk + j + 8);
            for (int r = 0; r < FUSED_ROWS; r++) {
                __m256 qb = _mm256_broadcast_ss(q + (size_t)r * dim + d);
                acc[r][0] = _mm256_fmadd_ps(qb, k0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(qb, k1, acc[r][1]);
            }
        }
        for (int r = 0; r < FUSED_ROWS; r++) {
            _mm256_storeu_ps(S + (size_t)r * lds + j, _mm256_mul_ps(acc[r][0], sc));
            _mm256_storeu_ps(S + (size_t)r * lds + j + 8, _mm256_mul_ps(acc[r][1], sc));
        }
    }
}

/* ctx_r[d0..d0+8) = (sum over even j + sum over odd j of P[r][j] v_j[d0..]) * inv[r], j < nk,
 * each sum one fma chain in increasing j; v_j = v0 + j*ldv. */
static void fused_values(const float *P, int lds, const float *v0, int ldv, int hs, int nk,
                         const float *inv, float *ctx, int dim, int nr)
{
    for (int d0 = 0; d0 < hs; d0 += 8) {
        __m256 acc[FUSED_ROWS][2];
        for (int r = 0; r < FUSED_ROWS; r++)
            acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        int j = 0;
        for (; j + 2 <= nk; j += 2) {
            __m256 va = _mm256_loadu_ps(v0 + (size_t)j * ldv + d0);
            __m256 vb = _mm256_loadu_ps(v0 + (size_t)(j + 1) * ldv + d0);
            for (int r = 0; r < FUSED_ROWS; r++) {
                const float *p = P + (size_t)r * lds + j;
                acc[r][0] = _mm256_fmadd_ps(_mm256_broadcast_ss(p), va, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + 1), vb, acc[r][1]);
            }
        }
        if (j < nk) {
            __m256 va = _mm256_loadu_ps(v0 + (size_t)j * ldv + d0);
            for (int r = 0; r < FUSED_ROWS; r++)
                acc[r][0] = _mm256_fmadd_ps(_mm256_broadcast_ss(P + (size_t)r * lds + j), va,
                                            acc[r][0]);
        }
        for (int r = 0; r < nr; r++)
            _mm256_storeu_ps(ctx + (size_t)r * dim + d0,
                             _mm256_mul_ps(_mm256_add_ps(acc[r][0], acc[r][1]),
                                           _mm256_set1_ps(inv[r])));
    }
}

/* One (window, head) task for heads of 8..32 (multiple of 8): for each group of 4 query rows
 * t..t+3, scores against keys [0, t+4) (fused_scores), exponentials (gq_exp_row: row t+r sees
 * keys 0..t+r, the rest 0), then ctx = (P v) / sum (fused_values). Scratch: Kt (hs, pad16(T))
 * and S (4, pad16(T)). */
static void attend_fused(const float *q0, const float *k0, const float *v0, float *ctx0, int T,
                         int hs, int dim, int kv_dim, float *scratch)
{
    const int ldk = pad16(T);
    float *Kt = scratch, *S = scratch + (size_t)hs * ldk;
    for (int d = 0; d < hs; d++) {
        float *row = Kt + (size_t)d * ldk;
        for (int j = 0; j < T; j++)
            row[j] = k0[(size_t)j * kv_dim + d];
        for (int j = T; j < ldk; j++)
            row[j] = 0.0f;
    }
    const float scale = 1.0f / sqrtf((float)hs);
    for (int t = 0; t < T; t += FUSED_ROWS) {
        int nr = T - t < FUSED_ROWS ? T - t : FUSED_ROWS, nk = t + nr;
        const float *q = q0 + (size_t)t * dim;
        /* rows past the window's end repeat row t: computed, never stored */
        float qpad[FUSED_ROWS * FUSED_MAX_HS];
        if (nr < FUSED_ROWS) {
            for (int r = 0; r < FUSED_ROWS; r++)
                memcpy(qpad + (size_t)r * hs, q + (size_t)(r < nr ? r : 0) * dim,
                       (size_t)hs * sizeof(float));
            fused_scores(qpad, hs, Kt, ldk, hs, nk, scale, S, ldk);
        } else {
            fused_scores(q, dim, Kt, ldk, hs, nk, scale, S, ldk);
        }
        float inv[FUSED_ROWS];
        for (int r = 0; r < FUSED_ROWS; r++)
            inv[r] = 1.0f / gq_exp_row(S + (size_t)r * ldk, r < nr ? t + r + 1 : 1, nk);
        fused_values(S, ldk, v0, kv_dim, hs, nk, inv, ctx0 + (size_t)t * dim, dim, nr);
    }
}
#else
static int use_fused(int hs) { (void)hs; return 0; }
static void attend_fused(const float *q0, const float *k0, const float *v0, float *ctx0, int T,
                         int hs, int dim, int kv_dim, float *scratch)
{
    (void)q0, (void)k0, (void)v0, (void)ctx0, (void)T, (void)hs, (void)dim, (void)kv_dim,
        (void)scratch;
}
#endif

size_t gq_attention_scratch_floats(const gq_config *c)
{
    size_t T = (size_t)c->seq_len, blocked = (size_t)GQ_ATT_QBLOCK * T;
    if (!use_fused(gq_head_size(c)))
        return blocked;
    size_t fused = ((size_t)gq_head_size(c) + FUSED_ROWS) * ((T + 15) & ~(size_t)15);
    return fused > blocked ? fused : blocked;
}

void gq_causal_attention(const gq_config *c, const float *q, const float *k, const float *v,
                         float *ctx, int B, int T, float *scores, int n_threads)
{
    int hs = gq_head_size(c), kv_dim = gq_kv_dim(c), kv_mul = c->n_heads / c->n_kv_heads;
    /* the fused kernel masks causally only: a sliding window shorter than T takes the blocked
     * path */
    int n_tasks = B * c->n_heads;
    int fused = use_fused(hs) && (c->sliding_window <= 0 || c->sliding_window >= T);
    size_t per_thread = gq_attention_scratch_floats(c);
    int nt = omp_get_max_threads() < n_threads ? omp_get_max_threads() : n_threads;
    /* multiply-adds of q k^T and p v over all tasks: below ~1M a fork/join costs more */
    double work = 2.0 * n_tasks * hs * ((double)T * (T + 1) / 2);
#pragma omp parallel num_threads(nt) if (n_tasks > 1 && work >= 1e6)
    {
        gq_blas_single_threaded(); /* also when the region runs on one thread */
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < n_tasks; task++) {
            int b = task / c->n_heads, h = task % c->n_heads;
            float *S = scores + (size_t)omp_get_thread_num() * per_thread;
            size_t row0 = (size_t)b * T;
            size_t qoff = row0 * gq_q_dim(c) + (size_t)h * hs;
            size_t kvoff = row0 * kv_dim + (size_t)(h / kv_mul) * hs;
            if (fused)
                attend_fused(q + qoff, k + kvoff, v + kvoff, ctx + qoff, T, hs, gq_q_dim(c),
                             kv_dim, S);
            else
                attend_task(c, q + qoff, k + kvoff, v + kvoff, ctx + qoff, T, hs, gq_q_dim(c),
                            kv_dim, S);
        }
    }
}
