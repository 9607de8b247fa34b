#ifndef GQ_AWQ_GRID_H
#define GQ_AWQ_GRID_H
/* AWQ's scale-search losses of several grid points at once, for the groups whose inspected
 * module works token by token (v->o, gate/up -> MLP, down): the trial weights of all points are
 * stacked and multiplied in one product per chunk of tokens (awq_grid.c). */
#include <stdbool.h>

#include "methods/gq_awq.h"

/* Whether the v->o, gate/up and down searches use the stacked products (default true); false
 * runs one forward per grid point, the reference the tests compare the stacked path with. */
extern bool gq_awq_stacked_grid;

/* loss[a] = mean((M_a(x) - org)^2) for na grid points of group g (GQ_AWQ_VO, GQ_AWQ_GATEUP or
 * GQ_AWQ_DOWN), x (B*T, c_in) the group's input, org (B*T, dim) the FP module's output.
 * trial[i] holds the na trial weights of the group's i-th scaled linear stacked as (na * rows,
 * cols); the MLP's down_proj is the block's own. Each product covers whole rows of org in token
 * order and each loss is summed in (token, channel) order, as the per-point search does. */
int gq_awq_grid_losses(const gq_block_ctx *ctx, gq_awq_group g, const float *x, const float *org,
                       float *const trial[2], int na, double *loss, gq_error *err);

#endif
