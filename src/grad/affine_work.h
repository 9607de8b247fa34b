#ifndef GQ_AFFINE_WORK_H
#define GQ_AFFINE_WORK_H
/* AffineQuant's per-step work area and its transforms (affine_transform.c), shared by the
 * training loop (gq_affine.c). Internal to src/grad. */
#include <stdbool.h>
#include <stddef.h>

#include "grad/affine_cost.h"
#include "grad/gq_affine.h"

enum { NL = 7, L_Q = 0, L_K, L_V, L_O, L_GATE, L_UP, L_DOWN };

/* Shapes and buffers of one training step. */
typedef struct {
    gq_grad_shape s;
    int D, hs, KV, H, grp;
    int rows[NL], cols[NL];
    float *Ah_att, *Ah_ffn, *Ah_vo;    /* masked transforms Â */
    float *Bi_att, *Bi_ffn, *Bi_vo;    /* their inverses */
    /* dWt[k] shares Wq[k]'s storage: the quantized weights are dead once the backward pass
     * has read them, and every step quantizes again before using them */
    float *Wt[NL], *Wq[NL], *dWt[NL], *dWq[NL];
    float *tv, *dtv;                   /* (KV, D) v weights after the att transform */
    float *dm_att, *dm_ffn, *dA_att, *dA_ffn, *dA_vo, *dB_vo;
    float *M_att, *M_ffn, *M_vo;       /* gradual masks */
    int band_d, band_hs;               /* their bands (dim x dim, head_size x head_size) */
    bool dense;                        /* every product dense, whatever the band (reference) */
    gq_affine_cost *cost;              /* sub-stage timer (NULL: not timed) */
} gq_aq_step;

static inline size_t gq_aq_wsize(const gq_aq_step *w, int k)
{
    return (size_t)w->rows[k] * w->cols[k];
}
static inline size_t gq_aq_vo_size(const gq_aq_step *w)
{
    return (size_t)w->s.n_kv_heads * w->hs * w->hs;
}
/* The transforms are diagonal (the band of the gradual mask is 1) and taken as such. */
static inline bool gq_aq_diag_d(const gq_aq_step *w) { return w->band_d <= 1 && !w->dense; }
static inline bool gq_aq_diag_hs(const gq_aq_step *w) { return w->band_hs <= 1 && !w->dense; }

/* Allocates the buffers of shape s; the gradients' (dWt, dWq, dtv, dm_*, dA_*, dB_vo) only
 * with grads. */
int gq_aq_work_init(gq_aq_step *w, const gq_grad_shape *s, bool grads, gq_error *err);
void gq_aq_work_free(gq_aq_step *w);
void gq_aq_hadamard(float *out, const float *a, const float *b, size_t n);
/* The gradual masks of epoch `epoch` of `epochs` and their bands. */
void gq_aq_set_masks(gq_aq_step *w, int epoch, int epochs, double sf);
/* Â = A ∘ GM and the inverses Bi. */
int gq_aq_masked_inverses(gq_aq_step *w, const gq_affine_state *st, gq_error *err);
/* Wt = the transformed FP weights W[] (q, k, v, o, gate, up, down order) from Â and Bi. */
void gq_aq_transform_fwd(gq_aq_step *w, const float *const W[NL]);
/* dA_att, dA_ffn, dA_vo (masked) from dWt and the gradients of the explicit inverses
 * (dm_att, dm_ffn). */
void gq_aq_transform_bwd(gq_aq_step *w, const float *const W[NL]);
/* FLOPs of a block forward / backward pass over one window of T tokens, with the explicit
 * inverses when transforms. */
double gq_aq_forward_flops(const gq_aq_step *w, int T, bool transforms);
double gq_aq_backward_flops(const gq_aq_step *w, int T, bool transforms);

#endif
