/* Building packed linears from a quantizer. The format says whether it has a packed kernel and
 * describes its codes (gq_format.packing, formats/gq_packing.h); this file lays them out for
 * the kernel: ggml blocks as quantize() wrote them (the 4-bit ones reordered into sets of rows,
 * packed_internal.h), integer codes as int8 rows with fp16 scale and zero-point arrays or int4
 * sets of rows with them inline, and the format's own rows for its row decoder (kern_rows.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_alloc.h"
#include "core/gq_fileio.h"
#include "packed/packed_internal.h"

/* The kernels of a ggml description, or NULL. */
static const pk_type *ggml_kernel(gq_pack_kernel k)
{
    switch (k) {
    case GQ_PACK_Q4_0: return &pk_q4_0;
    case GQ_PACK_Q4_1: return &pk_q4_1;
    case GQ_PACK_Q8_0: return &pk_q8_0;
    case GQ_PACK_MXFP4: return &pk_mxfp4;
    case GQ_PACK_Q4_K: return &pk_q4_K;
    case GQ_PACK_Q6_K: return &pk_q6_K;
    default: return NULL;
    }
}

/* Reorders the plain rows src into P's row-interleaved layout (sets of set_rows rows). */
static void interleave_rows(gq_packed_linear *P, const uint8_t *src)
{
    const size_t hb = P->hdr_bytes, pc = (size_t)P->type->piece;
    const int nb = (int)(P->row_bytes / P->blk_bytes);
    const int pieces = (int)((P->blk_bytes - hb) / pc);
    P->il_rows = P->rows / P->type->set_rows * P->type->set_rows;
    for (int r = 0; r < P->rows; r++)
        for (int i = 0; i < nb; i++) {
            const uint8_t *b = src + (size_t)r * P->row_bytes + (size_t)i * P->blk_bytes;
            memcpy((uint8_t *)pk_blk_hdr(P, r, i), b, hb);
            for (int n = 0; n < pieces; n++)
                memcpy((uint8_t *)pk_blk_piece(P, r, i, n), b + hb + pc * n, pc);
        }
}

bool gq_packed_supported(const gq_quantizer *q, int rows, int cols, char *why, size_t n)
{
    if (cols > PK_MAX_COLS)
        return snprintf(why, n, "rows of %d columns exceed the packed limit %d", cols,
                        PK_MAX_COLS), false;
    const gq_packing *pk = q->fmt->packing;
    if (!pk)
        return snprintf(why, n, "format %s has no packed kernel (its gq_format.packing is not "
                                "set)", q->fmt->name), false;
    return !pk->supported || pk->supported(q->params, rows, cols, why, n);
}

/* row_bytes 0: the codes are allocated by the caller (int4, whose layout depends on groups). */
static gq_packed_linear *alloc_linear(const pk_type *t, int rows, int cols, size_t row_bytes,
                                      gq_error *err)
{
    gq_packed_linear *P = calloc(1, sizeof *P);
    if (!P)
        return gq_fail(err, "packed: out of memory"), NULL;
    P->type = t;
    P->rows = rows;
    P->cols = cols;
    P->cols_pad = (cols + t->block - 1) / t->block * t->block;
    P->row_bytes = row_bytes;
    P->group = P->cols_pad;
    P->n_groups = 1;
    P->codes = row_bytes ? gq_alloc_zero((size_t)rows * row_bytes, "packed codes", err) : NULL;
    if (row_bytes && !P->codes) {
        free(P);
        return NULL;
    }
    pk_linear_init_op(P);
    return P;
}

/* ggml blocks: the storage as is, in sets of rows where the kernel interleaves them. */
static gq_packed_linear *pack_ggml(const gq_pack_codes *d, int rows, int cols, size_t st_bytes,
                                   gq_error *err)
{
    const pk_type *t = ggml_kernel(d->kernel);
    const size_t nb = (size_t)(cols + t->block - 1) / (size_t)t->block;
    if (d->row_bytes != nb * d->block_bytes || d->row_bytes * (size_t)rows != st_bytes ||
        d->header_bytes > d->block_bytes || (d->block_bytes - d->header_bytes) % t->piece)
        return gq_fail(err, "packed: %s storage of %zu bytes does not match blocks of %zu bytes",
                       t->name, st_bytes, d->block_bytes), NULL;
    gq_packed_linear *P = alloc_linear(t, rows, cols, d->row_bytes, err);
    if (!P)
        return NULL;
    P->blk_bytes = d->block_bytes;
    P->hdr_bytes = d->header_bytes;
    if (t->set_rows > 1)
        interleave_rows(P, d->storage);
    else
        memcpy(P->codes, d->storage, st_bytes);
    if (t == &pk_mxfp4) { /* the kernels skip the subnormal scale case when absent */
        P->e8m0_normal = true;
        for (size_t b = 0; b < st_bytes; b += d->block_bytes)
            P->e8m0_normal = P->e8m0_normal && d->storage[b] >= 2; /* byte 0: the exponent */
    }
    P->bytes = st_bytes;
    return P;
}

