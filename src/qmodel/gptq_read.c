/* One GPTQ linear (AutoGPTQ / GPTQModel layout, gq_gptq_export.h) unpacked: qweight (in*b/32,
 * out) codes along the input dimension, qzeros (groups, out*b/32), scales (groups, out) fp16,
 * g_idx (in) the group of each input column. */
#include <stdlib.h>
#include <string.h>

#include "qmodel/ckpt_internal.h"

/* The storage column order g_idx implies: columns sorted by group (stable), each group
 * exactly its group_cols columns; NULL perm when g_idx is in order. */
static int perm_of(const gq_st_tensor *g_idx, ckpt_linear *l, const char *what, gq_error *err)
{
    int32_t *g = malloc((size_t)l->cols * sizeof *g);
    int *fill = calloc((size_t)l->groups + 1, sizeof *fill);
    int rc = !g || !fill ? gq_fail(err, "%s: out of memory", what) : 0;
    bool in_order = true;
    for (int j = 0; !rc && j < l->cols; j++) {
        memcpy(&g[j], (const int32_t *)g_idx->data + j, sizeof g[j]);
        if (g[j] < 0 || g[j] >= l->groups)
            rc = gq_fail(err, "%s.g_idx: entry %d is %d, outside 0..%d", what, j, (int)g[j],
                         l->groups - 1);
        else
            fill[g[j] + 1]++, in_order = in_order && g[j] == j / l->group_cols;
    }
    for (int k = 0; !rc && k < l->groups; k++) {
        int want = k < l->groups - 1 ? l->group_cols : l->cols - k * l->group_cols;
        if (fill[k + 1] != want)
            rc = gq_fail(err, "%s.g_idx: group %d has %d columns, not %d (only g_idx that give "
                              "every group group_size columns can be held)", what, k,
                         fill[k + 1], want);
        fill[k + 1] += fill[k];
    }
    if (!rc && !in_order && !(l->perm = malloc((size_t)l->cols * sizeof *l->perm)))
        rc = gq_fail(err, "%s: out of memory", what);
    for (int j = 0; !rc && l->perm && j < l->cols; j++)
        l->perm[fill[g[j]]++] = j;
    free(g);
    free(fill);
    return rc;
}

int ckpt_gptq_unpack(const gq_hf_files *f, const gq_hf_linear_site *s, const ckpt_spec *spec,
                     ckpt_linear *l, gq_error *err)
{
    const int b = spec->bits, rows = s->rows, cols = s->cols;
    if ((long)cols * b % 32 || (long)rows * b % 32)
        return gq_fail(err, "%s: (%d, %d) is not whole int32 words of %d-bit codes", s->prefix,
                       rows, cols, b);
    if (ckpt_linear_alloc(l, rows, cols, spec->group_size, err))
        return -1;
    const gq_st_tensor *qw = ckpt_tensor(f, s->prefix, "qweight", GQ_ST_I32, cols * b / 32,
                                         rows, err);
    const gq_st_tensor *qz = qw ? ckpt_tensor(f, s->prefix, "qzeros", GQ_ST_I32, l->groups,
                                              rows * b / 32, err) : NULL;
    const gq_st_tensor *sc = qz ? ckpt_tensor(f, s->prefix, "scales", GQ_ST_F16, l->groups,
                                              rows, err) : NULL;
    const gq_st_tensor *gi = sc ? ckpt_tensor(f, s->prefix, "g_idx", GQ_ST_I32, cols, 0, err)
                                : NULL;
    if (!gi || perm_of(gi, l, s->prefix, err))
        return -1;
    for (int c = 0; c < rows; c++) {
        for (int i = 0; i < cols; i++) {
            int j = l->perm ? l->perm[i] : i;
            l->codes[(size_t)c * cols + i] =
                (uint8_t)ckpt_stream_get(qw, (size_t)c, (size_t)rows, (size_t)j * b, b);
        }
        for (int g = 0; g < l->groups; g++) {
            uint32_t z = ckpt_stream_get(qz, (size_t)g * (rows * b / 32), 1, (size_t)c * b, b);
            l->zeros[(size_t)c * l->groups + g] = (int32_t)z + (spec->v2 ? 0 : 1);
            memcpy(&l->scales[(size_t)c * l->groups + g],
                   (const uint16_t *)sc->data + (size_t)g * rows + c, 2);
        }
    }
    return 0;
}
