#ifndef GQ_AFFINE_COST_H
#define GQ_AFFINE_COST_H
/* Sub-stages of AffineQuant's block optimisation (gq_affine_train, gq_affine_fold), their wall
 * times and their work, for gq-bench bench quantize. The work of a stage is what its
 * algorithm must do given the structure of the transforms (a band of the gradual mask is
 * counted by its non-zero entries, a diagonal as one multiply per element), so a stage's rate
 * against the machine's limit says how well that structure is used. */
#include <stddef.h>

#include "grad/gq_grad.h"

typedef enum {
    GQ_AQ_INVERT,   /* the inverses of the masked transforms (double) */
    GQ_AQ_FOLD,     /* transformed weights: W Âᵀ (q/k/v, gate/up), v rows and o columns */
    GQ_AQ_FORWARD,  /* block forward passes: FP targets, the quantized block, its loss */
    GQ_AQ_BACKWARD, /* block backward pass down to the quantized weights and explicit inverses */
    GQ_AQ_FOLD_BWD, /* dÂ from the transformed weights' and the inverses' gradients */
    GQ_AQ_MASK,     /* gradual masks, Â = A ∘ GM, dominance checks and repairs */
    GQ_AQ_QUANT,    /* the fake quantizer with learned clipping, forward and backward */
    GQ_AQ_ADAMW,    /* the AdamW updates of the transforms and clipping logits */
    GQ_AQ_N_STAGES
} gq_aq_stage;

/* What a stage's work counts: float FLOPs, double FLOPs, or bytes moved. */
typedef enum { GQ_AQ_WORK_SFLOPS, GQ_AQ_WORK_DFLOPS, GQ_AQ_WORK_BYTES } gq_aq_work;

typedef struct gq_affine_cost {
    double seconds[GQ_AQ_N_STAGES];
    double work[GQ_AQ_N_STAGES];
} gq_affine_cost;

/* Stage name as the bench prints it ("aq invert", ...) and the unit of its work. */
const char *gq_aq_stage_name(gq_aq_stage s);
gq_aq_work gq_aq_stage_work(gq_aq_stage s);

/* Timer: t0 = gq_aq_clock(cost), then gq_aq_add(cost, stage, t0, work) adds the time since t0
 * and the work; both do nothing when cost is NULL. */
double gq_aq_clock(const gq_affine_cost *cost);
void gq_aq_add(gq_affine_cost *cost, gq_aq_stage s, double t0, double work);

/* Band of the gradual mask of an n x n transform at epoch e of E: |i - j| < band is kept. */
int gq_aq_band(int n, int epoch, int epochs);
/* Non-zero entries of an n x n matrix of that band. */
double gq_aq_band_nnz(int n, int band);
/* FLOPs of X (rows, n) times an n x n matrix of that band (or its transpose), or of the band
 * entries of a product with inner dimension rows: 2 rows nnz; a diagonal is rows n. */
double gq_aq_band_product_flops(double rows, int n, int band);
/* FLOPs of inverting an n x n matrix of that band: n for a diagonal, 2 n^3 otherwise. */
double gq_aq_invert_flops(int n, int band);
/* FLOPs of one forward pass of the block (no explicit transforms) over T tokens of one
 * window: 2 T (weights of the seven linears) + causal attention 4 hs nh T (T + 1) / 2. */
double gq_aq_block_forward_flops(const gq_grad_shape *s, int T);

#endif
