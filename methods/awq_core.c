/* AWQ's search (auto_scale), folding (apply_scale) and clipping (auto_clip), format-agnostic.
 *
 * Per block, as llm-awq's run_awq: the four groups' scales are all searched on the FP block
 * (FP weights, FP inputs), then folded; the clipping search then runs on the folded weights
 * with the folded block's inputs (= the inputs divided by s); finally every linear is rounded
 * by its format (clipped copies for all linears but q and k).
 *
 * Search of a group with input X (n, c_in), salience s_x (c_in) and inspected module M:
 *   for alpha = i / n_grid: s = max(s_x^alpha, 1e-4) (duo: s_x^a / (w_mean^(1-a) + 1e-4)),
 *   s /= sqrt(max(s) min(s)); each scaled linear W <- Q(W diag(s)) diag(s)^-1 (the others FP);
 *   loss = mean((M(X) - M_fp(X))^2); keep the alpha of least loss (the first on ties).
 * The losses of every group come from stacked products over all grid points (awq_grid.c); a
 * group whose inspected module has biases runs one forward per point. The clipping search of
 * each linear is awq_clip.c's. */
#include "methods/gq_awq.h"
#include "methods/awq_clip.h"
#include "methods/awq_grid.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib/gq_calib.h"
#include "core/gq_alloc.h"
#include "core/gq_gemm.h"
#include "core/gq_time.h"

static const gq_linear_kind group_linears[GQ_AWQ_N_GROUPS][3] = {
    {GQ_LIN_Q, GQ_LIN_K, GQ_LIN_V}, {GQ_LIN_O}, {GQ_LIN_GATE, GQ_LIN_UP}, {GQ_LIN_DOWN}};
static const int group_n[GQ_AWQ_N_GROUPS] = {3, 1, 2, 1};
static const char *const group_names[GQ_AWQ_N_GROUPS] = {"qkv", "v_o", "gate_up", "down"};

/* Input width of group g's linears: hidden for down, q_dim for o (the attention output). */
static int group_cin(const gq_config *c, gq_awq_group g)
{
    return g == GQ_AWQ_DOWN ? c->hidden_dim : g == GQ_AWQ_VO ? gq_q_dim(c) : c->dim;
}

/* Output of the inspected module of group g on its input x: (n, dim). */
static void inspect(const gq_block_ctx *ctx, const gq_layer *L, gq_awq_group g, const float *x,
                    float *out)
{
    const gq_config *c = ctx->cfg;
    int n = ctx->B * ctx->T;
    switch (g) {
    case GQ_AWQ_QKV: gq_attention_forward(c, L, x, ctx->B, ctx->T, out, ctx->ws, NULL); break;
    case GQ_AWQ_VO: gq_linear(out, x, L->w[GQ_LIN_O], n, gq_q_dim(c), c->dim); break;
    case GQ_AWQ_GATEUP: gq_mlp_forward(c, L, x, n, out, ctx->ws, NULL); break;
    default: gq_linear(out, x, L->w[GQ_LIN_DOWN], n, c->hidden_dim, c->dim); break;
    }
}

static int group_cols_of(const gq_quantizer *q, int cols)
{
    int g = q && q->fmt->group_cols ? q->fmt->group_cols(q->params, cols) : cols;
    return g > 0 && g < cols ? g : cols;
}

/* AutoAWQ's w_mean: column mean over the group's stacked weights of |w| / max|w| taken per
 * quantization group of each row. */
static void weight_mean(const gq_block_ctx *ctx, gq_awq_group g, int cin, float *wm)
{
    double *acc = calloc((size_t)cin, sizeof *acc);
    size_t rows_total = 0;
    for (int i = 0; i < group_n[g]; i++) {
        gq_linear_kind k = group_linears[g][i];
        int rows, cols;
        gq_linear_shape(ctx->cfg, k, &rows, &cols);
        const float *W = ctx->w.w[k];
        int gs = group_cols_of(ctx->quant[k], cols);
        for (int r = 0; r < rows; r++)
            for (int c0 = 0; c0 < cols; c0 += gs) {
                int c1 = c0 + gs < cols ? c0 + gs : cols;
                float m = 0.0f;
                for (int j = c0; j < c1; j++)
                    m = fmaxf(m, fabsf(W[(size_t)r * cols + j]));
                for (int j = c0; j < c1; j++)
                    acc[j] += fabsf(W[(size_t)r * cols + j]) / (m + 1e-6f);
            }
        rows_total += (size_t)rows;
    }
    for (int j = 0; j < cin; j++)
        wm[j] = (float)(acc[j] / (double)rows_total);
    free(acc);
}

