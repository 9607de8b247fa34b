#ifndef GQ_HF_H
#define GQ_HF_H
/* Hugging Face model directories: config.json plus model.safetensors or the shards named by
 * model.safetensors.index.json.
 *
 * Families (config.json "architectures"): LlamaForCausalLM, MistralForCausalLM,
 * Qwen2ForCausalLM, Qwen3ForCausalLM; anything else is refused naming the architecture.
 * Tensor names are transformers' (model.embed_tokens.weight, model.layers.L.self_attn.q_proj
 * .weight, ..., model.norm.weight, lm_head.weight). q and k rows (and their biases and q/k
 * norm weights) are permuted from transformers' rotate-half RoPE layout to llama2.c's
 * interleaved pairs at load, and back at export: exact, so logits are unchanged. */
#include <stdbool.h>
#include <stddef.h>

#include "core/gq_error.h"
#include "model/gq_model.h"
#include "model/gq_safetensors.h"

/* The directory holds config.json (what gq_model_load uses to pick this loader). */
bool gq_hf_is_dir(const char *path);

/* Parses config.json text (n bytes) of file `path` into c (family and architecture fields
 * included) and checks it; messages name the file and the field. */
int gq_hf_config_parse(const char *path, const char *text, size_t n, gq_config *c,
                       gq_error *err);

/* Loads a model directory: every header is checked first (gq_safetensors.h), then every
 * tensor the configuration implies must exist with its shape (missing or unexpected tensors,
 * a shard the index names but that is absent, are errors naming file and tensor); weights are
 * widened to fp32 into one heap block. */
int gq_model_load_hf(const char *dir, gq_model *m, gq_error *err);

/* The same, streamed (model/gq_stream.h): headers, shapes and names are checked and the
 * embeddings, final norm and classifier converted now; blocks when acquired. */
int gq_model_load_hf_streamed(const char *dir, gq_model *m, gq_error *err);

/* Writes m as an HF directory `dir` (created if absent): model.safetensors in dtype,
 * config.json (with "quantization_config" = quant_config when non-NULL, a JSON object text).
 * Each file is written atomically. Models with explicit input transforms are refused. */
int gq_model_save_hf(const gq_model *m, const char *dir, gq_st_dtype dtype,
                     const char *quant_config, gq_error *err);

/* Provenance of a model path: for an HF directory, sha256 of config.json and one sha256 over
 * the weight files in index order (sorted shard names); for a file, "" and its sha256. */
int gq_model_hashes(const char *path, char config_sha[65], char weights_sha[65],
                    gq_error *err);

#endif
