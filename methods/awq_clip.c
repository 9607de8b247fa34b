/* AWQ's clipping search of one linear (awq_clip.h): one candidate at a time, or all candidates of
 * a block of rows stacked. */
#include "methods/awq_clip.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_alloc.h"
#include "core/gq_gemm.h"

/* Columns of E per thread chunk of the error sums: a chunk's sums stay in registers and cache
 * while the tokens stream past. */
#define SUM_COLS 64

void gq_awq_clip_amax(const float *W, int rows, int cols, int gs, float *amax)
{
    const int ng = (cols + gs - 1) / gs;
    for (int r = 0; r < rows; r++)
        for (int gi = 0; gi < ng; gi++) {
            int c0 = gi * gs, c1 = c0 + gs < cols ? c0 + gs : cols;
            float a = 0.0f;
            for (int j = c0; j < c1; j++)
                a = fmaxf(a, fabsf(W[(size_t)r * cols + j]));
            amax[(size_t)r * ng + gi] = a;
        }
}

void gq_awq_clip_to(float *Wc, const float *W, const float *amax, const float *factor, float f,
                    int rows, int cols, int gs)
{
    const int ng = (cols + gs - 1) / gs;
#pragma omp parallel for schedule(static) if ((long)rows * cols >= 65536)
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) {
            const size_t g = (size_t)r * ng + j / gs;
            float mv = amax[g] * (factor ? factor[g] : f);
            float w = W[(size_t)r * cols + j];
            Wc[(size_t)r * cols + j] = w > mv ? mv : (w < -mv ? -mv : w);
        }
}

bool gq_awq_clip_rowwise(const gq_quantizer *q, int cols)
{
    return q->fmt->group_cols && q->fmt->group_cols(q->params, cols) > 0;
}

static float factor_of(const gq_awq_clip_problem *pb, int ci)
{
    return 1.0f - (float)ci / pb->clip_grid;
}

/* esum[c] = sum over the m rows of E (m, n) of E[t][c]^2, in double, t increasing. */
static void column_sq_sums(const float *E, size_t m, int n, double *esum)
{
#pragma omp parallel for schedule(static) if ((size_t)n * m > 65536)
    for (int c0 = 0; c0 < n; c0 += SUM_COLS) {
        const int nc = n - c0 < SUM_COLS ? n - c0 : SUM_COLS;
        double e[SUM_COLS] = {0};
        for (size_t t = 0; t < m; t++) {
            const float *et = E + t * n + c0;
            for (int i = 0; i < nc; i++)
                e[i] += (double)et[i] * et[i];
        }
        for (int i = 0; i < nc; i++)
            esum[c0 + i] = e[i];
    }
}

/* The errors of candidates ci0 .. ci0+nc-1 on rows r0 .. r0+nr-1 of group gi, esum (nc, nr)
 * (sums over the m tokens), into the running best: candidates in increasing order, the first of
 * least error kept. */
static void keep_best(const gq_awq_clip_problem *pb, const double *esum, int ci0, int nc, int r0,
                      int nr, int gi, double *best_e, float *best_f)
{
    const int ng = (pb->cols + pb->gs - 1) / pb->gs;
    for (int i = 0; i < nr; i++) {
        const size_t idx = (size_t)(r0 + i) * ng + gi;
        for (int c = 0; c < nc; c++) {
            double e = esum[(size_t)c * nr + i] / (double)pb->m;
            if (e < best_e[idx]) {
                best_e[idx] = e;
                best_f[idx] = factor_of(pb, ci0 + c);
            }
        }
    }
}

/* E (m, nc * nr) = Xs[:, c0 .. c0+len-1] · D[:, c0 ..]^T for D (nc * nr, cols). Each product
 * tile is a single BLAS call whose elements depend on its shape and on where they lie in it
 * (core/gq_gemm.h): a candidate's columns must form the tiles the one-candidate product of all
 * rows forms. Blocks of whole tiles (nr a multiple of GQ_GEMM_TILE_N, starting on a tile) stack
 * in one product; a shorter last block takes one product per candidate. */
static void group_products(const gq_awq_clip_problem *pb, const float *D, int nc, int nr,
                           int c0, int len, float *E)
{
    const int cols = pb->cols, n = nc * nr;
    const int calls = nr % GQ_GEMM_TILE_N == 0 ? 1 : nc, per = n / calls;
    for (int c = 0; c < calls; c++)
        gq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)pb->m, per, len, 1.0f,
                 pb->Xs + c0, cols, D + (size_t)c * per * cols + c0, cols, 0.0f, E + c * per,
                 n);
}

/* Scores D (nc * nr, cols) = the rounded trials of candidates ci0.. on rows r0.. minus W, group
 * by group: E (m, nc * nr) = Xs[:, group] · D[:, group]^T, then its column sums. */
static void score_trials(const gq_awq_clip_problem *pb, const float *D, int ci0, int nc, int r0,
                         int nr, float *E, double *esum, double *best_e, float *best_f)
{
    const int cols = pb->cols, gs = pb->gs, ng = (cols + gs - 1) / gs;
    for (int gi = 0; gi < ng; gi++) {
        int c0 = gi * gs, len = c0 + gs < cols ? gs : cols - c0;
        group_products(pb, D, nc, nr, c0, len, E);
        column_sq_sums(E, pb->m, nc * nr, esum);
        keep_best(pb, esum, ci0, nc, r0, nr, gi, best_e, best_f);
    }
}

