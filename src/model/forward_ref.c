/* Per-token forward pass with a KV cache: the reference for the batched path and the decode
 * step of generation. One function per step, in llama2.c run.c's order of operations. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gq_alloc.h"
#include "core/gq_fileio.h"
#include "model/attention_internal.h"
#include "model/gq_act_hook.h"
#include "model/gq_forward.h"
#include "model/gq_rotation.h"

struct gq_decode {
    const gq_model *m;
    int next_pos;   /* positions 0..next_pos-1 are in the cache */
    int cap;        /* positions the cache holds (<= seq_len) */
    float *x;       /* (dim) residual */
    float *xb;      /* (max(dim, q_dim)) normalised input / attention output */
    float *xt;      /* (dim) xb · M for explicit transforms */
    float *xb2;     /* (dim) */
    float *hb;      /* (hidden) */
    float *hb2;     /* (hidden) */
    float *q;       /* (q_dim) */
    float *rope;    /* (head_size) cos, sin pairs of the current position */
    float *att;     /* (n_heads, cap) */
    float *key_cache;   /* (n_layers, cap, kv_dim) */
    float *value_cache; /* (n_layers, cap, kv_dim) */
    float *aq;          /* (max(dim, hidden)) a linear's fake-quantized input */
    double *rot_tmp;    /* (2 * hidden) scratch of the online down_proj rotation, or NULL */
};

size_t gq_decode_bytes(const gq_config *c, int n_pos)
{
    size_t per_pos = 2 * (size_t)c->n_layers * (size_t)gq_kv_dim(c) + (size_t)c->n_heads;
    size_t wide = (size_t)(gq_q_dim(c) > c->dim ? gq_q_dim(c) : c->dim);
    size_t widest = (size_t)c->hidden_dim > wide ? (size_t)c->hidden_dim : wide; /* aq */
    return ((size_t)n_pos * per_pos + 5 * (size_t)c->dim + 2 * wide +
            2 * (size_t)c->hidden_dim + widest) * sizeof(float);
}

int gq_decode_check(const gq_config *c, int n_pos, gq_error *err)
{
    if (n_pos < 1 || n_pos > c->seq_len)
        return gq_fail(err, "decode: %d positions is outside 1..%d (seq_len)", n_pos, c->seq_len);
    double need = (double)gq_decode_bytes(c, n_pos);
    double have = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    if (have > 0 && need > have)
        return gq_fail(err, "decode: a KV cache of %d positions x %d layers x %d values needs "
                            "%.1f GiB, more than this machine's %.1f GiB of memory",
                       n_pos, c->n_layers, 2 * gq_kv_dim(c), need / 1073741824.0,
                       have / 1073741824.0);
    return 0;
}

