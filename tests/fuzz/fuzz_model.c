#include "fuzz_model.h"

void fuzz_read_model(const gq_model *m)
{
    volatile float sum = 0.0f;
    const gq_config *c = &m->cfg;
    for (int i = 0; i < c->vocab_size * c->dim; i += c->dim)
        sum += m->tok_embeddings[i] + m->wcls[i];
    for (int i = 0; i < c->dim; i++)
        sum += m->rms_final[i];
    for (int l = 0; l < c->n_layers; l++) {
        const gq_layer *L = &m->layers[l];
        sum += L->rms_att[c->dim - 1] + L->rms_ffn[c->dim - 1];
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            int rows, cols;
            gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
            const float *w = L->w[k];
            sum += w[0] + w[(size_t)rows * cols - 1];
        }
    }
    (void)sum;
}