/* Scratch of a search whose trial weights have `stack` rows. */
typedef struct {
    float *D, *E;
    double *esum, *best_e;
} clip_scratch;

static int scratch_alloc(const gq_awq_clip_problem *pb, size_t stack, clip_scratch *s,
                         float *best_f, gq_error *err)
{
    const size_t groups = (size_t)pb->rows * ((pb->cols + pb->gs - 1) / pb->gs);
    s->D = gq_alloc_big(stack * pb->cols * sizeof *s->D);
    s->E = gq_alloc_big(pb->m * stack * sizeof *s->E);
    s->esum = malloc(stack * sizeof *s->esum);
    s->best_e = malloc(groups * sizeof *s->best_e);
    if (!s->D || !s->E || !s->esum || !s->best_e)
        return gq_fail(err, "out of memory in the clip search");
    for (size_t i = 0; i < groups; i++) {
        s->best_e[i] = INFINITY;
        best_f[i] = 1.0f;
    }
    return 0;
}

/* best_err (when not NULL) = the chosen candidates' errors. */
static void errors_out(const gq_awq_clip_problem *pb, const clip_scratch *s, double *best_err)
{
    if (best_err)
        memcpy(best_err, s->best_e,
               (size_t)pb->rows * ((pb->cols + pb->gs - 1) / pb->gs) * sizeof *best_err);
}

static void scratch_free(clip_scratch *s)
{
    free(s->D), free(s->E), free(s->esum), free(s->best_e);
}

int gq_awq_clip_per_candidate(const gq_awq_clip_problem *pb, float *best_f, double *best_err,
                              gq_error *err)
{
    const int rows = pb->rows, cols = pb->cols;
    const size_t size = (size_t)rows * cols;
    clip_scratch s = {0};
    float *Wc = gq_alloc_big(size * sizeof *Wc);
    int rc = -1;
    if (!Wc) {
        gq_fail(err, "out of memory in the clip search");
        goto done;
    }
    if (scratch_alloc(pb, (size_t)rows, &s, best_f, err))
        goto done;
    for (int ci = 0; ci < pb->n_cand; ci++) {
        gq_awq_clip_to(Wc, pb->W, pb->amax, NULL, factor_of(pb, ci), rows, cols, pb->gs);
        if (gq_quantizer_run(pb->q, Wc, rows, cols, NULL, NULL, s.D, err))
            goto done;
#pragma omp parallel for schedule(static) if (size >= 65536)
        for (size_t i = 0; i < size; i++)
            s.D[i] -= pb->W[i];
        score_trials(pb, s.D, ci, 1, 0, rows, s.E, s.esum, s.best_e, best_f);
    }
    errors_out(pb, &s, best_err);
    rc = 0;
done:
    free(Wc);
    scratch_free(&s);
    return rc;
}

/* D (nc * nr, cols) = Q(clip(W rows r0..r0+nr-1, amax f_c)) - W for every candidate c, in one
 * rounding of the stacked rows. */
static int stacked_trials(const gq_awq_clip_problem *pb, int r0, int nr, float *D,
                          gq_error *err)
{
    const int cols = pb->cols, ng = (cols + pb->gs - 1) / pb->gs, nc = pb->n_cand;
    const float *W = pb->W + (size_t)r0 * cols;
    const size_t block = (size_t)nr * cols;
#pragma omp parallel for schedule(static) if ((size_t)nc * block >= 65536)
    for (int c = 0; c < nc; c++)
        gq_awq_clip_to(D + c * block, W, pb->amax + (size_t)r0 * ng, NULL, factor_of(pb, c), nr,
                       cols, pb->gs);
    if (gq_quantizer_run(pb->q, D, nc * nr, cols, NULL, NULL, D, err))
        return -1;
#pragma omp parallel for schedule(static) if ((size_t)nc * block >= 65536)
    for (int c = 0; c < nc; c++)
        for (size_t i = 0; i < block; i++)
            D[c * block + i] -= W[i];
    return 0;
}

int gq_awq_clip_stacked(const gq_awq_clip_problem *pb, float *best_f, double *best_err,
                        gq_error *err)
{
    /* blocks of one product tile of rows: group_products */
    const int nr = pb->rows < GQ_GEMM_TILE_N ? pb->rows : GQ_GEMM_TILE_N;
    clip_scratch s = {0};
    int rc = -1;
    if (scratch_alloc(pb, (size_t)pb->n_cand * nr, &s, best_f, err))
        goto done;
    for (int r0 = 0; r0 < pb->rows; r0 += nr) {
        const int bn = pb->rows - r0 < nr ? pb->rows - r0 : nr;
        if (stacked_trials(pb, r0, bn, s.D, err))
            goto done;
        score_trials(pb, s.D, 0, pb->n_cand, r0, bn, s.E, s.esum, s.best_e, best_f);
    }
    errors_out(pb, &s, best_err);
    rc = 0;
done:
    scratch_free(&s);
    return rc;
}

int gq_awq_clip_factors(const gq_awq_clip_problem *pb, float *best_f, double *best_err,
                        gq_error *err)
{
    return gq_awq_clip_rowwise(pb->q, pb->cols)
               ? gq_awq_clip_stacked(pb, best_f, best_err, err)
               : gq_awq_clip_per_candidate(pb, best_f, best_err, err);
}