static void make_scales(const float *sx, const float *wm, double alpha, int n, float *s)
{
    float mx = 0.0f, mn = FLT_MAX;
    for (int j = 0; j < n; j++) {
        double v = pow(sx[j], alpha);
        if (wm)
            v /= pow(wm[j], 1.0 - alpha) + 1e-4;
        float f = (float)(v < 1e-4 ? 1e-4 : v);
        s[j] = f;
        mx = fmaxf(mx, f);
        mn = fminf(mn, f);
    }
    float norm = sqrtf(mx * mn);
    for (int j = 0; j < n; j++)
        s[j] /= norm;
}

/* T (rows, cols) = Q(W diag(s)) diag(s)^-1 for linear k of the block, or W itself when k stays
 * FP (not rounded in the trial either). */
static int trial_weight(const gq_block_ctx *ctx, gq_linear_kind k, const float *s, float *T,
                        gq_error *err)
{
    int rows, cols;
    gq_linear_shape(ctx->cfg, k, &rows, &cols);
    const float *W = ctx->w.w[k];
    if (!ctx->quant[k]) {
        memcpy(T, W, (size_t)rows * cols * sizeof *T);
        return 0;
    }
#pragma omp parallel for schedule(static) if ((long)rows * cols >= 65536)
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++)
            T[(size_t)r * cols + j] = W[(size_t)r * cols + j] * s[j];
    if (gq_quantizer_run(ctx->quant[k], T, rows, cols, NULL, NULL, T, err))
        return gq_fail_prefix(err, "layers.%d.%s", ctx->layer, gq_linear_name(k));
#pragma omp parallel for schedule(static) if ((long)rows * cols >= 65536)
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++)
            T[(size_t)r * cols + j] /= s[j];
    return 0;
}

/* The block with the group's linears rounded at scales s (trial_weight into tmp[i], one buffer
 * per linear of the group), linears that stay FP as they are. */
static int trial_layer(const gq_block_ctx *ctx, gq_awq_group g, const float *s, float *tmp[3],
                       gq_layer *v, gq_error *err)
{
    *v = ctx->w;
    for (int i = 0; i < group_n[g]; i++) {
        gq_linear_kind k = group_linears[g][i];
        if (!ctx->quant[k])
            continue;
        if (trial_weight(ctx, k, s, tmp[i], err))
            return -1;
        v->w[k] = tmp[i];
    }
    return 0;
}

/* Bytes of trial weights stacked per product (awq_grid.c): grid points are taken in chunks
 * of as many as fit, at least one. */
#define GRID_STACK_BYTES ((size_t)256 << 20)

/* loss[gi] = mean squared error of the inspected module for grid point gi, one forward per
 * point: the reference of the stacked search, and the search of a module with biases. */
static int losses_per_point(const gq_awq_params *p, gq_block_ctx *ctx, gq_awq_group g,
                            const float *x, const float *sx, const float *wm, const float *org,
                            double *loss, gq_error *err)
{
    const gq_config *c = ctx->cfg;
    const size_t n = (size_t)ctx->B * ctx->T;
    int cin = group_cin(c, g);
    float *out = gq_alloc_big(n * c->dim * sizeof *out), *s = gq_alloc_big((size_t)cin * sizeof *s);
    float *tmp[3] = {NULL, NULL, NULL};
    int rc = -1;
    for (int i = 0; i < group_n[g]; i++) {
        int rows, cols;
        gq_linear_shape(c, group_linears[g][i], &rows, &cols);
        tmp[i] = gq_alloc_big((size_t)rows * cols * sizeof(float));
    }
    if (!out || !s || !tmp[0] || (group_n[g] > 1 && !tmp[1]) || (group_n[g] > 2 && !tmp[2])) {
        gq_fail(err, "layers.%d: out of memory in the AWQ search", ctx->layer);
        goto done;
    }
    for (int gi = 0; gi < p->n_grid; gi++) {
        make_scales(sx, wm, (double)gi / p->n_grid, cin, s);
        gq_layer v;
        if (trial_layer(ctx, g, s, tmp, &v, err))
            goto done;
        inspect(ctx, &v, g, x, out);
        double se = 0.0;
        for (size_t i = 0; i < n * c->dim; i++) {
            double d = (double)out[i] - org[i];
            se += d * d;
        }
        loss[gi] = se / (double)(n * c->dim);
    }
    rc = 0;
done:
    free(out), free(s);
    for (int i = 0; i < 3; i++)
        free(tmp[i]);
    return rc;
}

