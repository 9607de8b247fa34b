#ifndef GQ_HADAMARD_H
#define GQ_HADAMARD_H
/* The rotations QuaRot (arXiv:2404.00456) applies, for a width n = 2^k * o (o odd), as the
 * Kronecker product H = B (x) H_p of a block B of order m and the Walsh-Hadamard matrix of
 * order p = n / m (model/gq_rotation.h applies it):
 *   - o = 1: Sylvester, B = [1], p = n (a Hadamard matrix);
 *   - else the smallest m = o * 2^j (m <= GQ_HADAMARD_MAX_BLOCK, m | n) with a Paley block:
 *     Paley I, m = q + 1 for a prime q = 3 mod 4 (12, 20, 24, 44, 48, 60, ...), or Paley II,
 *     m = 2 (q + 1) for a prime q = 1 mod 4 (12, 28, 36, 52, 108, ...): H is a Hadamard matrix;
 *   - else, when o <= GQ_HADAMARD_MAX_BLOCK: B = sqrt(o) R with R a seeded random orthogonal
 *     o x o matrix (LAPACK QR of a Gaussian matrix, column signs making diag(R_qr) positive),
 *     m = o: H / sqrt(n) is orthogonal (so the FP function is kept exactly as well) but H is
 *     not a Hadamard matrix (entries are not +-1). 172 = 4 * 43 and 11008 = 256 * 43 take this
 *     path: no Paley block of order 172, 344 (7^3 is a prime power, not a prime) or 688 fits;
 *   - other widths (odd part > GQ_HADAMARD_MAX_BLOCK) are refused.
 * The rotation Q = D H / sqrt(n) adds random signs D (gq_hadamard_signs). */
#include <stdbool.h>
#include <stdint.h>

#include "core/gq_error.h"
#include "model/gq_rotation.h"

#define GQ_HADAMARD_MAX_BLOCK 256

typedef enum {
    GQ_HAD_SYLVESTER, /* m = 1 */
    GQ_HAD_PALEY1,    /* m = q + 1, q prime, q = 3 mod 4 */
    GQ_HAD_PALEY2,    /* m = 2 (q + 1), q prime, q = 1 mod 4 */
    GQ_HAD_RANDOM,    /* m = the odd part of n, seeded random orthogonal block */
} gq_hadamard_kind;

typedef struct {
    gq_hadamard_kind kind;
    int m, p; /* n = m * p */
    int q;    /* Paley's prime */
} gq_hadamard_plan;

/* How width n is rotated; -1 when it is not supported. */
int gq_hadamard_plan_for(int n, gq_hadamard_plan *plan);
bool gq_hadamard_supported(int n);

/* The +-1 block (m, m) row-major of a Sylvester or Paley plan, with B B^T = m I exactly;
 * -1 for GQ_HAD_RANDOM. */
int gq_hadamard_block(const gq_hadamard_plan *plan, signed char *out);

/* r = the rotation of width n (its block drawn from `seed` when random). Fails naming the
 * width when it is not supported. */
int gq_hadamard_build(gq_rotation *r, int n, uint64_t seed, gq_error *err);

/* The same for a given plan (p a power of two; a Paley plan's q a prime of its kind). */
int gq_hadamard_build_plan(gq_rotation *r, const gq_hadamard_plan *plan, uint64_t seed,
                           gq_error *err);

/* signs (n) = +1 / -1 drawn from gq_rng seeded with seed. */
void gq_hadamard_signs(float *signs, int n, uint64_t seed);

#endif
