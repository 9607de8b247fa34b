/* The layer-wise quantization pipeline (gq_quantize_model).
 *
 *   x (B*T, dim) = embed(calibration windows)
 *   for each block l:
 *     ctx.w = copy of block l; the method quantizes it (ctx.q) from ctx.x = x
 *     trace the FP block ctx.w on x -> inputs X_k of each linear, outputs xf; reconstruction
 *       errors on a fixed sample of the tokens (gq_recon_error)
 *     x = xf (propagate fp) or block_l(x) with ctx.q (propagate quantized)
 *     write ctx.q (or ctx.w for linears kept FP) and the norms of ctx.w into the output model
 * The FP trace is the method's own when it made it through gq_block_trace_fp (into the
 * pipeline's buffers) and ctx.w still has the fingerprint it had then (GPTQ, RTN's imatrix),
 * else a new pass (a method that changed ctx.w afterwards: AWQ, PRAQ, SmoothQuant,
 * AffineQuant; RTN without imatrix): per block with calibration, GPTQ runs two passes (its
 * FP trace, the quantized propagation), RTN one.
 * Memory: one block's weights and reconstructions, x, xf, and one trace. Without calibration
 * (RTN and no windows given) no forward pass runs and errors are not measured.
 * Rules apply to the block linears, "tok_embeddings" and "classifier"; norms stay FP always. */
#include "methods/gq_pipeline.h"

#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_alloc.h"
#include "core/gq_fileio.h"
#include "core/gq_log.h"
#include "core/gq_time.h"
#include "model/gq_rotation.h"
#include "model/gq_stream.h"

void gq_quant_report_free(gq_quant_report *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_tensors; i++)
        json_decref(r->tensors[i].extra);
    free(r->tensors);
    json_decref(r->notes);
    for (size_t i = 0; r->linear_codes && i < r->n_linear_codes; i++)
        free(r->linear_codes[i]);
    for (size_t i = 0; r->linear_perm && i < r->n_linear_codes; i++)
        free(r->linear_perm[i]);
    free(r->linear_codes);
    free(r->embd_codes);
    free(r->cls_codes);
    free(r->linear_perm);
    memset(r, 0, sizeof *r);
}

/* The rule matching `name`, or NULL. */
static const gq_tensor_rule *match_rule(const gq_tensor_rule *rules, int n_rules,
                                        const char *name)
{
    for (int i = 0; i < n_rules; i++)
        if (fnmatch(rules[i].pattern, name, 0) == 0)
            return &rules[i];
    return NULL;
}

static const gq_quantizer *rule_quantizer(const gq_tensor_rule *r)
{
    return r && !r->keep_fp ? &r->quantizer : NULL;
}

void gq_tensor_rule_free(gq_tensor_rule *r)
{
    free(r->pattern);
    r->pattern = NULL;
    if (r->quantizer.fmt)
        gq_quantizer_free(&r->quantizer);
}

const gq_quantizer *gq_tensor_quantizer(const gq_quantizer *block_default,
                                        const gq_tensor_rule *rules, int n_rules,
                                        bool shared_classifier, const char *name)
{
    const bool emb = strcmp(name, "tok_embeddings") == 0, cls = strcmp(name, "classifier") == 0;
    if (shared_classifier && (emb || cls)) {
        const gq_quantizer *q = rule_quantizer(match_rule(rules, n_rules, "tok_embeddings"));
        return q ? q : rule_quantizer(match_rule(rules, n_rules, "classifier"));
    }
    const gq_tensor_rule *r = match_rule(rules, n_rules, name);
    if (r)
        return rule_quantizer(r);
    return emb || cls ? NULL : block_default;
}

static const gq_quantizer *plan_quantizer(const gq_quant_plan *p, const gq_config *c,
                                          const char *name)
{
    return gq_tensor_quantizer(&p->quantizer, p->rules, p->n_rules, c->shared_classifier, name);
}

const gq_quantizer *gq_plan_tensor_quantizer(const void *plan, const gq_config *c,
                                             const char *name)
{
    return plan_quantizer(plan, c, name);
}

