/* PRAQ: post-activation, risk-aware AWQ for the MLP.
 *
 * AWQ's alpha search, scale folding and clipping (awq_core.c) with a different salience s_x
 * for the two MLP scaling groups; the attention groups keep AWQ's mean |x|.
 *
 * For hidden unit j and a calibration token x (the input of gate/up):
 *   g_j = x . w_gate_j,  u_j = x . w_up_j,  h_j = SiLU(g_j) u_j
 *   r_j(x) = sigmoid(beta (g_j - tau))                       the chance that the unit is active
 *   I_j    = E_x[ r_j(x) (|h_j| + noise_factor |SiLU'(g_j) g_j u_j|) ]
 * i.e. the unit's output magnitude plus the first-order change of h_j under a relative
 * quantization noise of noise_factor on g_j (dh = SiLU'(g) u dg, dg = noise_factor g),
 * weighted by the risk that the unit is active. SiLU'(g) = s(g) (1 + g (1 - s(g))) with s the
 * logistic function. Then
 *   down_proj (input channel j):  s_x[j] = I_j
 *   gate/up   (input channel i):  s_x[i] = E|x_i| * sum_j I_j (|Wg[j,i]| + |Wu[j,i]|)
 *                                          / (mean(I) * sum_j (|Wg[j,i]| + |Wu[j,i]|))
 * (the AWQ salience reweighted by how important the hidden units that channel feeds are,
 * relative to the average unit). Expectations are means over all calibration tokens.
 * Defaults: beta 3.0, tau -3.0, noise_factor 0.2. */
#include "methods/gq_awq.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "calib/gq_calib.h"
#include "core/gq_alloc.h"

typedef struct {
    gq_awq_params awq;
    double beta;
    double tau;
    double noise_factor;
} praq_params;

static const gq_param_spec praq_specs[] = {
    GQ_AWQ_PARAM_SPECS(praq_params, awq),
    {"beta", GQ_PARAM_FLOAT, offsetof(praq_params, beta), "3.0", 0, 1000, NULL,
     "steepness of the activity probability sigmoid(beta (g - tau))"},
    {"tau", GQ_PARAM_FLOAT, offsetof(praq_params, tau), "-3.0", -1000, 1000, NULL,
     "gate pre-activation at which a unit counts as half active"},
    {"noise_factor", GQ_PARAM_FLOAT, offsetof(praq_params, noise_factor), "0.2", 0, 100, NULL,
     "relative quantization noise on the gate pre-activation (first-order risk term)"},
    {0}};

/* I (hidden) from the MLP inputs xin (n, dim). */
static int unit_importance(const praq_params *p, const gq_block_ctx *ctx, const float *xin,
                           size_t n, double *I, gq_error *err)
{
    const int dim = ctx->cfg->dim, hid = ctx->cfg->hidden_dim;
    const size_t chunk = 1024;
    float *g = gq_alloc_big(chunk * hid * sizeof *g), *u = gq_alloc_big(chunk * hid * sizeof *u);
    if (!g || !u) {
        free(g), free(u);
        return gq_fail(err, "layers.%d: out of memory for PRAQ statistics", ctx->layer);
    }
    for (int j = 0; j < hid; j++)
        I[j] = 0.0;
    for (size_t t0 = 0; t0 < n; t0 += chunk) {
        int m = (int)(n - t0 < chunk ? n - t0 : chunk);
        /* (m, hidden) gate pre-activations and up projections */
        gq_linear(g, xin + t0 * dim, ctx->w.w[GQ_LIN_GATE], m, dim, hid);
        gq_linear(u, xin + t0 * dim, ctx->w.w[GQ_LIN_UP], m, dim, hid);
#pragma omp parallel for schedule(static) if ((size_t)hid * m > 65536)
        for (int j = 0; j < hid; j++) {
            double acc = 0.0;
            for (int t = 0; t < m; t++) {
                double gj = g[(size_t)t * hid + j], uj = u[(size_t)t * hid + j];
                double sg = 1.0 / (1.0 + exp(-gj));
                double h = gj * sg * uj;
                double dsilu = sg * (1.0 + gj * (1.0 - sg));
                double r = 1.0 / (1.0 + exp(-p->beta * (gj - p->tau)));
                acc += r * (fabs(h) + p->noise_factor * fabs(dsilu * gj * uj));
            }
            I[j] += acc;
        }
    }
    for (int j = 0; j < hid; j++)
        I[j] /= (double)n;
    free(g), free(u);
    return 0;
}

