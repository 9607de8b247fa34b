/* Helpers a method uses on its block: running the block (FP or partially quantized), plain
 * rounding of a linear, report metrics and notes. */
#include "methods/gq_method.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_alloc.h"
#include "core/gq_log.h"
#include "core/gq_time.h"

bool gq_method_calibrates(const void *params)
{
    (void)params;
    return true;
}

gq_layer gq_block_view(const gq_block_ctx *ctx, bool quantized)
{
    gq_layer v = ctx->w;
    if (quantized)
        for (int k = 0; k < GQ_N_LINEAR; k++)
            if (ctx->done[k])
                v.w[k] = ctx->q[k];
    return v;
}

/* The block API takes a model and a layer index: wrap one layer in a model shell. */
static void run_layer(const gq_config *c, const gq_layer *L, float *x, int B, int T,
                      gq_forward_ws *ws, gq_block_trace *trace)
{
    gq_model shell;
    memset(&shell, 0, sizeof shell);
    shell.cfg = *c;
    shell.layers = (gq_layer *)L;
    gq_block_forward(&shell, 0, x, B, T, ws, trace);
}

int gq_block_run(gq_block_ctx *ctx, bool quantized, gq_block_trace *trace, float *x_out,
                 gq_error *err)
{
    if (!ctx->x)
        return gq_fail(err, "layers.%d: the method needs calibration inputs", ctx->layer);
    size_t n = (size_t)ctx->B * ctx->T * ctx->cfg->dim;
    float *x = x_out ? x_out : gq_alloc_big(n * sizeof *x);
    if (!x)
        return gq_fail(err, "layers.%d: out of memory for block activations", ctx->layer);
    if (x != ctx->x) /* the pipeline may run the block in place on its own inputs */
        memcpy(x, ctx->x, n * sizeof *x);
    gq_layer v = gq_block_view(ctx, quantized);
    double t0 = gq_stage_begin(ctx);
    run_layer(ctx->cfg, &v, x, ctx->B, ctx->T, ctx->ws, trace);
    gq_forward_ws_trim(ctx->ws); /* the method's own work (Hessians, solves) comes next */
    double flops = gq_block_forward_flops(ctx->cfg, ctx->B, ctx->T);
    if (trace && trace->no_output) { /* down_proj's product skipped */
        int rows, cols;
        gq_linear_shape(ctx->cfg, GQ_LIN_DOWN, &rows, &cols);
        flops -= 2.0 * ctx->B * ctx->T * (double)rows * cols;
    }
    gq_stage_end(ctx, t0, "forward", GQ_LIMIT_SGEMM, flops);
    if (!x_out)
        free(x);
    return 0;
}

/* splitmix64's finaliser: every input bit reaches every output bit. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* h extended by the n floats of v (their bits; NULL hashes as an absent array): four
 * independent multiply-xor lanes over 32-bit words, so the loop runs near memory speed. */
static uint64_t hash_floats(uint64_t h, const float *v, size_t n)
{
    if (!v)
        return mix64(h ^ 0x6e756c6cULL);
    uint64_t lane[4] = {h, h + 1, h + 2, h + 3};
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; j++) {
            uint32_t u;
            memcpy(&u, &v[i + j], sizeof u);
            lane[j] = (lane[j] ^ u) * 0x9e3779b97f4a7c15ULL;
            lane[j] ^= lane[j] >> 29;
        }
    for (; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], sizeof u);
        lane[0] = (lane[0] ^ u) * 0x9e3779b97f4a7c15ULL;
    }
    uint64_t r = mix64(h ^ n);
    for (int j = 0; j < 4; j++)
        r = mix64(r ^ lane[j]);
    return r;
}

/* The fingerprint of ctx->w and the bytes it read. */
static uint64_t block_hash(const gq_block_ctx *ctx, double *bytes)
{
    const gq_config *c = ctx->cfg;
    const gq_layer *w = &ctx->w;
    size_t dd = (size_t)c->dim * c->dim, n = 2 * (size_t)c->dim;
    uint64_t h = hash_floats(0x67712d6263ULL, w->rms_att, (size_t)c->dim);
    h = hash_floats(h, w->rms_ffn, (size_t)c->dim);
    h = hash_floats(h, w->att_in_transform, dd);
    h = hash_floats(h, w->ffn_in_transform, dd);
    n += (w->att_in_transform ? dd : 0) + (w->ffn_in_transform ? dd : 0);
    gq_extra_tensor ex[GQ_MAX_EXTRAS];
    int n_ex = gq_layer_extras(c, (gq_layer *)w, ctx->layer, ex); /* biases, q/k norms */
    for (int i = 0; i < n_ex; i++) {
        h = hash_floats(h, *ex[i].slot, ex[i].n);
        n += ex[i].n;
    }
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        int rows, cols;
        gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
        h = hash_floats(h, w->w[k], (size_t)rows * cols);
        n += (size_t)rows * cols;
    }
    h = mix64(h ^ (w->down_in_rot != NULL)); /* the model's rotation, never a method's */
    *bytes = (double)n * sizeof(float);
    return h ? h : 1; /* 0 means "no trace" */
}

uint64_t gq_block_fingerprint(const gq_block_ctx *ctx)
{
    double t0 = gq_stage_begin(ctx), bytes;
    uint64_t h = block_hash(ctx, &bytes);
    gq_stage_end(ctx, t0, "fingerprint", GQ_LIMIT_BANDWIDTH, bytes);
    return h;
}

