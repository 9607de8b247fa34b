/* GPTQ column-by-column quantization with lazy block updates.
 *
 * Shapes: W (rows, cols) with cols = the layer's input width; the Hessian side (dead inputs,
 * processing order, U = upper Cholesky factor of H^-1) comes from gptq_factor.c.
 * Steps, as the reference (IST-DASLab/gptq, gptq.py):
 *   1. per-channel / per-tensor parameters are fitted on W as given (before anything else);
 *   2. dead inputs (H_ii == 0): W[:, i] = 0;
 *   3. static groups: every group's parameters fitted on the column-contiguous W now;
 *   4. act_order: W's columns in the factor's processing order;
 *   5. (the factor: damping and U)
 *   6. for each block of block_size columns, for each column i: dynamic groups are fitted on
 *      the *global* W[:, i:i+g] when i % g == 0 (it holds the updates of previous blocks only,
 *      like the reference), q = quant(w_i), err = (w_i - q) / U_ii,
 *      W1[:, i:] -= err U[i, i:] inside the block; after the block
 *      W[:, end:] -= Err1 U[block, end:] (sgemm).
 * Rows are independent, so the in-block loop runs in parallel over rows. */
#include "methods/gq_gptq.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_alloc.h"
#include "core/gq_gemm.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

/* One matrix in flight: the format, the group layout and the working buffers. */
typedef struct {
    const gq_quantizer *qz;
    const gq_format *f;
    int rows, cols, bs;
    int g;          /* columns per group: 0 per-tensor, cols per-channel */
    size_t sb;      /* bytes of one group state */
    int n_groups;   /* groups per row */
    bool dynamic;   /* groups fitted during the column loop */
    float *W;       /* (rows, cols) working weights, in processing order after step 4 */
    const float *U; /* (cols, cols) upper Cholesky factor of H^-1 (the factor's) */
    float *Err;     /* (rows, bs) scaled errors of the current block */
    const int *perm; /* processing order: column i of W is column perm[i] of the input */
    uint8_t *st;    /* group states: one (per-tensor), per row (dynamic), or per (row, group) */
    uint8_t *kept;  /* dynamic groups in processing order: each fitted state, per (row,
                       group), for the format's store_groups; NULL when not kept */
    float *Qp;      /* (rows, cols) reconstructions in processing order */
    double *row_loss; /* (rows) loss terms per row, summed in row order at the end */
} gptq_run;

static void run_free(gptq_run *R)
{
    free(R->W);
    free(R->Err);
    free(R->st);
    free(R->Qp);
    free(R->row_loss);
    free(R->kept);
}

static int run_init(gptq_run *R, const gq_quantizer *qz, const float *W0, int rows, int cols,
                    const gq_gptq_factor *F, const gq_gptq_opts *o, gq_error *err)
{
    const gq_format *f = qz->fmt;
    memset(R, 0, sizeof *R);
    if (!f->group_cols || !f->fit_group || !f->quant_elem)
        return gq_fail(err, "format \"%s\" has no group interface (fit_group/quant_elem), which "
                            "GPTQ needs", f->name);
    if (f->check_shape && f->check_shape(qz->params, rows, cols, err))
        return -1;
    R->qz = qz;
    R->f = f;
    R->rows = rows;
    R->cols = cols;
    R->bs = o->block_size;
    R->g = f->group_cols(qz->params, cols);
    R->sb = f->group_state_bytes ? f->group_state_bytes : 1;
    R->n_groups = R->g > 0 ? (cols + R->g - 1) / R->g : 1;
    R->dynamic = R->g > 0 && R->g < cols && !o->static_groups;
    const size_t n = (size_t)rows * cols;
    R->U = F->U;
    R->perm = F->perm;
    R->W = gq_alloc_big(n * sizeof *R->W);
    R->Err = gq_alloc_big((size_t)rows * R->bs * sizeof *R->Err);
    size_t n_states = R->g == 0 ? 1 : (size_t)rows * (R->dynamic ? 1 : R->n_groups);
    R->st = calloc(n_states, R->sb);
    R->Qp = gq_alloc_big(n * sizeof *R->Qp);
    R->row_loss = calloc((size_t)rows, sizeof *R->row_loss);
    if (!R->W || !R->Err || !R->st || !R->Qp || !R->row_loss) {
        run_free(R);
        return gq_fail(err, "GPTQ: out of memory for a %d x %d layer", rows, cols);
    }
    memcpy(R->W, W0, n * sizeof *R->W);
    return 0;
}

