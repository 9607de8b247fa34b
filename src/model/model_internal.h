#ifndef GQ_MODEL_INTERNAL_H
#define GQ_MODEL_INTERNAL_H
/* Helpers shared by the model's own files (not part of the public contract). */
#include "model/gq_model.h"

/* Allocates one zeroed heap block for all tensors of configuration c and points every tensor
 * of m into it (wcls aliases tok_embeddings when c->shared_classifier). m is overwritten. */
int gq_model_heap_alloc(gq_model *m, const gq_config *c, gq_error *err);

/* Points the tensors of block l (norms, linears, extras, in that order: gq_layer_floats(c)
 * floats) into p; returns the end. */
float *gq_layer_point(const gq_config *c, gq_layer *L, int l, float *p);

/* gq_model_check_finite's parts: the embeddings, final norm and classifier; block l. */
int gq_model_check_outer_finite(const gq_model *m, const char *what, gq_error *err);
int gq_layer_check_finite(const gq_model *m, int l, const char *what, gq_error *err);

/* Closes and frees a streamed model's block source (gq_model_free). */
void gq_model_close_source(gq_model *m);

/* Floats of the legacy freq_cis tables (real and imaginary, each seq_len * head_size / 2). */
static inline size_t gq_freq_cis_floats(const gq_config *c)
{
    return (size_t)c->seq_len * (size_t)gq_head_size(c);
}

#endif