int gq_block_trace_fp(gq_block_ctx *ctx, const gq_block_trace **trace, gq_error *err)
{
    if (!ctx->fp_trace)
        return gq_fail(err, "layers.%d: no pipeline trace buffers (gq_block_trace_fp runs "
                            "inside the pipeline)", ctx->layer);
    ctx->fp_trace_of = 0; /* invalid while it is being written */
    if (gq_block_run(ctx, false, ctx->fp_trace, ctx->fp_out, err))
        return -1;
    ctx->fp_trace_of = gq_block_fingerprint(ctx);
    *trace = ctx->fp_trace;
    return 0;
}

int gq_block_quantize_rtn(gq_block_ctx *ctx, gq_linear_kind k, const float *w,
                          const float *imatrix, gq_error *err)
{
    if (!ctx->quant[k])
        return gq_fail(err, "layers.%d.%s: no format (the tensor stays FP)", ctx->layer,
                       gq_linear_name(k));
    int rows, cols;
    gq_linear_shape(ctx->cfg, k, &rows, &cols);
    if (!w)
        w = ctx->w.w[k];
    double t0 = gq_now();
    /* The storage of an earlier rounding of this linear is overwritten whole (the storage
     * contract of gq_format.h). */
    if (gq_quantizer_run(ctx->quant[k], w, rows, cols, imatrix, ctx->codes[k], ctx->q[k], err))
        return gq_fail_prefix(err, "layers.%d.%s", ctx->layer, gq_linear_name(k));
    ctx->t_quant += gq_now() - t0;
    /* bytes: the weights read, the reconstruction written, the codes written */
    size_t bytes = 2 * (size_t)rows * cols * sizeof(float) +
                   (ctx->codes[k] ? gq_quantizer_bytes(ctx->quant[k], rows, cols) : 0);
    gq_stage_end(ctx, t0, "round", GQ_LIMIT_BANDWIDTH, (double)bytes);
    ctx->done[k] = true;
    ctx->has_codes[k] = ctx->codes[k] != NULL;
    free(ctx->in_perm[k]); /* the new codes are in column order */
    ctx->in_perm[k] = NULL;
    return 0;
}

int gq_block_trace_alloc(const gq_block_ctx *ctx, gq_block_trace *tr, gq_error *err)
{
    const gq_config *c = ctx->cfg;
    size_t n = (size_t)ctx->B * ctx->T;
    size_t qd = (size_t)gq_q_dim(c); /* attn_ctx is (n, q_dim) */
    float *buf = gq_alloc_big(n * (2 * (size_t)c->dim + qd + c->hidden_dim) * sizeof *buf);
    if (!buf)
        return gq_fail(err, "layers.%d: out of memory for the activations of %zu tokens",
                       ctx->layer, n);
    tr->attn_in = buf;
    tr->attn_ctx = buf + n * c->dim;
    tr->mlp_in = buf + n * (c->dim + qd);
    tr->mlp_act = buf + n * (2 * c->dim + qd);
    return 0;
}

void gq_block_trace_free(gq_block_trace *tr)
{
    free(tr->attn_in);
    tr->attn_in = tr->attn_ctx = tr->mlp_in = tr->mlp_act = NULL;
}

float *gq_trace_input(const gq_block_trace *t, gq_linear_kind k)
{
    switch (k) {
    case GQ_LIN_Q: case GQ_LIN_K: case GQ_LIN_V: return t->attn_in;
    case GQ_LIN_O: return t->attn_ctx;
    case GQ_LIN_GATE: case GQ_LIN_UP: return t->mlp_in;
    default: return t->mlp_act;
    }
}

float *gq_block_in_transform(gq_block_ctx *ctx, bool ffn)
{
    float **slot = ffn ? &ctx->w.ffn_in_transform : &ctx->w.att_in_transform;
    float *store = ctx->transform_store[ffn];
    const int d = ctx->cfg->dim;
    if (*slot != store) { /* first use: the identity */
        memset(store, 0, (size_t)d * d * sizeof *store);
        for (int i = 0; i < d; i++)
            store[(size_t)i * d + i] = 1.0f;
        *slot = store;
    }
    return store;
}

double gq_stage_begin(const gq_block_ctx *ctx)
{
    return ctx->stages ? gq_now() : 0.0;
}

void gq_stage_end(const gq_block_ctx *ctx, double t0, const char *stage, gq_stage_limit limit,
                  double work)
{
    if (ctx->stages)
        ctx->stages->record(ctx->stages->user, stage, limit, work, gq_now() - t0);
}

void gq_stage_add(const gq_block_ctx *ctx, const char *stage, gq_stage_limit limit, double work,
                  double seconds)
{
    if (ctx->stages)
        ctx->stages->record(ctx->stages->user, stage, limit, work, seconds);
}

double gq_block_forward_flops(const gq_config *c, int B, int T)
{
    double weights = 0.0;
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        int rows, cols;
        gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
        weights += (double)rows * cols;
    }
    double attention = 4.0 * gq_head_size(c) * c->n_heads * B * ((double)T * (T + 1) / 2.0);
    return 2.0 * B * T * weights + attention;
}

json_t *gq_block_extra(gq_block_ctx *ctx, gq_linear_kind k)
{
    if (!ctx->extra[k])
        ctx->extra[k] = json_object();
    return ctx->extra[k];
}

void gq_block_note(gq_block_ctx *ctx, const char *fmt, ...)
{
    char msg[512];
    int off = snprintf(msg, sizeof msg, "layers.%d: ", ctx->layer);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + off, sizeof msg - (size_t)off, fmt, ap);
    va_end(ap);
    gq_log_warn("%s", msg);
    if (ctx->notes)
        json_array_append_new(ctx->notes, json_string(msg));
}
