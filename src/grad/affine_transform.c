/* AffineQuant's transforms: the work area, gradual masks, inverses, and the transformed weights
 * with their gradients (see affine_work.h). A transform whose mask is the diagonal is applied
 * as a scaling (the dense product's value; the gradient sums differ in order only). */
#include "grad/affine_work.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_alloc.h"
#include "core/gq_gemm.h"

void gq_aq_work_free(gq_aq_step *w)
{
    float **all[] = {&w->Ah_att, &w->Ah_ffn, &w->Ah_vo, &w->Bi_att, &w->Bi_ffn, &w->Bi_vo,
                     &w->tv, &w->dtv, &w->dm_att, &w->dm_ffn, &w->dA_att, &w->dA_ffn,
                     &w->dA_vo, &w->dB_vo, &w->M_att, &w->M_ffn, &w->M_vo};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(*all[i]), *all[i] = NULL;
    for (int k = 0; k < NL; k++) /* dWt[k] is Wq[k]'s storage */
        free(w->Wt[k]), free(w->Wq[k]), free(w->dWq[k]), w->dWt[k] = NULL;
}

int gq_aq_work_init(gq_aq_step *w, const gq_grad_shape *s, bool grads, gq_error *err)
{
    memset(w, 0, sizeof *w);
    w->s = *s;
    w->D = s->dim, w->hs = s->dim / s->n_heads, w->KV = w->hs * s->n_kv_heads, w->H = s->hidden;
    w->grp = s->n_heads / s->n_kv_heads;
    const int r[NL] = {w->D, w->KV, w->KV, w->D, w->H, w->H, w->D};
    const int c[NL] = {w->D, w->D, w->D, w->D, w->D, w->D, w->H};
    memcpy(w->rows, r, sizeof r), memcpy(w->cols, c, sizeof c);
    const size_t dd = (size_t)w->D * w->D, vo = (size_t)s->n_kv_heads * w->hs * w->hs;
    const size_t kvd = (size_t)w->KV * w->D;
    struct { float **p; size_t n; } a[] = { /* the gradients' buffers last */
        {&w->Ah_att, dd}, {&w->Ah_ffn, dd}, {&w->Ah_vo, vo}, {&w->Bi_att, dd}, {&w->Bi_ffn, dd},
        {&w->Bi_vo, vo}, {&w->tv, kvd}, {&w->M_att, dd}, {&w->M_ffn, dd}, {&w->M_vo, vo},
        {&w->dtv, kvd}, {&w->dm_att, dd}, {&w->dm_ffn, dd}, {&w->dA_att, dd}, {&w->dA_ffn, dd},
        {&w->dA_vo, vo}, {&w->dB_vo, vo}};
    const size_t n_a = grads ? sizeof a / sizeof *a : 10;
    bool ok = true;
    for (size_t i = 0; i < n_a; i++)
        ok &= (*a[i].p = gq_calloc_big(a[i].n, sizeof(float))) != NULL;
    for (int k = 0; k < NL; k++) {
        size_t n = gq_aq_wsize(w, k);
        ok &= (w->Wt[k] = gq_alloc_big(n * sizeof(float))) &&
              (w->Wq[k] = gq_alloc_big(n * sizeof(float)));
        if (grads)
            ok &= (w->dWq[k] = gq_alloc_big(n * sizeof(float))) != NULL;
        w->dWt[k] = grads ? w->Wq[k] : NULL;
    }
    if (!ok) {
        gq_aq_work_free(w);
        return gq_fail(err, "affinequant: out of memory for a block of dim %d", s->dim);
    }
    return 0;
}

/* Gradual mask of an n x n transform (see gq_affine.h). */
static void gradual_mask(float *M, int n, int epoch, int epochs, double sf)
{
    const int band = gq_aq_band(n, epoch, epochs);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            int d = abs(i - j);
            M[(size_t)i * n + j] = d == 0 ? 1.0f : d < band ? (float)sf : 0.0f;
        }
}