/* int4: the scales and zero points (P->scales, P->zeros, then freed) and the codes d->codes
 * into the set layout of packed_internal.h. */
static int pack_int4_sets(gq_packed_linear *P, const gq_pack_codes *d, gq_error *err)
{
    const bool asym = P->zeros != NULL;
    const int il = P->type->set_rows, rows_pad = (P->rows + il - 1) / il * il, nb = P->cols_pad / 32;
    P->hdr_bytes = (size_t)(asym ? 3 : 2) * il;
    P->row_bytes = ((size_t)P->n_groups * P->hdr_bytes + (size_t)nb * il * 16) / il;
    P->codes = gq_alloc_zero((size_t)rows_pad * P->row_bytes, "packed codes", err);
    if (!P->codes)
        return -1;
    for (int r = 0; r < P->rows; r++) {
        for (int g = 0; g < P->n_groups; g++) {
            uint8_t *h = (uint8_t *)pk_i4_group(P, r, g);
            memcpy(h + 2 * (r % il), &P->scales[(size_t)r * P->n_groups + g], 2);
            if (asym)
                h[2 * il + r % il] = P->zeros[(size_t)r * P->n_groups + g];
        }
        for (int j = 0; j < P->cols; j++) {
            uint32_t c = d->codes[(size_t)r * P->cols + j] & 0xF;
            *pk_i4_byte(P, r, j / 32, j % 16) |= (uint8_t)(c << (j % 32 < 16 ? 0 : 4));
        }
    }
    free(P->scales);
    free(P->zeros);
    P->scales = NULL;
    P->zeros = NULL;
    P->bytes = (size_t)rows_pad * P->row_bytes;
    return 0;
}

/* Integer codes: groups of d->group columns (a multiple of 32) or one group per row. */
static gq_packed_linear *pack_int(const gq_pack_codes *d, int rows, int cols, gq_error *err)
{
    if ((d->bits != 4 && d->bits != 8) || (d->group && (d->group % 32 || d->group >= cols)))
        return gq_fail(err, "packed: no int kernel for %d bits in groups of %d columns",
                       d->bits, d->group), NULL;
    const pk_type *t = d->bits == 4 ? &pk_int4 : &pk_int8;
    const int cp = (cols + t->block - 1) / t->block * t->block;
    gq_packed_linear *P = alloc_linear(t, rows, cols, d->bits == 4 ? 0 : (size_t)cp, err);
    if (!P)
        return NULL;
    P->group = d->group ? d->group : P->cols_pad;
    P->n_groups = (P->cols_pad + P->group - 1) / P->group;
    P->zconst = d->zconst;
    const size_t ng = (size_t)rows * P->n_groups;
    P->scales = malloc(ng * sizeof *P->scales);
    P->zeros = d->zeros ? malloc(ng) : NULL;
    if (!P->scales || (d->zeros && !P->zeros)) {
        gq_packed_linear_free(P);
        return gq_fail(err, "packed: out of memory for int scales"), NULL;
    }
    memcpy(P->scales, d->scales, ng * sizeof *P->scales);
    if (d->zeros)
        memcpy(P->zeros, d->zeros, ng);
    if (d->bits == 4) {
        if (pack_int4_sets(P, d, err)) {
            gq_packed_linear_free(P);
            return NULL;
        }
        return P;
    }
    for (int r = 0; r < rows; r++)
        memcpy(P->codes + (size_t)r * P->row_bytes, d->codes + (size_t)r * cols, (size_t)cols);
    P->bytes = (size_t)rows * P->row_bytes + ng * (d->zeros ? 3 : 2);
    return P;
}

