/* AffineQuant block optimisation: initialisation, training loop, fold and evaluation (see
 * gq_affine.h); the transforms themselves are in affine_transform.c. */
#include "grad/gq_affine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "core/gq_alloc.h"
#include "grad/affine_cost.h"
#include "grad/affine_work.h"


/* Fake-quantized effective block from the current state (forward of one step). */
static int quantized_block(gq_aq_step *w, const gq_affine_state *st, const gq_grad_block_f *fp,
                           const gq_lwc_spec *q, bool let, bool lwc, gq_grad_block_f *eff,
                           gq_error *err)
{
    const float *W[NL] = GQ_AFF_LIN(fp);
    if (let) {
        if (gq_aq_masked_inverses(w, st, err)) return -1;
        gq_aq_transform_fwd(w, W);
    } else {
        for (int k = 0; k < NL; k++) memcpy(w->Wt[k], W[k], gq_aq_wsize(w, k) * sizeof(float));
    }
    const double t0 = gq_aq_clock(w->cost);
    double n = 0;
    for (int k = 0; k < NL; k++) {
        gq_lwc_quant_fwd_f(w->Wq[k], w->Wt[k], lwc ? st->gamma[k] : NULL,
                           lwc ? st->beta[k] : NULL, w->rows[k], w->cols[k], q);
        n += (double)gq_aq_wsize(w, k);
    }
    gq_aq_add(w->cost, GQ_AQ_QUANT, t0, 8.0 * n);
    *eff = (gq_grad_block_f){.rms_att = fp->rms_att, .rms_ffn = fp->rms_ffn,
                             .wq = w->Wq[L_Q], .wk = w->Wq[L_K], .wv = w->Wq[L_V],
                             .wo = w->Wq[L_O], .w1 = w->Wq[L_GATE], .w3 = w->Wq[L_UP],
                             .w2 = w->Wq[L_DOWN], .m_att = let ? w->Bi_att : NULL,
                             .m_ffn = let ? w->Bi_ffn : NULL, .m_diag = let && gq_aq_diag_d(w)};
    return 0;
}

/* s_j = max|act_j|^alpha / max|W[:, j]|^(1 - alpha) over the linears reading channel j,
 * clamped below at 1e-5 as in the reference; written on the diagonal of A (n, n). */
static void smooth_diag(float *A, int n, const float *act, const float *wmax, double alpha)
{
    for (int j = 0; j < n; j++) {
        double s = pow(fmax(act[j], 1e-5), alpha) / pow(fmax(wmax[j], 1e-5), 1 - alpha);
        A[(size_t)j * n + j] = (float)fmax(s, 1e-5);
    }
}

static void col_absmax(float *m, const float *W, int rows, int cols, int ld)
{
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) m[j] = fmaxf(m[j], fabsf(W[(size_t)r * ld + j]));
}

/* SmoothQuant initial diagonals from amax (3, dim): the column maxima of |rmsnorm(x)|,
 * |rmsnorm(h)| and |ctx| of the FP block over every window (fp_targets). */
static int smooth_init(gq_affine_state *st, const gq_aq_step *w, const gq_grad_block_f *fp,
                       const float *amax, double alpha, gq_error *err)
{
    const int D = w->D, hs = w->hs;
    float *mx = calloc(3 * (size_t)D, sizeof *mx);
    if (!mx) return gq_fail(err, "affinequant: out of memory");
    const float *a_att = amax, *a_ffn = amax + D, *a_ctx = amax + 2 * D;
    float *w_att = mx, *w_ffn = mx + D, *w_o = mx + 2 * D;
    col_absmax(w_att, fp->wq, D, D, D), col_absmax(w_att, fp->wk, w->KV, D, D);
    col_absmax(w_att, fp->wv, w->KV, D, D);
    col_absmax(w_ffn, fp->w1, w->H, D, D), col_absmax(w_ffn, fp->w3, w->H, D, D);
    col_absmax(w_o, fp->wo, D, D, D);
    smooth_diag(st->A_att, D, a_att, w_att, alpha);
    smooth_diag(st->A_ffn, D, a_ffn, w_ffn, alpha);
    /* v->o: channel e of kv head h feeds the columns h'*hs + e of every query head h' of its
     * group; the maxima are taken over the group */
    for (int h = 0; h < w->s.n_kv_heads; h++) {
        float act[hs], wm[hs];
        for (int e = 0; e < hs; e++) {
            act[e] = wm[e] = 0;
            for (int qh = h * w->grp; qh < (h + 1) * w->grp; qh++) {
                act[e] = fmaxf(act[e], a_ctx[qh * hs + e]);
                wm[e] = fmaxf(wm[e], w_o[qh * hs + e]);
            }
        }
        smooth_diag(st->A_vo + (size_t)h * hs * hs, hs, act, wm, alpha);
    }
    free(mx);
    return 0;
}

