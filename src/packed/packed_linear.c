/* Packed linears: products (fused dots for decode, dequantized tiles + sgemm for prefill),
 * dequantization and the linear-operator glue. Building them is packed_build.c. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

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

/* xp (cols_pad) = x zero-padded; xs (cols_pad/32) = sums of its 32-runs. */
static void pad_activations(const gq_packed_linear *P, const float *x, float *xp, float *xs)
{
    memcpy(xp, x, (size_t)P->cols * sizeof(float));
    memset(xp + P->cols, 0, (size_t)(P->cols_pad - P->cols) * sizeof(float));
    for (int b = 0; b < P->cols_pad / 32; b++) {
        float s = 0.0f;
        for (int k = 0; k < 32; k++)
            s += xp[32 * b + k];
        xs[b] = s;
    }
}

void pk_quantize_act(const float *x, int n, int8_t *xq, float *xd)
{
    for (int b = 0; b < n / 32; b++) {
        const float *xb = x + 32 * b;
        float amax = 0.0f;
        for (int k = 0; k < 32; k++)
            amax = fmaxf(amax, fabsf(xb[k]));
        float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        xd[b] = d;
        for (int k = 0; k < 32; k++)
            xq[32 * b + k] = (int8_t)rintf(xb[k] * id);
    }
}

/* y (rows) = W · x: one fused dot per row, rows in parallel; on int8 activations when the
 * linear asks for it and its format has that kernel, q8_rows rows per pass (the groups of rows
 * are fixed by row index, so the result does not depend on the thread count). */
static void matvec(const gq_packed_linear *P, float *y, const float *x)
{
    const int nb = P->cols_pad / 32;
    float xp[P->cols_pad], xs[nb], xd[nb], xl[8 * nb];
    int8_t xq[P->cols_pad];
    pad_activations(P, x, xp, xs);
    const bool q8 = P->act_q8 && P->type->dot_q8;
    if (q8) { /* block and lane sums of the quantized activations, so offsets see the same x */
        pk_quantize_act(xp, P->cols_pad, xq, xd);
        for (int b = 0; b < nb; b++) {
            int sum = 0;
            for (int i = 0; i < 8; i++) {
                const int8_t *q4 = xq + 32 * b + 4 * i;
                int lane = q4[0] + q4[1] + q4[2] + q4[3];
                xl[8 * b + i] = (float)lane;
                sum += lane;
            }
            xs[b] = xd[b] * (float)sum;
        }
    }
    const pk_act act = {xq, xd, xs, xl};
    const int per = q8 && (size_t)P->type->q8_rows * P->row_bytes <= PK_PASS_BYTES
                        ? P->type->q8_rows : 1;
    const int rows = P->rows, groups = (rows + per - 1) / per;
#pragma omp parallel for schedule(static) if ((long)rows * P->cols >= 32768)
    for (int g = 0; g < groups; g++) {
        const int r = g * per, nr = rows - r < per ? rows - r : per;
        if (q8)
            P->type->dot_q8(P, r, nr, &act, y + r);
        else
            for (int i = r; i < r + nr; i++)
                y[i] = P->type->dot_fast(P, i, xp, xs);
    }
}

/* Rows per dequantized tile: about 1 MiB of floats, at least 64 rows. */
static int tile_rows(const gq_packed_linear *P)
{
    int tr = (int)((1u << 18) / (unsigned)P->cols_pad) / 16 * 16;
    if (tr < 64)
        tr = 64;
    return tr < P->rows ? tr : P->rows;
}

/* y (n, rows) = x (n, cols) · W^T: tiles of rows dequantized into a per-thread buffer, each
 * multiplied by cblas_sgemm (single-threaded inside the parallel region). Returns false when
 * the tile buffers cannot be allocated (the caller falls back to fused dots). */
static bool matmul_tiles(const gq_packed_linear *P, float *y, const float *x, int n)
{
    const int tr = tile_rows(P), ntiles = (P->rows + tr - 1) / tr;
    const int nth = omp_get_max_threads() < ntiles ? omp_get_max_threads() : ntiles;
    const size_t tile_floats = (size_t)tr * P->cols_pad;
    float *buf = malloc((size_t)nth * tile_floats * sizeof(float));
    if (!buf)
        return false;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth)
    for (int t = 0; t < ntiles; t++) {
        float *tile = buf + (size_t)omp_get_thread_num() * tile_floats;
        int r0 = t * tr, r1 = r0 + tr < P->rows ? r0 + tr : P->rows;
        for (int r = r0; r < r1; r++)
            P->type->dequant_fast(P, r, tile + (size_t)(r - r0) * P->cols_pad);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r1 - r0, P->cols, 1.0f, x,
                    P->cols, tile, P->cols_pad, 0.0f, y + r0, P->rows);
    }
    free(buf);
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

void pk_linear_init_op(gq_packed_linear *P) { P->op.apply = op_apply; }

void gq_packed_linear_set_act_q8(gq_packed_linear *P, bool on) { P->act_q8 = on; }
bool gq_packed_linear_act_q8(const gq_packed_linear *P) { return P->act_q8 && P->type->dot_q8; }

const gq_linear_op *gq_packed_linear_op(const gq_packed_linear *P) { return &P->op; }
size_t gq_packed_linear_bytes(const gq_packed_linear *P) { return P->bytes; }
const char *gq_packed_linear_label(const gq_packed_linear *P) { return P->label; }

void gq_packed_linear_dequantize(const gq_packed_linear *P, float *out, bool ref)
{
#pragma omp parallel if ((long)P->rows * P->cols >= 65536)
    {
        float row[P->cols_pad];
#pragma omp for schedule(static)
        for (int r = 0; r < P->rows; r++) {
            (ref ? P->type->dequant_ref : P->type->dequant_fast)(P, r, row);
            memcpy(out + (size_t)r * P->cols, row, (size_t)P->cols * sizeof(float));
        }
    }
}

void gq_packed_linear_matvec_ref(const gq_packed_linear *P, float *y, const float *x)
{
    float xp[P->cols_pad], xs[P->cols_pad / 32], scratch[P->cols_pad];
    pad_activations(P, x, xp, xs);
    if (P->act_q8 && P->type->dot_q8) { /* the reference sees the same quantized activations */
        int8_t xq[P->cols_pad];
        float xd[P->cols_pad / 32];
        pk_quantize_act(xp, P->cols_pad, xq, xd);
        for (int j = 0; j < P->cols_pad; j++)
            xp[j] = xd[j / 32] * (float)xq[j];
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
    free(P);
}
