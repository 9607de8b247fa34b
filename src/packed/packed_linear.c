/* Packed linears: products (fused dots for decode, dequantized tiles + sgemm for prefill),
 * dequantization and the linear-operator glue. Building them is packed_build.c. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_gemm.h"
#include "packed/packed_internal.h"

float pk_dot_ref(const gq_packed_linear *P, int r, const float *x, float *scratch)
{
    P->type->dequant_ref(P, r, scratch);
    float s = 0.0f;
    for (int j = 0; j < P->cols_pad; j++)
        s += scratch[j] * x[j];
    return s;
}

float pk_dot_generic(const gq_packed_linear *P, int r, const float *x, const float *xs)
{
    (void)xs;
    float scratch[P->cols_pad];
    return pk_dot_ref(P, r, x, scratch);
}

/* xp (cols_pad) = x in the order of the codes (P->in_perm), zero-padded; xs (cols_pad/32,
 * optional) = sums of its 32-runs. */
static void pad_activations(const gq_packed_linear *P, const float *x, float *xp, float *xs)
{
    if (P->in_perm)
        for (int j = 0; j < P->cols; j++)
            xp[j] = x[P->in_perm[j]];
    else
        memcpy(xp, x, (size_t)P->cols * sizeof(float));
    memset(xp + P->cols, 0, (size_t)(P->cols_pad - P->cols) * sizeof(float));
    for (int b = 0; xs && b < P->cols_pad / 32; b++) {
        float s = 0.0f;
        for (int k = 0; k < 32; k++)
            s += xp[32 * b + k];
        xs[b] = s;
    }
}

/* ys[i] (rows of Ps[i]) = Ps[i] · x for `count` (<= 3) linears of one format and width: x is
 * padded (and, on int8 activations, quantized) once, and one parallel loop runs the passes of
 * all of them (one fork/join). A pass is one set of rows on int8 activations (else one row),
 * fixed by row index, so the results do not depend on the thread count. */
static void matvec_shared(const gq_packed_linear *const *Ps, float *const *ys, int count,
                          const float *x)
{
    const gq_packed_linear *P0 = Ps[0];
    const int nb = P0->cols_pad / 32;
    float xp[P0->cols_pad], xs[nb], xd[nb], xl[8 * nb], dk[nb / 8 + 1];
    int8_t xq[P0->cols_pad];
    int16_t bsk[nb];
    const bool q8 = P0->act_q8 && P0->type->dot_q8, act_k = q8 && P0->type->act_k;
    pad_activations(P0, x, xp, q8 ? NULL : xs);
    if (act_k)
        pk_prepare_act_k(xp, P0->cols_pad, xq, dk, bsk);
    else if (q8)
        pk_prepare_act(xp, P0->cols_pad, xq, xd, xs, xl);
    const pk_act act = {xq, xd, xs, xl, dk, bsk};
    int per[3], first[3], total = 0;
    long work = 0;
    for (int i = 0; i < count; i++) {
        per[i] = q8 ? Ps[i]->type->set_rows : 1;
        first[i] = total;
        total += (Ps[i]->rows + per[i] - 1) / per[i];
        work += (long)Ps[i]->rows * Ps[i]->cols;
    }
#pragma omp parallel for schedule(static) if (work >= 32768)
    for (int g = 0; g < total; g++) {
        int i = count - 1;
        while (first[i] > g)
            i--;
        const gq_packed_linear *P = Ps[i];
        const int r = (g - first[i]) * per[i], nr = P->rows - r < per[i] ? P->rows - r : per[i];
        if (q8)
            P->type->dot_q8(P, r, nr, &act, ys[i] + r);
        else
            for (int k = r; k < r + nr; k++)
                ys[i][k] = P->type->dot_fast(P, k, xp, xs);
    }
}

static void matvec(const gq_packed_linear *P, float *y, const float *x)
{
    matvec_shared(&P, &y, 1, x);
}

/* Rows per dequantized tile: about 1 MiB of floats, at least 64 rows. */
static int tile_rows(const gq_packed_linear *P)
{
    int tr = (int)((1u << 18) / (unsigned)P->cols_pad) / 16 * 16;
    if (tr < 64)
        tr = 64;
    return tr < P->rows ? tr : P->rows;
}

/* xg (n, cols) = the rows of x (n, cols) in the order of the codes (P->in_perm). */
static void gather_rows(const gq_packed_linear *P, const float *x, int n, float *xg)
{
    for (int t = 0; t < n; t++)
        for (int j = 0; j < P->cols; j++)
            xg[(size_t)t * P->cols + j] = x[(size_t)t * P->cols + P->in_perm[j]];
}

/* y (n, rows) = x (n, cols) · W^T: tiles of rows dequantized into a per-thread buffer, each
 * multiplied by cblas_sgemm (single-threaded inside the parallel region). Returns false when
 * the tile or gathered-input buffers cannot be allocated (the caller falls back to fused
 * dots). */