static gq_tensor_report *add_tensor(gq_quant_report *r, const char *name, const gq_quantizer *q,
                                    int rows, int cols)
{
    gq_tensor_report *t = &r->tensors[r->n_tensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rows = rows;
    t->cols = cols;
    t->quantized = q != NULL;
    t->recon_err = NAN;
    if (q) {
        gq_quantizer_label(q, t->format, sizeof t->format);
        t->bytes = gq_quantizer_bytes(q, rows, cols);
    } else {
        snprintf(t->format, sizeof t->format, "fp32");
        t->bytes = (size_t)rows * cols * sizeof(float);
    }
    return t;
}

size_t gq_recon_token(size_t j, size_t n)
{
    if (n <= GQ_RECON_TOKENS)
        return j;
    size_t lo = j * n / GQ_RECON_TOKENS, hi = (j + 1) * n / GQ_RECON_TOKENS;
    uint64_t z = (uint64_t)j + 0x9e3779b97f4a7c15ULL; /* splitmix64's output for state j */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return lo + (size_t)(z % (hi - lo));
}

size_t gq_recon_tokens(size_t n)
{
    return n < GQ_RECON_TOKENS ? n : GQ_RECON_TOKENS;
}

/* Rows gq_recon_token(j0 .. j0+m-1, n) of X (n, cols) into xs (m, cols). */
static void gather_tokens(float *xs, const float *X, size_t j0, int m, size_t n, int cols)
{
    for (int i = 0; i < m; i++)
        memcpy(xs + (size_t)i * cols, X + gq_recon_token(j0 + (size_t)i, n) * cols,
               (size_t)cols * sizeof *xs);
}

double gq_recon_error(const float *W, const float *Q, const float *X, size_t n, int rows,
                      int cols, gq_error *err)
{
    const size_t chunk = 2048, ns = gq_recon_tokens(n);
    float *D = gq_alloc_big((size_t)rows * cols * sizeof *D);
    float *y = gq_alloc_big(chunk * rows * sizeof *y);
    float *e = gq_alloc_big(chunk * rows * sizeof *e);
    float *xs = ns < n ? gq_alloc_big(ns * cols * sizeof *xs) : NULL; /* the sampled rows */
    double num = 0.0, den = 0.0;
    if (!D || !y || !e || (ns < n && !xs)) {
        free(D), free(y), free(e), free(xs);
        gq_fail(err, "out of memory measuring a reconstruction error");
        return NAN;
    }
    /* D = W - Q element by element: any split gives the same bits. The sums below stay one
     * pass in index order: the error's bits are saved in the quantized model's report. */
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        D[i] = W[i] - Q[i];
    for (size_t t0 = 0; t0 < ns; t0 += chunk) {
        int m = (int)(ns - t0 < chunk ? ns - t0 : chunk);
        const float *xc = X + t0 * cols;
        if (xs) {
            gather_tokens(xs, X, t0, m, n, cols);
            xc = xs;
        }
        gq_linear(y, xc, W, m, cols, rows);
        gq_linear(e, xc, D, m, cols, rows);
        for (size_t i = 0; i < (size_t)m * rows; i++) {
            num += (double)e[i] * e[i];
            den += (double)y[i] * y[i];
        }
    }
    free(D), free(y), free(e), free(xs);
    if (!isfinite(num) || !isfinite(den)) {
        gq_fail(err, "the reconstruction error is not finite (the calibration activations "
                     "overflow fp32: a weight too large?)");
        return NAN;
    }
    return den > 0.0 ? num / den : 0.0;
}

struct gq_block_buffers {
    float *buf;
    size_t floats; /* capacity of buf */
};

gq_block_buffers *gq_block_buffers_new(void) { return calloc(1, sizeof(gq_block_buffers)); }

void gq_block_buffers_free(gq_block_buffers *b)
{
    if (b)
        free(b->buf);
    free(b);
}

/* Block l's working copy in s (grown when too small): the norms, extras, room for two explicit
 * transforms, then per linear its FP weights and its reconstruction. */
static int block_alloc(const gq_config *c, const gq_layer *src, gq_block_ctx *ctx,
                       gq_block_buffers *s, gq_error *err)
{
    size_t total = 2 * (size_t)c->dim;
    int rows, cols;
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
        total += 2 * (size_t)rows * cols; /* weight + reconstruction */
    }
    size_t dd = (size_t)c->dim * c->dim;
    total += 2 * dd; /* explicit transforms: the source's, or room for the method's */
    gq_extra_tensor ex[GQ_MAX_EXTRAS], sx[GQ_MAX_EXTRAS];
    int n_ex = gq_layer_extras(c, &ctx->w, ctx->layer, ex); /* biases, q/k norms */
    for (int i = 0; i < n_ex; i++)
        total += ex[i].n;
    const bool fresh = s->floats < total;
    if (fresh) {
        free(s->buf);
        s->floats = 0;
        if (!(s->buf = gq_alloc_big(total * sizeof(float))))
            return gq_fail(err, "layers.%d: out of memory for the block's weights", ctx->layer);
        s->floats = total;
    }
    float *p = s->buf;
    memset(&ctx->w, 0, sizeof ctx->w);
#define TAKE(dst, srcp, count)                                 \
    do {                                                       \
        (dst) = p;                                             \
        memcpy(p, (srcp), (size_t)(count) * sizeof(float));    \
        p += (count);                                          \
    } while (0)
    TAKE(ctx->w.rms_att, src->rms_att, c->dim);
    TAKE(ctx->w.rms_ffn, src->rms_ffn, c->dim);
    n_ex = gq_layer_extras(c, &ctx->w, ctx->layer, ex);
    gq_layer_extras(c, (gq_layer *)src, ctx->layer, sx);
    for (int i = 0; i < n_ex; i++)
        TAKE(*ex[i].slot, *sx[i].slot, ex[i].n);
#undef TAKE
    const float *src_tr[2] = {src->att_in_transform, src->ffn_in_transform};
    for (int i = 0; i < 2; i++) {
        ctx->transform_store[i] = p;
        if (src_tr[i])
            memcpy(p, src_tr[i], dd * sizeof(float));
        p += dd;
    }
    ctx->w.att_in_transform = src->att_in_transform ? ctx->transform_store[0] : NULL;
    ctx->w.ffn_in_transform = src->ffn_in_transform ? ctx->transform_store[1] : NULL;
    ctx->w.down_in_rot = src->down_in_rot; /* the model's, shared; never changed by a method */
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
        size_t n = (size_t)rows * cols;
        ctx->w.w[k] = p;
        memcpy(p, src->w[k], n * sizeof(float));
        p += n;
        ctx->q[k] = p;
        /* a new buffer's reconstruction pages are mapped here, once a model, rather than
         * inside the first block's stage that writes them, whose time the stage timer reports */
        if (fresh)
            memset(p, 0, n * sizeof(float));
        p += n;
    }
    return 0;
}