/* The same losses through stacked products (awq_grid.h), chunks of grid points of at most
 * GRID_STACK_BYTES of trial weights. */
static int losses_stacked(const gq_awq_params *p, gq_block_ctx *ctx, gq_awq_group g,
                          const float *x, const float *sx, const float *wm, const float *org,
                          double *loss, gq_error *err)
{
    const gq_config *c = ctx->cfg;
    int cin = group_cin(c, g);
    size_t size[3] = {0, 0, 0}, per = 0; /* elements of each linear; bytes of one point */
    for (int i = 0; i < group_n[g]; i++) {
        int rows, cols;
        gq_linear_shape(c, group_linears[g][i], &rows, &cols);
        size[i] = (size_t)rows * cols;
        per += size[i] * sizeof(float);
    }
    int chunk = GRID_STACK_BYTES / per < (size_t)p->n_grid ? (int)(GRID_STACK_BYTES / per)
                                                              : p->n_grid;
    chunk = chunk < 1 ? 1 : chunk;
    float *trial[3] = {NULL, NULL, NULL}, *s = malloc((size_t)cin * sizeof *s);
    bool ok = s != NULL;
    for (int i = 0; i < group_n[g]; i++)
        ok = ok && (trial[i] = gq_alloc_big((size_t)chunk * size[i] * sizeof(float)));
    int rc = -1;
    if (!ok) {
        gq_fail(err, "layers.%d: out of memory in the AWQ search", ctx->layer);
        goto done;
    }
    for (int a0 = 0; a0 < p->n_grid; a0 += chunk) {
        int na = p->n_grid - a0 < chunk ? p->n_grid - a0 : chunk;
        for (int a = 0; a < na; a++) {
            make_scales(sx, wm, (double)(a0 + a) / p->n_grid, cin, s);
            for (int i = 0; i < group_n[g]; i++)
                if (trial_weight(ctx, group_linears[g][i], s, trial[i] + (size_t)a * size[i],
                                 err))
                    goto done;
        }
        if (gq_awq_grid_losses(ctx, g, x, org, trial, na, loss + a0, err))
            goto done;
    }
    rc = 0;
done:
    free(s), free(trial[0]), free(trial[1]), free(trial[2]);
    return rc;
}

/* The stacked products leave out biases: a q/k/v or gate/up group whose inspected module (the
 * attention, the MLP) has one searches point by point. The v->o and down groups inspect their
 * linear without its bias in both paths (inspect). */
static bool inspected_has_bias(const gq_layer *L, gq_awq_group g)
{
    float *const *b = L->b;
    if (g == GQ_AWQ_QKV)
        return b[GQ_LIN_Q] || b[GQ_LIN_K] || b[GQ_LIN_V] || b[GQ_LIN_O];
    return g == GQ_AWQ_GATEUP && (b[GQ_LIN_GATE] || b[GQ_LIN_UP] || b[GQ_LIN_DOWN]);
}

