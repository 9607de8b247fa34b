#ifndef GQ_GGUF_WRITE_H
#define GQ_GGUF_WRITE_H
/* Writing a GGUF v3 container (gq_gguf.h gives the layout): key/value pairs and tensors are
 * collected, then the file is written atomically (a temporary beside the target, renamed when
 * every byte is written and synced). Tensors are placed in the order added, each aligned to
 * general.alignment (32, written explicitly). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/gq_error.h"

typedef struct gq_gguf_writer gq_gguf_writer;

gq_gguf_writer *gq_gguf_writer_new(gq_error *err);
void gq_gguf_writer_free(gq_gguf_writer *w);

/* Key/value pairs; an allocation failure is remembered and reported by _commit. */
void gq_gguf_put_str(gq_gguf_writer *w, const char *key, const char *value);
void gq_gguf_put_u32(gq_gguf_writer *w, const char *key, uint32_t value);
void gq_gguf_put_f32(gq_gguf_writer *w, const char *key, float value);
void gq_gguf_put_bool(gq_gguf_writer *w, const char *key, bool value);
/* Arrays: strings from a callback (value i of n, len bytes), float32 and int32 values. */
void gq_gguf_put_str_array(gq_gguf_writer *w, const char *key, size_t n,
                           const char *(*get)(void *ctx, size_t i, size_t *len), void *ctx);
void gq_gguf_put_f32_array(gq_gguf_writer *w, const char *key, const float *v, size_t n);
void gq_gguf_put_i32_array(gq_gguf_writer *w, const char *key, const int32_t *v, size_t n);

/* A tensor of ggml type `type` and shape ne = (cols, rows) (rows 0: 1-D of cols), whose
 * nbytes of data are borrowed until _commit (owned: freed by the writer). */
int gq_gguf_add_tensor(gq_gguf_writer *w, const char *name, int cols, int rows, uint32_t type,
                       const void *data, size_t nbytes, bool owned, gq_error *err);

/* Writes the file atomically; `path` must pass gq_check_output. */
int gq_gguf_writer_commit(gq_gguf_writer *w, const char *path, gq_error *err);

#endif