/* The finished block as the output holds it, to the sink with its codes. */
static int block_to_sink(const gq_config *c, const gq_block_ctx *ctx, const gq_quant_sink *sink,
                         gq_error *err)
{
    gq_layer L = ctx->w;
    uint8_t *codes[GQ_N_LINEAR] = {0};
    int32_t *perm[GQ_N_LINEAR] = {0};
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        if (ctx->quant[k])
            L.w[k] = ctx->q[k];
        if (ctx->has_codes[k]) {
            codes[k] = ctx->codes[k];
            perm[k] = ctx->in_perm[k];
        }
    }
    return sink->block(sink->user, c, ctx->layer, &L, codes, perm, err);
}

/* Writes the finished block into the output model's layer; explicit transforms the source
 * block did not have get model-owned storage. */
static int block_write(const gq_config *c, const gq_block_ctx *ctx, gq_model *out, gq_error *err)
{
    gq_layer *dst = &out->layers[ctx->layer];
    memcpy(dst->rms_att, ctx->w.rms_att, (size_t)c->dim * sizeof(float));
    memcpy(dst->rms_ffn, ctx->w.rms_ffn, (size_t)c->dim * sizeof(float));
    gq_extra_tensor ex[GQ_MAX_EXTRAS], dx[GQ_MAX_EXTRAS];
    int n_ex = gq_layer_extras(c, (gq_layer *)&ctx->w, ctx->layer, ex);
    gq_layer_extras(c, dst, ctx->layer, dx);
    for (int i = 0; i < n_ex; i++) /* biases (AWQ/PRAQ scale some), q/k norms */
        memcpy(*dx[i].slot, *ex[i].slot, ex[i].n * sizeof(float));
    size_t dd = (size_t)c->dim * c->dim;
    const float *tr[2] = {ctx->w.att_in_transform, ctx->w.ffn_in_transform};
    float *out_tr[2] = {dst->att_in_transform, dst->ffn_in_transform};
    for (int i = 0; i < 2; i++) {
        if (!tr[i])
            continue;
        if (out_tr[i])
            memcpy(out_tr[i], tr[i], dd * sizeof(float));
        else if (gq_model_set_in_transform(out, ctx->layer, i == 1, tr[i], err)) /* copies */
            return gq_fail_prefix(err, "layers.%d", ctx->layer);
    }
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        int rows, cols;
        gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
        const float *srcw = ctx->quant[k] ? ctx->q[k] : ctx->w.w[k];
        memcpy(dst->w[k], srcw, (size_t)rows * cols * sizeof(float));
    }
    return 0;
}