void gq_aq_set_masks(gq_aq_step *w, int epoch, int epochs, double sf)
{
    const double t0 = gq_aq_clock(w->cost);
    gradual_mask(w->M_att, w->D, epoch, epochs, sf);
    gradual_mask(w->M_ffn, w->D, epoch, epochs, sf);
    for (int h = 0; h < w->s.n_kv_heads; h++)
        gradual_mask(w->M_vo + (size_t)h * w->hs * w->hs, w->hs, epoch, epochs, sf);
    w->band_d = gq_aq_band(w->D, epoch, epochs);
    w->band_hs = gq_aq_band(w->hs, epoch, epochs);
    gq_aq_add(w->cost, GQ_AQ_MASK, t0, 4.0 * (2.0 * w->D * w->D + gq_aq_vo_size(w)));
}

/* A diagonal A (n, n): inv = diag(1 / a_ii) in double, the value the dense inverse gives. */
static int invert_diag(float *inv, const float *A, int n, const char *what, gq_error *err)
{
    double amax = 0;
    for (int i = 0; i < n; i++) amax = fmax(amax, fabs((double)A[(size_t)i * n + i]));
    memset(inv, 0, (size_t)n * n * sizeof *inv);
    for (int i = 0; i < n; i++) {
        const double a = A[(size_t)i * n + i];
        if (!(fabs(a) > 1e-13 * amax))
            return gq_fail(err, "%s: matrix (%d x %d) is singular (pivot %g at column %d)", what,
                           n, n, a, i);
        inv[(size_t)i * n + i] = (float)(1.0 / a);
    }
    return 0;
}

/* inv = A⁻¹ (n, n) in double; band 1 (A diagonal) takes the diagonal's reciprocals. */
static int invert_f(float *inv, const float *A, int n, int band, const char *what,
                    gq_error *err)
{
    if (band <= 1) return invert_diag(inv, A, n, what, err);
    size_t nn = (size_t)n * n;
    double *a = calloc(2 * nn, sizeof *a);
    if (!a) return gq_fail(err, "%s: out of memory", what);
    for (size_t i = 0; i < nn; i++) a[i] = A[i];
    int rc = gq_mat_inverse(a + nn, a, n, what, err);
    for (size_t i = 0; rc == 0 && i < nn; i++) inv[i] = (float)a[nn + i];
    free(a);
    return rc;
}

void gq_aq_hadamard(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = a[i] * b[i];
}

/* Â = A ∘ GM and the inverses. */
int gq_aq_masked_inverses(gq_aq_step *w, const gq_affine_state *st, gq_error *err)
{
    const int D = w->D, hs = w->hs;
    double t0 = gq_aq_clock(w->cost);
    gq_aq_hadamard(w->Ah_att, st->A_att, w->M_att, (size_t)D * D);
    gq_aq_hadamard(w->Ah_ffn, st->A_ffn, w->M_ffn, (size_t)D * D);
    gq_aq_hadamard(w->Ah_vo, st->A_vo, w->M_vo, gq_aq_vo_size(w));
    gq_aq_add(w->cost, GQ_AQ_MASK, t0, 12.0 * (2.0 * D * D + gq_aq_vo_size(w)));
    t0 = gq_aq_clock(w->cost);
    const int band_d = gq_aq_diag_d(w) ? 1 : w->band_d, band_hs = gq_aq_diag_hs(w) ? 1 : w->band_hs;
    if (invert_f(w->Bi_att, w->Ah_att, D, band_d, "affinequant att transform", err) ||
        invert_f(w->Bi_ffn, w->Ah_ffn, D, band_d, "affinequant ffn transform", err))
        return -1;
    for (int h = 0; h < w->s.n_kv_heads; h++) {
        size_t o = (size_t)h * hs * hs;
        if (invert_f(w->Bi_vo + o, w->Ah_vo + o, hs, band_hs, "affinequant v->o transform",
                     err))
            return -1;
    }
    gq_aq_add(w->cost, GQ_AQ_INVERT, t0,
              2 * gq_aq_invert_flops(D, w->band_d) +
                  w->s.n_kv_heads * gq_aq_invert_flops(hs, w->band_hs));
    return 0;
}

/* FLOPs of X (rows, n) times the inverse of a transform of that band (dense unless diagonal). */
static double inverse_product_flops(double rows, int n, int band)
{
    return band <= 1 ? rows * n : 2.0 * rows * n * n;
}