static bool matmul_tiles(const gq_packed_linear *P, float *y, const float *x, int n)
{
    const int tr = tile_rows(P), ntiles = (P->rows + tr - 1) / tr;
    const int nth = omp_get_max_threads() < ntiles ? omp_get_max_threads() : ntiles;
    const size_t tile_floats = (size_t)tr * P->cols_pad;
    float *buf = malloc((size_t)nth * tile_floats * sizeof(float));
    float *xg = P->in_perm ? malloc((size_t)n * P->cols * sizeof(float)) : NULL;
    if (!buf || (P->in_perm && !xg)) {
        free(buf);
        free(xg);
        return false;
    }
    if (xg) {
        gather_rows(P, x, n, xg);
        x = xg;
    }
#pragma omp parallel num_threads(nth)
    {
        gq_blas_single_threaded(); /* also when the region runs on one thread */
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < ntiles; t++) {
            float *tile = buf + (size_t)omp_get_thread_num() * tile_floats;
            int r0 = t * tr, r1 = r0 + tr < P->rows ? r0 + tr : P->rows;
            for (int r = r0; r < r1; r++)
                P->type->dequant_fast(P, r, tile + (size_t)(r - r0) * P->cols_pad);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r1 - r0, P->cols, 1.0f, x,
                        P->cols, tile, P->cols_pad, 0.0f, y + r0, P->rows);
        }
    }
    free(buf);
    free(xg);
    return true;
}

void gq_packed_linear_apply(const gq_packed_linear *P, float *y, const float *x, int n)
{
    if (n > GQ_PACKED_MATVEC_MAX_N && matmul_tiles(P, y, x, n))
        return;
    for (int i = 0; i < n; i++)
        matvec(P, y + (size_t)i * P->rows, x + (size_t)i * P->cols);
}

static void op_apply(const gq_linear_op *op, float *y, const float *x, int n)
{
    gq_packed_linear_apply((const gq_packed_linear *)op, y, x, n);
}

/* Whether the codes of A and B hold the input columns in the same order. */
static bool same_perm(const gq_packed_linear *A, const gq_packed_linear *B)
{
    if (!A->in_perm || !B->in_perm)
        return !A->in_perm && !B->in_perm;
    return memcmp(A->in_perm, B->in_perm, (size_t)A->cols * sizeof *A->in_perm) == 0;
}

/* One shared pass when the linears agree on everything the prepared input depends on. */
static void op_apply_shared(const gq_linear_op *const *ops, float *const *ys, int count,
                            const float *x)
{
    const gq_packed_linear *Ps[3];
    bool same = count <= 3;
    for (int i = 0; same && i < count; i++) {
        Ps[i] = (const gq_packed_linear *)ops[i];
        same = Ps[i]->type == Ps[0]->type && Ps[i]->cols == Ps[0]->cols &&
               Ps[i]->act_q8 == Ps[0]->act_q8 && same_perm(Ps[i], Ps[0]);
    }
    if (same)
        matvec_shared(Ps, ys, count, x);
    else
        for (int i = 0; i < count; i++)
            ops[i]->apply(ops[i], ys[i], x, 1);
}

void pk_linear_init_op(gq_packed_linear *P)
{
    P->op.apply = op_apply;
    P->op.apply_shared = op_apply_shared;
}

void gq_packed_linear_set_act_q8(gq_packed_linear *P, bool on) { P->act_q8 = on; }
bool gq_packed_linear_act_q8(const gq_packed_linear *P) { return P->act_q8 && P->type->dot_q8; }
const char *gq_packed_linear_act(const gq_packed_linear *P)
{
    return !gq_packed_linear_act_q8(P) ? "fp32" : P->type->act_k ? "q8_K" : "q8";
}

const gq_linear_op *gq_packed_linear_op(const gq_packed_linear *P) { return &P->op; }
size_t gq_packed_linear_bytes(const gq_packed_linear *P) { return P->bytes; }

void gq_packed_linear_dequantize(const gq_packed_linear *P, float *out, bool ref)
{
#pragma omp parallel if ((long)P->rows * P->cols >= 65536)
    {
        float row[P->cols_pad];
#pragma omp for schedule(static)
        for (int r = 0; r < P->rows; r++) {
            (ref ? P->type->dequant_ref : P->type->dequant_fast)(P, r, row);
            float *o = out + (size_t)r * P->cols;
            if (P->in_perm)
                for (int j = 0; j < P->cols; j++)
                    o[P->in_perm[j]] = row[j];
            else
                memcpy(o, row, (size_t)P->cols * sizeof(float));
        }
    }
}

void gq_packed_linear_matvec_ref(const gq_packed_linear *P, float *y, const float *x)
{
    float xp[P->cols_pad], xs[P->cols_pad / 32], scratch[P->cols_pad];
    pad_activations(P, x, xp, xs);
    if (P->act_q8 && P->type->dot_q8) { /* the reference sees the same quantized activations */
        const int block = P->type->act_k ? 256 : 32;
        int8_t xq[P->cols_pad];
        float xd[P->cols_pad / 32];
        int16_t bsk[P->cols_pad / 32];
        if (P->type->act_k)
            pk_prepare_act_k(xp, P->cols_pad, xq, xd, bsk);
        else
            pk_quantize_act(xp, P->cols_pad, xq, xd);
        for (int j = 0; j < P->cols_pad; j++)
            xp[j] = xd[j / block] * (float)xq[j];
    }
    for (int r = 0; r < P->rows; r++)
        y[r] = pk_dot_ref(P, r, xp, scratch);
}

void gq_packed_linear_free(gq_packed_linear *P)
{
    if (!P)
        return;
    free(P->codes);
    free(P->scales);
    free(P->zeros);
    free(P->fmt_params);
    free(P->in_perm);
    free(P);
}
