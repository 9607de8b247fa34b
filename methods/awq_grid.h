#ifndef GQ_AWQ_GRID_H
#define GQ_AWQ_GRID_H
/* AWQ's scale-search losses of several grid points at once: the trial weights of all points are
 * stacked and multiplied in one product per chunk of tokens (awq_grid.c); the q/k/v group's
 * chunks are whole windows, the attention of each point running on its own q, k and v. */
#include <stdbool.h>

#include "methods/gq_awq.h"

/* Whether the scale searches use the stacked products (default true); false runs one forward
 * per grid point, the reference the tests compare the stacked path with. */
extern bool gq_awq_stacked_grid;

/* loss[a] = mean((M_a(x) - org)^2) for na grid points of group g, x (B*T, c_in) the group's
 * input, org (B*T, dim) the FP module's output. trial[i] holds the na trial weights of the
 * group's i-th scaled linear stacked as (na * rows, cols); the other linears of the inspected
 * module (o_proj after q/k/v, down_proj in the MLP) are the block's own. Each product covers
 * whole rows of org in token order and each loss is summed in (token, channel) order, as the
 * per-point search does. Biases are left out: the caller searches a block with biases point by
 * point. */
int gq_awq_grid_losses(const gq_block_ctx *ctx, gq_awq_group g, const float *x, const float *org,
                       float *const trial[3], int na, double *loss, gq_error *err);

#endif
