#ifndef GQ_GPTQ_H
#define GQ_GPTQ_H
/* GPTQ's solver for one matrix (IST-DASLab/gptq, gptq.py fasterquant), format-agnostic: the
 * format's group interface (fit_group / quant_elem) does the rounding of each column. */
#include <stdbool.h>
#include <stdint.h>

#include "core/gq_error.h"
#include "formats/gq_format.h"

typedef struct gq_gptq_opts {
    double percdamp;      /* damping as a fraction of mean(diag H) (reference 0.01) */
    double damp_step;     /* added to percdamp on each retry when the Cholesky fails */
    int max_retries;
    int block_size;       /* lazy-update block (reference 128) */
    bool act_order;       /* columns in order of decreasing H_ii */
    bool static_groups;   /* group parameters fitted on the original W before any update */
} gq_gptq_opts;

typedef struct gq_gptq_result {
    double loss;          /* sum (w - q)^2 / U_ii^2 / 2 (the reference's reported error) */
    double percdamp;      /* damping actually used */
    int retries;          /* Cholesky retries with more damping */
    int dead;             /* columns with H_ii == 0 (zeroed) */
    bool has_codes;       /* gq_gptq_quantize_codes wrote the format's storage of Q */
    int32_t *in_perm;     /* NULL, or (cols) owned by the caller: the storage holds Q's columns
                             in this order (column i of the storage is column in_perm[i] of Q) */
} gq_gptq_result;

/* GPTQ's Hessian side, which depends on H and the options only: linears that share an input
 * (q/k/v; gate/up) share one (gq_gptq_quantize_factored with the same factor gives exactly
 * what gq_gptq_quantize_codes gives each of them). */
typedef struct gq_gptq_factor {
    int cols;
    int *perm;            /* (cols) processing order: position i is input column perm[i] */
    float *U;             /* (cols, cols) upper Cholesky factor of (damped H)^-1, processing order */
    unsigned char *dead;  /* (cols) 1 for inputs with H_ii == 0 (their weights are zeroed) */
    int n_dead;
    double percdamp;      /* damping actually used */
    int retries;          /* factorisations retried with more damping */
} gq_gptq_factor;

/* Builds the factor from H (cols, cols), which is consumed (overwritten). Uses o->percdamp,
 * damp_step, max_retries and act_order. */
int gq_gptq_factor_init(gq_gptq_factor *F, double *H, int cols, const gq_gptq_opts *o,
                        gq_error *err);
void gq_gptq_factor_free(gq_gptq_factor *F);
/* The column loop of one matrix W (rows, F->cols) with a factor built from its input's H and
 * the same options: Q, codes and res as gq_gptq_quantize_codes. */
int gq_gptq_quantize_factored(const gq_quantizer *qz, const float *W, int rows, int cols,
                              const gq_gptq_factor *F, const gq_gptq_opts *o, float *Q,
                              uint8_t *codes, gq_gptq_result *res, gq_error *err);

/* W (rows, cols) -> Q (rows, cols) reconstructions. H (cols, cols), row-major, symmetric, is
 * consumed (overwritten). Fails when the format has no group interface. */
int gq_gptq_quantize(const gq_quantizer *qz, const float *W, int rows, int cols, double *H,
                     const gq_gptq_opts *o, float *Q, gq_gptq_result *res, gq_error *err);
/* The same, and codes (storage_bytes of the format, or NULL) = the format's storage of Q when
 * the format has store_groups: then res->has_codes. Dynamic groups under act_order are runs of
 * the permuted columns: the storage then holds Q with its columns permuted (res->in_perm), so
 * that a kernel applies it to x permuted the same way. */
int gq_gptq_quantize_codes(const gq_quantizer *qz, const float *W, int rows, int cols,
                           double *H, const gq_gptq_opts *o, float *Q, uint8_t *codes,
                           gq_gptq_result *res, gq_error *err);

#endif
