#ifndef GQ_HF_INTERNAL_H
#define GQ_HF_INTERNAL_H
/* Shared by the HF loader and saver: the transformers name and shape of every tensor of a
 * model, and the RoPE row permutation. */
#include "core/gq_error.h"
#include "model/gq_model.h"
#include "model/gq_safetensors.h"

typedef struct hf_tensor_ref {
    char name[96];  /* "model.layers.3.self_attn.q_proj.weight" */
    float *data;    /* the model's storage */
    int rows, cols; /* (rows, cols); a vector is (n, 1) and has ndim 1 */
    int ndim;
    int head_size;  /* > 0: rows are heads of head_size rows in llama2.c RoPE order */
} hf_tensor_ref;

/* Every tensor of m in transformers' naming, in file order (embeddings, layer by layer, final
 * norm, classifier unless tied). *out is malloc'd; returns the count or -1 (out of memory). */
int hf_tensor_refs(const gq_model *m, hf_tensor_ref **out);

/* The tensors of block l appended at t[*n] (at most HF_LAYER_REFS), in file order. */
#define HF_LAYER_REFS (2 + 2 * GQ_N_LINEAR + 2)
void hf_layer_refs(const gq_model *m, int l, hf_tensor_ref *t, int *n);

/* Row index in llama2.c's interleaved layout of row r of a head in transformers' rotate-half
 * layout (head_size hs): r < hs/2 -> 2r, else 2(r - hs/2) + 1. */
static inline int hf_rope_row(int r, int hs)
{
    return r < hs / 2 ? 2 * r : 2 * (r - hs / 2) + 1;
}

/* The block linear whose weight ref r is (*layer, *kind), or false. */
bool hf_linear_of(const gq_model *m, const hf_tensor_ref *r, int *layer, int *kind);

/* hf_saver.c's config.json text (transformers' keys, "quantization_config" = quant_config
 * when non-NULL) and its conversion of row `row` of r (transformers' order) to dtype. */
char *hf_config_json(const gq_config *c, gq_st_dtype dtype, const char *quant_config,
                     gq_error *err);
void hf_tensor_row(const hf_tensor_ref *r, int row, gq_st_dtype dtype, unsigned char *buf);

#endif