/* Embeddings and classifier: plain rounding when a rule names them; norms never. */
static int quantize_outer(const gq_model *fp, const gq_quant_plan *plan, gq_model *out,
                          gq_quant_report *rep, gq_error *err)
{
    const gq_config *c = &fp->cfg;
    const char *names[2] = {"tok_embeddings", "classifier"};
    for (int i = 0; i < 2; i++) {
        if (i == 1 && c->shared_classifier)
            continue; /* the tied classifier is the embedding table */
        const gq_quantizer *q = plan_quantizer(plan, c, names[i]);
        char label[96];
        snprintf(label, sizeof label, "%s%s", names[i],
                 i == 0 && c->shared_classifier ? " (= classifier)" : "");
        gq_tensor_report *t = add_tensor(rep, label, q, c->vocab_size, c->dim);
        if (!q)
            continue;
        float *w = i == 0 ? out->tok_embeddings : out->wcls;
        const float *src = i == 0 ? fp->tok_embeddings : fp->wcls;
        uint8_t **codes = i == 0 ? &rep->embd_codes : &rep->cls_codes;
        if (!(*codes = gq_alloc_big(gq_quantizer_bytes(q, c->vocab_size, c->dim))))
            return gq_fail(err, "%s: out of memory for its codes", names[i]);
        double t0 = gq_now();
        if (gq_quantizer_run(q, src, c->vocab_size, c->dim, NULL, *codes, w, err))
            return gq_fail_prefix(err, "%s", names[i]);
        rep->t_quant += gq_now() - t0;
        (void)t;
    }
    return 0;
}

static int check_tokens(const gq_model *fp, const gq_quant_plan *p, gq_error *err)
{
    if (p->n_calib <= 0 || p->calib_ctx <= 0)
        return gq_fail(err, "calibration: n_calib and calib_ctx must be positive (got %d, %d)",
                       p->n_calib, p->calib_ctx);
    if (p->calib_ctx > fp->cfg.seq_len)
        return gq_fail(err, "calibration: calib_ctx %d exceeds the model's seq_len %d",
                       p->calib_ctx, fp->cfg.seq_len);
    size_t n = (size_t)p->n_calib * p->calib_ctx;
    for (size_t i = 0; i < n; i++)
        if (p->calib_tokens[i] < 0 || p->calib_tokens[i] >= fp->cfg.vocab_size)
            return gq_fail(err, "calibration: token %d at position %zu is outside the vocabulary "
                                "(%d)", p->calib_tokens[i], i, fp->cfg.vocab_size);
    return 0;
}

/* The calibration stream through the blocks: x (ntok, dim) the inputs of the current block
 * (per `prop`), xf the FP block's outputs (scratch when propagation is quantized: the FP trace
 * then stops at down_proj's input, tr.no_output), xfp the FP model's own stream when the method
 * needs it separately; one trace and one forward workspace. Empty without calibration. */
typedef struct {
    bool calib;
    int B, T;
    size_t ntok;
    gq_propagate prop;
    float *x, *xf, *xfp;
    gq_forward_ws *ws;
    gq_block_trace tr;
    bool *has_tr; /* (n_layers, 2): block l came out with an explicit att / ffn transform */
} calib_stream;

static void stream_free(calib_stream *s)
{
    free(s->x);
    free(s->xf);
    free(s->xfp);
    gq_block_trace_free(&s->tr);
    gq_forward_ws_free(s->ws);
    free(s->has_tr);
}

/* Allocates the stream and embeds the calibration windows (from `out` when propagation is
 * quantized, so that a quantized embedding table is seen). */
static int stream_init(calib_stream *s, const gq_model *fp, const gq_model *out,
                       const gq_quant_plan *plan, const gq_method *m, gq_quant_report *rep,
                       gq_error *err)
{
    const gq_config *c = &fp->cfg;
    if (!(s->has_tr = calloc((size_t)c->n_layers * 2, sizeof *s->has_tr)))
        return gq_fail(err, "quantize: out of memory");
    if (!s->calib)
        return 0;
    s->B = plan->n_calib;
    s->T = plan->calib_ctx;
    s->ntok = (size_t)s->B * s->T;
    s->ws = gq_forward_ws_new(c, (int)s->ntok, err);
    s->x = gq_alloc_big(s->ntok * c->dim * sizeof *s->x);
    s->xf = gq_alloc_big(s->ntok * c->dim * sizeof *s->xf);
    if (!s->ws)
        return -1;
    if (!s->x || !s->xf)
        return gq_fail(err, "quantize: out of memory for %zu calibration tokens", s->ntok);
    gq_block_ctx shape = {.cfg = c, .B = s->B, .T = s->T};
    if (gq_block_trace_alloc(&shape, &s->tr, err))
        return -1;
    s->tr.no_output = s->prop == GQ_PROPAGATE_QUANTIZED; /* the FP outputs feed nothing */
    if (m->needs_fp_inputs && s->prop == GQ_PROPAGATE_QUANTIZED &&
        !(s->xfp = gq_alloc_big(s->ntok * c->dim * sizeof *s->xfp)))
        return gq_fail(err, "quantize: out of memory for %zu calibration tokens", s->ntok);
    double t0 = gq_now();
    gq_embed(s->prop == GQ_PROPAGATE_QUANTIZED ? out : fp, plan->calib_tokens, (int)s->ntok, s->x);
    if (s->xfp)
        gq_embed(fp, plan->calib_tokens, (int)s->ntok, s->xfp);
    rep->t_stats += gq_now() - t0;
    return 0;
}

