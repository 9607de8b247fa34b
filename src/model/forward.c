/* Batched forward pass (prefill): every matrix product is one gq_sgemm over all B*T rows (fixed
 * output tiles, so the result does not depend on the thread count); attention runs per
 * (window, head) under OpenMP (attention.c). */
#include "model/gq_forward.h"

#include <assert.h>
#include <stdbool.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_fileio.h"
#include "core/gq_gemm.h"
#include "core/gq_vmath.h"
#include "model/attention_internal.h"
#include "model/gq_act_hook.h"
#include "model/gq_stream.h"

struct gq_forward_ws {
    gq_config cfg;
    int max_tokens;
    int n_threads;
    float *x;      /* (N, dim)    residual stream of gq_forward_prefill */
    float *xn;     /* (N, dim)    normalised block input */
    float *xt;     /* (N, dim)    xn · M when the block has an explicit transform */
    float *delta;  /* (N, dim)    sub-module output added to the residual */
    float *q;      /* (N, q_dim) */
    float *k;      /* (N, kv_dim) */
    float *v;      /* (N, kv_dim) */
    float *ctx;    /* (N, q_dim)  attention output before o_proj */
    float *hb;     /* (N, hidden) gate, then SiLU(gate) * up */
    float *hb2;    /* (N, hidden) up */
    float *rope_cos, *rope_sin; /* (seq_len, head_size/2) */
    float *scores; /* (n_threads, gq_attention_scratch_floats) attention scratch */
    float *aq;     /* (N, max(dim, q_dim, hidden)) a linear's fake-quantized input */
    const gq_act_hook *act; /* the model's activation hook while gq_block_forward runs */
    int act_layer;          /* the block it runs */
    int act_T;              /* and its window length */
};

gq_forward_ws *gq_forward_ws_new(const gq_config *c, int max_tokens, gq_error *err)
{
    if (max_tokens <= 0)
        return gq_fail(err, "forward: max_tokens %d must be positive", max_tokens), NULL;
    gq_forward_ws *ws = calloc(1, sizeof *ws);
    if (!ws)
        return gq_fail(err, "forward: out of memory"), NULL;
    ws->cfg = *c;
    ws->max_tokens = max_tokens;
    ws->n_threads = omp_get_max_threads();
    size_t N = (size_t)max_tokens, d = (size_t)c->dim, kv = (size_t)gq_kv_dim(c);
    size_t qd = (size_t)gq_q_dim(c);
    size_t h = (size_t)c->hidden_dim, half = (size_t)gq_head_size(c) / 2;
    size_t widest = h > qd ? h : qd; /* the widest linear input: hidden, q_dim or dim */
    widest = widest > d ? widest : d;
    struct { float **p; size_t n; } bufs[] = {
        {&ws->x, N * d},   {&ws->xn, N * d}, {&ws->xt, N * d}, {&ws->delta, N * d},
        {&ws->q, N * qd},  {&ws->k, N * kv}, {&ws->v, N * kv}, {&ws->ctx, N * qd},
        {&ws->hb, N * h},  {&ws->hb2, N * h},
        {&ws->rope_cos, (size_t)c->seq_len * half}, {&ws->rope_sin, (size_t)c->seq_len * half},
        {&ws->scores, (size_t)ws->n_threads * gq_attention_scratch_floats(c)},
        {&ws->aq, N * widest},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (!(*bufs[i].p = gq_alloc_zero(bufs[i].n * sizeof(float), "forward workspace", err))) {
            gq_forward_ws_free(ws);
            return NULL;
        }
    gq_rope_tables(c, ws->rope_cos, ws->rope_sin);
    return ws;
}

void gq_forward_ws_free(gq_forward_ws *ws)
{
    if (!ws)
        return;
    float *bufs[] = {ws->x, ws->xn, ws->xt, ws->delta, ws->q, ws->k, ws->v, ws->ctx,
                     ws->hb, ws->hb2, ws->rope_cos, ws->rope_sin, ws->scores, ws->aq};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(ws);
}

void gq_linear(float *y, const float *x, const float *W, int n, int in, int out)
{
    gq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, W, in, 0.0f, y,
             out);
}

