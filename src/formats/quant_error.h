#ifndef GQ_QUANT_ERROR_H
#define GQ_QUANT_ERROR_H
/* Reconstruction error of a quantized tensor, as printed by quantize-tensor and bench. */
#include <stddef.h>

typedef struct gq_quant_error {
    double rmse;    /* sqrt(mean (y - x)^2) */
    double max_abs; /* max |y - x| */
    double sqnr_db; /* 10 log10(sum x^2 / sum (y - x)^2); +Inf when y == x everywhere */
    size_t nonfinite; /* values of y that are NaN or infinite (the format's range exceeded) */
} gq_quant_error;
/* A non-finite y makes the statistics non-finite too (NaN or Inf, never a finite number):
 * callers print them as such. */

/* x: reference, y: reconstruction, n values; sums in double in index order (deterministic). */
gq_quant_error gq_quant_error_compute(const float *x, const float *y, size_t n);

#endif
