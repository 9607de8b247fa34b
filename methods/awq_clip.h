#ifndef GQ_AWQ_CLIP_H
#define GQ_AWQ_CLIP_H
/* AWQ's clipping search (llm-awq auto_clip) of one linear W (rows, cols): per (row, group of gs
 * columns) the shrink factor f = 1 - i / clip_grid (i < n_cand) of the group's max |w| whose
 * rounded clipped weights give the least mean squared output error over m sampled tokens Xs:
 *   err(r, g, f) = mean_t (Xs[t, g] · (Q(clip(W, amax f))[r, g] - W[r, g]))^2,
 * the first candidate of least error on ties (f = 1 when no error is finite).
 *
 * Two evaluations with the same bits: one candidate at a time over the whole weight, and per
 * block of GQ_GEMM_TILE_N rows all candidates stacked in one rounding (the format must then round
 * each row on its own: gq_awq_clip_rowwise) and one product per group. Every error is a product
 * element of the same single-tile BLAS call (the blocks are the tiles of the whole product)
 * squared and summed over the tokens in increasing order, in double, so the choices do not
 * depend on the path or the thread count. */
#include <stdbool.h>
#include <stddef.h>

#include "core/gq_error.h"
#include "formats/gq_format.h"

typedef struct gq_awq_clip_problem {
    const gq_quantizer *q; /* the linear's format */
    const float *W;        /* (rows, cols) weights */
    int rows, cols;
    int gs;                /* columns per clip group (the format's group, or cols) */
    const float *amax;     /* (rows, ceil(cols / gs)) max |w| per group (gq_awq_clip_amax) */
    const float *Xs;       /* (m, cols) sampled input tokens */
    size_t m;
    int n_cand;            /* candidates i = 0 .. n_cand-1 */
    int clip_grid;         /* f = 1 - i / clip_grid */
} gq_awq_clip_problem;

/* amax (rows, ceil(cols / gs)) = max |w| per group of gs columns of each row of W. */
void gq_awq_clip_amax(const float *W, int rows, int cols, int gs, float *amax);

/* Wc = W (rows, cols) clipped per group to +-amax * factor (factor NULL: f for every group). */
void gq_awq_clip_to(float *Wc, const float *W, const float *amax, const float *factor, float f,
                    int rows, int cols, int gs);

/* Whether q rounds each row of a (rows, cols) matrix on its own (groups within rows, not one
 * per-tensor state): the condition of the stacked search. */
bool gq_awq_clip_rowwise(const gq_quantizer *q, int cols);

/* best_f (rows, ceil(cols / gs)) = the chosen factor per group and best_err (NULL: not wanted)
 * its error, one candidate at a time: each rounds the whole clipped weight, then one product
 * per group. Any format. */
int gq_awq_clip_per_candidate(const gq_awq_clip_problem *pb, float *best_f, double *best_err,
                              gq_error *err);

/* The same factors and errors, per block of rows: the clipped rows of all candidates stacked,
 * rounded in one call and multiplied by the tokens in one product per group (a shorter last
 * block: one per candidate and group). Needs gq_awq_clip_rowwise. */
int gq_awq_clip_stacked(const gq_awq_clip_problem *pb, float *best_f, double *best_err,
                        gq_error *err);

/* The stacked search when the format rounds rows on their own, else one candidate at a time. */
int gq_awq_clip_factors(const gq_awq_clip_problem *pb, float *best_f, double *best_err,
                        gq_error *err);

#endif
