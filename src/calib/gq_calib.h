#ifndef GQ_CALIB_H
#define GQ_CALIB_H
/* Calibration: the windows of tokens, and statistics of captured activations.
 *
 * Activations are captured by the block forward pass (model/gq_forward.h, gq_block_trace) as
 * row-major (n tokens, d channels) matrices; the statistics below reduce them over tokens.
 * Sums run in double: with 10^5..10^6 calibration tokens a float accumulator loses the low
 * digits of the mean (and of H), which changes GPTQ's rounding decisions from run to run
 * when the summation order changes with the thread count. */
#include <stddef.h>
#include <stdint.h>

#include "core/gq_error.h"
#include "text/gq_dataset.h"

/* tokens (n, ctx) row-major, malloc'd: the windows at
 * gq_dataset_calib_offsets(ds, first, n, ctx, seed) (tokens before `first` are held out). */
int gq_calib_windows(const gq_dataset *ds, size_t first, int n, int ctx, uint64_t seed,
                     int **tokens, gq_error *err);

/* out[j] = mean_t |x[t, j]| (AWQ's activation salience). x (n, d). */
void gq_calib_abs_mean(const float *x, size_t n, int d, float *out);
/* out[j] = mean_t x[t, j]^2 (llama.cpp's importance matrix). x (n, d). */
void gq_calib_sq_mean(const float *x, size_t n, int d, float *out);

/* GPTQ's Hessian of the layer-wise loss: H = 2/N sum_t x_t x_t^T, (d, d) in double. */
typedef struct gq_hessian {
    int d;
    size_t n;   /* tokens accumulated */
    double *h;  /* (d, d) row-major; the sum of x x^T until gq_hessian_finish */
} gq_hessian;

int gq_hessian_init(gq_hessian *H, int d, gq_error *err);
/* Adds the n rows of x (n, d). */
int gq_hessian_add(gq_hessian *H, const float *x, size_t n, gq_error *err);
/* Scales the sum by 2/N (and fills the lower triangle). */
void gq_hessian_finish(gq_hessian *H);
void gq_hessian_free(gq_hessian *H);

#endif
