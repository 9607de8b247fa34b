/* Stacked evaluation of AWQ's scale grid (awq_grid.h).
 *
 * Per chunk of up to TOKEN_ROWS tokens (rows t0 .. t0+tn of x):
 *   v->o, down:  Y (tn, na*out) = x_chunk · [W_0; ...; W_na-1]^T              (one gq_sgemm)
 *   gate/up:     G, U (tn, na*hidden) = x_chunk · stacked gate / up weights    (two gq_sgemm)
 *                A (na*tn, hidden) = SiLU(G) * U regrouped by grid point
 *                Y (na*tn, dim) = A · W_down^T                                 (one gq_sgemm)
 * q/k/v, per chunk of whole windows (tn = tw * T tokens; the attention mixes the tokens of a
 * window, never those of two windows):
 *   Q (tn, na*q_dim), K, V (tn, na*kv_dim) = x_chunk · stacked q / k / v    (one shared product)
 *   per point a: its columns of Q, K, V regrouped into (tn, q_dim) and (tn, kv_dim), q/k head
 *                norms and RoPE, causal attention into rows a*tn .. (a+1)*tn-1 of C
 *   Y (na*tn, dim) = C · W_o^T                                                 (one gq_sgemm)
 * and every point's squared error against org is added in token order. Every product element
 * is one gq_sgemm tile's, fixed by the shapes (the same bits for any thread count), and the row
 * passes are those of the forward (model/gq_forward.h). Each loss equals the per-point
 * forward's up to the rounding of the products: a BLAS kernel may round the elements of a
 * stacked tile and of a narrower per-point product differently. */
#include "methods/awq_grid.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_alloc.h"
#include "core/gq_gemm.h"
#include "model/attention_internal.h"
#include "model/gq_forward.h"

#define TOKEN_ROWS (4 * GQ_GEMM_TILE_M)
/* Scratch of the q/k/v group's chunk of windows: as many windows as fit, at least one. */
#define ATTN_BYTES ((size_t)256 << 20)

bool gq_awq_stacked_grid = true;

/* se[a] += sum_{t < tn, c < width} (Y(a, t)[c] - org[t][c])^2, Y(a, t) = Y + a*a_stride +
 * t*t_stride, in (t, c) order per point. */
static void add_sq_err(const float *Y, size_t a_stride, size_t t_stride, const float *org,
                       int tn, int width, int na, double *se)
{
#pragma omp parallel for schedule(static) if ((long)na * tn * width >= 65536)
    for (int a = 0; a < na; a++) {
        double e = se[a];
        for (int t = 0; t < tn; t++) {
            const float *y = Y + (size_t)a * a_stride + (size_t)t * t_stride;
            const float *o = org + (size_t)t * width;
            for (int c = 0; c < width; c++) {
                double d = (double)y[c] - o[c];
                e += d * d;
            }
        }
        se[a] = e;
    }
}

/* The MLP of na grid points on tn tokens: Y (na*tn, dim); G, U, A scratch of tn*na*hidden. */
static void mlp_points(const gq_block_ctx *ctx, const float *xc, int tn, float *const trial[3],
                       int na, float *G, float *U, float *A, float *Y)
{
    const int dim = ctx->cfg->dim, hid = ctx->cfg->hidden_dim, w = na * hid;
    gq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tn, w, dim, 1.0f, xc, dim, trial[0], dim,
             0.0f, G, w);
    gq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tn, w, dim, 1.0f, xc, dim, trial[1], dim,
             0.0f, U, w);
    gq_swiglu(G, G, U, tn, w);
    for (int a = 0; a < na; a++)
        for (int t = 0; t < tn; t++)
            memcpy(A + ((size_t)a * tn + t) * hid, G + (size_t)t * w + (size_t)a * hid,
                   (size_t)hid * sizeof *A);
    gq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, na * tn, dim, hid, 1.0f, A, hid,
             ctx->w.w[GQ_LIN_DOWN], hid, 0.0f, Y, dim);
}