/* y (n, out) += bias (out) on every row. */
static void add_bias_rows(float *y, const float *bias, int n, int out)
{
#pragma omp parallel for schedule(static) if ((long)n * out >= 65536)
    for (int r = 0; r < n; r++)
        for (int j = 0; j < out; j++)
            y[(size_t)r * out + j] += bias[j];
}

void gq_block_linear(const gq_layer *L, gq_linear_kind k, float *y, const float *x, int n, int in,
                     int out)
{
    const gq_linear_op *op = L->op[k];
    if (op)
        op->apply(op, y, x, n);
    else
        gq_linear(y, x, L->w[k], n, in, out);
    if (L->b[k])
        add_bias_rows(y, L->b[k], n, out);
}

/* The input linear k reads: x (n, width) itself, or x fake-quantized into ws->aq when the
 * model's activation hook quantizes it (rows in windows of T tokens). */
static const float *act_input(gq_forward_ws *ws, gq_linear_kind k, const float *x, int n,
                              int width, int T)
{
    const gq_act_hook *h = ws->act;
    if (!h || !h->has_input(h, ws->act_layer, k))
        return x;
    h->quant_input(h, ws->act_layer, k, x, ws->aq, n, width, T);
    return ws->aq;
}

/* Keys (after RoPE) and values (n, kv_dim) quantized as they enter the cache, when the hook
 * quantizes the cache. */
static void act_kv(gq_forward_ws *ws, float *k, float *v, int n)
{
    const gq_act_hook *h = ws->act;
    if (!h || !h->quant_kv)
        return;
    h->quant_kv(h, ws->act_layer, false, k, n);
    h->quant_kv(h, ws->act_layer, true, v, n);
}

void gq_rmsnorm(float *out, const float *x, const float *w, int n, int width)
{
    gq_rmsnorm_eps(out, x, w, n, width, 1e-5f);
}

void gq_rmsnorm_eps(float *out, const float *x, const float *w, int n, int width, float eps)
{
#pragma omp parallel for schedule(static) if ((long)n * width >= 65536)
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * width;
        float *o = out + (size_t)r * width;
        float ss = 0.0f;
        for (int j = 0; j < width; j++)
            ss += xr[j] * xr[j];
        ss = 1.0f / sqrtf(ss / (float)width + eps);
        for (int j = 0; j < width; j++)
            o[j] = w[j] * (ss * xr[j]);
    }
}

void gq_embed(const gq_model *m, const int *tokens, int n, float *x)
{
    size_t d = (size_t)m->cfg.dim;
    for (int i = 0; i < n; i++)
        memcpy(x + (size_t)i * d, m->tok_embeddings + (size_t)tokens[i] * d, d * sizeof(float));
}

/* Qwen3: every head of q (N, q_dim) and k (N, kv_dim) is RMS-normalised with its weights
 * (head_size) before RoPE; heads are contiguous, so rows of head_size. */
static void qk_head_norms(const gq_config *c, const gq_layer *L, float *q, float *k, int N)
{
    if (!L->q_norm)
        return;
    int hs = gq_head_size(c);
    gq_rmsnorm_eps(q, q, L->q_norm, N * c->n_heads, hs, gq_norm_eps(c));
    gq_rmsnorm_eps(k, k, L->k_norm, N * c->n_kv_heads, hs, gq_norm_eps(c));
}