/* Scale search for group g; best scales into s_best: the first grid point of least loss. */
static int search_group(const gq_awq_params *p, gq_block_ctx *ctx, gq_awq_group g,
                        const float *x, const float *sx, float *s_best, gq_error *err)
{
    const gq_config *c = ctx->cfg;
    const size_t n = (size_t)ctx->B * ctx->T;
    int cin = group_cin(c, g);
    float *org = gq_alloc_big(n * c->dim * sizeof *org);
    float *wm = p->duo_scaling ? malloc((size_t)cin * sizeof *wm) : NULL;
    double *loss = malloc((size_t)p->n_grid * sizeof *loss);
    int rc = -1;
    if (!org || !loss || (p->duo_scaling && !wm)) {
        gq_fail(err, "layers.%d: out of memory in the AWQ search", ctx->layer);
        goto done;
    }
    if (wm)
        weight_mean(ctx, g, cin, wm);
    inspect(ctx, &ctx->w, g, x, org);
    bool stacked = gq_awq_stacked_grid && !inspected_has_bias(&ctx->w, g);
    if ((stacked ? losses_stacked : losses_per_point)(p, ctx, g, x, sx, wm, org, loss, err))
        goto done;
    double best = INFINITY;
    int best_i = -1;
    for (int gi = 0; gi < p->n_grid; gi++)
        if (loss[gi] < best) {
            best = loss[gi];
            best_i = gi;
        }
    if (best_i < 0) {
        gq_fail(err, "layers.%d: AWQ scale search for %s found no finite loss", ctx->layer,
                group_names[g]);
        goto done;
    }
    make_scales(sx, wm, (double)best_i / p->n_grid, cin, s_best);
    for (int i = 0; i < group_n[g]; i++) {
        json_t *e = gq_block_extra(ctx, group_linears[g][i]);
        json_object_set_new(e, "awq_alpha", json_real((double)best_i / p->n_grid));
        json_object_set_new(e, "awq_loss", json_real(best));
        json_object_set_new(e, "awq_loss_alpha0", json_real(loss[0]));
    }
    rc = 0;
done:
    free(org), free(wm), free(loss);
    return rc;
}

void gq_awq_fold(gq_block_ctx *ctx, gq_awq_group g, const float *s)
{
    const gq_config *c = ctx->cfg;
    int cin = group_cin(c, g);
    /* previous op */
    if (g == GQ_AWQ_QKV || g == GQ_AWQ_GATEUP) {
        float *norm = g == GQ_AWQ_QKV ? ctx->w.rms_att : ctx->w.rms_ffn;
        for (int j = 0; j < cin; j++)
            norm[j] /= s[j];
    } else {
        gq_linear_kind prev = g == GQ_AWQ_VO ? GQ_LIN_V : GQ_LIN_UP;
        int rows, cols;
        gq_linear_shape(c, prev, &rows, &cols);
        float *W = ctx->w.w[prev], *bias = ctx->w.b[prev];
        for (int r = rows - cin; r < rows; r++) { /* the last len(s) rows */
            for (int j = 0; j < cols; j++)
                W[(size_t)r * cols + j] /= s[r - (rows - cin)];
            if (bias) /* the output row is divided by s: so is its bias */
                bias[r] /= s[r - (rows - cin)];
        }
    }
    for (int i = 0; i < group_n[g]; i++) {
        int rows, cols;
        gq_linear_shape(c, group_linears[g][i], &rows, &cols);
        float *W = ctx->w.w[group_linears[g][i]];
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < cols; j++)
                W[(size_t)r * cols + j] *= s[j];
    }
}

/* auto_clip for linear k on inputs X (n, cols), every (n / clip_tokens)-th token sampled: the
 * clipped weights into Wc. */
static int clip_search(const gq_awq_params *p, gq_block_ctx *ctx, gq_linear_kind k,
                       const float *X, size_t n, float *Wc, gq_error *err)
{
    int rows, cols;
    gq_linear_shape(ctx->cfg, k, &rows, &cols);
    const float *W = ctx->w.w[k];
    const int gs = group_cols_of(ctx->quant[k], cols), ng = (cols + gs - 1) / gs;
    size_t step = n / (size_t)p->clip_tokens;
    if (step < 1)
        step = 1;
    size_t m = (n + step - 1) / step;
    float *Xs = gq_alloc_big(m * cols * sizeof *Xs);
    float *amax = malloc((size_t)rows * ng * sizeof *amax);
    float *best_f = malloc((size_t)rows * ng * sizeof *best_f);
    int rc = -1;
    if (!Xs || !amax || !best_f) {
        gq_fail(err, "layers.%d.%s: out of memory in the clip search", ctx->layer,
                gq_linear_name(k));
        goto done;
    }
    for (size_t t = 0; t < m; t++)
        memcpy(Xs + t * cols, X + t * step * cols, (size_t)cols * sizeof *Xs);
    gq_awq_clip_amax(W, rows, cols, gs, amax);
    int n_cand = (int)(p->max_shrink * p->clip_grid);
    const gq_awq_clip_problem pb = {.q = ctx->quant[k], .W = W, .rows = rows, .cols = cols,
                                    .gs = gs, .amax = amax, .Xs = Xs, .m = m,
                                    .n_cand = n_cand < 1 ? 1 : n_cand,
                                    .clip_grid = p->clip_grid};
    if (gq_awq_clip_factors(&pb, best_f, NULL, err)) {
        gq_fail_prefix(err, "layers.%d.%s", ctx->layer, gq_linear_name(k));
        goto done;
    }
    double mean_f = 0.0;
    gq_awq_clip_to(Wc, W, amax, best_f, 0.0f, rows, cols, gs);
    for (size_t i = 0; i < (size_t)rows * ng; i++)
        mean_f += best_f[i];
    json_object_set_new(gq_block_extra(ctx, k), "clip_mean_ratio",
                        json_real(mean_f / ((double)rows * ng)));
    rc = 0;
done:
    free(Xs), free(amax), free(best_f);
    return rc;
}