/* FLOPs of one block forward pass over a window of T tokens, with the explicit inverses when
 * transforms; its backward pass costs twice the block and the inverses' two gradients. */
double gq_aq_forward_flops(const gq_aq_step *w, int T, bool transforms)
{
    return gq_aq_block_forward_flops(&w->s, T) +
           (transforms ? 2 * inverse_product_flops(T, w->D, w->band_d) : 0);
}

double gq_aq_backward_flops(const gq_aq_step *w, int T, bool transforms)
{
    return 2 * gq_aq_block_forward_flops(&w->s, T) +
           (transforms ? 4 * inverse_product_flops(T, w->D, w->band_d) : 0);
}

/* FLOPs of transform_fwd, and of transform_bwd's products before the inverses' gradients. */
static double fold_flops(const gq_aq_step *w)
{
    const double rows_d = (double)w->D + 2.0 * w->KV + 2.0 * w->H; /* q, k, v (tv), gate, up */
    return gq_aq_band_product_flops(rows_d, w->D, w->band_d) +
           inverse_product_flops((double)w->s.n_kv_heads * w->D, w->hs, w->band_hs) +
           w->s.n_heads * gq_aq_band_product_flops(w->D, w->hs, w->band_hs);
}

/* FLOPs of the gradients through the inverses: -Bᵀ dB Bᵀ (dense unless diagonal). */
static double inverse_bwd_flops(const gq_aq_step *w)
{
    const double d = w->band_d <= 1 ? w->D : 4.0 * w->D * w->D * w->D;
    const double h = w->band_hs <= 1 ? w->hs : 4.0 * w->hs * w->hs * w->hs;
    return 2 * d + w->s.n_kv_heads * h;
}

/* out (rows, n) = X (rows, n) · diag(A)ᵀ: column j scaled by A_jj (A (n, n)); the value of the
 * dense product when A's off-diagonals are zero. ld: the row stride of X and out. */
static void scale_cols(float *out, const float *X, const float *A, int rows, int n, int ld)
{
    enum { COLS = 256 }; /* the diagonal copied in blocks first: its entries are a row apart */
    for (int j0 = 0; j0 < n; j0 += COLS) {
        const int nj = n - j0 < COLS ? n - j0 : COLS;
        float a[COLS];
        for (int j = 0; j < nj; j++) a[j] = A[(size_t)(j0 + j) * n + j0 + j];
#pragma omp parallel for schedule(static) if ((double)rows * nj >= 1e6)
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < nj; j++)
                out[(size_t)r * ld + j0 + j] = X[(size_t)r * ld + j0 + j] * a[j];
    }
}

/* out (rows, D) = diag(B)ᵀ X: row e of each head scaled by B_h[e][e] (Bi_vo). */
static void scale_vo_rows(const gq_aq_step *w, float *out, const float *X)
{
    const int hs = w->hs, D = w->D;
#pragma omp parallel for schedule(static) if ((double)w->KV * D >= 1e6)
    for (int r = 0; r < w->KV; r++) {
        const float b = w->Bi_vo[(size_t)(r / hs) * hs * hs + (size_t)(r % hs) * hs + r % hs];
        for (int j = 0; j < D; j++) out[(size_t)r * D + j] = b * X[(size_t)r * D + j];
    }
}

