#ifndef GQ_SAMPLE_H
#define GQ_SAMPLE_H
/* Picking the next token from logits: greedy (argmax, first maximum on ties, as llama2.c) or
 * temperature sampling with an optional nucleus (top-p) cut, from a seeded gq_rng. */
#include "core/gq_rng.h"

/* Index of the largest of n values (the first one on ties). */
int gq_sample_argmax(const float *logits, int n);

typedef struct {
    float p;
    int id;
} gq_sample_pair;

/* temperature <= 0: argmax. Otherwise softmax(logits / temperature) (logits are overwritten
 * with the probabilities); when 0 < topp < 1 only the most likely tokens whose cumulative
 * probability first exceeds topp are kept. scratch holds n pairs. */
int gq_sample(float *logits, int n, double temperature, double topp, gq_rng *rng,
              gq_sample_pair *scratch);

#endif
