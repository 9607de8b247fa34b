/* Stacked evaluation of AWQ's scale grid (awq_grid.h).
 *
 * Per chunk of up to TOKEN_ROWS tokens (rows t0 .. t0+tn of x):
 *   v->o, down:  Y (tn, na*out) = x_chunk · [W_0; ...; W_na-1]^T              (one gq_sgemm)
 *   gate/up:     G, U (tn, na*hidden) = x_chunk · stacked gate / up weights    (two gq_sgemm)
 *                A (na*tn, hidden) = SiLU(G) * U regrouped by grid point
 *                Y (na*tn, dim) = A · W_down^T                                 (one gq_sgemm)
 * and every point's squared error against org is added in token order. */
#include "methods/awq_grid.h"

#include <stdlib.h>
#include <string.h>

#include "core/gq_gemm.h"
#include "model/gq_forward.h"

#define TOKEN_ROWS (4 * GQ_GEMM_TILE_M)

bool gq_awq_stacked_grid = true;

/* se[a] += sum_{t < tn, c < width} (Y(a, t)[c] - org[t][c])^2, Y(a, t) = Y + a*a_stride +
 * t*t_stride, in (t, c) order per point. */
static void add_sq_err(const float *Y, size_t a_stride, size_t t_stride, const float *org,
                       int tn, int width, int na, double *se)
{
#pragma omp parallel for schedule(static) if ((long)na * tn * width >= 65536)
    for (int a = 0; a < na; a++) {
        double e = se[a];
        for (int t = 0; t < tn; t++) {
            const float *y = Y + (size_t)a * a_stride + (size_t)t * t_stride;
            const float *o = org + (size_t)t * width;
            for (int c = 0; c < width; c++) {
                double d = (double)y[c] - o[c];
                e += d * d;
            }
        }
        se[a] = e;
    }
}

/* The MLP of na grid points on tn tokens: Y (na*tn, dim); G, U, A scratch of tn*na*hidden. */
static void mlp_points(const gq_block_ctx *ctx, const float *xc, int tn, float *const trial[2],
                       int na, float *G, float *U, float *A, float *Y)
{
    const int dim = ctx->cfg->dim, hid = ctx->cfg->hidden_dim, w = na * hid;
    gq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tn, w, dim, 1.0f, xc, dim, trial[0], dim,
             0.0f, G, w);
    gq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tn, w, dim, 1.0f, xc, dim, trial[1], dim,
             0.0f, U, w);
    gq_swiglu(G, G, U, tn, w);
    for (int a = 0; a < na; a++)
        for (int t = 0; t < tn; t++)
            memcpy(A + ((size_t)a * tn + t) * hid, G + (size_t)t * w + (size_t)a * hid,
                   (size_t)hid * sizeof *A);
    gq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, na * tn, dim, hid, 1.0f, A, hid,
             ctx->w.w[GQ_LIN_DOWN], hid, 0.0f, Y, dim);
}

int gq_awq_grid_losses(const gq_block_ctx *ctx, gq_awq_group g, const float *x, const float *org,
                       float *const trial[2], int na, double *loss, gq_error *err)
{
    const gq_config *c = ctx->cfg;
    const int n = ctx->B * ctx->T, dim = c->dim, hid = c->hidden_dim;
    const int cin = g == GQ_AWQ_DOWN ? hid : g == GQ_AWQ_VO ? gq_q_dim(c) : dim;
    const int mlp = g == GQ_AWQ_GATEUP;
    const size_t rows = TOKEN_ROWS, width = (size_t)na * (mlp ? hid : dim);
    float *Y = malloc(rows * (size_t)na * dim * sizeof *Y);
    float *G = mlp ? malloc(rows * width * sizeof *G) : NULL;
    float *U = mlp ? malloc(rows * width * sizeof *U) : NULL;
    float *A = mlp ? malloc(rows * width * sizeof *A) : NULL;
    double *se = calloc((size_t)na, sizeof *se);
    int rc = -1;
    if (!Y || !se || (mlp && (!G || !U || !A))) {
        gq_fail(err, "layers.%d: out of memory in the AWQ grid (%d points)", ctx->layer, na);
        goto done;
    }
    for (int t0 = 0; t0 < n; t0 += TOKEN_ROWS) {
        int tn = n - t0 < TOKEN_ROWS ? n - t0 : TOKEN_ROWS;
        const float *xc = x + (size_t)t0 * cin, *oc = org + (size_t)t0 * dim;
        if (mlp) {
            mlp_points(ctx, xc, tn, trial, na, G, U, A, Y);
            add_sq_err(Y, (size_t)tn * dim, (size_t)dim, oc, tn, dim, na, se);
        } else {
            gq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tn, na * dim, cin, 1.0f, xc, cin,
                     trial[0], cin, 0.0f, Y, na * dim);
            add_sq_err(Y, (size_t)dim, (size_t)na * dim, oc, tn, dim, na, se);
        }
    }
    for (int a = 0; a < na; a++)
        loss[a] = se[a] / ((double)n * dim);
    rc = 0;
done:
    free(Y), free(G), free(U), free(A), free(se);
    return rc;
}