void gq_attention_forward(const gq_config *c, const gq_layer *L, const float *xin, int B, int T,
                          float *out, gq_forward_ws *ws, float *ctx_out)
{
    int N = B * T, dim = c->dim, kv_dim = gq_kv_dim(c), hs = gq_head_size(c);
    int qd = gq_q_dim(c);
    assert(N <= ws->max_tokens && T <= c->seq_len);
    float *ctx = ctx_out ? ctx_out : ws->ctx;
    /* (N, dim) -> q (N, q_dim), k and v (N, kv_dim) */
    gq_block_linear(L, GQ_LIN_Q, ws->q, act_input(ws, GQ_LIN_Q, xin, N, dim, T), N, dim, qd);
    gq_block_linear(L, GQ_LIN_K, ws->k, act_input(ws, GQ_LIN_K, xin, N, dim, T), N, dim, kv_dim);
    gq_block_linear(L, GQ_LIN_V, ws->v, act_input(ws, GQ_LIN_V, xin, N, dim, T), N, dim, kv_dim);
    qk_head_norms(c, L, ws->q, ws->k, N);
    gq_rope_rows(ws->q, N, T, qd, hs, ws->rope_cos, ws->rope_sin);
    gq_rope_rows(ws->k, N, T, kv_dim, hs, ws->rope_cos, ws->rope_sin);
    act_kv(ws, ws->k, ws->v, N);
    gq_causal_attention(c, ws->q, ws->k, ws->v, ctx, B, T, ws->scores, ws->n_threads);
    /* ctx (N, q_dim) -> out (N, dim) */
    gq_block_linear(L, GQ_LIN_O, out, act_input(ws, GQ_LIN_O, ctx, N, qd, T), N, qd, dim);
}

void gq_swiglu(float *act, const float *g, const float *u, int n, int hid)
{
    enum { CHUNK = 256 };
#pragma omp parallel for schedule(static) if ((long)n * hid >= 65536)
    for (int r = 0; r < n; r++) {
        float e[CHUNK];
        for (int i0 = 0; i0 < hid; i0 += CHUNK) {
            const size_t o = (size_t)r * hid + (size_t)i0;
            const int len = hid - i0 < CHUNK ? hid - i0 : CHUNK;
            for (int i = 0; i < len; i++)
                e[i] = -g[o + i];
            gq_vexpf(e, e, len);
            for (int i = 0; i < len; i++)
                act[o + i] = g[o + i] * (1.0f / (1.0f + e[i])) * u[o + i];
        }
    }
}

void gq_mlp_forward(const gq_config *c, const gq_layer *L, const float *xin, int n, float *out,
                    gq_forward_ws *ws, float *act_out)
{
    int dim = c->dim, hid = c->hidden_dim;
    assert(n <= ws->max_tokens);
    float *act = act_out ? act_out : ws->hb;
    /* gate, up (n, hidden) */
    int T = ws->act_T;
    gq_block_linear(L, GQ_LIN_GATE, ws->hb, act_input(ws, GQ_LIN_GATE, xin, n, dim, T), n, dim,
                    hid);
    gq_block_linear(L, GQ_LIN_UP, ws->hb2, act_input(ws, GQ_LIN_UP, xin, n, dim, T), n, dim, hid);
    gq_swiglu(act, ws->hb, ws->hb2, n, hid);
    /* act (n, hidden) -> out (n, dim) */
    gq_block_linear(L, GQ_LIN_DOWN, out, act_input(ws, GQ_LIN_DOWN, act, n, hid, T), n, hid, dim);
}

/* RMSNorm(x) with weight w, then times the explicit transform M (dim, dim) when present.
 * Returns the buffer holding the result (ws->xn or ws->xt). */
static const float *block_input(gq_forward_ws *ws, const float *x, const float *w,
                                const float *M, int N)
{
    int dim = ws->cfg.dim;
    gq_rmsnorm_eps(ws->xn, x, w, N, dim, gq_norm_eps(&ws->cfg));
    if (!M)
        return ws->xn;
    gq_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, dim, dim, 1.0f, ws->xn, dim, M, dim,
             0.0f, ws->xt, dim);
    return ws->xt;
}

