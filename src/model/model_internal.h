#ifndef GQ_MODEL_INTERNAL_H
#define GQ_MODEL_INTERNAL_H
/* Helpers shared by the model's own files (not part of the public contract). */
#include "model/gq_model.h"

/* Allocates one zeroed heap block for all tensors of configuration c and points every tensor
 * of m into it (wcls aliases tok_embeddings when c->shared_classifier). m is overwritten. */
int gq_model_heap_alloc(gq_model *m, const gq_config *c, gq_error *err);

/* Floats of the legacy freq_cis tables (real and imaginary, each seq_len * head_size / 2). */
static inline size_t gq_freq_cis_floats(const gq_config *c)
{
    return (size_t)c->seq_len * (size_t)gq_head_size(c);
}

#endif