/* Strict diagonal dominance of Â = A ∘ GM; halves A's off-diagonal part until it holds.
 * Returns 1 when a repair was needed. */
static int repair(float *A, const float *M, float *Ah, int n)
{
    int repaired = 0;
    for (int it = 0; it < 64; it++) {
        gq_aq_hadamard(Ah, A, M, (size_t)n * n);
        if (gq_diag_dominant_f(Ah, n)) break;
        repaired = 1;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                if (i != j) A[(size_t)i * n + j] *= 0.5f;
    }
    return repaired;
}

void gq_affine_state_free(gq_affine_state *st)
{
    free(st->A_att), free(st->A_ffn), free(st->A_vo), free(st->epoch_loss);
    for (int k = 0; k < NL; k++) free(st->gamma[k]), free(st->beta[k]);
    memset(st, 0, sizeof *st);
}

void gq_affine_block_free(gq_grad_block_f *b)
{
    float *all[] = {b->wq, b->wk, b->wv, b->wo, b->w1, b->w2, b->w3, b->m_att, b->m_ffn};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    memset(b, 0, sizeof *b);
}

/* The band of the non-zero entries of count matrices of n x n: 1 + max |i - j|. */
static int band_of(const float *A, int n, int count)
{
    int band = 1;
    for (size_t m = 0; m < (size_t)count; m++)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                if (A[(m * n + i) * n + j] != 0 && abs(i - j) >= band) band = abs(i - j) + 1;
    return band;
}

/* w ready for the trained state st: its masks all ones (st holds the masked transforms of the
 * last epoch), its bands those of their non-zero entries, the fast paths on. */
static void work_set_trained(gq_aq_step *w, const gq_affine_state *st)
{
    const int a = band_of(st->A_att, w->D, 1), f = band_of(st->A_ffn, w->D, 1);
    w->band_d = a > f ? a : f;
    w->band_hs = band_of(st->A_vo, w->hs, st->shape.n_kv_heads);
    w->dense = false;
    for (size_t i = 0; i < (size_t)w->D * w->D; i++) w->M_att[i] = w->M_ffn[i] = 1;
    for (size_t i = 0; i < (size_t)st->shape.n_kv_heads * w->hs * w->hs; i++) w->M_vo[i] = 1;
}

/* A work area without gradients for the trained state st. */
static int work_init_trained(gq_aq_step *w, const gq_affine_state *st, gq_error *err)
{
    if (gq_aq_work_init(w, &st->shape, false, err)) return -1;
    work_set_trained(w, st);
    return 0;
}

/* gq_affine_fold in the work area w (set for st): out takes w's transformed weights and
 * inverses. */
static int fold_in(gq_aq_step *w, const gq_affine_state *st, const gq_grad_block_f *fp,
                   gq_grad_block_f *out, gq_error *err)
{
    const float *W[NL] = GQ_AFF_LIN(fp);
    if (gq_aq_masked_inverses(w, st, err)) return -1;
    gq_aq_transform_fwd(w, W);
    float **dst[NL] = {&out->wq, &out->wk, &out->wv, &out->wo, &out->w1, &out->w3, &out->w2};
    for (int k = 0; k < NL; k++) *dst[k] = w->Wt[k], w->Wt[k] = NULL;
    out->m_att = w->Bi_att, out->m_ffn = w->Bi_ffn;
    w->Bi_att = w->Bi_ffn = NULL;
    out->rms_att = fp->rms_att, out->rms_ffn = fp->rms_ffn;
    return 0;
}