void gq_aq_transform_fwd(gq_aq_step *w, const float *const W[NL])
{
    const int D = w->D, hs = w->hs;
    const double t0 = gq_aq_clock(w->cost);
    if (gq_aq_diag_d(w)) {
        for (int k = L_Q; k <= L_K; k++) scale_cols(w->Wt[k], W[k], w->Ah_att, w->rows[k], D, D);
        scale_cols(w->tv, W[L_V], w->Ah_att, w->KV, D, D);
        for (int k = L_GATE; k <= L_UP; k++)
            scale_cols(w->Wt[k], W[k], w->Ah_ffn, w->rows[k], D, D);
    } else {
        for (int k = L_Q; k <= L_K; k++)
            gq_linear_fwd_f(w->Wt[k], W[k], w->Ah_att, w->rows[k], D, D);
        gq_linear_fwd_f(w->tv, W[L_V], w->Ah_att, w->KV, D, D);
        for (int k = L_GATE; k <= L_UP; k++)
            gq_linear_fwd_f(w->Wt[k], W[k], w->Ah_ffn, w->rows[k], D, D);
    }
    if (gq_aq_diag_hs(w)) {
        scale_vo_rows(w, w->Wt[L_V], w->tv);
        for (int qh = 0; qh < w->s.n_heads; qh++)
            scale_cols(w->Wt[L_O] + qh * hs, W[L_O] + qh * hs,
                       w->Ah_vo + (size_t)(qh / w->grp) * hs * hs, D, hs, D);
    } else {
        for (int h = 0; h < w->s.n_kv_heads; h++) /* Wv_h (hs, D) -> B_h^T tv_h */
            gq_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hs, D, hs, 1,
                     w->Bi_vo + (size_t)h * hs * hs, hs, w->tv + (size_t)h * hs * D, D, 0,
                     w->Wt[L_V] + (size_t)h * hs * D, D);
        for (int qh = 0; qh < w->s.n_heads; qh++) /* Wo[:, head] (D, hs) -> Wo[:, head] Â^T */
            gq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, D, hs, hs, 1, W[L_O] + qh * hs, D,
                     w->Ah_vo + (size_t)(qh / w->grp) * hs * hs, hs, 0, w->Wt[L_O] + qh * hs, D);
    }
    memcpy(w->Wt[L_DOWN], W[L_DOWN], gq_aq_wsize(w, L_DOWN) * sizeof(float));
    gq_aq_add(w->cost, GQ_AQ_FOLD, t0, fold_flops(w));
}

/* dA (n, n) diagonal += the column sums of dX ∘ X (rows, n, row stride ld): the diagonal of
 * dXᵀ X, in double, rows in order (the same sums for any thread count: threads take whole
 * column blocks). */
static void diag_of_tn(float *dA, const float *dX, const float *X, int rows, int n, int ld)
{
    enum { COLS = 64 };
#pragma omp parallel for schedule(static) if ((double)rows * n >= 1e6)
    for (int j0 = 0; j0 < n; j0 += COLS) {
        const int nj = n - j0 < COLS ? n - j0 : COLS;
        double acc[COLS] = {0};
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < nj; j++)
                acc[j] += (double)dX[(size_t)r * ld + j0 + j] * X[(size_t)r * ld + j0 + j];
        for (int j = 0; j < nj; j++) dA[(size_t)(j0 + j) * n + j0 + j] += (float)acc[j];
    }
}

/* dA += -Bᵀ dB Bᵀ restricted to the diagonal, B diagonal: dA_jj -= B_jj dB_jj B_jj. */
static void inverse_bwd_diag(float *dA, const float *dB, const float *B, int n)
{
    for (int j = 0; j < n; j++) {
        const size_t i = (size_t)j * n + j;
        dA[i] -= B[i] * dB[i] * B[i];
    }
}

/* The diagonal path of gq_aq_transform_bwd for the att / ffn transforms (dim x dim). */
static void transform_bwd_d_diag(gq_aq_step *w, const float *const W[NL])
{
    const int D = w->D;
    for (int k = L_Q; k <= L_K; k++) diag_of_tn(w->dA_att, w->dWt[k], W[k], w->rows[k], D, D);
    diag_of_tn(w->dA_att, w->dtv, W[L_V], w->KV, D, D);
    for (int k = L_GATE; k <= L_UP; k++)
        diag_of_tn(w->dA_ffn, w->dWt[k], W[k], w->rows[k], D, D);
    inverse_bwd_diag(w->dA_att, w->dm_att, w->Bi_att, D);
    inverse_bwd_diag(w->dA_ffn, w->dm_ffn, w->Bi_ffn, D);
}

/* The dense path of the same: Wt = W Âᵀ => dÂ += dWtᵀ W, then the inverses' gradients. */
static void transform_bwd_d_dense(gq_aq_step *w, const float *const W[NL])
{
    const int D = w->D;
    for (int k = L_Q; k <= L_K; k++)
        gq_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, D, w->rows[k], 1, w->dWt[k], D,
                 W[k], D, 1, w->dA_att, D);
    gq_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, D, w->KV, 1, w->dtv, D, W[L_V], D, 1,
             w->dA_att, D);
    for (int k = L_GATE; k <= L_UP; k++)
        gq_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, D, w->rows[k], 1, w->dWt[k], D,
                 W[k], D, 1, w->dA_ffn, D);
    gq_inverse_bwd_f(w->dA_att, w->dm_att, w->Bi_att, D);
    gq_inverse_bwd_f(w->dA_ffn, w->dm_ffn, w->Bi_ffn, D);
}