/* One block's run: the parameters and the unit importance I (hidden), computed by the first
 * MLP group that asks (gate/up, then down read the same FP trace and FP weights: every group's
 * scales are searched before any is folded). */
typedef struct {
    double *I;
    bool ready;
} praq_units;

typedef struct {
    const praq_params *p;
    praq_units *units;
} praq_run;

/* The block's I, computed on first use; *flops gets the FLOPs of its two products then. */
static const double *block_importance(const praq_run *run, const gq_block_ctx *ctx,
                                      const gq_block_trace *tr, double *flops, gq_error *err)
{
    praq_units *u = run->units;
    const size_t n = (size_t)ctx->B * ctx->T;
    if (!u->ready) {
        if (unit_importance(run->p, ctx, tr->mlp_in, n, u->I, err))
            return NULL;
        u->ready = true;
        *flops = 4.0 * (double)n * ctx->cfg->dim * ctx->cfg->hidden_dim; /* gate and up */
    }
    return u->I;
}

static int praq_salience(const void *user, const gq_block_ctx *ctx, const gq_block_trace *tr,
                         gq_awq_group grp, float *s, double *flops, gq_error *err)
{
    const gq_config *c = ctx->cfg;
    const size_t n = (size_t)ctx->B * ctx->T;
    if (grp == GQ_AWQ_QKV || grp == GQ_AWQ_VO) {
        if (grp == GQ_AWQ_QKV)
            gq_calib_abs_mean(tr->attn_in, n, c->dim, s);
        else
            gq_calib_abs_mean(tr->attn_ctx, n, gq_q_dim(c), s);
        return 0;
    }
    const int dim = c->dim, hid = c->hidden_dim;
    const double *I = block_importance(user, ctx, tr, flops, err);
    if (!I)
        return -1;
    if (grp == GQ_AWQ_DOWN) {
        for (int j = 0; j < hid; j++)
            s[j] = (float)I[j];
        return 0;
    }
    double mean_I = 0.0;
    for (int j = 0; j < hid; j++)
        mean_I += I[j];
    mean_I /= hid;
    gq_calib_abs_mean(tr->mlp_in, n, dim, s); /* E|x_i| */
    const float *Wg = ctx->w.w[GQ_LIN_GATE], *Wu = ctx->w.w[GQ_LIN_UP];
#pragma omp parallel for schedule(static) if ((size_t)dim * hid > 65536)
    for (int i = 0; i < dim; i++) {
        double num = 0.0, den = 0.0;
        for (int j = 0; j < hid; j++) {
            double a = fabs(Wg[(size_t)j * dim + i]) + fabs(Wu[(size_t)j * dim + i]);
            num += I[j] * a;
            den += a;
        }
        /* a channel with no weight or a block with no active unit keeps E|x_i| */
        if (den > 0.0 && mean_I > 0.0)
            s[i] = (float)(s[i] * num / (mean_I * den));
    }
    return 0;
}

static bool praq_needs_calibration(const void *params)
{
    (void)params;
    return true;
}

static int praq_block(const void *params, gq_block_ctx *ctx, gq_error *err)
{
    const praq_params *p = params;
    praq_units units = {malloc((size_t)ctx->cfg->hidden_dim * sizeof(double)), false};
    if (!units.I)
        return gq_fail(err, "layers.%d: out of memory for PRAQ statistics", ctx->layer);
    const praq_run run = {p, &units};
    int rc = gq_awq_quantize_block(&p->awq, praq_salience, &run, ctx, err);
    free(units.I);
    return rc;
}

GQ_METHOD_DEFINE(gq_method_praq, "praq",
                 "PRAQ: AWQ with a risk-aware post-activation salience for the MLP", praq_params,
                 praq_specs, .needs_calibration = praq_needs_calibration,
                 .propagate = GQ_PROPAGATE_FP, .quantize_block = praq_block,
                 .families = "every family, as AWQ: biases of scaled output rows divided with "
                             "them, q/k norms untouched, v->o skipped when widths differ");
