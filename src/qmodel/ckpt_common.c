/* GPTQ / AWQ linears as the int format's storage (ckpt_internal.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/grid.h"
#include "qmodel/ckpt_internal.h"
#include "qmodel/gq_qmodel.h"

int ckpt_linear_alloc(ckpt_linear *l, int rows, int cols, int group_size, gq_error *err)
{
    memset(l, 0, sizeof *l);
    l->rows = rows;
    l->cols = cols;
    l->group_cols = group_size > 0 && group_size < cols ? group_size : cols;
    l->groups = (cols + l->group_cols - 1) / l->group_cols;
    l->codes = malloc((size_t)rows * cols);
    l->scales = malloc((size_t)rows * l->groups * sizeof *l->scales);
    l->zeros = malloc((size_t)rows * l->groups * sizeof *l->zeros);
    if (!l->codes || !l->scales || !l->zeros) {
        ckpt_linear_free(l);
        return gq_fail(err, "out of memory for a (%d, %d) linear", rows, cols);
    }
    return 0;
}

void ckpt_linear_free(ckpt_linear *l)
{
    free(l->codes);
    free(l->scales);
    free(l->zeros);
    free(l->perm);
    memset(l, 0, sizeof *l);
}

uint32_t ckpt_stream_get(const gq_st_tensor *t, size_t first, size_t stride, size_t pos, int b)
{
    size_t wi = pos / 32;
    int sh = (int)(pos % 32);
    uint32_t lo, hi = 0;
    memcpy(&lo, (const uint8_t *)t->data + (first + wi * stride) * 4, 4);
    uint64_t v = lo >> sh;
    if (sh + b > 32) {
        memcpy(&hi, (const uint8_t *)t->data + (first + (wi + 1) * stride) * 4, 4);
        v |= (uint64_t)hi << (32 - sh);
    }
    return (uint32_t)(v & ((1u << b) - 1u));
}

const gq_st_tensor *ckpt_tensor(const gq_hf_files *f, const char *prefix, const char *part,
                                gq_st_dtype dtype, int64_t d0, int64_t d1, gq_error *err)
{
    char name[160];
    const char *file = "";
    snprintf(name, sizeof name, "%s.%s", prefix, part);
    const gq_st_tensor *t = gq_hf_files_get(f, name, &file);
    if (!t) {
        gq_fail(err, "%s: missing tensor %s", file, name);
        return NULL;
    }
    bool ok = t->dtype == dtype && t->ndim == (d1 ? 2 : 1) && t->shape[0] == d0 &&
              (!d1 || t->shape[1] == d1);
    if (!ok) {
        gq_fail(err, "%s: tensor %s is %s [%lld%s%lld], expected %s [%lld%s%lld]", file, name,
                gq_st_dtype_name(t->dtype), (long long)t->shape[0], t->ndim > 1 ? ", " : "",
                t->ndim > 1 ? (long long)t->shape[1] : 0LL, gq_st_dtype_name(dtype),
                (long long)d0, d1 ? ", " : "", d1 ? (long long)d1 : 0LL);
        return NULL;
    }
    return t;
}

/* sym_gptq holds the linear when the config says sym and every zero point is 2^(b-1); else
 * asym, whose zero points must fit b bits. */
static int zero_mode(const ckpt_linear *l, const ckpt_spec *s, const char *what, bool *sym,
                     gq_error *err)
{
    const size_t n = (size_t)l->rows * l->groups;
    const int32_t maxq = (1 << s->bits) - 1;
    *sym = s->sym;
    for (size_t i = 0; i < n; i++) {
        *sym = *sym && l->zeros[i] == 1 << (s->bits - 1);
        if (l->zeros[i] < 0 || l->zeros[i] > maxq)
            return gq_fail(err, "%s: zero point %d (output %zu, group %zu) is outside 0..%d%s",
                           what, (int)l->zeros[i], i / l->groups, i % l->groups, maxq,
                           !s->awq && !s->v2 ? " (v1 stores zero - 1, so a stored "
                                               "2^bits - 1 means 2^bits)" : "");
    }
    return 0;
}

static int int_quantizer(const ckpt_linear *l, const ckpt_spec *s, bool sym, const char *what,
                         gq_quantizer *q, gq_error *err)
{
    bool grouped = l->group_cols < l->cols;
    json_t *p = json_pack("{s:i,s:s,s:i,s:s,s:s}", "bits", s->bits, "granularity",
                          grouped ? "group" : "channel", "group_size",
                          grouped ? l->group_cols : 128, "zero", sym ? "sym_gptq" : "asym",
                          "scale_dtype", "fp16");
    int rc = p ? gq_quantizer_init(q, "int", p, what, err) : gq_fail(err, "out of memory");
    json_decref(p);
    return rc;
}

/* Meta records (fp16 scale [+ zero]) then codes, rows in the model's order. */
static void write_storage(const ckpt_linear *l, int bits, bool sym, int head_size,
                          uint8_t *st)
{
    const int meta_bits = 16 + (sym ? 0 : bits), ng = l->groups;
    const size_t code_pos = ((size_t)l->rows * ng * meta_bits + 7) / 8 * 8;
    for (int c = 0; c < l->rows; c++) {
        const size_t r = (size_t)gq_hf_model_row(c, head_size);
        for (int g = 0; g < ng; g++) {
            size_t pos = (r * ng + (size_t)g) * (size_t)meta_bits;
            grid_put_bits(st, pos, l->scales[(size_t)c * ng + g], 16);
            if (!sym)
                grid_put_bits(st, pos + 16, (uint32_t)l->zeros[(size_t)c * ng + g], bits);
        }
        for (int i = 0; i < l->cols; i++)
            grid_put_bits(st, code_pos + (r * l->cols + (size_t)i) * bits,
                          l->codes[(size_t)c * l->cols + i], bits);
    }
}

int ckpt_to_int(const ckpt_linear *l, const ckpt_spec *s, int head_size, const char *what,
                gq_quantizer *q, uint8_t **storage, float *w, gq_error *err)
{
    bool sym;
    *storage = NULL;
    if (zero_mode(l, s, what, &sym, err) || int_quantizer(l, s, sym, what, q, err))
        return -1;
    size_t bytes = gq_quantizer_bytes(q, l->rows, l->cols);
    *storage = calloc(bytes ? bytes : 1, 1);
    int rc = *storage ? 0 : gq_fail(err, "%s: out of memory", what);
    if (!rc) {
        write_storage(l, s->bits, sym, head_size, *storage);
        rc = gq_qcodes_dequantize(q, *storage, l->perm, l->rows, l->cols, w, what, err);
    }
    if (rc) {
        free(*storage);
        *storage = NULL;
        gq_quantizer_free(q);
    }
    return rc;
}