int gq_affine_fold(const gq_affine_state *st, const gq_grad_block_f *fp, gq_grad_block_f *out,
                   gq_affine_cost *cost, gq_error *err)
{
    memset(out, 0, sizeof *out);
    if (!st->let) return gq_fail(err, "affinequant: no transforms were learned to fold");
    gq_aq_step w;
    if (work_init_trained(&w, st, err)) return -1;
    w.cost = cost;
    const int rc = fold_in(&w, st, fp, out, err);
    gq_aq_work_free(&w);
    return rc;
}

void gq_affine_clip(float *W, const float *gamma, const float *beta, int rows, int cols,
                    const gq_lwc_spec *spec)
{
    const int gs = gq_lwc_group_width(spec, cols), ng = gq_lwc_groups_per_row(spec, cols);
    for (int r = 0; r < rows; r++)
        for (int kg = 0; kg < ng; kg++) {
            float *g = W + (size_t)r * cols + (size_t)kg * gs;
            const int n = cols - kg * gs < gs ? cols - kg * gs : gs;
            const size_t gi = (size_t)r * ng + kg;
            float mx = g[0], mn = g[0];
            for (int e = 1; e < n; e++) mx = fmaxf(mx, g[e]), mn = fminf(mn, g[e]);
            /* the same float expressions as the training quantizer's bounds */
            const float hi = (float)(1.0 / (1.0 + exp(-(double)gamma[gi])) * mx);
            const float lo = (float)(1.0 / (1.0 + exp(-(double)beta[gi])) * mn);
            for (int e = 0; e < n; e++) g[e] = g[e] > hi ? hi : g[e] < lo ? lo : g[e];
        }
}

/* The FP block's output on x through tape tp, without the tape's activation quantizers. */
static void fp_forward(float *out, const float *x, const gq_grad_block_f *fp,
                       gq_grad_tape_f *tp)
{
    const gq_grad_actq_f *act = tp->act;
    tp->act = NULL;
    gq_block_fwd_f(out, x, fp, tp);
    tp->act = act;
}

/* Block output MSE over windows of T tokens (the quantized block through tape tp, one window,
 * with its activation quantizers) against the FP block on x_fp, or against y_fp (B*T, dim),
 * its outputs, when not NULL; eff is recomputed from st each call. */
static int eval_mse(gq_aq_step *w, gq_grad_tape_f *tp, const gq_affine_state *st,
                    const gq_grad_block_f *fp, const float *x_fp, const float *y_fp,
                    const float *x_q, int B, const gq_lwc_spec *q, bool let, bool lwc,
                    double *mse, gq_error *err)
{
    const int T = tp->T;
    const size_t nt = (size_t)T * w->D;
    float *y = malloc(2 * nt * sizeof *y);
    gq_grad_block_f eff;
    int rc = -1;
    if (!y) {
        gq_fail(err, "affinequant: out of memory");
        goto done;
    }
    if (quantized_block(w, st, fp, q, let, lwc, &eff, err))
        goto done;
    double s = 0;
    const double t0 = gq_aq_clock(w->cost);
    for (int b = 0; b < B; b++) {
        const float *yf = y_fp ? y_fp + b * nt : y;
        if (!y_fp) fp_forward(y, x_fp + b * nt, fp, tp);
        gq_block_fwd_f(y + nt, x_q + b * nt, &eff, tp);
        for (size_t i = 0; i < nt; i++) s += (double)(y[nt + i] - yf[i]) * (y[nt + i] - yf[i]);
    }
    gq_aq_add(w->cost, GQ_AQ_FORWARD, t0,
              B * ((y_fp ? 0 : gq_aq_forward_flops(w, T, false)) + gq_aq_forward_flops(w, T, let)));
    *mse = s / ((double)B * nt);
    rc = 0;
done:
    free(y);
    return rc;
}

