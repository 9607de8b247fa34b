/* GPTQ's Hessian side (IST-DASLab/gptq, gptq.py fasterquant), shared by every linear that has
 * this input (q/k/v; gate/up): it depends on H and the options only, never on W.
 *   1. dead inputs (H_ii == 0): H_ii = 1 (the solver zeroes W[:, i]);
 *   2. act_order: the processing order by decreasing H_ii (stable), H permuted to it;
 *   3. H += percdamp * mean(diag H) * I; U = upper Cholesky factor of H^-1 (retry with more
 *      damping when a factorisation fails), through LAPACK (methods/gq_linalg.h).
 * Shapes: H (cols, cols) double, row-major, symmetric; U (cols, cols) float. */
#include "methods/gq_gptq.h"

#include <stdlib.h>
#include <string.h>

#include "methods/gq_linalg.h"

void gq_gptq_factor_free(gq_gptq_factor *F)
{
    free(F->perm);
    free(F->U);
    free(F->dead);
    memset(F, 0, sizeof *F);
}

static int by_diag_desc(const void *a, const void *b, void *diag)
{
    int i = *(const int *)a, j = *(const int *)b;
    double di = ((const double *)diag)[i], dj = ((const double *)diag)[j];
    if (di > dj)
        return -1;
    if (di < dj)
        return 1;
    return (i > j) - (i < j); /* stable: ties keep column order */
}

/* Steps 1-2: dead inputs marked (and H_ii = 1), the processing order in F->perm. */
static int mark_and_order(gq_gptq_factor *F, double *H, bool act_order, gq_error *err)
{
    const int cols = F->cols;
    for (int i = 0; i < cols; i++) {
        F->perm[i] = i;
        if (H[(size_t)i * cols + i] == 0.0) {
            H[(size_t)i * cols + i] = 1.0;
            F->dead[i] = 1;
            F->n_dead++;
        }
    }
    if (!act_order)
        return 0;
    double *diag = malloc((size_t)cols * sizeof *diag);
    if (!diag)
        return gq_fail(err, "GPTQ: out of memory");
    for (int i = 0; i < cols; i++)
        diag[i] = H[(size_t)i * cols + i];
    qsort_r(F->perm, (size_t)cols, sizeof *F->perm, by_diag_desc, diag);
    free(diag);
    return 0;
}

/* Step 3: damping and U (gq_inverse_cholesky_upper reads H in processing order through
 * F->perm and consumes it once a factorisation succeeds). */
static int damp_and_factor(gq_gptq_factor *F, double *H, const gq_gptq_opts *o, gq_error *err)
{
    const int cols = F->cols;
    double mean_diag = 0.0;
    for (int i = 0; i < cols; i++) /* in processing order */
        mean_diag += H[(size_t)F->perm[i] * cols + F->perm[i]];
    mean_diag /= cols;
    double pd = o->percdamp;
    for (;;) {
        gq_error e2;
        if (gq_inverse_cholesky_upper(H, cols, F->perm, pd * mean_diag, F->U, NULL, &e2) == 0)
            break;
        if (F->retries >= o->max_retries)
            return gq_fail(err, "GPTQ: %s, still after %d retries (percdamp %g)", e2.msg,
                           F->retries, pd);
        F->retries++;
        pd += o->damp_step;
    }
    F->percdamp = pd;
    return 0;
}

int gq_gptq_factor_init(gq_gptq_factor *F, double *H, int cols, const gq_gptq_opts *o,
                        gq_error *err)
{
    memset(F, 0, sizeof *F);
    F->cols = cols;
    F->perm = malloc((size_t)cols * sizeof *F->perm);
    /* plain pages, not gq_alloc_big: only U's upper triangle is ever touched, and 4 KiB pages
     * keep the rest out of the resident set */
    F->U = malloc((size_t)cols * cols * sizeof *F->U);
    F->dead = calloc((size_t)cols, 1);
    int rc = -1;
    if (!F->perm || !F->U || !F->dead) {
        gq_fail(err, "GPTQ: out of memory for a %d x %d Hessian factor", cols, cols);
        goto done;
    }
    if (mark_and_order(F, H, o->act_order, err))
        goto done;
    rc = damp_and_factor(F, H, o, err);
done:
    if (rc)
        gq_gptq_factor_free(F);
    return rc;
}