/* The method on block l: the context (working copy, resolved formats, inputs), the method's
 * quantize_block, and the check that it quantized every linear with a format. */
static int run_method(const gq_model *fp, const gq_quant_plan *plan, int l, calib_stream *s, gq_quant_report *rep, gq_block_ctx *ctx,
                      gq_block_buffers *store, gq_error *err)
{
    const gq_config *c = &fp->cfg;
    const gq_method *m = plan->method.method;
    memset(ctx, 0, sizeof *ctx);
    ctx->cfg = c;
    ctx->layer = l;
    ctx->orig = &fp->layers[l];
    ctx->x = s->x;
    ctx->x_fp = s->xfp ? s->xfp : s->x;
    ctx->B = s->B;
    ctx->T = s->T;
    ctx->ws = s->ws;
    ctx->notes = rep->notes;
    ctx->stages = plan->stages;
    ctx->act = plan->act;
    if (s->calib) { /* gq_block_trace_fp writes the report's trace and the FP outputs */
        ctx->fp_trace = &s->tr;
        ctx->fp_out = s->xf;
    }
    char name[96];
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        gq_tensor_name(l, (gq_linear_kind)k, name, sizeof name);
        ctx->quant[k] = plan_quantizer(plan, c, name);
    }
    if (block_alloc(c, &fp->layers[l], ctx, store, err))
        return -1;
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        int rows, cols;
        gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
        if (ctx->quant[k] && !(ctx->codes[k] = gq_alloc_zero(
                                   gq_quantizer_bytes(ctx->quant[k], rows, cols),
                                   "the codes of a linear", err)))
            return gq_fail_prefix(err, "layers.%d", l);
    }
    if (m->quantize_block(plan->method.params, ctx, err))
        return -1;
    for (int k = 0; k < GQ_N_LINEAR; k++)
        if (ctx->quant[k] && !ctx->done[k])
            return gq_fail(err, "layers.%d.%s: method \"%s\" left the linear unquantized", l,
                           gq_linear_name((gq_linear_kind)k), m->name);
    rep->t_stats += ctx->t_stats;
    rep->t_search += ctx->t_search;
    rep->t_quant += ctx->t_quant;
    return 0;
}

/* The FP trace of the final (possibly transformed) block `w` on the block inputs, in s->tr
 * with the outputs in s->xf: the method's own (gq_block_trace_fp) when `w` still has the
 * fingerprint it had then, else a new pass. */
static int trace_final_block(gq_block_ctx *ctx, calib_stream *s, gq_quant_report *rep,
                             gq_error *err)
{
    if (ctx->fp_trace_of && ctx->fp_trace_of == gq_block_fingerprint(ctx))
        return 0;
    double t0 = gq_now();
    if (gq_block_run(ctx, false, &s->tr, s->xf, err))
        return -1;
    rep->t_stats += gq_now() - t0;
    return 0;
}

/* One report entry per linear, with its reconstruction error on the inputs that linear sees
 * in the final FP block. */
static int report_block(const gq_config *c, gq_block_ctx *ctx, calib_stream *s,
                        gq_quant_report *rep, gq_error *err)
{
    if (s->calib && trace_final_block(ctx, s, rep, err))
        return -1;
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        int rows, cols;
        char name[96];
        gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
        gq_tensor_name(ctx->layer, (gq_linear_kind)k, name, sizeof name);
        gq_tensor_report *t = add_tensor(rep, name, ctx->quant[k], rows, cols);
        t->extra = ctx->extra[k];
        ctx->extra[k] = NULL;
        if (!ctx->quant[k])
            continue;
        rep->linear_weights += (size_t)rows * cols;
        rep->linear_bytes += t->bytes;
        if (s->calib) {
            double t0 = gq_stage_begin(ctx);
            t->recon_err = gq_recon_error(ctx->w.w[k], ctx->q[k],
                                          gq_trace_input(&s->tr, (gq_linear_kind)k), s->ntok,
                                          rows, cols, err);
            if (isnan(t->recon_err))
                return -1;
            gq_stage_end(ctx, t0, "recon error", GQ_LIMIT_SGEMM, /* two products */
                         4.0 * (double)gq_recon_tokens(s->ntok) * rows * cols);
        }
    }
    return 0;
}

