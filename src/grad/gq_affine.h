#ifndef GQ_AFFINE_H
#define GQ_AFFINE_H
/* AffineQuant's block optimisation (arXiv:2403.12544), on plain arrays: learns the invertible
 * transforms A and the clipping logits of one transformer block by AdamW through the STE fake
 * quantizer, minimising the mean squared error between the quantized block on quantized
 * inputs and the full-precision block on full-precision inputs, one window per step.
 *
 * Transforms, as the reference places them (x·W^T convention, W (out, in)):
 *   att: xn -> xn · Â⁻¹, q/k/v weights W -> W Âᵀ      (Â = A ∘ GM, dim x dim)
 *   ffn: hn -> hn · Â⁻¹, gate/up weights W -> W Âᵀ    (dim x dim)
 *   vo:  per kv head h, v rows Wv_h -> Â_h⁻ᵀ Wv_h, o columns of every query head reading kv
 *        head h: Wo_h -> Wo_h Â_hᵀ                    (n_kv_heads blocks of head_size²)
 * The gradual mask GM of epoch e (of E) is 1 on the diagonal, sf on the off-diagonals with
 * |i - j| < band(e) = floor((n - 1) e / (E - 1)) + 1 and 0 elsewhere: diagonal only at epoch 0,
 * the full matrix at the last epoch. A starts as the SmoothQuant diagonal (alpha 0.5). After
 * every step each masked transform is checked for strict diagonal dominance; when it fails,
 * its off-diagonal part is halved until it holds (each halving run counts as one repair). */
#include <stdbool.h>

#include "core/gq_error.h"
#include "grad/affine_cost.h"
#include "grad/gq_grad.h"

typedef struct gq_affine_opts {
    int epochs;          /* passes over the calibration windows (one AdamW step per window) */
    double lr;           /* learning rate of the transforms */
    double lwc_lr;       /* learning rate of the clipping logits */
    double weight_decay; /* AdamW decoupled weight decay */
    double sf;           /* stability factor of the off-diagonal mask entries */
    double alpha;        /* SmoothQuant migration strength of the initial diagonal */
    bool lwc;            /* learn the clipping logits (else plain min/max) */
    bool let;            /* learn the transforms (else identity, never trained) */
    gq_lwc_spec quant;   /* training fake quantizer (bits, group; round is set to nearest) */
    /* Weight-activation mode (NULL: weight-only): the activation quantizers of the block's
     * linear inputs, run in every forward pass of the quantized block (never in the FP
     * target's), with the straight-through gradient of gq_grad_actq. */
    const gq_grad_actq_f *act;
    /* Optional, with act: refits static activation ranges from the inputs in[k] (n tokens,
     * the input width of linear k, gq_linear_kind order) that the quantized block gives its
     * linears with the activation quantizers off, over all windows; called before the initial
     * loss and before every epoch, as the transforms change those inputs. */
    int (*act_calibrate)(const gq_grad_actq_f *act, const float *const in[7], size_t n,
                         gq_error *err);
    bool aug_loss;       /* add the MSE to the FP block on the quantized inputs (reference's
                            --aug_loss) */
    gq_affine_cost *cost; /* NULL, or receives the sub-stages' times and work (added to it) */
    bool dense;          /* every transform product dense, diagonal ones too: the plain
                            formulation the fast paths are tested against */
    /* NULL, or (with let) receives the trained state's fold, what gq_affine_fold gives, made
     * in the training's own buffers (free with gq_affine_block_free); its time and work go
     * to cost as the fold's do. */
    gq_grad_block_f *fold;
} gq_affine_opts;

/* Learned state of one block. Transforms are returned masked (Â = A ∘ GM of the last epoch). */
typedef struct gq_affine_state {
    gq_grad_shape shape;
    float *A_att, *A_ffn; /* (dim, dim) */
    float *A_vo;          /* (n_kv_heads, hs, hs) */
    float *gamma[7], *beta[7]; /* per linear in gq_linear_kind order, (rows, groups per row) */
    double *epoch_loss;   /* (epochs) mean training loss of each epoch */
    double init_loss;     /* loss of the initial state over all windows, before training */
    int repairs;          /* diagonal-dominance repairs */
    bool let, lwc;        /* which parts were learned (eval applies the same) */
} gq_affine_state;

/* The seven linears of a block in gq_linear_kind order (q, k, v, o, gate, up, down). */
#define GQ_AFF_LIN(b) {(b)->wq, (b)->wk, (b)->wv, (b)->wo, (b)->w1, (b)->w3, (b)->w2}

/* Trains on B windows of T tokens: x_fp (B*T, dim) are the inputs of the FP block (targets),
 * x_q the inputs the quantized block sees (the output of the already quantized blocks before
 * it; may equal x_fp). fp: the block's FP weights (m_att, m_ffn must be NULL). */
int gq_affine_train(const gq_grad_shape *s, const gq_grad_block_f *fp, const float *x_fp,
                    const float *x_q, int B, int T, const gq_affine_opts *o,
                    gq_affine_state *st, gq_error *err);

/* Block output MSE of the quantized (fake-quantized with the learned state) block on x_q
 * against the FP block on x_fp, over all windows. */
int gq_affine_eval(const gq_affine_state *st, const gq_grad_block_f *fp, const float *x_fp,
                   const float *x_q, int B, int T, const gq_lwc_spec *q, double *mse,
                   gq_error *err);

/* The FP block with the learned transforms folded in (no rounding), for the final quantization:
 * q/k/v weights W Â_attᵀ, gate/up W Â_ffnᵀ, v rows and o columns by the per-head v->o
 * transform (fully folded), down unchanged; m_att = Â_att⁻¹ and m_ffn = Â_ffn⁻¹, inverted in
 * double, are the explicit transforms the forward pass applies as xn · M. The block computes
 * the FP block's function up to rounding. out's weights and m_* are allocated (free with
 * gq_affine_block_free); its norms point to fp's. Requires a state trained with let. cost
 * (may be NULL) receives the time and work of the inversions and products. */
int gq_affine_fold(const gq_affine_state *st, const gq_grad_block_f *fp, gq_grad_block_f *out,
                   gq_affine_cost *cost, gq_error *err);

/* Clamps every group of W (rows, cols) in place to its learned clipping range
 * [sigmoid(beta) min, sigmoid(gamma) max] (the range the training quantizer maps to its grid),
 * so that a min/max format applied afterwards sees the learned bounds. */
void gq_affine_clip(float *W, const float *gamma, const float *beta, int rows, int cols,
                    const gq_lwc_spec *spec);

void gq_affine_block_free(gq_grad_block_f *b);
void gq_affine_state_free(gq_affine_state *st);

#endif