/* Steps 1-3: per-tensor / per-channel parameters on W as given, dead inputs, static groups on
 * the column-contiguous W. */
static void fit_before_updates(gptq_run *R, const gq_gptq_factor *F, const gq_gptq_opts *o)
{
    const gq_format *f = R->f;
    const int rows = R->rows, cols = R->cols, g = R->g;
    float *W = R->W;
    if (g == 0)
        f->fit_group(R->qz->params, W, rows * cols, NULL, R->st);
    else if (g >= cols)
        for (int r = 0; r < rows; r++)
            f->fit_group(R->qz->params, W + (size_t)r * cols, cols, NULL, R->st + (size_t)r * R->sb);
    for (int i = 0; i < cols; i++)
        if (F->dead[i])
            for (int r = 0; r < rows; r++)
                W[(size_t)r * cols + i] = 0.0f;
    if (g > 0 && g < cols && o->static_groups)
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < R->n_groups; k++) {
                int c0 = k * g, len = cols - c0 < g ? cols - c0 : g;
                f->fit_group(R->qz->params, W + (size_t)r * cols + c0, len, NULL,
                             R->st + ((size_t)r * R->n_groups + k) * R->sb);
            }
}

/* Step 4: W's columns in the processing order. */
static int order_columns(gptq_run *R, bool act_order, gq_error *err)
{
    if (!act_order)
        return 0;
    const int rows = R->rows, cols = R->cols;
    float *tmp = malloc((size_t)cols * sizeof *tmp);
    if (!tmp)
        return gq_fail(err, "GPTQ: out of memory");
    for (int r = 0; r < rows; r++) {
        float *wr = R->W + (size_t)r * cols;
        for (int i = 0; i < cols; i++)
            tmp[i] = wr[R->perm[i]];
        memcpy(wr, tmp, (size_t)cols * sizeof *tmp);
    }
    free(tmp);
    return 0;
}

/* Rows handled side by side in the column loop: one vector lane per row. */
#define ROW_TILE 8

/* The group state and the element index quant_elem takes for row r at position col (processing
 * order); gstart is where the row's current dynamic group starts. */
static const void *elem_state(const gptq_run *R, int r, int col, int gstart, int *k)
{
    const int cols = R->cols, g = R->g;
    const uint8_t *rst = g == 0 ? R->st
                                : R->st + (size_t)r * (R->dynamic ? 1 : R->n_groups) * R->sb;
    if (g == 0) {
        *k = r * cols + R->perm[col];
        return R->st;
    }
    if (g >= cols) {
        *k = R->perm[col];
        return rst;
    }
    if (R->dynamic) {
        *k = col - gstart;
        return rst;
    }
    int oc = R->perm[col];
    *k = oc % g;
    return rst + (size_t)(oc / g) * R->sb;
}

/* Dynamic groups: at a group start, each row's state is fitted on its *global* row (block-start
 * state) and kept for store_groups. */
static void fit_dynamic(const gptq_run *R, int r0, int nr, int col)
{
    const int len = R->cols - col < R->g ? R->cols - col : R->g;
    for (int l = 0; l < nr; l++) {
        const int r = r0 + l;
        uint8_t *rst = R->st + (size_t)r * R->sb;
        R->f->fit_group(R->qz->params, R->W + (size_t)r * R->cols + col, len, NULL, rst);
        if (R->kept) /* col / g: the group in processing order */
            memcpy(R->kept + ((size_t)r * R->n_groups + col / R->g) * R->sb, rst, R->sb);
    }
}

