#ifndef GQ_RNG_H
#define GQ_RNG_H
/* Deterministic pseudo-random numbers: xoshiro256** seeded through splitmix64.
 * The same seed gives the same stream on every machine and thread count. */
#include <stdint.h>

typedef struct gq_rng {
    uint64_t s[4];
} gq_rng;

void gq_rng_seed(gq_rng *r, uint64_t seed);
uint64_t gq_rng_u64(gq_rng *r);
/* Uniform double in [0, 1) with 53 random bits. */
double gq_rng_uniform(gq_rng *r);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t gq_rng_below(gq_rng *r, uint64_t n);
/* Standard normal (Box-Muller; one value per call, the pair's second value is discarded so
 * that the stream does not depend on call history). */
double gq_rng_normal(gq_rng *r);
/* Student-t with nu degrees of freedom (heavy-tailed), scaled to unit variance for nu > 2. */
double gq_rng_student_t(gq_rng *r, double nu);

#endif