/* FLOPs of group g's scale search as the stage timer counts them: the inspected module on all
 * calibration tokens, once per grid point (the loss needs its output): q/k/v, the causal
 * attention (scores and weighted sum, T (T + 1) / 2 pairs per window) and o_proj; o_proj;
 * gate, up and down; down. */
static double search_flops(const gq_awq_params *p, const gq_block_ctx *ctx, gq_awq_group g)
{
    static const gq_linear_kind inspected[GQ_AWQ_N_GROUPS][4] = {
        {GQ_LIN_Q, GQ_LIN_K, GQ_LIN_V, GQ_LIN_O}, {GQ_LIN_O}, {GQ_LIN_GATE, GQ_LIN_UP,
        GQ_LIN_DOWN}, {GQ_LIN_DOWN}};
    static const int n_inspected[GQ_AWQ_N_GROUPS] = {4, 1, 3, 1};
    const double n = (double)ctx->B * ctx->T;
    double w = 0.0;
    for (int i = 0; i < n_inspected[g]; i++) {
        int rows, cols;
        gq_linear_shape(ctx->cfg, inspected[g][i], &rows, &cols);
        w += (double)rows * cols;
    }
    double flops = 2.0 * n * w;
    if (g == GQ_AWQ_QKV)
        flops += 4.0 * ctx->B * (ctx->T * (ctx->T + 1.0) / 2.0) * gq_q_dim(ctx->cfg);
    return p->n_grid * flops;
}

/* FLOPs of linear k's clip search: one product on the sub-sampled tokens per candidate. */
static double clip_flops(const gq_awq_params *p, const gq_block_ctx *ctx, gq_linear_kind k)
{
    int rows, cols;
    gq_linear_shape(ctx->cfg, k, &rows, &cols);
    double n = (double)ctx->B * ctx->T, m = n < p->clip_tokens ? n : p->clip_tokens;
    double n_cand = p->max_shrink * p->clip_grid < 1 ? 1 : (int)(p->max_shrink * p->clip_grid);
    return 2.0 * n_cand * m * rows * cols;
}

/* Salience and scale search for group g: *scale gets cin scales, or stays NULL when no linear
 * of the group is quantized or its scales cannot be folded. */
static int group_scales(const gq_awq_params *p, gq_awq_salience_fn salience, const void *user,
                        gq_block_ctx *ctx, gq_block_trace *tr, gq_awq_group g, float **scale,
                        gq_error *err)
{
    const gq_config *c = ctx->cfg;
    const size_t n = (size_t)ctx->B * ctx->T;
    bool any = false;
    for (int i = 0; i < group_n[g]; i++)
        any |= ctx->quant[group_linears[g][i]] != NULL;
    if (!any)
        return 0;
    if (g == GQ_AWQ_VO && (!p->scale_v_o || gq_kv_dim(c) != gq_q_dim(c)))
        return 0; /* GQA: v_proj's outputs are not o_proj's inputs one to one */
    int cin = group_cin(c, g);
    float *sx = malloc((size_t)cin * sizeof *sx);
    *scale = malloc((size_t)cin * sizeof(float));
    if (!sx || !*scale) {
        free(sx);
        return gq_fail(err, "layers.%d: out of memory", ctx->layer);
    }
    const float *x = gq_trace_input(tr, group_linears[g][0]);
    double t0 = gq_now(), flops = 0.0;
    int src = salience ? salience(user, ctx, tr, g, sx, &flops, err)
                       : (gq_calib_abs_mean(x, n, cin, sx), 0);
    ctx->t_stats += gq_now() - t0;
    if (flops > 0.0) /* a salience of its own products (PRAQ's unit importance) */
        gq_stage_end(ctx, t0, "salience", GQ_LIMIT_SGEMM, flops);
    else
        gq_stage_end(ctx, t0, "stats", GQ_LIMIT_BANDWIDTH, (double)n * cin * sizeof(float));
    t0 = gq_now();
    if (src == 0)
        src = search_group(p, ctx, g, x, sx, *scale, err);
    ctx->t_search += gq_now() - t0;
    gq_stage_end(ctx, t0, "search", GQ_LIMIT_SGEMM, search_flops(p, ctx, g));
    free(sx);
    return src;
}

