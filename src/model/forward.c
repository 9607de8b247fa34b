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

#include "core/gq_alloc.h"
#include "core/gq_fileio.h"
#include "core/gq_gemm.h"
#include "core/gq_log.h"
#include "core/gq_time.h"
#include "core/gq_vmath.h"
#include "model/attention_internal.h"
#include "model/gq_act_hook.h"
#include "model/gq_rotation.h"
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
    double *rot_tmp; /* (n_threads, 2 * hidden) scratch of the online down_proj rotation */
    const gq_act_hook *act; /* the model's activation hook while gq_block_forward runs */
    int act_layer;          /* the block it runs */
    int act_T;              /* and its window length */
    double *stage_s;        /* per-stage wall seconds (gq_forward_ws_time_stages) or NULL */
    double stage_t;         /* gq_now() at the previous stage mark */
    gq_progress *block_progress; /* streamed prefills count blocks here, or NULL */
    /* Operands of the row passes run as products complete rows (gq_rows_done callbacks): */
    const gq_layer *layer;  /* the block being run */
    int rope_T;             /* its window length */
    float *resid;           /* (N, dim) the residual stream of block_run */
    const float *norm_w;    /* (dim) RMSNorm weights of add_norm_rows */
    float *swiglu_out;      /* (N, hidden) where SwiGLU writes */
};

const char *const gq_fwd_stage_names[GQ_FWD_N_STAGES] = {
    "embed", "norm", "qkv", "rope", "attention", "o_proj", "gate_up", "swiglu", "down",
    "classifier"};

void gq_forward_ws_time_stages(gq_forward_ws *ws, double *stage_s)
{
    ws->stage_s = stage_s;
    ws->stage_t = gq_now();
}

void gq_forward_ws_block_progress(gq_forward_ws *ws, gq_progress *p)
{
    ws->block_progress = p;
}

/* Ends stage s: the wall time since the previous mark goes to it (when timing is on). */
static void stage_mark(gq_forward_ws *ws, gq_fwd_stage s)
{
    if (!ws->stage_s)
        return;
    double t = gq_now();
    ws->stage_s[s] += t - ws->stage_t;
    ws->stage_t = t;
}

/* The float buffers of a workspace: the per-token scratch (N = max_tokens rows) first, then
 * the RoPE tables and the per-thread attention scores. Returns how many are per-token. */
typedef struct {
    float **p;
    size_t n;
} ws_buffer;
enum { WS_N_BUFFERS = 14 };

static int ws_buffers(gq_forward_ws *ws, ws_buffer out[WS_N_BUFFERS])
{
    const gq_config *c = &ws->cfg;
    size_t N = (size_t)ws->max_tokens, d = (size_t)c->dim, kv = (size_t)gq_kv_dim(c);
    size_t qd = (size_t)gq_q_dim(c);
    size_t h = (size_t)c->hidden_dim, half = (size_t)gq_head_size(c) / 2;
    size_t widest = h > qd ? h : qd; /* the widest linear input: hidden, q_dim or dim */
    widest = widest > d ? widest : d;
    const ws_buffer bufs[WS_N_BUFFERS] = {
        {&ws->x, N * d},   {&ws->xn, N * d}, {&ws->xt, N * d}, {&ws->delta, N * d},
        {&ws->q, N * qd},  {&ws->k, N * kv}, {&ws->v, N * kv}, {&ws->ctx, N * qd},
        {&ws->hb, N * h},  {&ws->hb2, N * h}, {&ws->aq, N * widest},
        {&ws->rope_cos, (size_t)c->seq_len * half}, {&ws->rope_sin, (size_t)c->seq_len * half},
        {&ws->scores, (size_t)ws->n_threads * gq_attention_scratch_floats(c)},
    };
    memcpy(out, bufs, sizeof bufs);
    return 11;
}

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
    ws_buffer bufs[WS_N_BUFFERS];
    ws_buffers(ws, bufs);
    for (size_t i = 0; i < WS_N_BUFFERS; i++)
        if (!(*bufs[i].p = gq_alloc_zero(bufs[i].n * sizeof(float), "forward workspace", err))) {
            gq_forward_ws_free(ws);
            return NULL;
        }
    size_t h = (size_t)c->hidden_dim;
    ws->rot_tmp = gq_alloc_zero((size_t)ws->n_threads * 2 * h * sizeof(double),
                                "forward workspace", err);
    if (!ws->rot_tmp) {
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
    ws_buffer bufs[WS_N_BUFFERS];
    ws_buffers(ws, bufs);
    for (size_t i = 0; i < WS_N_BUFFERS; i++)
        free(*bufs[i].p);
    free(ws->rot_tmp);
    free(ws);
}

