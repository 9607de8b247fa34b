#ifndef GQ_GRAD_H
#define GQ_GRAD_H
/* Reverse-mode gradients of the operations a Llama block is made of, for methods that train
 * quantization parameters by backpropagation (AffineQuant).
 *
 * Every operation exists twice, with the same code (a template included twice):
 *   suffix _f: float, used for training; matrix products through gq_sgemm (fixed tiles,
 *   the same bits for any thread count); suffix _d: double, used by the finite-difference
 *   gradient checks (gq_dgemm).
 *
 * Conventions shared by all functions:
 *   - matrices are row-major; activations are (n, width) with n = B*T tokens, windows of T
 *     tokens at positions 0..T-1 (RoPE and the causal mask restart in every window);
 *   - a forward function overwrites its output; a backward function ACCUMULATES (+=) into its
 *     gradient outputs, so gradients of tensors used twice add up; a NULL gradient pointer
 *     skips that gradient;
 *   - the backward functions take the forward inputs (and, where noted, saved outputs) and
 *     recompute what they need. */
#include <stdbool.h>
#include <stddef.h>

#include "core/gq_error.h"

/* Shape of a transformer block. */
typedef struct gq_grad_shape {
    int dim;        /* residual width = n_heads * head_size */
    int hidden;     /* SwiGLU hidden width */
    int n_heads;
    int n_kv_heads; /* divides n_heads (grouped-query attention) */
} gq_grad_shape;

/* How the fake quantizer rounds w/s: to nearest-even (training forward, as torch.round) or not
 * at all. GQ_ROUND_IDENTITY is the function whose true derivative the straight-through
 * estimator returns; the gradient checks differentiate it by finite differences. The zero
 * point is rounded in both modes (it carries no gradient, as in the reference). */
typedef enum { GQ_ROUND_NEAREST, GQ_ROUND_IDENTITY } gq_round_mode;

/* Asymmetric INT-b group fake quantizer with learnable weight clipping (OmniQuant's LWC), for a
 * row-major (rows, cols) weight W, groups of `group` consecutive columns; as in the formats'
 * group interface the last group of a row may be shorter, and group >= cols (or 0) is one
 * group per row (per channel):
 *   xmax = sigmoid(gamma[g]) * max(W_g), xmin = sigmoid(beta[g]) * min(W_g)   (lwc)
 *   xmax = max(W_g),                     xmin = min(W_g)                      (gamma == NULL)
 *   s = clamp((xmax - xmin) / (2^b - 1), 1e-5, 1e4), z = round(-xmin / s),
 *   Q(w) = (clamp(round(w / s) + z, 0, 2^b - 1) - z) * s.
 * gamma, beta: (rows * groups_per_row) per-group logits, group index g = row * groups_per_row + k. */
typedef struct gq_lwc_spec {
    int bits;          /* 2..8 */
    int group;         /* columns per group (0 = per channel) */
    gq_round_mode round;
} gq_lwc_spec;

/* Width of the groups of a row of `cols` columns, and their number (the last may be shorter). */
static inline int gq_lwc_group_width(const gq_lwc_spec *s, int cols)
{
    return s->group <= 0 || s->group > cols ? cols : s->group;
}
static inline int gq_lwc_groups_per_row(const gq_lwc_spec *s, int cols)
{
    int g = gq_lwc_group_width(s, cols);
    return (cols + g - 1) / g;
}

#define GQ_LWC_INIT 4.0 /* initial gamma and beta: sigmoid(4) = 0.982 */

/* The per-type operations. */
#define GQ_T float
#define GQ_S(name) name##_f
#include "grad/gq_grad_api.inc"
#undef GQ_T
#undef GQ_S
#define GQ_T double
#define GQ_S(name) name##_d
#include "grad/gq_grad_api.inc"
#undef GQ_T
#undef GQ_S

/* A (n, n) -> inv (n, n) by LU with partial pivoting (LAPACK dgetrf, dgetri, one thread), in
 * double precision. Fails (naming `what`) when a pivot vanishes relative to the matrix scale. */
int gq_mat_inverse(double *inv, const double *A, int n, const char *what, gq_error *err);

/* Strict diagonal dominance of the rows of A (n, n): |a_ii| > sum_{j != i} |a_ij|. */
bool gq_diag_dominant_f(const float *A, int n);

/* AdamW (decoupled weight decay, as torch.optim.AdamW):
 *   p -= lr * wd * p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps),  t = step count from 1. */
typedef struct gq_adamw {
    double lr, beta1, beta2, eps, weight_decay;
    int t; /* steps taken; call gq_adamw_begin_step once per step before updating tensors */
} gq_adamw;

void gq_adamw_init(gq_adamw *opt, double lr, double weight_decay);
void gq_adamw_begin_step(gq_adamw *opt);
/* Updates one parameter tensor p (n) with gradient g and its moments m, v (n, zero at start). */
void gq_adamw_update(const gq_adamw *opt, float *p, const float *g, float *m, float *v, size_t n);

#endif