/* The format's own rows, decoded by its dequant_row with a copy of its parameters. */
static gq_packed_linear *pack_rows(const gq_quantizer *q, const gq_pack_codes *d, int rows,
                                   int cols, size_t st_bytes, gq_error *err)
{
    if (!q->fmt->packing->dequant_row || d->row_bytes * (size_t)rows != st_bytes)
        return gq_fail(err, "packed: format %s describes rows of %zu bytes without a row decoder "
                            "or for another storage size", q->fmt->name, d->row_bytes), NULL;
    gq_packed_linear *P = alloc_linear(&pk_rows, rows, cols, d->row_bytes, err);
    if (!P)
        return NULL;
    P->fmt_packing = q->fmt->packing;
    P->fmt_params = malloc(q->fmt->params_size ? q->fmt->params_size : 1);
    if (!P->fmt_params) {
        gq_packed_linear_free(P);
        return gq_fail(err, "packed: out of memory"), NULL;
    }
    memcpy(P->fmt_params, q->params, q->fmt->params_size);
    memcpy(P->codes, d->storage, st_bytes);
    P->bytes = st_bytes;
    return P;
}

gq_packed_linear *gq_packed_linear_from_codes(const gq_quantizer *q, const uint8_t *codes,
                                              int rows, int cols, gq_error *err)
{
    char why[256];
    if (rows <= 0 || cols <= 0)
        return gq_fail(err, "packed: bad shape (%d, %d)", rows, cols), NULL;
    if (!gq_packed_supported(q, rows, cols, why, sizeof why))
        return gq_fail(err, "packed: %s", why), NULL;
    const size_t st_bytes = gq_quantizer_bytes(q, rows, cols);
    gq_pack_codes d;
    memset(&d, 0, sizeof d);
    if (q->fmt->packing->describe(q->params, codes, rows, cols, &d, err))
        return gq_fail_prefix(err, "packed"), NULL;
    gq_packed_linear *P = NULL;
    if (ggml_kernel(d.kernel))
        P = pack_ggml(&d, rows, cols, st_bytes, err);
    else if (d.kernel == GQ_PACK_INT && d.codes && d.scales)
        P = pack_int(&d, rows, cols, err);
    else if (d.kernel == GQ_PACK_ROWS && d.storage)
        P = pack_rows(q, &d, rows, cols, st_bytes, err);
    else
        gq_fail(err, "packed: format %s describes its codes for no known kernel (%d)",
                q->fmt->name, (int)d.kernel);
    gq_pack_codes_free(&d);
    if (P)
        gq_quantizer_label(q, P->label, sizeof P->label);
    return P;
}

int gq_packed_linear_set_in_perm(gq_packed_linear *P, const int32_t *perm, gq_error *err)
{
    uint8_t *seen = calloc((size_t)P->cols, 1);
    int32_t *copy = malloc((size_t)P->cols * sizeof *copy);
    if (!seen || !copy) {
        free(seen);
        free(copy);
        return gq_fail(err, "packed: out of memory for a column permutation");
    }
    for (int j = 0; j < P->cols; j++) {
        if (perm[j] < 0 || perm[j] >= P->cols || seen[perm[j]]++) {
            free(seen);
            free(copy);
            return gq_fail(err, "packed: entry %d (%d) of a column order of %d columns repeats "
                                "or is out of range", j, (int)perm[j], P->cols);
        }
        copy[j] = perm[j];
    }
    free(seen);
    free(P->in_perm);
    P->in_perm = copy;
    return 0;
}

int pk_unpermute_cols(float *w, int rows, int cols, const int32_t *perm, gq_error *err)
{
    float *row = malloc((size_t)cols * sizeof *row);
    if (!row)
        return gq_fail(err, "packed: out of memory for a row of %d columns", cols);
    for (int r = 0; r < rows; r++) {
        float *wr = w + (size_t)r * cols;
        memcpy(row, wr, (size_t)cols * sizeof *row);
        for (int j = 0; j < cols; j++)
            wr[perm[j]] = row[j];
    }
    free(row);
    return 0;
}

gq_packed_linear *gq_packed_linear_new(const gq_quantizer *q, const float *W, int rows, int cols,
                                       float *deq, gq_error *err)
{
    char why[256];
    if (rows <= 0 || cols <= 0)
        return gq_fail(err, "packed: bad shape (%d, %d)", rows, cols), NULL;
    if (!gq_packed_supported(q, rows, cols, why, sizeof why))
        return gq_fail(err, "packed: %s", why), NULL;
    uint8_t *st = gq_alloc_zero(gq_quantizer_bytes(q, rows, cols), "packed: quantized storage",
                                err);
    if (!st)
        return NULL;
    gq_packed_linear *P = NULL;
    if (gq_quantizer_run(q, W, rows, cols, NULL, st, deq, err) == 0)
        P = gq_packed_linear_from_codes(q, st, rows, cols, err);
    free(st);
    return P;
}