/* The next block's inputs: the FP block's outputs (already in xf) or the quantized block's;
 * the FP model's own stream through the untouched FP block. */
static int advance_stream(const gq_model *fp, gq_block_ctx *ctx, calib_stream *s,
                          gq_quant_report *rep, gq_error *err)
{
    if (!s->calib)
        return 0;
    double t0 = gq_now();
    if (s->prop == GQ_PROPAGATE_FP) {
        float *tmp = s->x;
        s->x = s->xf;
        s->xf = tmp;
    } else if (gq_block_run(ctx, true, NULL, s->x, err)) {
        return -1;
    }
    if (s->xfp) { /* a block forward pass as the method's are: the stage "forward" */
        double t1 = gq_stage_begin(ctx);
        gq_block_forward(fp, ctx->layer, s->xfp, s->B, s->T, s->ws, NULL);
        gq_stage_end(ctx, t1, "forward", GQ_LIMIT_SGEMM,
                     gq_block_forward_flops(&fp->cfg, s->B, s->T));
    }
    rep->t_stats += gq_now() - t0;
    return 0;
}

/* One block: the method, the report entries, the output model's layer, the next inputs; the
 * codes the method gave go to the report. */
static int quantize_block_l(const gq_model *fp, const gq_quant_plan *plan, int l,
                            calib_stream *s, gq_block_buffers *store, gq_model *out,
                            gq_quant_report *rep, gq_error *err)
{
    gq_block_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    int rc = -1;
    if (gq_block_acquire(fp, l, err)) /* a streamed model's block l in fp32 until the end */
        goto done;
    if (run_method(fp, plan, l, s, rep, &ctx, store, err) ||
        report_block(&fp->cfg, &ctx, s, rep, err) ||
        (out && block_write(&fp->cfg, &ctx, out, err)) ||
        (plan->sink && block_to_sink(&fp->cfg, &ctx, plan->sink, err)) ||
        advance_stream(fp, &ctx, s, rep, err))
        goto done;
    s->has_tr[2 * l] = ctx.w.att_in_transform != NULL;
    s->has_tr[2 * l + 1] = ctx.w.ffn_in_transform != NULL;
    for (int k = 0; k < GQ_N_LINEAR; k++)
        if (ctx.has_codes[k] && !plan->sink) {
            rep->linear_codes[(size_t)l * GQ_N_LINEAR + k] = ctx.codes[k];
            rep->linear_perm[(size_t)l * GQ_N_LINEAR + k] = ctx.in_perm[k];
            ctx.codes[k] = NULL;
            ctx.in_perm[k] = NULL;
        }
    rc = 0;
done:
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        json_decref(ctx.extra[k]);
        free(ctx.codes[k]);
        free(ctx.in_perm[k]);
    }
    gq_block_release(fp, l);
    return rc;
}

/* Sizes: every stored tensor in fp32 except the quantized ones, plus the explicit input
 * transforms (fp32, dim x dim each; has_tr as in calib_stream), which a note lists. */
static void finish_sizes(const gq_config *c, const bool *has_tr, gq_quant_report *rep)
{
    size_t params = gq_model_param_count(c);
    size_t qweights = 0, qbytes = 0;
    for (int i = 0; i < rep->n_tensors; i++)
        if (rep->tensors[i].quantized) {
            qweights += (size_t)rep->tensors[i].rows * rep->tensors[i].cols;
            qbytes += rep->tensors[i].bytes;
        }
    rep->model_bytes = (params - qweights) * sizeof(float) + qbytes;
    char explicit_list[256] = "";
    int n_explicit = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int i = 0; i < 2; i++) {
            if (!has_tr[2 * l + i])
                continue;
            size_t len = strlen(explicit_list);
            if (n_explicit++ < 8)
                snprintf(explicit_list + len, sizeof explicit_list - len, "%slayers.%d.%s",
                         n_explicit > 1 ? ", " : "", l, i ? "ffn_in" : "att_in");
        }
    if (n_explicit) {
        rep->model_bytes += (size_t)n_explicit * c->dim * c->dim * sizeof(float);
        char note[400];
        snprintf(note, sizeof note, "%d explicit input transforms stay fp32 (%d x %d each, "
                 "counted in model_bytes): %s%s", n_explicit, c->dim, c->dim, explicit_list,
                 n_explicit > 8 ? ", ..." : "");
        json_array_append_new(rep->notes, json_string(note));
    }
}