/* The losses of the token-wise groups (v->o, gate/up, down) into se (sums of squares). */
static int tokenwise_errors(const gq_block_ctx *ctx, gq_awq_group g, const float *x,
                            const float *org, float *const trial[3], int na, double *se,
                            gq_error *err)
{
    const gq_config *c = ctx->cfg;
    const int n = ctx->B * ctx->T, dim = c->dim, hid = c->hidden_dim;
    const int cin = g == GQ_AWQ_DOWN ? hid : g == GQ_AWQ_VO ? gq_q_dim(c) : dim;
    const int mlp = g == GQ_AWQ_GATEUP;
    const size_t rows = TOKEN_ROWS, width = (size_t)na * (mlp ? hid : dim);
    float *Y = gq_alloc_big(rows * (size_t)na * dim * sizeof *Y);
    float *G = mlp ? gq_alloc_big(rows * width * sizeof *G) : NULL;
    float *U = mlp ? gq_alloc_big(rows * width * sizeof *U) : NULL;
    float *A = mlp ? gq_alloc_big(rows * width * sizeof *A) : NULL;
    int rc = -1;
    if (!Y || (mlp && (!G || !U || !A))) {
        gq_fail(err, "layers.%d: out of memory in the AWQ grid (%d points)", ctx->layer, na);
        goto done;
    }
    for (int t0 = 0; t0 < n; t0 += TOKEN_ROWS) {
        int tn = n - t0 < TOKEN_ROWS ? n - t0 : TOKEN_ROWS;
        const float *xc = x + (size_t)t0 * cin, *oc = org + (size_t)t0 * dim;
        if (mlp) {
            mlp_points(ctx, xc, tn, trial, na, G, U, A, Y);
            add_sq_err(Y, (size_t)tn * dim, (size_t)dim, oc, tn, dim, na, se);
        } else {
            gq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tn, na * dim, cin, 1.0f, xc, cin,
                     trial[0], cin, 0.0f, Y, na * dim);
            add_sq_err(Y, (size_t)dim, (size_t)na * dim, oc, tn, dim, na, se);
        }
    }
    rc = 0;
done:
    free(Y), free(G), free(U), free(A);
    return rc;
}

/* Scratch of the q/k/v group for na points on chunks of tw windows of T tokens (tn = tw * T). */
typedef struct {
    int tw, tn, n_threads;
    float *Q, *K, *V;     /* (tn, na*q_dim), (tn, na*kv_dim) twice: the stacked products */
    float *q, *k, *v;     /* (tn, q_dim), (tn, kv_dim) twice: one point's, regrouped */
    float *C, *Y;         /* (na*tn, q_dim) attention outputs, (na*tn, dim) o_proj outputs */
    float *cos_t, *sin_t; /* RoPE tables (seq_len, head_size / 2) */
    float *scores;        /* n_threads * gq_attention_scratch_floats */
} attn_scratch;

static void attn_scratch_free(attn_scratch *s)
{
    float *bufs[] = {s->Q, s->K, s->V, s->q, s->k, s->v, s->C, s->Y, s->cos_t, s->sin_t,
                     s->scores};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
}

static int attn_scratch_alloc(const gq_config *c, int B, int T, int na, attn_scratch *s)
{
    const size_t qd = (size_t)gq_q_dim(c), kvd = (size_t)gq_kv_dim(c), dim = (size_t)c->dim;
    const size_t half = (size_t)gq_head_size(c) / 2;
    const size_t per_token = ((size_t)na * (2 * qd + 2 * kvd + dim) + qd + 2 * kvd) * 4;
    size_t tw = ATTN_BYTES / (per_token * (size_t)T);
    s->tw = tw < 1 ? 1 : tw > (size_t)B ? B : (int)tw;
    s->tn = s->tw * T;
    s->n_threads = omp_get_max_threads();
    const size_t tn = (size_t)s->tn, nat = (size_t)na * tn;
    s->Q = gq_alloc_big(nat * qd * sizeof(float)), s->K = gq_alloc_big(nat * kvd * sizeof(float));
    s->V = gq_alloc_big(nat * kvd * sizeof(float)), s->q = gq_alloc_big(tn * qd * sizeof(float));
    s->k = gq_alloc_big(tn * kvd * sizeof(float)), s->v = gq_alloc_big(tn * kvd * sizeof(float));
    s->C = gq_alloc_big(nat * qd * sizeof(float)), s->Y = gq_alloc_big(nat * dim * sizeof(float));
    s->cos_t = malloc((size_t)c->seq_len * half * sizeof(float));
    s->sin_t = malloc((size_t)c->seq_len * half * sizeof(float));
    s->scores = malloc((size_t)s->n_threads * gq_attention_scratch_floats(c) * sizeof(float));
    if (!s->Q || !s->K || !s->V || !s->q || !s->k || !s->v || !s->C || !s->Y || !s->cos_t ||
        !s->sin_t || !s->scores)
        return -1;
    gq_rope_tables(c, s->cos_t, s->sin_t);
    return 0;
}