/* Trainable tensors with their AdamW moments. */
typedef struct {
    float *p, *g, *m, *v;
    size_t n;
    bool lwc;
} tensor_slot;

/* The training of one block: the work buffers, the trainable tensors (slots 0..2: A_att,
 * A_ffn, A_vo; then gamma, beta of each linear), one window's tape and the quantized block's
 * output y (T, D) (overwritten with dL/dout); the FP block's outputs of every window, computed
 * once: y_fp on x_fp (the targets), y_aug on x_q (with aug_loss). */
typedef struct {
    gq_aq_step w;
    gq_lwc_spec q;
    tensor_slot sl[3 + 2 * NL];
    int ns;
    gq_grad_tape_f tp;
    bool tape;
    float *y, *y_fp, *y_aug;
    size_t nt; /* T * D */
} trainer;

/* Step 1: buffers and zero-initialised trainable tensors, wired into st. */
static int trainer_init(trainer *tr, const gq_grad_shape *s, int B, int T, const gq_affine_opts *o,
                        gq_affine_state *st, gq_error *err)
{
    memset(tr, 0, sizeof *tr);
    memset(st, 0, sizeof *st);
    if (gq_aq_work_init(&tr->w, s, true, err)) { /* it freed its buffers: nothing left for work_free */
        memset(&tr->w, 0, sizeof tr->w);
        return -1;
    }
    tr->w.cost = o->cost;
    tr->w.dense = o->dense;
    tr->q = o->quant;
    tr->q.round = GQ_ROUND_NEAREST;
    st->shape = *s;
    st->let = o->let;
    st->lwc = o->lwc;
    const gq_aq_step *w = &tr->w;
    const size_t dd = (size_t)w->D * w->D, vo = (size_t)s->n_kv_heads * w->hs * w->hs;
    tensor_slot *sl = tr->sl;
    size_t sizes[3] = {dd, dd, vo};
    for (int i = 0; i < 3; i++) sl[tr->ns++] = (tensor_slot){.n = sizes[i]};
    for (int k = 0; k < NL; k++)
        for (int t = 0; t < 2; t++) sl[tr->ns++] = (tensor_slot){.n = (size_t)w->rows[k] * gq_lwc_groups_per_row(&tr->q, w->cols[k]), .lwc = true};
    bool ok = (st->epoch_loss = calloc(o->epochs > 0 ? o->epochs : 1, sizeof(double))) != NULL;
    for (int i = 0; i < tr->ns; i++)
        ok &= (sl[i].p = gq_calloc_big(sl[i].n, sizeof(float))) && (sl[i].g = gq_calloc_big(sl[i].n, sizeof(float))) &&
              (sl[i].m = gq_calloc_big(sl[i].n, sizeof(float))) && (sl[i].v = gq_calloc_big(sl[i].n, sizeof(float)));
    st->A_att = sl[0].p, st->A_ffn = sl[1].p, st->A_vo = sl[2].p;
    for (int k = 0; k < NL; k++) st->gamma[k] = sl[3 + 2 * k].p, st->beta[k] = sl[4 + 2 * k].p;
    tr->nt = (size_t)T * w->D;
    const size_t all = (size_t)B * tr->nt;
    if (!ok || !(tr->y = malloc(tr->nt * sizeof *tr->y)) ||
        !(tr->y_fp = gq_alloc_big(all * sizeof *tr->y_fp)) ||
        (o->aug_loss && !(tr->y_aug = gq_alloc_big(all * sizeof *tr->y_aug))))
        return gq_fail(err, "affinequant: out of memory for the targets of %d windows", B);
    if (gq_grad_tape_init_f(&tr->tp, s, 1, T, err)) return -1;
    tr->tape = true;
    return gq_grad_tape_set_act_f(&tr->tp, o->act, err);
}

