/* GPTQ column-by-column quantization with lazy block updates.
 *
 * Shapes: W (rows, cols) with cols = the layer's input width; H (cols, cols).
 * Steps, as the reference (IST-DASLab/gptq, gptq.py):
 *   1. per-channel / per-tensor parameters are fitted on W as given (before anything else);
 *   2. dead inputs (H_ii == 0): H_ii = 1, W[:, i] = 0;
 *   3. static groups: every group's parameters fitted on the column-contiguous W now;
 *   4. act_order: permute columns by decreasing H_ii (stable);
 *   5. H += percdamp * mean(diag H) * I; U = upper Cholesky factor of H^-1 (retry with more
 *      damping when a factorisation fails);
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

#include "core/gq_gemm.h"
#include "methods/gq_linalg.h"

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

int gq_gptq_quantize(const gq_quantizer *qz, const float *W0, int rows, int cols, double *H,
                     const gq_gptq_opts *o, float *Q, gq_gptq_result *res, gq_error *err)
{
    const gq_format *f = qz->fmt;
    memset(res, 0, sizeof *res);
    if (!f->group_cols || !f->fit_group || !f->quant_elem)
        return gq_fail(err, "format \"%s\" has no group interface (fit_group/quant_elem), which "
                            "GPTQ needs", f->name);
    if (f->check_shape && f->check_shape(qz->params, rows, cols, err))
        return -1;
    const int g = f->group_cols(qz->params, cols); /* 0 per-tensor, cols per-channel */
    const size_t sb = f->group_state_bytes ? f->group_state_bytes : 1;
    const int n_groups = g > 0 ? (cols + g - 1) / g : 1;
    const bool dynamic = g > 0 && g < cols && !o->static_groups;
    const size_t n = (size_t)rows * cols;
    const int bs = o->block_size;

    float *W = malloc(n * sizeof *W);
    float *U = malloc((size_t)cols * cols * sizeof *U);
    float *Err = malloc((size_t)rows * bs * sizeof *Err);
    int *perm = malloc((size_t)cols * sizeof *perm);
    double *Hd = malloc((size_t)cols * cols * sizeof *Hd);
    /* states: dynamic -> one per row (refitted); static/per-channel -> per (row, group);
     * per-tensor -> one. */
    size_t n_states = g == 0 ? 1 : (size_t)rows * (dynamic ? 1 : n_groups);
    uint8_t *st = calloc(n_states, sb);
    float *Qp = malloc(n * sizeof *Qp);
    double *row_loss = calloc((size_t)rows, sizeof *row_loss); /* summed in row order at the end */
    int rc = -1;
    if (!W || !U || !Err || !perm || !Hd || !st || !Qp || !row_loss) {
        gq_fail(err, "GPTQ: out of memory for a %d x %d layer", rows, cols);
        goto done;
    }
    memcpy(W, W0, n * sizeof *W);

    /* 1. per-tensor / per-channel parameters on W as given */
    if (g == 0)
        f->fit_group(qz->params, W, (int)n, NULL, st);
    else if (g >= cols)
        for (int r = 0; r < rows; r++)
            f->fit_group(qz->params, W + (size_t)r * cols, cols, NULL, st + (size_t)r * sb);

    /* 2. dead inputs */
    for (int i = 0; i < cols; i++)
        if (H[(size_t)i * cols + i] == 0.0) {
            H[(size_t)i * cols + i] = 1.0;
            for (int r = 0; r < rows; r++)
                W[(size_t)r * cols + i] = 0.0f;
            res->dead++;
        }

    /* 3. static groups on the column-contiguous W */
    if (g > 0 && g < cols && o->static_groups)
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < n_groups; k++) {
                int c0 = k * g, len = cols - c0 < g ? cols - c0 : g;
                f->fit_group(qz->params, W + (size_t)r * cols + c0, len, NULL,
                             st + ((size_t)r * n_groups + k) * sb);
            }

    /* 4. act_order permutation */
    for (int i = 0; i < cols; i++)
        perm[i] = i;
    if (o->act_order) {
        double *diag = malloc((size_t)cols * sizeof *diag);
        if (!diag) {
            gq_fail(err, "GPTQ: out of memory");
            goto done;
        }
        for (int i = 0; i < cols; i++)
            diag[i] = H[(size_t)i * cols + i];
        qsort_r(perm, (size_t)cols, sizeof *perm, by_diag_desc, diag);
        free(diag);
        float *tmp = malloc((size_t)cols * sizeof *tmp);
        if (!tmp) {
            gq_fail(err, "GPTQ: out of memory");
            goto done;
        }
        for (int r = 0; r < rows; r++) {
            float *wr = W + (size_t)r * cols;
            for (int i = 0; i < cols; i++)
                tmp[i] = wr[perm[i]];
            memcpy(wr, tmp, (size_t)cols * sizeof *tmp);
        }
        free(tmp);
    }
    for (int i = 0; i < cols; i++)
        for (int j = 0; j < cols; j++)
            Hd[(size_t)i * cols + j] = H[(size_t)perm[i] * cols + perm[j]];

    /* 5. damping and the upper Cholesky factor of H^-1 */
    double mean_diag = 0.0;
    for (int i = 0; i < cols; i++)
        mean_diag += Hd[(size_t)i * cols + i];
    mean_diag /= cols;
    double pd = o->percdamp;
    for (;;) {
        memcpy(H, Hd, (size_t)cols * cols * sizeof *H);
        for (int i = 0; i < cols; i++)
            H[(size_t)i * cols + i] += pd * mean_diag;
        gq_error e2;
        if (gq_inverse_cholesky_upper(H, cols, &e2) == 0)
            break;
        if (res->retries >= o->max_retries) {
            gq_fail(err, "GPTQ: %s, still after %d retries (percdamp %g)", e2.msg, res->retries, pd);
            goto done;
        }
        res->retries++;
        pd += o->damp_step;
    }
    res->percdamp = pd;
    for (size_t i = 0; i < (size_t)cols * cols; i++)
        U[i] = (float)H[i];

    /* 6. the column loop */
    for (int i1 = 0; i1 < cols; i1 += bs) {
        int i2 = i1 + bs < cols ? i1 + bs : cols, cnt = i2 - i1;
#pragma omp parallel for schedule(static) if ((size_t)rows * cnt * cnt > 65536)
        for (int r = 0; r < rows; r++) {
            float *wg = W + (size_t)r * cols;            /* global row (block-start state) */
            float w1[cnt];
            memcpy(w1, wg + i1, (size_t)cnt * sizeof *w1);
            float *er = Err + (size_t)r * bs;
            uint8_t *rst = g == 0 ? st : st + (size_t)r * (dynamic ? 1 : n_groups) * sb;
            int gstart = 0;
            for (int i = 0; i < cnt; i++) {
                int col = i1 + i; /* position in processing order */
                const void *state;
                int k;
                if (g == 0) {
                    state = st;
                    k = r * cols + perm[col];
                } else if (g >= cols) {
                    state = rst;
                    k = perm[col];
                } else if (dynamic) {
                    if (col % g == 0) {
                        int len = cols - col < g ? cols - col : g;
                        f->fit_group(qz->params, wg + col, len, NULL, rst);
                        gstart = col;
                    } else if (i == 0) {
                        gstart = col - col % g;
                    }
                    state = rst;
                    k = col - gstart;
                } else {
                    int oc = perm[col];
                    state = rst + (size_t)(oc / g) * sb;
                    k = oc % g;
                }
                float w = w1[i];
                float q = f->quant_elem(qz->params, state, k, w);
                Qp[(size_t)r * cols + col] = q;
                float d = U[(size_t)col * cols + col];
                float e = (w - q) / d;
                row_loss[r] += (double)(w - q) * (w - q) / ((double)d * d) / 2.0;
                const float *urow = U + (size_t)col * cols + i1;
                for (int j = i; j < cnt; j++)
                    w1[j] -= e * urow[j];
                er[i] = e;
            }
        }
        /* W[:, i2:] -= Err (rows, cnt) · U[i1:i2, i2:] (cnt, cols - i2) */
        if (i2 < cols)
            gq_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols - i2, cnt, -1.0f, Err,
                     bs, U + (size_t)i1 * cols + i2, cols, 1.0f, W + i2, cols);
    }
    res->loss = 0.0;
    for (int r = 0; r < rows; r++)
        res->loss += row_loss[r];

    /* un-permute */
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < cols; i++)
            Q[(size_t)r * cols + perm[i]] = Qp[(size_t)r * cols + i];
    rc = 0;
done:
    free(W);
    free(U);
    free(Err);
    free(perm);
    free(Hd);
    free(st);
    free(Qp);
    free(row_loss);
    return rc;
}
