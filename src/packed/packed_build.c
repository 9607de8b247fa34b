/* Building packed linears from a quantizer: which formats have kernels, and the packing.
 * The llama.cpp formats keep the bytes quantize() writes (the 4-bit ones reordered into sets
 * of rows, packed_internal.h); the int format's grid storage (meta stream of per-group
 * records, then the code stream, see formats/grid.h and fmt_int.c) is re-laid out: int8 as
 * code rows with fp16 scale and zero-point arrays, int4 in sets of rows with them inline. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_fileio.h"
#include "formats/grid.h"
#include "packed/packed_internal.h"

typedef struct ggml_entry {
    const char *format;
    const pk_type *type;
    size_t block_bytes, header_bytes;
} ggml_entry;

static const ggml_entry ggml_types[] = {
    {"q4_0", &pk_q4_0, 18, 2},        {"q4_1", &pk_q4_1, 20, 4},
    {"q8_0", &pk_q8_0, 34, 2},        {"mxfp4_ggml", &pk_mxfp4, 17, 1},
    {"q4_K", &pk_q4_K, 144, 16},      {"q6_K", &pk_q6_K, 210, 210},
};

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

static const ggml_entry *find_ggml(const char *name)
{
    for (size_t i = 0; i < sizeof ggml_types / sizeof ggml_types[0]; i++)
        if (strcmp(ggml_types[i].format, name) == 0)
            return &ggml_types[i];
    return NULL;
}

/* The int parameters that matter to the packed layout, read from the canonical JSON. */
typedef struct int_layout {
    int bits, group_size;
    const char *granularity, *zero, *scale_dtype;
} int_layout;

static void read_int_layout(const gq_quantizer *q, json_t *j, int_layout *L)
{
    L->bits = (int)json_integer_value(json_object_get(j, "bits"));
    L->group_size = (int)json_integer_value(json_object_get(j, "group_size"));
    L->granularity = json_string_value(json_object_get(j, "granularity"));
    L->zero = json_string_value(json_object_get(j, "zero"));
    L->scale_dtype = json_string_value(json_object_get(j, "scale_dtype"));
    (void)q;
}

static bool int_supported(const int_layout *L, int cols, char *why, size_t n)
{
    if (!L->granularity || !L->zero || !L->scale_dtype)
        return snprintf(why, n, "int: unexpected parameter set"), false;
    if (L->bits != 4 && L->bits != 8)
        return snprintf(why, n, "int%d: packed kernels exist for 4 and 8 bits only", L->bits),
               false;
    if (strcmp(L->scale_dtype, "fp16") != 0)
        return snprintf(why, n, "int%d: the packed layout stores fp16 scales (scale_dtype %s)",
                        L->bits, L->scale_dtype), false;
    if (strcmp(L->granularity, "group") == 0 && L->group_size % 32 != 0 &&
        (cols <= 0 || L->group_size < cols))
        return snprintf(why, n, "int%d g%d: packed groups must be a multiple of 32 columns",
                        L->bits, L->group_size), false;
    return true;
}