void gq_forward_ws_trim(gq_forward_ws *ws)
{
    ws_buffer bufs[WS_N_BUFFERS];
    int per_token = ws_buffers(ws, bufs);
    for (int i = 0; i < per_token; i++)
        gq_drop_pages(*bufs[i].p, bufs[i].n * sizeof(float), false);
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

/* Linears kinds[0..nk) of block L on one input x (n, in) into ys[i] (n, outs[i]), then the
 * row pass done (when not NULL) over every row. One shared-input product (one fork/join, the
 * same bits as one gq_block_linear each, done run on each block of rows as it completes) when
 * none of them has packed weights or a quantized input; else one gq_block_linear each and done
 * over all rows after them. */
static void block_linears(gq_forward_ws *ws, const gq_layer *L, const gq_linear_kind *kinds,
                          int nk, float *const *ys, const float *x, int n, int in,
                          const int *outs, gq_rows_done done, void *done_ctx)
{
    const gq_act_hook *h = ws->act;
    const float *W[GQ_SGEMM_MAX_SHARED];
    bool shared = nk <= GQ_SGEMM_MAX_SHARED, bias = false;
    for (int i = 0; i < nk && shared; i++) {
        shared = !L->op[kinds[i]] && !(h && h->has_input(h, ws->act_layer, kinds[i]));
        W[i] = L->w[kinds[i]];
        bias = bias || L->b[kinds[i]];
    }
    if (!shared) {
        for (int i = 0; i < nk; i++)
            gq_block_linear(L, kinds[i], ys[i], act_input(ws, kinds[i], x, n, in, ws->act_T), n,
                            in, outs[i]);
    } else { /* biases come before the row pass: then the pass runs after the product */
        gq_sgemm_nt_shared(n, in, x, in, nk, W, outs, ys, bias ? NULL : done, done_ctx);
        for (int i = 0; i < nk; i++)
            if (L->b[kinds[i]])
                add_bias_rows(ys[i], L->b[kinds[i]], n, outs[i]);
    }
    if (done && (!shared || bias))
        done(done_ctx, 0, n);
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

/* Rows per chunk of the element-wise loops: chunks are handed out dynamically, so a thread
 * the machine preempts does not hold the others at the barrier; a row's arithmetic does not
 * depend on which thread runs it. */
#define ROW_CHUNK 8

/* o (width) = w * (x / sqrt(mean(x^2) + eps)), the sum of squares in increasing j. */
static void rmsnorm_row(float *o, const float *xr, const float *w, int width, float eps)
{
    float ss = 0.0f;
    for (int j = 0; j < width; j++)
        ss += xr[j] * xr[j];
    ss = 1.0f / sqrtf(ss / (float)width + eps);
    for (int j = 0; j < width; j++)
        o[j] = w[j] * (ss * xr[j]);
}

void gq_rmsnorm_eps(float *out, const float *x, const float *w, int n, int width, float eps)
{
#pragma omp parallel for schedule(dynamic, ROW_CHUNK) if ((long)n * width >= 65536)
    for (int r = 0; r < n; r++)
        rmsnorm_row(out + (size_t)r * width, x + (size_t)r * width, w, width, eps);
}

/* x (n, width) += delta, then out = RMSNorm(x) with weight w, in one pass over each row: the
 * same values as add_into followed by gq_rmsnorm_eps. */
static void add_rmsnorm(float *out, float *x, const float *delta, const float *w, int n,
                        int width, float eps)
{
#pragma omp parallel for schedule(dynamic, ROW_CHUNK) if ((long)n * width >= 65536)
    for (int r = 0; r < n; r++) {
        float *xr = x + (size_t)r * width;
        const float *dr = delta + (size_t)r * width;
        for (int j = 0; j < width; j++)
            xr[j] += dr[j];
        rmsnorm_row(out + (size_t)r * width, xr, w, width, eps);
    }
}

void gq_embed(const gq_model *m, const int *tokens, int n, float *x)
{
    size_t d = (size_t)m->cfg.dim;
    for (int i = 0; i < n; i++)
        memcpy(x + (size_t)i * d, m->tok_embeddings + (size_t)tokens[i] * d, d * sizeof(float));
}

/* The row pass after q/k/v on rows [i0, i0+mi) (gq_rows_done): Qwen3's per-head RMSNorm of q
 * and k (heads contiguous, rows of head_size), then RoPE. */
static void qk_rows(void *wsp, int i0, int mi)
{
    gq_forward_ws *ws = wsp;
    const gq_config *c = &ws->cfg;
    const gq_layer *L = ws->layer;
    int hs = gq_head_size(c), qd = gq_q_dim(c), kv_dim = gq_kv_dim(c);
    float *q = ws->q + (size_t)i0 * qd, *k = ws->k + (size_t)i0 * kv_dim;
    if (L->q_norm) {
        gq_rmsnorm_eps(q, q, L->q_norm, mi * c->n_heads, hs, gq_norm_eps(c));
        gq_rmsnorm_eps(k, k, L->k_norm, mi * c->n_kv_heads, hs, gq_norm_eps(c));
    }
    gq_rope_qk_rows(ws->q, qd, ws->k, kv_dim, i0, mi, ws->rope_T, hs, ws->rope_cos,
                    ws->rope_sin);
}

/* gq_attention_forward, with the row pass o_done (when not NULL) run on the rows of out as
 * o_proj completes them. */
static void attention_run(const gq_config *c, const gq_layer *L, const float *xin, int B, int T,
                          float *out, gq_forward_ws *ws, float *ctx_out, gq_rows_done o_done,
                          void *o_ctx)
{
    int N = B * T, dim = c->dim, kv_dim = gq_kv_dim(c), qd = gq_q_dim(c);
    assert(N <= ws->max_tokens && T <= c->seq_len);
    float *ctx = ctx_out ? ctx_out : ws->ctx;
    /* (N, dim) -> q (N, q_dim), k and v (N, kv_dim); head norms and RoPE as rows complete */
    const gq_linear_kind qkv[] = {GQ_LIN_Q, GQ_LIN_K, GQ_LIN_V};
    float *const qkv_out[] = {ws->q, ws->k, ws->v};
    ws->layer = L;
    ws->rope_T = T;
    block_linears(ws, L, qkv, 3, qkv_out, xin, N, dim, (const int[]){qd, kv_dim, kv_dim},
                  qk_rows, ws);
    stage_mark(ws, GQ_FWD_QKV);
    act_kv(ws, ws->k, ws->v, N);
    stage_mark(ws, GQ_FWD_ROPE);
    gq_causal_attention(c, ws->q, ws->k, ws->v, ctx, B, T, ws->scores, ws->n_threads);
    stage_mark(ws, GQ_FWD_ATTENTION);
    /* ctx (N, q_dim) -> out (N, dim) */
    const gq_linear_kind o[] = {GQ_LIN_O};
    block_linears(ws, L, o, 1, &out, ctx, N, qd, &dim, o_done, o_ctx);
    stage_mark(ws, GQ_FWD_O);
}

void gq_attention_forward(const gq_config *c, const gq_layer *L, const float *xin, int B, int T,
                          float *out, gq_forward_ws *ws, float *ctx_out)
{
    attention_run(c, L, xin, B, T, out, ws, ctx_out, NULL, NULL);
}

void gq_swiglu(float *act, const float *g, const float *u, int n, int hid)
{
    enum { CHUNK = 256 };
#pragma omp parallel for schedule(dynamic, ROW_CHUNK) if ((long)n * hid >= 65536)
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

/* act (n, hidden) <- act H / sqrt(hidden) when the block rotates down_proj's input online
 * (gq_layer.down_in_rot), before its quantizer and down_proj see it. */
static void down_input_rotation(gq_forward_ws *ws, const gq_layer *L, float *act, int n)
{
    if (L->down_in_rot)
        gq_rotation_rows_scratch(L->down_in_rot, act, (size_t)n, ws->rot_tmp, ws->n_threads);
}

/* The row pass after gate/up on rows [i0, i0+mi) (gq_rows_done): ws->swiglu_out = SiLU(hb) *
 * hb2. */
static void swiglu_rows(void *wsp, int i0, int mi)
{
    gq_forward_ws *ws = wsp;
    size_t o = (size_t)i0 * ws->cfg.hidden_dim;
    gq_swiglu(ws->swiglu_out + o, ws->hb + o, ws->hb2 + o, mi, ws->cfg.hidden_dim);
}

/* gq_mlp_forward, with the row pass down_done (when not NULL) run on the rows of out as
 * down_proj completes them. */
static void mlp_run(const gq_config *c, const gq_layer *L, const float *xin, int n, float *out,
                    gq_forward_ws *ws, float *act_out, gq_rows_done down_done, void *down_ctx,
                    bool skip_down)
{
    int dim = c->dim, hid = c->hidden_dim;
    assert(n <= ws->max_tokens);
    float *act = act_out ? act_out : ws->hb;
    /* gate, up (n, hidden), then act = SiLU(gate) * up as rows complete */
    const gq_linear_kind gate_up[] = {GQ_LIN_GATE, GQ_LIN_UP};
    float *const gate_up_out[] = {ws->hb, ws->hb2};
    ws->swiglu_out = act;
    block_linears(ws, L, gate_up, 2, gate_up_out, xin, n, dim, (const int[]){hid, hid},
                  swiglu_rows, ws);
    stage_mark(ws, GQ_FWD_GATE_UP);
    down_input_rotation(ws, L, act, n);
    if (skip_down) /* a trace only wants down_proj's input */
        return;
    /* act (n, hidden) -> out (n, dim) */
    const gq_linear_kind down[] = {GQ_LIN_DOWN};
    block_linears(ws, L, down, 1, &out, act, n, hid, &dim, down_done, down_ctx);
    stage_mark(ws, GQ_FWD_DOWN);
}

void gq_mlp_forward(const gq_config *c, const gq_layer *L, const float *xin, int n, float *out,
                    gq_forward_ws *ws, float *act_out)
{
    mlp_run(c, L, xin, n, out, ws, act_out, NULL, NULL, false);
}

/* ws->xn (N, dim) times the explicit transform M (dim, dim) when present. Returns the buffer
 * holding the result (ws->xn or ws->xt). */
static const float *input_transform(gq_forward_ws *ws, const float *M, int N)
{
    int dim = ws->cfg.dim;
    if (!M)
        return ws->xn;
    gq_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, dim, dim, 1.0f, ws->xn, dim, M, dim,
             0.0f, ws->xt, dim);
    return ws->xt;
}

/* ws->xn = RMSNorm(x) with weight w, then times the explicit transform M when present
 * (input_transform). */
static const float *block_input(gq_forward_ws *ws, const float *x, const float *w,
                                const float *M, int N)
{
    gq_rmsnorm_eps(ws->xn, x, w, N, ws->cfg.dim, gq_norm_eps(&ws->cfg));
    return input_transform(ws, M, N);
}

/* The row pass after o_proj or down_proj on rows [i0, i0+mi) (gq_rows_done): the residual
 * ws->resid += ws->delta, then ws->xn = RMSNorm(resid) with weight ws->norm_w. */
static void add_norm_rows(void *wsp, int i0, int mi)
{
    gq_forward_ws *ws = wsp;
    size_t o = (size_t)i0 * ws->cfg.dim;
    add_rmsnorm(ws->xn + o, ws->resid + o, ws->delta + o, ws->norm_w, mi, ws->cfg.dim,
                gq_norm_eps(&ws->cfg));
}

static void add_into(float *x, const float *delta, size_t n)
{
#pragma omp parallel for schedule(dynamic, 4096) if (n >= 65536)
    for (size_t i = 0; i < n; i++)
        x[i] += delta[i];
}

/* Block l on x (B*T, dim). With normed_in, ws->xn already holds RMSNorm(x) with the block's
 * rms_att. With norm_next (RMSNorm weights of what follows: the next block's rms_att or the
 * final norm) the last residual add and that norm run as down_proj completes rows (x is the
 * block's output, ws->xn its normalised form); without, the last add is left pending: x +
 * ws->delta is the block's output. */
static void block_run(const gq_model *m, int l, float *x, int B, int T, gq_forward_ws *ws,
                      gq_block_trace *trace, bool normed_in, const float *norm_next)
{
    const gq_config *c = &m->cfg;
    const gq_layer *L = &m->layers[l];
    int N = B * T;
    size_t nd = (size_t)N * c->dim;
    ws->act = m->act; /* only within this call: direct sub-module calls stay unquantized */
    ws->act_layer = l;
    ws->act_T = T;
    const float *ain = normed_in ? input_transform(ws, L->att_in_transform, N)
                                 : block_input(ws, x, L->rms_att, L->att_in_transform, N);
    stage_mark(ws, GQ_FWD_NORM);
    if (trace && trace->attn_in)
        memcpy(trace->attn_in, ain, nd * sizeof(float));
    /* x += attention, ws->xn = RMSNorm(x) as o_proj completes rows */
    ws->resid = x;
    ws->norm_w = L->rms_ffn;
    attention_run(c, L, ain, B, T, ws->delta, ws, trace ? trace->attn_ctx : NULL, add_norm_rows,
                  ws);
    const float *fin = input_transform(ws, L->ffn_in_transform, N);
    stage_mark(ws, GQ_FWD_NORM);
    if (trace && trace->mlp_in)
        memcpy(trace->mlp_in, fin, nd * sizeof(float));
    ws->norm_w = norm_next;
    mlp_run(c, L, fin, N, ws->delta, ws, trace ? trace->mlp_act : NULL,
            norm_next ? add_norm_rows : NULL, ws, trace && trace->no_output);
    ws->act = NULL;
}

void gq_block_forward(const gq_model *m, int l, float *x, int B, int T, gq_forward_ws *ws,
                      gq_block_trace *trace)
{
    block_run(m, l, x, B, T, ws, trace, false, NULL);
    if (trace && trace->no_output)
        return;
    add_into(x, ws->delta, (size_t)B * T * m->cfg.dim);
    stage_mark(ws, GQ_FWD_NORM);
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
    if (ws->stage_s)
        ws->stage_t = gq_now();
    gq_embed(m, tokens, N, ws->x);                       /* x (N, dim) */
    stage_mark(ws, GQ_FWD_EMBED);
    /* each block leaves the next one's normalised input (the last: the final norm's) in ws->xn;
     * a streamed model's next block is not in memory yet, so it runs block by block */
    const bool streamed = gq_model_streamed(m);
    for (int l = 0; l < c->n_layers; l++) {
        if (gq_block_acquire(m, l, err)) /* streamed models: block l in fp32 for this batch */
            return -1;
        if (streamed)
            gq_block_forward(m, l, ws->x, B, T, ws, NULL);
        else
            block_run(m, l, ws->x, B, T, ws, NULL, l > 0,
                      l + 1 < c->n_layers ? m->layers[l + 1].rms_att : m->rms_final);
        gq_block_release(m, l);
        if (streamed && ws->block_progress)
            gq_progress_add(ws->block_progress, 1);
    }
    if (c->n_layers == 0 || streamed)
        gq_rmsnorm_eps(ws->xn, ws->x, m->rms_final, N, c->dim, gq_norm_eps(c));
    if (m->cls_op)                                       /* (N, vocab) */
        m->cls_op->apply(m->cls_op, logits, ws->xn, N);
    else
        gq_linear(logits, ws->xn, m->wcls, N, c->dim, c->vocab_size);
    stage_mark(ws, GQ_FWD_CLASSIFIER);
    return 0;
}
