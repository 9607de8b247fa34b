#ifndef GQ_DATASET_H
#define GQ_DATASET_H
/* Token streams for evaluation and calibration.
 *
 * A dataset is a text file tokenized once (with the tokenizer's special tokens: one BOS at the
 * very start, as the perplexity protocols require, for every tokenizer that has a BOS), with
 * its path and SHA-256 kept for provenance. Evaluation windows are
 * non-overlapping runs of ctx tokens from the start (the tail that does not fill a window is
 * dropped). Calibration windows are n windows of ctx tokens at offsets drawn by a seeded RNG. */
#include <stddef.h>
#include <stdint.h>

#include "core/gq_error.h"
#include "text/gq_tokenizer.h"

typedef struct gq_dataset {
    char path[4096]; /* up to PATH_MAX */
    char sha256[65];
    size_t text_bytes;
    int *tokens;     /* n_tokens ids, tokens[0] = BOS when the tokenizer adds one */
    size_t n_tokens;
    int bos_id;      /* the tokenizer's BOS (-1: none), which the llama.cpp protocol puts first */
} gq_dataset;

int gq_dataset_load(const char *path, const gq_tokenizer *tok, gq_dataset *ds, gq_error *err);
void gq_dataset_free(gq_dataset *ds);

/* Number of complete non-overlapping windows of ctx tokens (the tail is dropped). */
size_t gq_dataset_n_windows(const gq_dataset *ds, int ctx);

/* Calibration windows: n offsets of windows of ctx tokens, drawn uniformly with the seeded RNG
 * from [first, n_tokens - ctx], sorted, the same for every method given (dataset, first, n,
 * ctx, seed). `first` holds out a prefix: when calibration and evaluation read the same text,
 * the evaluated windows are the prefix and calibration never sees them. Returns malloc'd
 * offsets in *offsets. Fails when fewer than ctx tokens follow `first`. */
int gq_dataset_calib_offsets(const gq_dataset *ds, size_t first, int n, int ctx, uint64_t seed,
                             size_t **offsets, gq_error *err);

#endif