bool gq_packed_supported(const gq_quantizer *q, int rows, int cols, char *why, size_t n)
{
    (void)rows;
    if (cols > PK_MAX_COLS)
        return snprintf(why, n, "rows of %d columns exceed the packed limit %d", cols,
                        PK_MAX_COLS), false;
    if (find_ggml(q->fmt->name))
        return true;
    if (strcmp(q->fmt->name, "int") == 0) {
        json_t *j = gq_quantizer_to_json(q);
        int_layout L;
        read_int_layout(q, j, &L);
        bool ok = int_supported(&L, cols, why, n);
        json_decref(j);
        return ok;
    }
    snprintf(why, n, "format %s has no packed kernel (packed: int4/int8 with fp16 scales, q4_0, "
                     "q4_1, q8_0, mxfp4_ggml, q4_K, q6_K)", q->fmt->name);
    return false;
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

/* int4: moves the scales and zero points (P->scales, P->zeros, then freed) and the codes (the
 * int storage st from bit code_pos) into the set layout of packed_internal.h. */
static int pack_int4_sets(gq_packed_linear *P, bool asym, const uint8_t *st, size_t code_pos,
                          gq_error *err)
{
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
            uint32_t c = grid_get_bits(st, code_pos + ((size_t)r * P->cols + j) * 4, 4);
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

/* Re-lays out the int format's storage `st` into P (codes, scales, zero points). */
static int pack_int(gq_packed_linear *P, const int_layout *L, const uint8_t *st, gq_error *err)
{
    const int rows = P->rows, cols = P->cols, bits = L->bits;
    const bool asym = strcmp(L->zero, "asym") == 0, tensor = strcmp(L->granularity, "tensor") == 0;
    const int gc = tensor ? 0 : grid_group_cols(strcmp(L->granularity, "channel") == 0
                                                    ? GRID_CHANNEL : GRID_GROUP,
                                                L->group_size, cols);
    /* storage groups per row (one record for the whole tensor when per tensor) */
    const int sg = tensor ? 1 : (cols + gc - 1) / gc;
    const int meta_bits = 16 + (asym ? bits : 0);
    const size_t n_records = tensor ? 1 : (size_t)rows * sg;
    const size_t code_pos = (n_records * meta_bits + 7) / 8 * 8;
    /* packed groups: the storage groups when they are narrower than the row, else the row */
    P->group = (!tensor && gc < cols) ? gc : P->cols_pad;
    P->n_groups = (P->cols_pad + P->group - 1) / P->group;
    P->zconst = strcmp(L->zero, "sym") == 0 ? (1 << (bits - 1)) - 1 : 1 << (bits - 1);
    P->scales = malloc((size_t)rows * P->n_groups * sizeof(uint16_t));
    P->zeros = asym ? malloc((size_t)rows * P->n_groups) : NULL;
    if (!P->scales || (asym && !P->zeros))
        return gq_fail(err, "packed: out of memory for int scales");
    for (int r = 0; r < rows; r++)
        for (int g = 0; g < P->n_groups; g++) {
            size_t rec = tensor ? 0 : (size_t)r * sg + (size_t)g;
            size_t pos = rec * (size_t)meta_bits;
            P->scales[(size_t)r * P->n_groups + g] = (uint16_t)grid_get_bits(st, pos, 16);
            if (asym)
                P->zeros[(size_t)r * P->n_groups + g] = (uint8_t)grid_get_bits(st, pos + 16, bits);
        }
    if (bits == 4)
        return pack_int4_sets(P, asym, st, code_pos, err);
    for (int r = 0; r < rows; r++) {
        uint8_t *dst = P->codes + (size_t)r * P->row_bytes;
        for (int j = 0; j < cols; j++)
            dst[j] = (uint8_t)grid_get_bits(st, code_pos + ((size_t)r * cols + j) * 8, 8);
    }
    P->bytes = (size_t)rows * P->row_bytes + (size_t)rows * P->n_groups * (asym ? 3 : 2);
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
    size_t st_bytes = gq_quantizer_bytes(q, rows, cols);
    uint8_t *st = gq_alloc_zero(st_bytes, "packed: quantized storage", err);
    if (!st)
        return NULL;
    gq_packed_linear *P = NULL;
    if (gq_quantizer_run(q, W, rows, cols, NULL, st, deq, err) != 0)
        goto done;
    const ggml_entry *ge = find_ggml(q->fmt->name);
    if (ge) {
        int nb = (cols + ge->type->block - 1) / ge->type->block;
        size_t rb = (size_t)nb * ge->block_bytes;
        if (rb * (size_t)rows != st_bytes) {
            gq_fail(err, "packed: %s storage is %zu bytes, expected %zu", ge->format, st_bytes,
                    rb * (size_t)rows);
            goto done;
        }
        if (!(P = alloc_linear(ge->type, rows, cols, rb, err)))
            goto done;
        P->blk_bytes = ge->block_bytes;
        P->hdr_bytes = ge->header_bytes;
        if (P->type->set_rows > 1)
            interleave_rows(P, st);
        else
            memcpy(P->codes, st, st_bytes);
        if (ge->type == &pk_mxfp4) { /* the kernels skip the subnormal scale case when absent */
            P->e8m0_normal = true;
            for (size_t b = 0; b < st_bytes; b += ge->block_bytes)
                P->e8m0_normal = P->e8m0_normal && st[b] >= 2; /* byte 0: the exponent */
        }
        P->bytes = st_bytes;
    } else {
        json_t *j = gq_quantizer_to_json(q);
        int_layout L;
        read_int_layout(q, j, &L);
        const pk_type *t = L.bits == 4 ? &pk_int4 : &pk_int8;
        int cp = (cols + t->block - 1) / t->block * t->block;
        P = alloc_linear(t, rows, cols, L.bits == 4 ? 0 : (size_t)cp, err);
        if (P && pack_int(P, &L, st, err) != 0) {
            gq_packed_linear_free(P);
            P = NULL;
        }
        json_decref(j);
        if (!P)
            goto done;
    }
    gq_quantizer_label(q, P->label, sizeof P->label);
done:
    free(st);
    return P;
}