/* Frees the trainer; on failure (rc != 0) also the tensors it gave st. */
static void trainer_free(trainer *tr, int rc, gq_affine_state *st)
{
    for (int i = 0; i < tr->ns; i++) {
        free(tr->sl[i].g), free(tr->sl[i].m), free(tr->sl[i].v);
        if (rc) free(tr->sl[i].p);
    }
    if (rc) {
        st->A_att = st->A_ffn = st->A_vo = NULL;
        for (int k = 0; k < NL; k++) st->gamma[k] = st->beta[k] = NULL;
        gq_affine_state_free(st);
    }
    free(tr->y), free(tr->y_fp), free(tr->y_aug);
    if (tr->tape) gq_grad_tape_free_f(&tr->tp);
    gq_aq_work_free(&tr->w);
}

/* Static activation ranges (o->act_calibrate) refitted on the linear inputs of the current
 * quantized block over the B windows of x_q, its activation quantizers off (as the static
 * calibration observes a block): in (B*T, dim) for q/k/v, o and gate/up, (B*T, hidden) for
 * down. */
static int refit_static(trainer *tr, const gq_grad_block_f *fp, const float *x_q, int B, int T,
                        const gq_affine_opts *o, const gq_affine_state *st, gq_error *err)
{
    if (!o->act || !o->act_calibrate) return 0;
    gq_aq_step *w = &tr->w;
    const size_t nt = tr->nt, n = (size_t)B * T, nh = (size_t)T * w->H;
    gq_grad_block_f eff;
    float *buf = gq_alloc_big((3 * n * w->D + n * w->H) * sizeof *buf);
    if (!buf) return gq_fail(err, "affinequant: out of memory for the activation calibration");
    float *att = buf, *ctx = buf + n * w->D, *ffn = buf + 2 * n * w->D, *hid = buf + 3 * n * w->D;
    int rc = quantized_block(w, st, fp, &tr->q, o->let, o->lwc, &eff, err);
    gq_grad_tape_f *tp = &tr->tp;
    const double t0 = gq_aq_clock(w->cost);
    for (int b = 0; rc == 0 && b < B; b++) {
        fp_forward(tr->y, x_q + b * nt, &eff, tp); /* eff: the quantized block */
        memcpy(att + b * nt, o->let ? tp->xa : tp->xn, nt * sizeof(float));
        memcpy(ctx + b * nt, tp->ctx, nt * sizeof(float));
        memcpy(ffn + b * nt, o->let ? tp->ha : tp->hn, nt * sizeof(float));
        memcpy(hid + b * nh, tp->a, nh * sizeof(float));
    }
    gq_aq_add(w->cost, GQ_AQ_FORWARD, t0, B * gq_aq_forward_flops(w, T, o->let));
    const float *in[NL] = {att, att, att, ctx, ffn, ffn, hid};
    if (rc == 0) rc = o->act_calibrate(o->act, in, n, err);
    free(buf);
    return rc;
}

/* The FP block's outputs on every window: y_fp on x_fp, y_aug on x_q (aug_loss); amax (3,
 * dim, zeroed, may be NULL) receives the column maxima of |rmsnorm(x)|, |rmsnorm(h)| and |ctx|
 * on x_fp (smooth_init's activations). */
static void fp_targets(trainer *tr, const gq_grad_block_f *fp, const float *x_fp,
                       const float *x_q, int B, const gq_affine_opts *o, float *amax)
{
    gq_aq_step *w = &tr->w;
    const size_t nt = tr->nt;
    const int T = tr->tp.T, D = w->D;
    const double t0 = gq_aq_clock(w->cost);
    for (int b = 0; b < B; b++) {
        fp_forward(tr->y_fp + b * nt, x_fp + b * nt, fp, &tr->tp);
        if (amax) {
            col_absmax(amax, tr->tp.xn, T, D, D);
            col_absmax(amax + D, tr->tp.hn, T, D, D);
            col_absmax(amax + 2 * D, tr->tp.ctx, T, D, D);
        }
        if (o->aug_loss) fp_forward(tr->y_aug + b * nt, x_q + b * nt, fp, &tr->tp);
    }
    gq_aq_add(w->cost, GQ_AQ_FORWARD, t0, (o->aug_loss ? 2 : 1) * B * gq_aq_forward_flops(w, T, false));
}