/* v->o: Wt_v = Bᵀ tv per kv head => dtv = B dWt_v, dB = tv dWt_vᵀ, dÂ_vo through the inverse;
 * Wt_o[:, head] = Wo[:, head] Âᵀ => dÂ_vo += dWt_oᵀ Wo. Diagonal: the diagonals only. */
static void transform_bwd_vo(gq_aq_step *w, const float *const W[NL])
{
    const int D = w->D, hs = w->hs;
    if (gq_aq_diag_hs(w)) {
        scale_vo_rows(w, w->dtv, w->dWt[L_V]);
        for (int h = 0; h < w->s.n_kv_heads; h++) {
            const size_t ob = (size_t)h * hs * hs, ov = (size_t)h * hs * D;
            for (int e = 0; e < hs; e++) { /* dB_ee = tv_e · dWt_v,e */
                double s = 0;
                for (int j = 0; j < D; j++)
                    s += (double)w->tv[ov + (size_t)e * D + j] * w->dWt[L_V][ov + (size_t)e * D + j];
                w->dB_vo[ob + (size_t)e * hs + e] += (float)s;
            }
            inverse_bwd_diag(w->dA_vo + ob, w->dB_vo + ob, w->Bi_vo + ob, hs);
        }
        for (int qh = 0; qh < w->s.n_heads; qh++)
            diag_of_tn(w->dA_vo + (size_t)(qh / w->grp) * hs * hs, w->dWt[L_O] + qh * hs,
                       W[L_O] + qh * hs, D, hs, D);
        return;
    }
    for (int h = 0; h < w->s.n_kv_heads; h++) {
        size_t ob = (size_t)h * hs * hs, ov = (size_t)h * hs * D;
        gq_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, hs, D, hs, 1, w->Bi_vo + ob, hs,
                 w->dWt[L_V] + ov, D, 0, w->dtv + ov, D);
        gq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, hs, hs, D, 1, w->tv + ov, D,
                 w->dWt[L_V] + ov, D, 1, w->dB_vo + ob, hs);
        gq_inverse_bwd_f(w->dA_vo + ob, w->dB_vo + ob, w->Bi_vo + ob, hs);
    }
    for (int qh = 0; qh < w->s.n_heads; qh++)
        gq_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hs, hs, D, 1, w->dWt[L_O] + qh * hs, D,
                 W[L_O] + qh * hs, D, 1, w->dA_vo + (size_t)(qh / w->grp) * hs * hs, hs);
}

void gq_aq_transform_bwd(gq_aq_step *w, const float *const W[NL])
{
    const size_t dd = (size_t)w->D * w->D, vo = gq_aq_vo_size(w);
    const double t0 = gq_aq_clock(w->cost);
    memset(w->dA_att, 0, dd * sizeof(float));
    memset(w->dA_ffn, 0, dd * sizeof(float));
    memset(w->dA_vo, 0, vo * sizeof(float));
    memset(w->dB_vo, 0, vo * sizeof(float));
    transform_bwd_vo(w, W); /* first: dtv feeds the att transform's gradient */
    if (gq_aq_diag_d(w))
        transform_bwd_d_diag(w, W);
    else
        transform_bwd_d_dense(w, W);
    /* Â = A ∘ GM  =>  dA = dÂ ∘ GM (the diagonal paths leave the off-diagonals zero) */
    if (!gq_aq_diag_d(w)) {
        gq_aq_hadamard(w->dA_att, w->dA_att, w->M_att, dd);
        gq_aq_hadamard(w->dA_ffn, w->dA_ffn, w->M_ffn, dd);
    }
    if (!gq_aq_diag_hs(w)) gq_aq_hadamard(w->dA_vo, w->dA_vo, w->M_vo, vo);
    gq_aq_add(w->cost, GQ_AQ_FOLD_BWD, t0, fold_flops(w) + inverse_bwd_flops(w));
}