/* Quantizes the folded block's linears with RTN, after the clip search when p->clip (which
 * re-traces the block: the inputs of the folded block are the FP inputs divided by the scales). */
static int quantize_linears(const gq_awq_params *p, gq_block_ctx *ctx, gq_block_trace *tr,
                            gq_error *err)
{
    const gq_config *c = ctx->cfg;
    const size_t n = (size_t)ctx->B * ctx->T;
    float *Wc = NULL;
    int rc = -1;
    if (p->clip) {
        double t0 = gq_now();
        if (gq_block_run(ctx, false, tr, NULL, err))
            goto done;
        ctx->t_stats += gq_now() - t0;
        size_t most = 0; /* the largest linear */
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            int rows, cols;
            gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
            most = (size_t)rows * cols > most ? (size_t)rows * cols : most;
        }
        Wc = gq_alloc_big(most * sizeof *Wc);
        if (!Wc) {
            gq_fail(err, "layers.%d: out of memory", ctx->layer);
            goto done;
        }
    }
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        if (!ctx->quant[k])
            continue;
        const float *w = NULL;
        if (p->clip && k != GQ_LIN_Q && k != GQ_LIN_K) { /* "due to qk bmm" */
            double t0 = gq_now();
            int crc = clip_search(p, ctx, (gq_linear_kind)k, gq_trace_input(tr, (gq_linear_kind)k),
                                  n, Wc, err);
            ctx->t_search += gq_now() - t0;
            gq_stage_end(ctx, t0, "clip", GQ_LIMIT_SGEMM, clip_flops(p, ctx, (gq_linear_kind)k));
            if (crc)
                goto done;
            w = Wc;
        }
        if (gq_block_quantize_rtn(ctx, (gq_linear_kind)k, w, NULL, err))
            goto done;
    }
    rc = 0;
done:
    free(Wc);
    return rc;
}

int gq_awq_quantize_block(const gq_awq_params *p, gq_awq_salience_fn salience, const void *user,
                          gq_block_ctx *ctx, gq_error *err)
{
    gq_block_trace tr = {0};
    float *scales[GQ_AWQ_N_GROUPS] = {0};
    int rc = -1;
    if (ctx->w.down_in_rot) /* up's output channel j is no longer down's input channel j */
        return gq_fail(err, "layers.%d: the online rotation of the down_proj input (rotate) "
                            "sits between up_proj and down_proj, so their scales cannot be "
                            "folded; use rotate with \"online\": false before this method",
                       ctx->layer);
    if (gq_block_trace_alloc(ctx, &tr, err))
        return -1;
    double t0 = gq_now();
    if (gq_block_run(ctx, false, &tr, NULL, err))
        goto done;
    ctx->t_stats += gq_now() - t0;
    for (int g = 0; g < GQ_AWQ_N_GROUPS; g++)
        if (group_scales(p, salience, user, ctx, &tr, (gq_awq_group)g, &scales[g], err))
            goto done;
    for (int g = 0; g < GQ_AWQ_N_GROUPS; g++)
        if (scales[g])
            gq_awq_fold(ctx, (gq_awq_group)g, scales[g]);
    if (quantize_linears(p, ctx, &tr, err))
        goto done;
    rc = 0;
done:
    gq_block_trace_free(&tr);
    for (int g = 0; g < GQ_AWQ_N_GROUPS; g++)
        free(scales[g]);
    return rc;
}