/* Step 2: the FP targets; clipping at GQ_LWC_INIT, transforms at the identity, then the
 * SmoothQuant diagonal; the masks of epoch 0 and the initial loss. */
static int trainer_start(trainer *tr, const gq_grad_block_f *fp, const float *x_fp,
                         const float *x_q, int B, int T, const gq_affine_opts *o,
                         gq_affine_state *st, gq_error *err)
{
    const int D = tr->w.D, hs = tr->w.hs;
    for (int i = 3; i < tr->ns; i++)
        for (size_t j = 0; j < tr->sl[i].n; j++) tr->sl[i].p[j] = (float)GQ_LWC_INIT;
    for (int j = 0; j < D; j++) st->A_att[(size_t)j * D + j] = st->A_ffn[(size_t)j * D + j] = 1;
    for (int h = 0; h < st->shape.n_kv_heads; h++)
        for (int j = 0; j < hs; j++) st->A_vo[(size_t)h * hs * hs + (size_t)j * hs + j] = 1;
    float *amax = calloc(3 * (size_t)D, sizeof *amax);
    if (!amax) return gq_fail(err, "affinequant: out of memory");
    fp_targets(tr, fp, x_fp, x_q, B, o, amax);
    int rc = o->let ? smooth_init(st, &tr->w, fp, amax, o->alpha, err) : 0;
    free(amax);
    if (rc) return -1;
    gq_aq_set_masks(&tr->w, 0, o->epochs, o->sf);
    if (refit_static(tr, fp, x_q, B, T, o, st, err)) return -1;
    return eval_mse(&tr->w, &tr->tp, st, fp, x_fp, tr->y_fp, x_q, B, &tr->q, o->let, o->lwc,
                    &st->init_loss, err);
}

/* Step 3a: window b's forward pass of the quantized block on x_q (its inputs) and the gradients
 * of the mean squared difference to the FP targets: dWq (quantized weights), dm_att / dm_ffn,
 * then through the learnable clipping into dWt and the gamma / beta slots. *loss = the window's
 * mean. */
static int window_grads(trainer *tr, const gq_grad_block_f *fp, int b, const float *x_q,
                        const gq_affine_opts *o, const gq_affine_state *st, double *loss,
                        gq_error *err)
{
    gq_aq_step *w = &tr->w;
    const size_t nt = tr->nt, dd = (size_t)w->D * w->D;
    float *y = tr->y;
    const float *yf = tr->y_fp + b * nt, *ya = o->aug_loss ? tr->y_aug + b * nt : NULL;
    gq_grad_block_f eff, grad;
    if (quantized_block(w, st, fp, &tr->q, o->let, o->lwc, &eff, err)) return -1;
    double t0 = gq_aq_clock(w->cost);
    gq_block_fwd_f(y, x_q, &eff, &tr->tp); /* the tape of the backward pass */
    double l = 0;
    for (size_t i = 0; i < nt; i++) {
        float d = y[i] - yf[i], d2 = ya ? y[i] - ya[i] : 0.0f;
        l += (double)d * d + (double)d2 * d2;
        y[i] = (float)(2.0 * ((double)d + d2) / nt); /* dL/dout of the mean(s) */
    }
    *loss = l / nt;
    const int T = tr->tp.T;
    gq_aq_add(w->cost, GQ_AQ_FORWARD, t0, gq_aq_forward_flops(w, T, o->let));
    t0 = gq_aq_clock(w->cost);
    for (int k = 0; k < NL; k++) memset(w->dWq[k], 0, gq_aq_wsize(w, k) * sizeof(float));
    memset(w->dm_att, 0, dd * sizeof(float)), memset(w->dm_ffn, 0, dd * sizeof(float));
    grad = (gq_grad_block_f){.wq = w->dWq[L_Q], .wk = w->dWq[L_K], .wv = w->dWq[L_V],
                             .wo = w->dWq[L_O], .w1 = w->dWq[L_GATE], .w3 = w->dWq[L_UP],
                             .w2 = w->dWq[L_DOWN], .m_att = o->let ? w->dm_att : NULL,
                             .m_ffn = o->let ? w->dm_ffn : NULL};
    gq_block_bwd_f(NULL, &grad, y, x_q, &eff, &tr->tp);
    gq_aq_add(w->cost, GQ_AQ_BACKWARD, t0, gq_aq_backward_flops(w, T, o->let));
    t0 = gq_aq_clock(w->cost);
    double n = 0;
    for (int i = 3; i < tr->ns; i++) memset(tr->sl[i].g, 0, tr->sl[i].n * sizeof(float));
    for (int k = 0; k < NL; k++) {
        n += (double)gq_aq_wsize(w, k);
        memset(w->dWt[k], 0, gq_aq_wsize(w, k) * sizeof(float));
        gq_lwc_quant_bwd_f(w->dWt[k], o->lwc ? tr->sl[3 + 2 * k].g : NULL,
                           o->lwc ? tr->sl[4 + 2 * k].g : NULL, w->dWq[k], w->Wt[k],
                           o->lwc ? st->gamma[k] : NULL, o->lwc ? st->beta[k] : NULL,
                           w->rows[k], w->cols[k], &tr->q);
    }
    gq_aq_add(w->cost, GQ_AQ_QUANT, t0, 16.0 * n); /* dWt zeroed, then ddeq, W read, dWt added */
    return 0;
}