/* The sink's output before its blocks: fp's embeddings, final norm and classifier themselves
 * (read only), except those a rule quantizes, which get storage of their own for
 * quantize_outer; no block tensors. */
static int outer_view(const gq_model *fp, const gq_quant_plan *plan, gq_model *outer,
                      gq_error *err)
{
    const gq_config *c = &fp->cfg;
    size_t emb = (size_t)c->vocab_size * c->dim;
    bool q_emb = plan_quantizer(plan, c, "tok_embeddings") != NULL;
    bool q_cls = !c->shared_classifier && plan_quantizer(plan, c, "classifier") != NULL;
    size_t n = (q_emb ? emb : 0) + (q_cls ? emb : 0);
    memset(outer, 0, sizeof *outer);
    outer->cfg = *c;
    outer->layers = calloc((size_t)c->n_layers, sizeof *outer->layers);
    outer->heap = n ? gq_alloc_big(n * sizeof(float)) : NULL;
    outer->heap_floats = n;
    if (!outer->layers || (n && !outer->heap))
        return gq_fail(err, "quantize: out of memory for the output's embeddings");
    outer->tok_embeddings = q_emb ? outer->heap : fp->tok_embeddings;
    outer->rms_final = fp->rms_final;
    outer->wcls = c->shared_classifier ? outer->tok_embeddings
                  : q_cls               ? outer->heap + (q_emb ? emb : 0)
                                        : fp->wcls;
    return 0;
}

/* The output model before its blocks: out (when given) with fp's embeddings, final norm,
 * classifier and online rotation and room for every block, which block_write fills; else
 * outer_view, for the sink. */
static int output_init(const gq_model *fp, const gq_quant_plan *plan, gq_model *out,
                       gq_model *outer, gq_error *err)
{
    const gq_config *c = &fp->cfg;
    if (!out)
        return outer_view(fp, plan, outer, err);
    gq_model *dst = out;
    if (gq_model_alloc(c, out, err))
        return gq_fail_prefix(err, "quantize");
    size_t emb = (size_t)c->vocab_size * c->dim;
    memcpy(dst->tok_embeddings, fp->tok_embeddings, emb * sizeof(float));
    memcpy(dst->rms_final, fp->rms_final, (size_t)c->dim * sizeof(float));
    if (!c->shared_classifier)
        memcpy(dst->wcls, fp->wcls, emb * sizeof(float));
    /* the online rotation of down_proj's input (rotate) is the model's, not a block's */
    const gq_rotation *rot = c->n_layers > 0 ? fp->layers[0].down_in_rot : NULL;
    if (rot && gq_model_set_down_rotation(out, rot, err))
        return gq_fail_prefix(err, "quantize");
    return 0;
}

/* Whether the plan can run: a method and a format, calibration windows when the method needs
 * them (*calib: whether a calibration stream runs at all). */
static int check_plan(const gq_model *fp, const gq_quant_plan *plan, bool *calib, gq_error *err)
{
    const gq_method *m = plan->method.method;
    if (!m)
        return gq_fail(err, "quantize: no method configured");
    if (!plan->quantizer.fmt)
        return gq_fail(err, "quantize: no format configured");
    if (plan->sink && !plan->sink->holds_transforms &&
        gq_method_cfg_adds_transforms(&plan->method))
        return gq_fail(err, "method \"%s\" adds explicit input transforms, which a "
                            "block-by-block output cannot hold", m->name);
    *calib = gq_method_cfg_needs_calibration(&plan->method) || plan->calib_tokens;
    if (gq_method_cfg_needs_calibration(&plan->method) && !plan->calib_tokens)
        return gq_fail(err, "method \"%s\" needs calibration windows (n_calib x calib_ctx tokens)",
                       m->name);
    /* what the method cannot handle (a family's block, a layer's formats) fails before work */
    for (int l = 0; l < fp->cfg.n_layers; l++) {
        const gq_quantizer *q[GQ_N_LINEAR];
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            char name[64];
            gq_tensor_name(l, (gq_linear_kind)k, name, sizeof name);
            q[k] = plan_quantizer(plan, &fp->cfg, name);
        }
        if (gq_method_cfg_check_layer(&plan->method, &fp->cfg, l, q, err))
            return -1;
    }
    return *calib ? check_tokens(fp, plan, err) : 0;
}

/* The method's whole-model step as a streamed view of fp_in (gq_model_step_view), into *own;
 * a note when it untied the classifier. */
