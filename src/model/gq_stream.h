#ifndef GQ_STREAM_H
#define GQ_STREAM_H
/* Streamed models: the weight files stay mapped in their stored dtype and a block is in fp32
 * only between gq_block_acquire and gq_block_release.
 *
 * A streamed model holds the embeddings, the final norm and the classifier in fp32 (they are
 * used at every forward pass); block l's tensors are valid only while acquired:
 *   - llama2.c checkpoints (fp32 on disk): the tensors always point into the mapping (acquire
 *     is free); release drops the block's pages from the resident set (madvise
 *     MADV_DONTNEED: touched file-backed pages count in RSS; a later read faults them back
 *     in from the page cache, unchanged).
 *   - Hugging Face directories (F32, F16, BF16): acquire allocates the block's gq_layer_floats
 *     and converts its tensors from the mapped shards (q/k rows permuted, values checked for
 *     NaN/inf), release frees them and drops the mapped ranges from the resident set.
 * The values are those of gq_model_load, so every result computed block by block equals the
 * in-memory model's bit for bit. Acquire and release are no-ops on a resident model. */
#include <stdbool.h>
#include <stddef.h>

#include "model/gq_model.h"

/* A model's block source (set by the streamed loaders; owned by the model). */
typedef struct gq_block_source gq_block_source;
struct gq_block_source {
    /* Fills block l's tensors (pointed into a buffer of gq_layer_floats) from the files, or
     * NULL when the tensors always point into an fp32 mapping. */
    int (*fill)(void *ctx, gq_model *m, int l, gq_error *err);
    /* Drops block l's stored bytes from the resident set (NULL: nothing to drop). */
    void (*drop)(void *ctx, const gq_model *m, int l);
    /* NULL, or the undo of a fill that manages block l's storage itself: fill then sets the
     * pointers of the tensors it makes fp32 (the others stay valid all along: a coded model's
     * norms, runner/gq_coded_model.h), unfill frees that storage and clears them; no buffer
     * of gq_layer_floats is allocated and no finiteness check runs. */
    void (*unfill)(void *ctx, gq_model *m, int l);
    void (*close)(void *ctx);
    void *ctx;
    float **buf; /* n_layers slots: the acquired blocks' fp32 storage (fill != NULL) */
};

/* When to stream (--stream): always, never, or when the fp32 weights exceed
 * GQ_STREAM_AUTO_BYTES. */
typedef enum { GQ_STREAM_AUTO = 0, GQ_STREAM_ON, GQ_STREAM_OFF } gq_stream_mode;
#define GQ_STREAM_AUTO_BYTES ((size_t)2 << 30)
/* "auto", "on", "off" (command-line names). */
gq_stream_mode gq_stream_mode_parse(const char *s);

bool gq_model_streamed(const gq_model *m);
/* Whether every block's tensors are valid without acquiring it: an in-memory model, or a
 * streamed llama2.c checkpoint (its blocks point into the fp32 mapping). */
bool gq_model_blocks_resident(const gq_model *m);
/* Bytes of the model's weights in fp32 (gq_model_param_count x 4). */
size_t gq_model_fp32_bytes(const gq_config *c);

/* Loads a llama2.c checkpoint or an HF directory streamed (errors as gq_model_load's; an HF
 * tensor's NaN or infinity is reported when its block is first acquired). */
int gq_model_load_streamed(const char *path, gq_model *m, gq_error *err);
/* gq_model_load_streamed under `mode` (GQ_STREAM_OFF: gq_model_load). */
int gq_model_load_mode(const char *path, gq_stream_mode mode, gq_model *m, gq_error *err);

/* Makes block l's tensors valid fp32 (the model is const to its users: only the layer's
 * pointers change). Blocks are acquired one at a time by each user. */
int gq_block_acquire(const gq_model *m, int l, gq_error *err);
void gq_block_release(const gq_model *m, int l);

/* A model of configuration c with the embeddings, final norm and classifier only (zeroed, one
 * heap block); every block's pointers stay NULL (streamed models, block-by-block outputs). */
int gq_model_outer_alloc(gq_model *m, const gq_config *c, gq_error *err);

/* Drops every block not acquired from the resident set: after a user that reads a llama2.c
 * model's blocks without acquiring them (decode, throughput). */
void gq_model_drop_pages(const gq_model *m);

/* For the streamed loaders: sets the source (taken over) and its per-block buffers. */
int gq_model_set_source(gq_model *m, const gq_block_source *src, gq_error *err);
/* madvise(MADV_DONTNEED) over the whole pages inside [p, p + bytes) (or, for read-only
 * mappings, round_out: every page touching it). */
void gq_drop_pages(const void *p, size_t bytes, bool round_out);

#endif