/* Step 3b: AdamW on the transforms (through transform_bwd, then repaired to stay invertible)
 * and, at lwc_lr, on the clipping parameters. */
static void window_update(trainer *tr, gq_adamw *opt, const gq_grad_block_f *fp,
                          const gq_affine_opts *o, gq_affine_state *st)
{
    gq_aq_step *w = &tr->w;
    const int D = w->D, hs = w->hs;
    gq_adamw_begin_step(opt);
    if (o->let) {
        const float *W[NL] = GQ_AFF_LIN(fp);
        gq_aq_transform_bwd(w, W);
        float *dA[3] = {w->dA_att, w->dA_ffn, w->dA_vo};
        double t0 = gq_aq_clock(w->cost);
        for (int i = 0; i < 3; i++) gq_adamw_update(opt, tr->sl[i].p, dA[i], tr->sl[i].m, tr->sl[i].v, tr->sl[i].n);
        gq_aq_add(w->cost, GQ_AQ_ADAMW, t0, 28.0 * (2.0 * D * D + gq_aq_vo_size(w)));
        t0 = gq_aq_clock(w->cost);
        st->repairs += repair(st->A_att, w->M_att, w->Ah_att, D);
        st->repairs += repair(st->A_ffn, w->M_ffn, w->Ah_ffn, D);
        for (int h = 0; h < st->shape.n_kv_heads; h++) {
            size_t ob = (size_t)h * hs * hs;
            st->repairs += repair(st->A_vo + ob, w->M_vo + ob, w->Ah_vo + ob, hs);
        }
        gq_aq_add(w->cost, GQ_AQ_MASK, t0, 16.0 * (2.0 * D * D + gq_aq_vo_size(w)));
    }
    if (o->lwc) {
        gq_adamw lopt = *opt;
        lopt.lr = o->lwc_lr;
        const double t0 = gq_aq_clock(w->cost);
        double n = 0;
        for (int i = 3; i < tr->ns; i++) {
            gq_adamw_update(&lopt, tr->sl[i].p, tr->sl[i].g, tr->sl[i].m, tr->sl[i].v, tr->sl[i].n);
            n += (double)tr->sl[i].n;
        }
        gq_aq_add(w->cost, GQ_AQ_ADAMW, t0, 28.0 * n);
    }
}

/* Steps: 1. buffers and trainable tensors; 2. initial transforms and loss; 3. per epoch, per
 * window: gradients (3a), AdamW (3b); 4. the masked transforms of the last epoch. */