/* dst (tn, width) = columns a*width .. (a+1)*width-1 of src (tn, na*width). */
static void take_point(float *dst, const float *src, int tn, int width, int na, int a)
{
    for (int t = 0; t < tn; t++)
        memcpy(dst + (size_t)t * width, src + ((size_t)t * na + a) * width,
               (size_t)width * sizeof *dst);
}

/* Attention of na grid points on the chunk's tw windows xc (tn, dim): s->Y (na*tn, dim). */
static void attn_points(const gq_block_ctx *ctx, const float *xc, float *const trial[3], int na,
                        attn_scratch *s)
{
    const gq_config *c = ctx->cfg;
    const gq_layer *L = &ctx->w;
    const int tn = s->tn, qd = gq_q_dim(c), kvd = gq_kv_dim(c), hs = gq_head_size(c);
    const int widths[3] = {na * qd, na * kvd, na * kvd};
    float *const outs[3] = {s->Q, s->K, s->V};
    gq_sgemm_nt_shared(tn, c->dim, xc, c->dim, 3, (const float *const *)trial, widths, outs,
                       NULL, NULL);
    for (int a = 0; a < na; a++) {
        take_point(s->q, s->Q, tn, qd, na, a);
        take_point(s->k, s->K, tn, kvd, na, a);
        take_point(s->v, s->V, tn, kvd, na, a);
        if (L->q_norm) { /* as the forward's row pass: head norms, then RoPE */
            gq_rmsnorm_eps(s->q, s->q, L->q_norm, tn * c->n_heads, hs, gq_norm_eps(c));
            gq_rmsnorm_eps(s->k, s->k, L->k_norm, tn * c->n_kv_heads, hs, gq_norm_eps(c));
        }
        gq_rope_qk_rows(s->q, qd, s->k, kvd, 0, tn, ctx->T, hs, s->cos_t, s->sin_t);
        gq_causal_attention(c, s->q, s->k, s->v, s->C + (size_t)a * tn * qd, s->tw, ctx->T,
                            s->scores, s->n_threads);
    }
    gq_linear(s->Y, s->C, L->w[GQ_LIN_O], na * tn, qd, c->dim);
}

/* The losses of the q/k/v group (whole attention) into se, chunk by chunk of windows. */
static int attention_errors(const gq_block_ctx *ctx, const float *x, const float *org,
                            float *const trial[3], int na, double *se, gq_error *err)
{
    const int dim = ctx->cfg->dim;
    attn_scratch s = {0};
    if (attn_scratch_alloc(ctx->cfg, ctx->B, ctx->T, na, &s)) {
        attn_scratch_free(&s);
        return gq_fail(err, "layers.%d: out of memory in the AWQ grid (%d points)", ctx->layer,
                       na);
    }
    for (int w0 = 0; w0 < ctx->B; w0 += s.tw) {
        const size_t t0 = (size_t)w0 * ctx->T;
        if (ctx->B - w0 < s.tw) { /* the last chunk: fewer windows */
            s.tw = ctx->B - w0;
            s.tn = s.tw * ctx->T;
        }
        attn_points(ctx, x + t0 * dim, trial, na, &s);
        add_sq_err(s.Y, (size_t)s.tn * dim, (size_t)dim, org + t0 * dim, s.tn, dim, na, se);
    }
    attn_scratch_free(&s);
    return 0;
}

int gq_awq_grid_losses(const gq_block_ctx *ctx, gq_awq_group g, const float *x, const float *org,
                       float *const trial[3], int na, double *loss, gq_error *err)
{
    const size_t per_point = (size_t)ctx->B * ctx->T * ctx->cfg->dim;
    double *se = calloc((size_t)na, sizeof *se);
    if (!se)
        return gq_fail(err, "layers.%d: out of memory in the AWQ grid", ctx->layer);
    int rc = g == GQ_AWQ_QKV ? attention_errors(ctx, x, org, trial, na, se, err)
                             : tokenwise_errors(ctx, g, x, org, trial, na, se, err);
    for (int a = 0; rc == 0 && a < na; a++)
        loss[a] = se[a] / (double)per_point;
    free(se);
    return rc;
}
