/* The codes of a loaded quantized model (gq_qmodel.h): storage, dequantization with a column
 * order, packed kernels from the codes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qmodel/gq_qmodel.h"

int gq_qcodes_alloc(gq_qcodes *q, int n_layers, const char *source, gq_error *err)
{
    memset(q, 0, sizeof *q);
    snprintf(q->source, sizeof q->source, "%s", source);
    q->n_linear = n_layers * GQ_N_LINEAR;
    q->quant = calloc((size_t)q->n_linear, sizeof *q->quant);
    q->codes = calloc((size_t)q->n_linear, sizeof *q->codes);
    q->perm = calloc((size_t)q->n_linear, sizeof *q->perm);
    if (!q->quant || !q->codes || !q->perm) {
        gq_qcodes_free(q);
        return gq_fail(err, "out of memory for the codes of %d layers", n_layers);
    }
    return 0;
}

void gq_qcodes_free(gq_qcodes *q)
{
    for (int i = 0; i < q->n_linear; i++) {
        if (q->quant && q->quant[i].fmt)
            gq_quantizer_free(&q->quant[i]);
        if (q->codes)
            free(q->codes[i]);
        if (q->perm)
            free(q->perm[i]);
    }
    free(q->quant);
    free(q->codes);
    free(q->perm);
    memset(q, 0, sizeof *q);
}

/* perm is a permutation of 0..cols-1. */
static int check_perm(const int32_t *perm, int cols, const char *what, gq_error *err)
{
    unsigned char *seen = calloc((size_t)cols, 1);
    if (!seen)
        return gq_fail(err, "%s: out of memory", what);
    int rc = 0;
    for (int i = 0; i < cols && !rc; i++) {
        if (perm[i] < 0 || perm[i] >= cols || seen[perm[i]])
            rc = gq_fail(err, "%s: column order entry %d (%d) is out of range or repeated; "
                              "not a permutation of 0..%d", what, i, (int)perm[i], cols - 1);
        else
            seen[perm[i]] = 1;
    }
    free(seen);
    return rc;
}

int gq_qcodes_dequantize(const gq_quantizer *q, const uint8_t *codes, const int32_t *perm,
                         int rows, int cols, float *w, const char *what, gq_error *err)
{
    if (!perm)
        return q->fmt->dequantize(q->params, codes, rows, cols, w, err)
                   ? gq_fail_prefix(err, "%s", what)
                   : 0;
    if (check_perm(perm, cols, what, err))
        return -1;
    float *tmp = malloc((size_t)rows * cols * sizeof *tmp);
    if (!tmp)
        return gq_fail(err, "%s: out of memory", what);
    int rc = q->fmt->dequantize(q->params, codes, rows, cols, tmp, err);
    for (int r = 0; !rc && r < rows; r++)
        for (int i = 0; i < cols; i++)
            w[(size_t)r * cols + perm[i]] = tmp[(size_t)r * cols + i];
    free(tmp);
    return rc ? gq_fail_prefix(err, "%s", what) : 0;
}

const gq_quantizer *gq_qcodes_packed_quantizer(const gq_model *m, const gq_qcodes *q,
                                              char *why, size_t n)
{
    const gq_quantizer *first = NULL;
    for (int i = 0; i < q->n_linear; i++) {
        char name[96];
        int rows, cols;
        gq_linear_kind k = (gq_linear_kind)(i % GQ_N_LINEAR);
        gq_tensor_name(i / GQ_N_LINEAR, k, name, sizeof name);
        gq_linear_shape(&m->cfg, k, &rows, &cols);
        if (!q->codes[i]) {
            snprintf(why, n, "%s holds no codes (stored as floats)", name);
            return NULL;
        }
        if (first && !gq_quantizer_equal(first, &q->quant[i])) {
            snprintf(why, n, "%s's format differs from layers.0.attn.q_proj's (the packed "
                             "model takes one format)", name);
            return NULL;
        }
        first = &q->quant[i];
        if (!gq_packed_supported(first, rows, cols, why, n))
            return NULL;
    }
    return first;
}

int gq_qcodes_packed_build(const gq_model *m, const gq_qcodes *q, gq_packed_model *pm,
                           char *why, size_t why_n, gq_error *err)
{
    memset(pm, 0, sizeof *pm);
    why[0] = '\0';
    if (!q || q->n_linear != m->cfg.n_layers * GQ_N_LINEAR) {
        snprintf(why, why_n, "the model holds no quantized codes");
        return 0;
    }
    const gq_quantizer *first = gq_qcodes_packed_quantizer(m, q, why, why_n);
    if (!first)
        return 0;
    const gq_packed_codes codes = {(const uint8_t *const *)q->codes,
                                   (const int32_t *const *)q->perm};
    return gq_packed_model_build(m, first, &codes, false, NULL, pm, err);
}