gq_decode *gq_decode_new_n(const gq_model *m, int n_pos, gq_error *err)
{
    const gq_config *c = &m->cfg;
    if (gq_decode_check(c, n_pos, err))
        return NULL;
    gq_decode *d = calloc(1, sizeof *d);
    if (!d)
        return gq_fail(err, "decode: out of memory"), NULL;
    d->m = m;
    d->cap = n_pos;
    size_t dim = (size_t)c->dim, h = (size_t)c->hidden_dim, qd = (size_t)gq_q_dim(c);
    size_t cache = (size_t)c->n_layers * (size_t)n_pos * gq_kv_dim(c);
    struct { float **p; size_t n; } bufs[] = {
        {&d->x, dim}, {&d->xb, qd > dim ? qd : dim}, {&d->xt, dim}, {&d->xb2, dim},
        {&d->hb, h}, {&d->hb2, h}, {&d->q, qd}, {&d->rope, (size_t)gq_head_size(c)},
        {&d->att, (size_t)c->n_heads * n_pos},
        {&d->key_cache, cache}, {&d->value_cache, cache},
        {&d->aq, h > (qd > dim ? qd : dim) ? h : (qd > dim ? qd : dim)},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (!(*bufs[i].p = gq_alloc_zero(bufs[i].n * sizeof(float), "decode state", err))) {
            gq_decode_free(d);
            return NULL;
        }
    if (c->n_layers > 0 && m->layers[0].down_in_rot &&
        !(d->rot_tmp = gq_alloc_zero(2 * h * sizeof(double), "decode state", err))) {
        gq_decode_free(d);
        return NULL;
    }
    return d;
}

gq_decode *gq_decode_new(const gq_model *m, gq_error *err)
{
    return gq_decode_new_n(m, m->cfg.seq_len, err);
}

void gq_decode_free(gq_decode *d)
{
    if (!d)
        return;
    float *bufs[] = {d->x, d->xb, d->xt, d->xb2, d->hb, d->hb2, d->q, d->rope, d->att,
                     d->key_cache, d->value_cache, d->aq};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(d->rot_tmp);
    free(d);
}

/* o (size) = x / rms(x) * w, sequential sum of squares, epsilon eps. */
static void rmsnorm_vec_eps(float *o, const float *x, const float *w, int size, float eps)
{
    float ss = 0.0f;
    for (int j = 0; j < size; j++)
        ss += x[j] * x[j];
    ss /= size;
    ss += eps;
    ss = 1.0f / sqrtf(ss);
    for (int j = 0; j < size; j++)
        o[j] = w[j] * (ss * x[j]);
}

/* Qwen3's per-head norms of q (n_heads heads) and k (n_kv_heads), before RoPE. */
static void qk_norm_vec(const gq_config *c, const gq_layer *L, float *q, float *k)
{
    if (!L->q_norm)
        return;
    int hs = gq_head_size(c);
    for (int h = 0; h < c->n_heads; h++)
        rmsnorm_vec_eps(q + (size_t)h * hs, q + (size_t)h * hs, L->q_norm, hs, gq_norm_eps(c));
    for (int h = 0; h < c->n_kv_heads; h++)
        rmsnorm_vec_eps(k + (size_t)h * hs, k + (size_t)h * hs, L->k_norm, hs, gq_norm_eps(c));
}

/* xout (d) = W (d, n) · x (n), one sequential float sum per row (the rounding of run.c's
 * matmul). Eight rows advance together so that their eight independent sums overlap in the
 * pipeline instead of waiting on one add chain; blocks of rows run in parallel. */
#define MV_ROWS 8

/* One product of a fused matrix-vector pass: out (d) = w (d, n) · x. */
typedef struct {
    float *out;
    const float *w;
    int d;
} mv_job;

/* Rows i0 .. i0+MV_ROWS-1 (fewer at the end) of one job. */
static void matvec_block(const mv_job *j, const float *x, int n, int i0)
{
    if (i0 + MV_ROWS <= j->d) {
        const float *wr = j->w + (size_t)i0 * n;
        float acc[MV_ROWS] = {0};
        for (int c = 0; c < n; c++)
            for (int r = 0; r < MV_ROWS; r++)
                acc[r] += wr[(size_t)r * n + c] * x[c];
        for (int r = 0; r < MV_ROWS; r++)
            j->out[i0 + r] = acc[r];
        return;
    }
    for (int i = i0; i < j->d; i++) {
        const float *wr = j->w + (size_t)i * n;
        float val = 0.0f;
        for (int c = 0; c < n; c++)
            val += wr[c] * x[c];
        j->out[i] = val;
    }
}

/* Products sharing the input x (n), in one parallel loop over all their row blocks (one
 * fork/join instead of one per matrix). Below ~1M multiply-adds (0.3 ms on one core) the loop
 * stays serial: a fork/join on a loaded machine can cost more than the work. */
static void matvec_jobs(const mv_job *jobs, int n_jobs, const float *x, int n)
{
    int first[4], total = 0;
    long work = 0;
    for (int j = 0; j < n_jobs; j++) {
        first[j] = total;
        total += (jobs[j].d + MV_ROWS - 1) / MV_ROWS;
        work += (long)jobs[j].d * n;
    }
#pragma omp parallel for schedule(static) if (work >= (1L << 20))
    for (int b = 0; b < total; b++) {
        int j = n_jobs - 1;
        while (first[j] > b)
            j--;
        matvec_block(&jobs[j], x, n, (b - first[j]) * MV_ROWS);
    }
}

static void matvec(float *xout, const float *x, const float *w, int n, int d)
{
    mv_job job = {xout, w, d};
    matvec_jobs(&job, 1, x, n);
}

/* outs[i] += the bias of linear kinds[i], for those that have one. */
static void add_biases(const gq_config *c, const gq_layer *L, const gq_linear_kind *kinds,
                       float *const *outs, int count)
{
    for (int i = 0; i < count; i++) {
        const float *b = L->b[kinds[i]];
        if (!b)
            continue;
        int rows, cols;
        gq_linear_shape(c, kinds[i], &rows, &cols);
        for (int r = 0; r < rows; r++)
            outs[i][r] += b[r];
    }
}

/* outs[i] (rows of kinds[i]) = linear kinds[i] of block L applied to x (n), for up to 3
 * linears sharing x: one apply_shared call when all their operators have the same one,
 * else each operator (packed weights) or one fused fp32 pass. */
static void layer_matvecs(const gq_config *c, const gq_layer *L, const gq_linear_kind *kinds,
                          float *const *outs, int count, const float *x)
{
    const gq_linear_op *ops[3];
    bool shared = true;
    for (int i = 0; i < count; i++) {
        ops[i] = L->op[kinds[i]];
        shared = shared && ops[i] && ops[i]->apply_shared &&
                 ops[i]->apply_shared == ops[0]->apply_shared;
    }
    if (shared) {
        ops[0]->apply_shared(ops, outs, count, x);
        return;
    }
    mv_job jobs[3];
    int n_jobs = 0, n = 0;
    for (int i = 0; i < count; i++) {
        int rows;
        gq_linear_shape(c, kinds[i], &rows, &n);
        if (L->op[kinds[i]])
            L->op[kinds[i]]->apply(L->op[kinds[i]], outs[i], x, 1);
        else
            jobs[n_jobs++] = (mv_job){outs[i], L->w[kinds[i]], rows};
    }
    if (n_jobs)
        matvec_jobs(jobs, n_jobs, x, n);
    add_biases(c, L, kinds, outs, count);
}

/* layer_matvecs for block l of a decode state: when the model's activation hook quantizes the
 * input of any of the kinds, each of them runs alone on its own (possibly quantized) copy of x
 * (one token: T = 1), which gives each output the same sums as the fused pass. */
static void block_matvecs(const gq_decode *d, int l, const gq_linear_kind *kinds,
                          float *const *outs, int count, const float *x)
{
    const gq_config *c = &d->m->cfg;
    const gq_layer *L = &d->m->layers[l];
    const gq_act_hook *h = d->m->act;
    bool any = false;
    for (int i = 0; h && i < count; i++)
        any |= h->has_input(h, l, kinds[i]);
    if (!any) {
        layer_matvecs(c, L, kinds, outs, count, x);
        return;
    }
    for (int i = 0; i < count; i++) {
        int rows, cols;
        gq_linear_shape(c, kinds[i], &rows, &cols);
        const float *in = x;
        if (h->has_input(h, l, kinds[i])) {
            h->quant_input(h, l, kinds[i], x, d->aq, 1, cols, 1);
            in = d->aq;
        }
        layer_matvecs(c, L, &kinds[i], &outs[i], 1, in);
    }
}

/* out (dim) = x (dim) · M (dim, dim), column sums in order over the rows of M. */
static void vec_times_matrix(float *out, const float *x, const float *M, int dim)
{
    for (int j = 0; j < dim; j++) {
        float val = 0.0f;
        for (int k = 0; k < dim; k++)
            val += x[k] * M[(size_t)k * dim + j];
        out[j] = val;
    }
}

/* The RoPE rotations of position pos: cs[2f], cs[2f+1] = cos, sin of pos * gq_rope_freq(f)
 * (10000^(-2f/head_size) for llama2.c) for the head_size/2 frequencies (the same for every
 * head and layer, so computed once a step). */
static void rope_angles(const gq_config *c, float *cs, int pos, int head_size)
{
    for (int head_dim = 0; head_dim < head_size; head_dim += 2) {
        float freq = gq_rope_freq(c, head_dim / 2);
        float val = pos * freq;
        cs[head_dim] = cosf(val);
        cs[head_dim + 1] = sinf(val);
    }
}

/* RoPE on q (dim = q_dim) and k (kv_dim), pairs (i, i+1) within each head, angles from
 * rope_angles. */
static void rope_vec(float *q, float *k, const float *cs, int dim, int kv_dim, int head_size)
{
    for (int i = 0; i < dim; i += 2) {
        int head_dim = i % head_size;
        float fcr = cs[head_dim], fci = cs[head_dim + 1];
        int rotn = i < kv_dim ? 2 : 1; /* q and k, or q only */
        for (int v = 0; v < rotn; v++) {
            float *vec = v == 0 ? q : k;
            float v0 = vec[i], v1 = vec[i + 1];
            vec[i] = v0 * fcr - v1 * fci;
            vec[i + 1] = v0 * fci + v1 * fcr;
        }
    }
}

static void softmax(float *x, int size)
{
    float mx = x[0];
    for (int i = 1; i < size; i++)
        if (x[i] > mx)
            mx = x[i];
    float sum = 0.0f;
    for (int i = 0; i < size; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    for (int i = 0; i < size; i++)
        x[i] /= sum;
}

/* Attention of q against cached positions 0..pos of layer l -> xb (dim). Each score is one
 * sequential sum over the head (run.c's rounding); ATT_POS positions advance together so their
 * sums overlap in the pipeline instead of waiting on one add chain. Each output element is the
 * sum over positions in order, as run.c, accumulated ATT_VAL elements at a time in vector
 * registers (GCC vector extension: per lane the same rounded product and sum) rather than
 * through xb in memory at every position. */
#define ATT_POS 8
#define ATT_VAL 64
typedef float att_v8 __attribute__((vector_size(32))); /* 8 lanes: mul and add per lane */

/* 8 floats at any float-aligned address, as one vector (the unaligned, may-alias view GCC's
 * own intrinsics headers use) */
typedef float att_v8u __attribute__((vector_size(32), aligned(4), may_alias));
#define LOAD8(p) (*(const att_v8u *)(p))

/* c[j] lane u = r[u] lane j (an 8 x 8 transpose in registers). */
static inline void transpose8(const att_v8 r[8], att_v8 c[8])
{
    /* __builtin_shufflevector (GCC >= 12 and clang): lane i of the result is lane idx[i] of
     * the concatenation (a, b) */
    att_v8 t[8], u[8];
    for (int p = 0; p < 4; p++) {
        t[2 * p] = __builtin_shufflevector(r[2 * p], r[2 * p + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[2 * p + 1] =
            __builtin_shufflevector(r[2 * p], r[2 * p + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int h = 0; h < 2; h++) /* rows 4h..4h+3 */
        for (int p = 0; p < 2; p++) {
            u[4 * h + 2 * p] = __builtin_shufflevector(t[4 * h + p], t[4 * h + 2 + p], 0, 1, 8,
                                                       9, 4, 5, 12, 13);
            u[4 * h + 2 * p + 1] = __builtin_shufflevector(t[4 * h + p], t[4 * h + 2 + p], 2,
                                                           3, 10, 11, 6, 7, 14, 15);
        }
    for (int j = 0; j < 4; j++) {
        c[j] = __builtin_shufflevector(u[j], u[4 + j], 0, 1, 2, 3, 8, 9, 10, 11);
        c[4 + j] = __builtin_shufflevector(u[j], u[4 + j], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}

/* att[u] = the score of the position whose key starts at k + u * stride, u < 8, over
 * sqrtf(hs): the sequential sum over i of q[i] * k[u * stride + i], each product rounded, then
 * the sum, as the scalar loop (8 dimensions of 8 keys per step, transposed in registers). */
static void scores8(const float *q, const float *k, size_t stride, int hs, float *att)
{
    att_v8 sc = {0};
    int i = 0;
    for (; i + 8 <= hs; i += 8) {
        att_v8 r[8], c[8];
        for (int u = 0; u < 8; u++)
            r[u] = LOAD8(k + u * stride + i);
        transpose8(r, c);
        for (int j = 0; j < 8; j++)
            sc += q[i + j] * c[j];
    }
    for (; i < hs; i++) {
        const att_v8 kv = {k[i], k[stride + i], k[2 * stride + i], k[3 * stride + i],
                           k[4 * stride + i], k[5 * stride + i], k[6 * stride + i],
                           k[7 * stride + i]};
        sc += q[i] * kv;
    }
    sc /= sqrtf((float)hs);
    memcpy(att, &sc, sizeof sc);
}

static void attend(gq_decode *d, int l, int pos)
{
    const gq_config *c = &d->m->cfg;
    int hs = gq_head_size(c), kv_dim = gq_kv_dim(c), kv_mul = c->n_heads / c->n_kv_heads;
    size_t loff = (size_t)l * d->cap * kv_dim;
    /* heads in parallel (each head's arithmetic is the same whichever thread runs it) */
#pragma omp parallel for schedule(static) if ((long)c->n_heads * (pos + 1) * hs >= 8192)
    for (int h = 0; h < c->n_heads; h++) {
        const float *q = d->q + (size_t)h * hs;
        float *att = d->att + (size_t)h * d->cap;
        const float *kh = d->key_cache + loff + (size_t)(h / kv_mul) * hs;
        const int lo = gq_attention_first_key(c, pos); /* 0 unless a sliding window */
        int t = lo;
        for (; t + 8 <= pos + 1; t += 8)
            scores8(q, kh + (size_t)t * kv_dim, (size_t)kv_dim, hs, att + t);
        for (; t <= pos; t += ATT_POS) { /* up to ATT_POS independent sums */
            const int w = pos + 1 - t < ATT_POS ? pos + 1 - t : ATT_POS;
            float score[ATT_POS] = {0};
            for (int i = 0; i < hs; i++)
                for (int u = 0; u < w; u++)
                    score[u] += q[i] * kh[(size_t)(t + u) * kv_dim + i];
            for (int u = 0; u < w; u++)
                att[t + u] = score[u] / sqrtf((float)hs);
        }
        softmax(att + lo, pos + 1 - lo);
        float *xb = d->xb + (size_t)h * hs;
        const float *vh = d->value_cache + loff + (size_t)(h / kv_mul) * hs;
        int i0 = 0;
        for (; i0 + ATT_VAL <= hs; i0 += ATT_VAL) { /* whole runs: 8 vectors of 8 in registers */
            att_v8 acc[ATT_VAL / 8] = {{0}};
            for (int t = lo; t <= pos; t++) {
                const float *v = vh + (size_t)t * kv_dim + i0;
#pragma GCC unroll 8
                for (int k = 0; k < ATT_VAL / 8; k++) {
                    acc[k] += att[t] * LOAD8(v + 8 * k);
                }
            }
            memcpy(xb + i0, acc, sizeof acc);
        }
        if (i0 < hs) { /* the rest of the head */
            float acc[ATT_VAL] = {0};
            for (int t = lo; t <= pos; t++)
                for (int i = 0; i < hs - i0; i++)
                    acc[i] += att[t] * vh[(size_t)t * kv_dim + i0 + i];
            memcpy(xb + i0, acc, (size_t)(hs - i0) * sizeof(float));
        }
    }
}

int gq_decode_step(gq_decode *d, int token, int pos, float *logits, gq_error *err)
{
    const gq_model *m = d->m;
    const gq_config *c = &m->cfg;
    if (token < 0 || token >= c->vocab_size)
        return gq_fail(err, "decode: token %d is outside 0..%d", token, c->vocab_size - 1);
    if (pos < 0 || pos >= d->cap || pos > d->next_pos)
        return gq_fail(err, "decode: position %d is outside 0..%d (next expected %d)", pos,
                       d->cap - 1, d->next_pos);
    int dim = c->dim, kv_dim = gq_kv_dim(c), hid = c->hidden_dim;
    float eps = gq_norm_eps(c);
    memcpy(d->x, m->tok_embeddings + (size_t)token * dim, (size_t)dim * sizeof(float));
    rope_angles(c, d->rope, pos, gq_head_size(c));
    for (int l = 0; l < c->n_layers; l++) {
        const gq_layer *L = &m->layers[l];
        size_t cache_off = ((size_t)l * d->cap + pos) * kv_dim;
        float *k = d->key_cache + cache_off, *v = d->value_cache + cache_off;
        /* attention: xb = norm(x) [· M]; q, k, v; RoPE; attend; x += wo · ctx */
        rmsnorm_vec_eps(d->xb, d->x, L->rms_att, dim, eps);
        const float *ain = d->xb;
        if (L->att_in_transform) {
            vec_times_matrix(d->xt, d->xb, L->att_in_transform, dim);
            ain = d->xt;
        }
        block_matvecs(d, l, (gq_linear_kind[]){GQ_LIN_Q, GQ_LIN_K, GQ_LIN_V},
                      (float *[]){d->q, k, v}, 3, ain);
        qk_norm_vec(c, L, d->q, k);
        rope_vec(d->q, k, d->rope, gq_q_dim(c), kv_dim, gq_head_size(c));
        if (m->act && m->act->quant_kv) { /* the cache holds the quantized rows */
            m->act->quant_kv(m->act, l, false, k, 1);
            m->act->quant_kv(m->act, l, true, v, 1);
        }
        attend(d, l, pos);
        block_matvecs(d, l, (gq_linear_kind[]){GQ_LIN_O}, (float *[]){d->xb2}, 1, d->xb);
        for (int i = 0; i < dim; i++)
            d->x[i] += d->xb2[i];
        /* mlp: xb = norm(x) [· M]; x += w2 · (SiLU(w1 xb) * (w3 xb)) */
        rmsnorm_vec_eps(d->xb, d->x, L->rms_ffn, dim, eps);
        const float *fin = d->xb;
        if (L->ffn_in_transform) {
            vec_times_matrix(d->xt, d->xb, L->ffn_in_transform, dim);
            fin = d->xt;
        }
        block_matvecs(d, l, (gq_linear_kind[]){GQ_LIN_GATE, GQ_LIN_UP},
                      (float *[]){d->hb, d->hb2}, 2, fin);
#pragma omp parallel for schedule(static) if (hid >= 1024) /* expf: worth two threads */
        for (int i = 0; i < hid; i++) {
            float val = d->hb[i];
            val *= (1.0f / (1.0f + expf(-val)));
            d->hb[i] = val * d->hb2[i];
        }
        if (L->down_in_rot) /* hb <- hb H / sqrt(hidden), as the batched path */
            gq_rotation_vec(L->down_in_rot, d->hb, 1, NULL, d->rot_tmp);
        block_matvecs(d, l, (gq_linear_kind[]){GQ_LIN_DOWN}, (float *[]){d->xb}, 1, d->hb);
        for (int i = 0; i < dim; i++)
            d->x[i] += d->xb[i];
    }
    rmsnorm_vec_eps(d->x, d->x, m->rms_final, dim, eps);
    if (m->cls_op)
        m->cls_op->apply(m->cls_op, logits, d->x, 1);
    else
        matvec(logits, d->x, m->wcls, dim, c->vocab_size);
    d->next_pos = pos + 1;
    return 0;
}

int gq_forward_ref(const gq_model *m, const int *tokens, int T, float *logits, gq_error *err)
{
    if (T < 1 || T > m->cfg.seq_len)
        return gq_fail(err, "reference forward: T %d is outside 1..%d", T, m->cfg.seq_len);
    gq_decode *d = gq_decode_new_n(m, T, err);
    if (!d)
        return -1;
    int rc = 0;
    for (int t = 0; t < T && rc == 0; t++)
        rc = gq_decode_step(d, tokens[t], t, logits + (size_t)t * m->cfg.vocab_size, err);
    gq_decode_free(d);
    return rc;
}