/* wt[j][l] -= e[l] * u[j] for j in [j0, cnt) and every lane l: a product rounded, then the
 * difference (no fused multiply-add), as the scalar form does. */
static void feed_forward(float *wt, const float e[ROW_TILE], const float *u, int j0, int cnt)
{
#if defined(__AVX2__) && ROW_TILE == 8
    const __m256 ev = _mm256_loadu_ps(e);
    for (int j = j0; j < cnt; j++) {
        float *w = wt + (size_t)j * ROW_TILE;
        _mm256_storeu_ps(w, _mm256_sub_ps(_mm256_loadu_ps(w),
                                          _mm256_mul_ps(ev, _mm256_set1_ps(u[j]))));
    }
#else
    for (int j = j0; j < cnt; j++)
        for (int l = 0; l < ROW_TILE; l++)
            wt[(size_t)j * ROW_TILE + l] -= e[l] * u[j];
#endif
}

/* Step 6 for rows r0 .. r0 + nr (nr <= ROW_TILE) of the block [i1, i1 + cnt): each column of
 * the rows is quantized with its group state (dynamic groups refitted at group starts), its
 * error fed forward inside the block and kept for the update after it. wt (cnt, ROW_TILE) holds
 * the rows' block side by side, so the feed-forward of column i is one vector operation per
 * later column, and the rows' dependency chains (quantize -> error -> next column) overlap.
 * Every row's arithmetic is the one of a row on its own: the same operations in the same order,
 * its loss terms added one by one to row_loss[r]. */
static void quantize_tile_block(const gptq_run *R, int r0, int nr, int i1, int cnt, float *wt)
{
    const int cols = R->cols, g = R->g;
    double loss[ROW_TILE];
    for (int i = 0; i < cnt; i++)
        for (int l = 0; l < ROW_TILE; l++)
            wt[(size_t)i * ROW_TILE + l] = l < nr ? R->W[(size_t)(r0 + l) * cols + i1 + i] : 0.0f;
    for (int l = 0; l < nr; l++)
        loss[l] = R->row_loss[r0 + l];
    int gstart = R->dynamic ? i1 - i1 % g : 0;
    for (int i = 0; i < cnt; i++) {
        const int col = i1 + i; /* position in processing order */
        if (R->dynamic && col % g == 0) {
            fit_dynamic(R, r0, nr, col);
            gstart = col;
        }
        const float d = R->U[(size_t)col * cols + col];
        float e[ROW_TILE] = {0};
        for (int l = 0; l < nr; l++) {
            int k;
            const void *state = elem_state(R, r0 + l, col, gstart, &k);
            float w = wt[(size_t)i * ROW_TILE + l];
            float q = R->f->quant_elem(R->qz->params, state, k, w);
            R->Qp[(size_t)(r0 + l) * cols + col] = q;
            e[l] = (w - q) / d;
            loss[l] += (double)(w - q) * (w - q) / ((double)d * d) / 2.0;
            R->Err[(size_t)(r0 + l) * R->bs + i] = e[l];
        }
        feed_forward(wt, e, R->U + (size_t)col * cols + i1, i + 1, cnt);
    }
    for (int l = 0; l < nr; l++)
        R->row_loss[r0 + l] = loss[l];
}

/* Step 6: blocks of bs columns, tiles of rows in parallel inside a block, then the lazy update
 * of the columns after it. */
static double column_loop(gptq_run *R)
{
    const int rows = R->rows, cols = R->cols, bs = R->bs;
    const int tiles = (rows + ROW_TILE - 1) / ROW_TILE;
    double loss = 0.0;
    for (int i1 = 0; i1 < cols; i1 += bs) {
        int i2 = i1 + bs < cols ? i1 + bs : cols, cnt = i2 - i1;
#pragma omp parallel if ((size_t)rows * cnt * cnt > 65536)
        {
            float wt[cnt * ROW_TILE];
#pragma omp for schedule(static)
            for (int t = 0; t < tiles; t++) {
                int r0 = t * ROW_TILE;
                quantize_tile_block(R, r0, rows - r0 < ROW_TILE ? rows - r0 : ROW_TILE, i1, cnt,
                                    wt);
            }
        }
        /* W[:, i2:] -= Err (rows, cnt) · U[i1:i2, i2:] (cnt, cols - i2) */
        if (i2 < cols)
            gq_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols - i2, cnt, -1.0f,
                     R->Err, bs, R->U + (size_t)i1 * cols + i2, cols, 1.0f, R->W + i2, cols);
    }
    for (int r = 0; r < rows; r++) /* per-row sums added in row order: any thread count */
        loss += R->row_loss[r];
    return loss;
}

