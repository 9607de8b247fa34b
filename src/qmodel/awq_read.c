/* One AWQ linear (AutoAWQ's GEMM layout) unpacked: qweight (in, out/8) int32 with 8 4-bit codes
 * of consecutive outputs per word, qzeros (groups, out/8) likewise, scales (groups, out) fp16;
 * w = (q - z) * scale. Within a word, nibble i (bits 4i..4i+3) holds logical output
 * AWQ_ORDER[i] of its 8: the outputs are interleaved 0, 2, 4, 6, 1, 3, 5, 7. */
#include <string.h>

#include "qmodel/ckpt_internal.h"

/* The nibble that holds logical output j of a word: the inverse of the order 0,2,4,6,1,3,5,7
 * (nibble i holds output order[i]). */
static const int AWQ_NIBBLE[8] = {0, 4, 1, 5, 2, 6, 3, 7};

/* The code of logical output c (of 8 per word) in row `row` of a (n, rows/8) tensor. */
static uint32_t awq_get(const gq_st_tensor *t, int row, int rows, int c)
{
    uint32_t w;
    memcpy(&w, (const int32_t *)t->data + (size_t)row * (rows / 8) + c / 8, 4);
    return (w >> (4 * AWQ_NIBBLE[c % 8])) & 0xFu;
}

int ckpt_awq_unpack(const gq_hf_files *f, const gq_hf_linear_site *s, const ckpt_spec *spec,
                    ckpt_linear *l, gq_error *err)
{
    const int rows = s->rows, cols = s->cols;
    if (rows % 8)
        return gq_fail(err, "%s: %d outputs are not whole int32 words of 8 4-bit codes",
                       s->prefix, rows);
    if (ckpt_linear_alloc(l, rows, cols, spec->group_size, err))
        return -1;
    const gq_st_tensor *qw = ckpt_tensor(f, s->prefix, "qweight", GQ_ST_I32, cols, rows / 8,
                                         err);
    const gq_st_tensor *qz = qw ? ckpt_tensor(f, s->prefix, "qzeros", GQ_ST_I32, l->groups,
                                              rows / 8, err) : NULL;
    const gq_st_tensor *sc = qz ? ckpt_tensor(f, s->prefix, "scales", GQ_ST_F16, l->groups,
                                              rows, err) : NULL;
    if (!sc)
        return -1;
    for (int c = 0; c < rows; c++) {
        for (int i = 0; i < cols; i++)
            l->codes[(size_t)c * cols + i] = (uint8_t)awq_get(qw, i, rows, c);
        for (int g = 0; g < l->groups; g++) {
            l->zeros[(size_t)c * l->groups + g] = (int32_t)awq_get(qz, g, rows, c);
            memcpy(&l->scales[(size_t)c * l->groups + g],
                   (const uint16_t *)sc->data + (size_t)g * rows + c, 2);
        }
    }
    return 0;
}
