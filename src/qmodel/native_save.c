/* A quantized model and its report as a native file (gq_qmodel_save.h). */
#include "qmodel/gq_qmodel_save.h"

#include <stdio.h>

/* The format of tensor `name`, when the report holds its codes. */
static const gq_quantizer *codes_format(const gq_quant_plan *plan, const gq_config *c,
                                        const char *name, const void *codes)
{
    return codes ? gq_plan_tensor_quantizer(plan, c, name) : NULL;
}

static int add_blocks(gq_native_writer *w, const gq_quant_plan *plan, const gq_model *m,
                      const gq_quant_report *rep, gq_error *err)
{
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const gq_quantizer *quant[GQ_N_LINEAR];
        const uint8_t *codes[GQ_N_LINEAR];
        const int32_t *perm[GQ_N_LINEAR];
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            size_t i = (size_t)l * GQ_N_LINEAR + k;
            char name[96];
            gq_tensor_name(l, (gq_linear_kind)k, name, sizeof name);
            codes[k] = rep->linear_codes && i < rep->n_linear_codes ? rep->linear_codes[i] : NULL;
            perm[k] = rep->linear_perm && i < rep->n_linear_codes ? rep->linear_perm[i] : NULL;
            quant[k] = codes_format(plan, &m->cfg, name, codes[k]);
        }
        if (gq_native_add_block(w, m, l, quant, codes, perm, err))
            return -1;
    }
    return 0;
}

int gq_native_save_quantized(const char *path, const gq_quant_plan *plan, const gq_model *m,
                             const gq_quant_report *rep, json_t *meta, gq_error *err)
{
    gq_native_writer *w = gq_native_writer_open(path, err);
    if (!w) {
        json_decref(meta);
        return -1;
    }
    const gq_config *c = &m->cfg;
    const gq_quantizer *eq = codes_format(plan, c, "tok_embeddings", rep->embd_codes);
    const gq_quantizer *cq = codes_format(plan, c, "classifier", rep->cls_codes);
    if (gq_native_add_outer(w, m, eq, rep->embd_codes, cq, rep->cls_codes, err) ||
        add_blocks(w, plan, m, rep, err)) {
        gq_native_abort(w);
        json_decref(meta);
        return -1;
    }
    return gq_native_finish(w, c, meta, err);
}