/* The codes from the group states, when the format can store them: of Q (column order) when
 * every group is a run of consecutive columns; of Qp (processing order) with the permutation
 * for dynamic groups under act_order, which are runs of the permuted columns. */
static int store_codes(const gptq_run *R, const float *Q, bool act_order, uint8_t *codes,
                       gq_gptq_result *res, gq_error *err)
{
    if (!codes || !R->f->store_groups)
        return 0;
    const bool permuted = R->dynamic && act_order;
    const uint8_t *states = R->dynamic ? R->kept : R->st;
    if (R->f->store_groups(R->qz->params, states, permuted ? R->Qp : Q, R->rows, R->cols, codes,
                           err))
        return -1;
    if (permuted) {
        if (!(res->in_perm = malloc((size_t)R->cols * sizeof *res->in_perm)))
            return gq_fail(err, "GPTQ: out of memory for a column permutation");
        for (int i = 0; i < R->cols; i++)
            res->in_perm[i] = R->perm[i];
    }
    res->has_codes = true;
    return 0;
}

int gq_gptq_quantize(const gq_quantizer *qz, const float *W0, int rows, int cols, double *H,
                     const gq_gptq_opts *o, float *Q, gq_gptq_result *res, gq_error *err)
{
    return gq_gptq_quantize_codes(qz, W0, rows, cols, H, o, Q, NULL, res, err);
}

int gq_gptq_quantize_codes(const gq_quantizer *qz, const float *W0, int rows, int cols,
                           double *H, const gq_gptq_opts *o, float *Q, uint8_t *codes,
                           gq_gptq_result *res, gq_error *err)
{
    memset(res, 0, sizeof *res);
    gq_gptq_factor F;
    if (gq_gptq_factor_init(&F, H, cols, o, err))
        return -1;
    int rc = gq_gptq_quantize_factored(qz, W0, rows, cols, &F, o, Q, codes, res, err);
    gq_gptq_factor_free(&F);
    return rc;
}

int gq_gptq_quantize_factored(const gq_quantizer *qz, const float *W0, int rows, int cols,
                              const gq_gptq_factor *F, const gq_gptq_opts *o, float *Q,
                              uint8_t *codes, gq_gptq_result *res, gq_error *err)
{
    memset(res, 0, sizeof *res);
    if (F->cols != cols)
        return gq_fail(err, "GPTQ: a factor of %d inputs for a layer of %d", F->cols, cols);
    res->percdamp = F->percdamp;
    res->retries = F->retries;
    res->dead = F->n_dead;
    gptq_run R;
    if (run_init(&R, qz, W0, rows, cols, F, o, err))
        return -1;
    int rc = -1;
    if (codes && R.dynamic &&
        !(R.kept = calloc((size_t)rows * R.n_groups, R.sb))) {
        gq_fail(err, "GPTQ: out of memory for the group states of a %d x %d layer", rows, cols);
        goto done;
    }
    fit_before_updates(&R, F, o);
    if (order_columns(&R, o->act_order, err))
        goto done;
    res->loss = column_loop(&R);
    for (int r = 0; r < rows; r++) /* back to column order */
        for (int i = 0; i < cols; i++)
            Q[(size_t)r * cols + R.perm[i]] = R.Qp[(size_t)r * cols + i];
    rc = store_codes(&R, Q, o->act_order, codes, res, err);
done:
    run_free(&R);
    return rc;
}
