#ifndef GQ_HF_STREAM_H
#define GQ_HF_STREAM_H
/* Writing an HF model directory tensor by tensor, never holding the whole model: the shard
 * plan and every safetensors header are computed first from the configuration's shapes and
 * the dtype, then each tensor is converted (q/k rows back to rotate-half) and appended as it
 * arrives. Tensors arrive in the writer's file order: the embeddings, the final norm, the
 * classifier (unless tied), then block 0, 1, ... (each block's tensors as hf_saver orders
 * them). Shards (model-0000i-of-0000n.safetensors with model.safetensors.index.json, as
 * transformers names them) hold at most shard_bytes each (a larger tensor alone); one shard is
 * model.safetensors. Every file is written to a temporary, renamed into place by
 * gq_hf_writer_finish (config.json last); gq_hf_writer_abort removes the temporaries. */
#include <stddef.h>

#include "core/gq_error.h"
#include "model/gq_model.h"
#include "model/gq_safetensors.h"

typedef struct gq_hf_writer gq_hf_writer;

/* Creates dir if absent; quant_config as gq_model_save_hf's. Refuses nothing written yet. */
gq_hf_writer *gq_hf_writer_open(const char *dir, const gq_config *c, gq_st_dtype dtype,
                                const char *quant_config, size_t shard_bytes, gq_error *err);
/* m's tok_embeddings, rms_final and wcls (its blocks are not read). */
int gq_hf_writer_outer(gq_hf_writer *w, const gq_model *m, gq_error *err);
/* Block l (the next one): its norms, linears, biases and q/k norms. A block with explicit
 * input transforms is refused. */
int gq_hf_writer_block(gq_hf_writer *w, int l, const gq_layer *L, gq_error *err);
/* Renames every file into place after the last block; frees w (also on failure, then the
 * temporaries are removed). */
int gq_hf_writer_finish(gq_hf_writer *w, gq_error *err);
void gq_hf_writer_abort(gq_hf_writer *w);

/* transformers' default largest shard (save_pretrained max_shard_size "5GB"). */
#define GQ_HF_SHARD_BYTES ((size_t)5000000000u)

#endif
