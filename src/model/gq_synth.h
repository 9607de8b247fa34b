#ifndef GQ_SYNTH_H
#define GQ_SYNTH_H
/* Synthetic Llama checkpoints of real shapes, for tests and benchmarks.
 *
 * Weights look like trained LLM weights where it matters to quantizers: every linear is
 * Student-t (nu = 4, heavy-tailed) scaled to 1/sqrt(fan_in), with a few outlier input
 * channels (whole columns scaled 4..8x); norm weights are near 1 except a few residual
 * channels at ~4 (giving activation outliers, the same channels in every layer);
 * embeddings are Student-t scaled to 1/sqrt(dim). Deterministic for (preset, seed) on any
 * machine and thread count: each row is drawn from its own seeded stream. */
#include <stdint.h>

#include "model/gq_model.h"
#include "model/gq_safetensors.h"

/* Configuration of a named preset: tiny, stories15M, stories110M, llama2-7b-2layers,
 * llama2-7b (32 layers: 27 GB in fp32, for streamed writing with gq_synth_write_hf). */
int gq_synth_preset(const char *name, gq_config *c, gq_error *err);
/* Comma-separated preset names for help texts. */
const char *gq_synth_preset_names(void);
/* Generates a model of configuration c into one heap block. */
int gq_model_synth_config(const gq_config *c, uint64_t seed, gq_model *m, gq_error *err);
/* The same values piece by piece: the embeddings, final norm and classifier of m (allocated
 * by the caller, blocks untouched), and block l into L's storage; -1 when out of memory. */
int gq_synth_outer(const gq_config *c, uint64_t seed, gq_model *m);
int gq_synth_layer(const gq_config *c, uint64_t seed, int l, gq_layer *L);
/* Writes the synthetic model as an HF directory (model/gq_hf_stream.h) block by block: one
 * block and the embeddings/classifier in memory at a time, progress on stderr. */
int gq_synth_write_hf(const gq_config *c, uint64_t seed, const char *dir, gq_st_dtype dtype,
                      size_t shard_bytes, gq_error *err);
/* gq_synth_preset + gq_model_synth_config. */
int gq_model_synth(const char *preset, uint64_t seed, gq_model *m, gq_error *err);

#endif