static void add_into(float *x, const float *delta, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t i = 0; i < n; i++)
        x[i] += delta[i];
}

void gq_block_forward(const gq_model *m, int l, float *x, int B, int T, gq_forward_ws *ws,
                      gq_block_trace *trace)
{
    const gq_config *c = &m->cfg;
    const gq_layer *L = &m->layers[l];
    int N = B * T;
    size_t nd = (size_t)N * c->dim;
    ws->act = m->act; /* only within this call: direct sub-module calls stay unquantized */
    ws->act_layer = l;
    ws->act_T = T;
    const float *ain = block_input(ws, x, L->rms_att, L->att_in_transform, N);
    if (trace && trace->attn_in)
        memcpy(trace->attn_in, ain, nd * sizeof(float));
    gq_attention_forward(c, L, ain, B, T, ws->delta, ws, trace ? trace->attn_ctx : NULL);
    add_into(x, ws->delta, nd);
    const float *fin = block_input(ws, x, L->rms_ffn, L->ffn_in_transform, N);
    if (trace && trace->mlp_in)
        memcpy(trace->mlp_in, fin, nd * sizeof(float));
    gq_mlp_forward(c, L, fin, N, ws->delta, ws, trace ? trace->mlp_act : NULL);
    add_into(x, ws->delta, nd);
    ws->act = NULL;
}

/* The workspace's RoPE tables (head size, theta, scaling) serve configuration c. */
static bool same_rope(const gq_config *a, const gq_config *c)
{
    const gq_rope_scaling *x = &a->rope_scaling, *y = &c->rope_scaling;
    return gq_head_size(a) == gq_head_size(c) && gq_rope_theta(a) == gq_rope_theta(c) &&
           x->kind == y->kind && x->factor == y->factor &&
           x->low_freq_factor == y->low_freq_factor &&
           x->high_freq_factor == y->high_freq_factor &&
           x->original_max_positions == y->original_max_positions;
}

int gq_forward_prefill(const gq_model *m, const int *tokens, int B, int T, gq_forward_ws *ws,
                       float *logits, gq_error *err)
{
    const gq_config *c = &m->cfg;
    if (B < 1 || T < 1 || T > c->seq_len)
        return gq_fail(err, "forward: %d windows of %d tokens: need B >= 1 and 1 <= T <= "
                            "seq_len %d", B, T, c->seq_len);
    if ((long)B * T > ws->max_tokens)
        return gq_fail(err, "forward: %d x %d tokens exceed the workspace's %d", B, T,
                       ws->max_tokens);
    if (ws->cfg.dim != c->dim || ws->cfg.hidden_dim != c->hidden_dim ||
        ws->cfg.n_heads != c->n_heads || ws->cfg.n_kv_heads != c->n_kv_heads ||
        ws->cfg.seq_len < T || !same_rope(&ws->cfg, c))
        return gq_fail(err, "forward: the workspace was made for another model shape");
    int N = B * T;
    for (int i = 0; i < N; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return gq_fail(err, "forward: token %d at index %d is outside 0..%d", tokens[i], i,
                           c->vocab_size - 1);
    gq_embed(m, tokens, N, ws->x);                       /* x (N, dim) */
    for (int l = 0; l < c->n_layers; l++) {
        if (gq_block_acquire(m, l, err)) /* streamed models: block l in fp32 for this batch */
            return -1;
        gq_block_forward(m, l, ws->x, B, T, ws, NULL);
        gq_block_release(m, l);
    }
    gq_rmsnorm_eps(ws->xn, ws->x, m->rms_final, N, c->dim, gq_norm_eps(c));
    if (m->cls_op)                                       /* (N, vocab) */
        m->cls_op->apply(m->cls_op, logits, ws->xn, N);
    else
        gq_linear(logits, ws->xn, m->wcls, N, c->dim, c->vocab_size);
    return 0;
}