static int prepare_model(const gq_model *fp_in, const gq_quant_plan *plan, gq_model *own,
                         json_t *notes, gq_error *err)
{
    if (gq_model_step_view(fp_in, &plan->method, own, err))
        return -1;
    if (fp_in->cfg.shared_classifier && !own->cfg.shared_classifier)
        json_array_append_new(notes, json_string("the tied classifier was untied (the final "
                                                 "RMSNorm folds into it); counted in "
                                                 "model_bytes"));
    const gq_rotation *r = own->layers[0].down_in_rot;
    if (r) {
        char note[256];
        snprintf(note, sizeof note, "down_proj's input is rotated online (H / sqrt(%d), H = %s) "
                 "in every block; llama2.c, HF and GGUF exports refuse the model", r->n, r->what);
        json_array_append_new(notes, json_string(note));
    }
    return 0;
}

int gq_quantize_model(const gq_model *fp_in, const gq_quant_plan *plan, gq_model *out,
                      gq_quant_report *rep, gq_error *err)
{
    const gq_method *m = plan->method.method;
    memset(rep, 0, sizeof *rep);
    if (out)
        memset(out, 0, sizeof *out);
    else if (!plan->sink)
        return gq_fail(err, "quantize: no output model and no sink");
    if (plan->stop_after_blocks > 0 && out)
        return gq_fail(err, "quantize: stopping after %d blocks leaves no complete output model",
                       plan->stop_after_blocks);
    calib_stream s;
    memset(&s, 0, sizeof s);
    gq_block_buffers own_store = {0};
    gq_block_buffers *store = plan->buffers ? plan->buffers : &own_store;
    if (check_plan(fp_in, plan, &s.calib, err))
        return -1;
    /* the model the blocks are quantized from: the input, or its whole-model transform */
    gq_model own = {0};
    const gq_model *fp = fp_in;
    json_t *notes = json_array();
    if (!notes)
        return gq_fail(err, "quantize: out of memory");
    if (m->transform_outer) {
        if (prepare_model(fp_in, plan, &own, notes, err)) {
            json_decref(notes);
            return -1;
        }
        fp = &own;
    }
    const gq_config *c = &fp->cfg;
    s.prop = plan->propagate == GQ_PROPAGATE_METHOD_DEFAULT ? m->propagate : plan->propagate;

    rep->notes = notes;
    rep->tensors = calloc((size_t)c->n_layers * GQ_N_LINEAR + 2, sizeof *rep->tensors);
    rep->n_linear_codes = (size_t)c->n_layers * GQ_N_LINEAR;
    rep->linear_codes = calloc(rep->n_linear_codes, sizeof *rep->linear_codes);
    rep->linear_perm = calloc(rep->n_linear_codes, sizeof *rep->linear_perm);
    if (!rep->tensors || !rep->linear_codes || !rep->linear_perm) {
        gq_quant_report_free(rep);
        gq_model_free(&own);
        return gq_fail(err, "quantize: out of memory");
    }
    gq_model outer = {0}; /* the output's embeddings/classifier when there is no out model */
    gq_model *dst = out ? out : &outer;
    if (output_init(fp, plan, out, &outer, err) || quantize_outer(fp, plan, dst, rep, err) ||
        (plan->sink && plan->sink->outer(plan->sink->user, dst, err)))
        goto fail;
    int rc = -1;
    if (stream_init(&s, fp, dst, plan, m, rep, err))
        goto cleanup;
    gq_log_info("quantize: method %s, %d blocks, %d calibration windows x %d tokens, propagate %s",
                m->name, c->n_layers, s.B, s.T, s.prop == GQ_PROPAGATE_FP ? "fp" : "quantized");
    int n_blocks = plan->stop_after_blocks > 0 && plan->stop_after_blocks < c->n_layers
                       ? plan->stop_after_blocks
                       : c->n_layers;
    gq_progress prog;
    gq_progress_start(&prog, "quantize", n_blocks);
    for (int l = 0; l < n_blocks; l++) {
        if (quantize_block_l(fp, plan, l, &s, store, out, rep, err))
            goto cleanup;
        gq_progress_add(&prog, 1);
    }
    gq_progress_finish(&prog);
    finish_sizes(c, s.has_tr, rep);
    rc = 0;
cleanup:
    stream_free(&s);
    free(own_store.buf);
    gq_model_free(&outer);
    if (rc == 0) {
        gq_model_free(&own);
        return 0;
    }
fail:
    gq_model_free(&outer);
    gq_model_free(&own);
    gq_model_free(out);
    gq_quant_report_free(rep);
    return -1;
}