static int train_block(const gq_grad_shape *s, const gq_grad_block_f *fp, const float *x_fp,
                       const float *x_q, int B, int T, const gq_affine_opts *o,
                       gq_affine_state *st, gq_error *err)
{
    if (o->fold) memset(o->fold, 0, sizeof *o->fold);
    if (fp->m_att || fp->m_ffn)
        return gq_fail(err, "affinequant: the block already has an explicit transform");
    if (o->fold && !o->let)
        return gq_fail(err, "affinequant: no transforms are learned to fold");
    trainer tr;
    int rc = -1;
    if (trainer_init(&tr, s, B, T, o, st, err) ||
        trainer_start(&tr, fp, x_fp, x_q, B, T, o, st, err))
        goto done;
    gq_adamw opt;
    gq_adamw_init(&opt, o->lr, o->weight_decay);
    for (int e = 0; e < o->epochs; e++) {
        gq_aq_set_masks(&tr.w, e, o->epochs, o->sf);
        if (e > 0 && refit_static(&tr, fp, x_q, B, T, o, st, err)) goto done;
        double eloss = 0;
        for (int b = 0; b < B; b++) {
            double loss;
            if (window_grads(&tr, fp, b, x_q + b * tr.nt, o, st, &loss, err))
                goto done;
            eloss += loss;
            window_update(&tr, &opt, fp, o, st);
        }
        st->epoch_loss[e] = eloss / B;
    }
    const size_t dd = (size_t)tr.w.D * tr.w.D, vo = gq_aq_vo_size(&tr.w);
    const double t0 = gq_aq_clock(o->cost);
    gq_aq_hadamard(st->A_att, st->A_att, tr.w.M_att, dd);
    gq_aq_hadamard(st->A_ffn, st->A_ffn, tr.w.M_ffn, dd);
    gq_aq_hadamard(st->A_vo, st->A_vo, tr.w.M_vo, vo);
    gq_aq_add(o->cost, GQ_AQ_MASK, t0, 12.0 * (2.0 * dd + vo));
    if (o->fold) { /* the training's buffers, already in memory, serve the fold */
        work_set_trained(&tr.w, st);
        if (fold_in(&tr.w, st, fp, o->fold, err)) goto done;
    }
    rc = 0;
done:
    trainer_free(&tr, rc, st);
    return rc;
}

int gq_affine_eval(const gq_affine_state *st, const gq_grad_block_f *fp, const float *x_fp,
                   const float *x_q, int B, int T, const gq_lwc_spec *q, double *mse,
                   gq_error *err)
{
    gq_aq_step w;
    gq_grad_tape_f tp;
    if (work_init_trained(&w, st, err)) return -1;
    if (gq_grad_tape_init_f(&tp, &st->shape, 1, T, err)) {
        gq_aq_work_free(&w);
        return -1;
    }
    gq_lwc_spec qq = *q;
    qq.round = GQ_ROUND_NEAREST;
    int rc = eval_mse(&w, &tp, st, fp, x_fp, NULL, x_q, B, &qq, st->let, st->lwc, mse, err);
    gq_grad_tape_free_f(&tp);
    gq_aq_work_free(&w);
    return rc;
}

/* A step works on one window: for small blocks (dim^2 T under ~4M multiply-adds per product)
 * the fork/join of OpenBLAS's and our OpenMP threads costs more than the work (tens of times
 * more on a loaded machine), so the whole training then runs on one thread. */
int gq_affine_train(const gq_grad_shape *s, const gq_grad_block_f *fp, const float *x_fp,
                    const float *x_q, int B, int T, const gq_affine_opts *o,
                    gq_affine_state *st, gq_error *err)
{
    const bool serial = (double)s->dim * s->dim * T < 4e6;
    const int threads = omp_get_max_threads();
    if (serial) omp_set_num_threads(1);
    int rc = train_block(s, fp, x_fp, x_q, B, T, o, st, err);
    if (serial) omp_set_num_threads(threads);
    return rc;
}
