/* Hadamard blocks for QuaRot's rotations (gq_hadamard.h): Sylvester, Paley I and II over a
 * prime field, or a seeded random orthogonal block, chosen per width. */
#include "methods/gq_hadamard.h"

#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_rng.h"

static bool is_prime(int q)
{
    if (q < 2)
        return false;
    for (int d = 2; d * d <= q; d++)
        if (q % d == 0)
            return false;
    return true;
}

/* Whether order m has a Paley block: *kind and *q set when it has. */
static bool paley_order(int m, gq_hadamard_kind *kind, int *q)
{
    if (is_prime(m - 1) && (m - 1) % 4 == 3) {
        *kind = GQ_HAD_PALEY1, *q = m - 1;
        return true;
    }
    if (m % 2 == 0 && is_prime(m / 2 - 1) && (m / 2 - 1) % 4 == 1) {
        *kind = GQ_HAD_PALEY2, *q = m / 2 - 1;
        return true;
    }
    return false;
}

int gq_hadamard_plan_for(int n, gq_hadamard_plan *plan)
{
    if (n < 1)
        return -1;
    const int pow2 = n & -n, odd = n / pow2;
    memset(plan, 0, sizeof *plan);
    if (odd == 1) {
        *plan = (gq_hadamard_plan){GQ_HAD_SYLVESTER, 1, n, 0};
        return 0;
    }
    for (int m = 4 * odd; m <= GQ_HADAMARD_MAX_BLOCK && n % m == 0; m *= 2)
        if (paley_order(m, &plan->kind, &plan->q)) {
            plan->m = m, plan->p = n / m;
            return 0;
        }
    if (odd > GQ_HADAMARD_MAX_BLOCK)
        return -1;
    *plan = (gq_hadamard_plan){GQ_HAD_RANDOM, odd, pow2, 0};
    return 0;
}

bool gq_hadamard_supported(int n)
{
    gq_hadamard_plan p;
    return gq_hadamard_plan_for(n, &p) == 0;
}

/* Q (q, q): Jacobsthal matrix Q[i][j] = chi(j - i), chi the quadratic character mod q;
 * chi: scratch of q. */
static void jacobsthal(int q, signed char *Q, signed char *chi)
{
    memset(chi, 0, (size_t)q);
    for (int x = 1; x < q; x++)
        chi[(size_t)x * x % q] = 1;
    for (int x = 1; x < q; x++)
        chi[x] = chi[x] ? 1 : -1;
    for (int i = 0; i < q; i++)
        for (int j = 0; j < q; j++)
            Q[(size_t)i * q + j] = chi[((j - i) % q + q) % q];
}

/* C (q+1, q+1) = [[0, 1^T], [sign * 1, Q]]: skew (Paley I, sign -1) or symmetric (II, +1). */
static void paley_core(int q, int sign, const signed char *Q, signed char *C)
{
    const int m = q + 1;
    C[0] = 0;
    for (int j = 1; j < m; j++) {
        C[j] = 1;
        C[(size_t)j * m] = (signed char)sign;
    }
    for (int i = 0; i < q; i++)
        for (int j = 0; j < q; j++)
            C[(size_t)(i + 1) * m + j + 1] = Q[(size_t)i * q + j];
}

/* Paley II: each entry c of C becomes the 2 x 2 block [[1,-1],[-1,-1]] (c = 0) or
 * c [[1,1],[1,-1]]. */
static void paley2_expand(int q, const signed char *C, signed char *H)
{
    const int c = q + 1, m = 2 * c;
    for (int a = 0; a < c; a++)
        for (int b = 0; b < c; b++)
            for (int u = 0; u < 2; u++)
                for (int v = 0; v < 2; v++) {
                    const int e = C[(size_t)a * c + b];
                    const int z = u == 0 && v == 0 ? 1 : -1, s = u == 1 && v == 1 ? -1 : 1;
                    H[(size_t)(2 * a + u) * m + 2 * b + v] = (signed char)(e ? e * s : z);
                }
}

int gq_hadamard_block(const gq_hadamard_plan *plan, signed char *out)
{
    const int q = plan->q;
    if (plan->kind == GQ_HAD_SYLVESTER) {
        out[0] = 1;
        return 0;
    }
    if (plan->kind == GQ_HAD_RANDOM)
        return -1;
    signed char *Q = malloc((size_t)q * q + q), *C = malloc((size_t)(q + 1) * (q + 1));
    if (Q && C) {
        jacobsthal(q, Q, Q + (size_t)q * q);
        paley_core(q, plan->kind == GQ_HAD_PALEY1 ? -1 : 1, Q, C);
        if (plan->kind == GQ_HAD_PALEY2)
            paley2_expand(q, C, out);
        else /* Paley I: H = I + C */
            for (int i = 0; i <= q; i++)
                for (int j = 0; j <= q; j++)
                    out[(size_t)i * (q + 1) + j] = (signed char)(C[(size_t)i * (q + 1) + j] +
                                                                (i == j));
    }
    const int rc = Q && C ? 0 : -1;
    free(Q), free(C);
    return rc;
}

/* B (m, m) row-major = sqrt(m) R, R orthogonal: the Q factor of a Gaussian matrix drawn from
 * seed, each column times the sign of the QR's diagonal entry (a Haar-distributed R). */
static int random_block(int m, uint64_t seed, double *B, gq_error *err)
{
    double *A = malloc((size_t)m * m * sizeof *A), *tau = malloc((size_t)m * sizeof *tau);
    double *sgn = malloc((size_t)m * sizeof *sgn);
    int rc = A && tau && sgn ? 0 : gq_fail(err, "rotation: out of memory");
    gq_rng r;
    gq_rng_seed(&r, seed);
    for (size_t i = 0; rc == 0 && i < (size_t)m * m; i++)
        A[i] = gq_rng_normal(&r); /* column-major */
    if (rc == 0 && LAPACKE_dgeqrf(LAPACK_COL_MAJOR, m, m, A, m, tau) != 0)
        rc = gq_fail(err, "rotation: QR of the %d x %d random block failed", m, m);
    for (int j = 0; rc == 0 && j < m; j++)
        sgn[j] = A[(size_t)j * m + j] < 0 ? -1.0 : 1.0;
    if (rc == 0 && LAPACKE_dorgqr(LAPACK_COL_MAJOR, m, m, m, A, m, tau) != 0)
        rc = gq_fail(err, "rotation: forming the %d x %d orthogonal block failed", m, m);
    for (int i = 0; rc == 0 && i < m; i++)
        for (int j = 0; j < m; j++)
            B[(size_t)i * m + j] = sqrt((double)m) * sgn[j] * A[(size_t)j * m + i];
    free(A), free(tau), free(sgn);
    return rc;
}

static void describe(const gq_hadamard_plan *p, char *buf, size_t n)
{
    switch (p->kind) {
    case GQ_HAD_SYLVESTER: snprintf(buf, n, "Sylvester Walsh-Hadamard of order %d", p->p); break;
    case GQ_HAD_PALEY1:
    case GQ_HAD_PALEY2:
        snprintf(buf, n, "Paley %s (q = %d) of order %d (x) Walsh-Hadamard %d",
                 p->kind == GQ_HAD_PALEY1 ? "I" : "II", p->q, p->m, p->p);
        break;
    default:
        snprintf(buf, n, "seeded random orthogonal block of order %d (not Hadamard) (x) "
                 "Walsh-Hadamard %d", p->m, p->p);
    }
}

int gq_hadamard_build(gq_rotation *r, int n, uint64_t seed, gq_error *err)
{
    gq_hadamard_plan p;
    memset(r, 0, sizeof *r);
    if (gq_hadamard_plan_for(n, &p))
        return gq_fail(err, "width %d = 2^k x %d: no rotation for an odd part above %d", n,
                       n / (n & -n), GQ_HADAMARD_MAX_BLOCK);
    return gq_hadamard_build_plan(r, &p, seed, err);
}

int gq_hadamard_build_plan(gq_rotation *r, const gq_hadamard_plan *plan, uint64_t seed,
                           gq_error *err)
{
    const gq_hadamard_plan p = *plan;
    const int n = p.m * p.p;
    memset(r, 0, sizeof *r);
    const size_t mm = (size_t)p.m * p.m;
    double *base = malloc(mm * sizeof *base);
    signed char *pm = p.kind == GQ_HAD_RANDOM ? NULL : malloc(mm);
    int rc = base && (pm || p.kind == GQ_HAD_RANDOM) ? 0 : gq_fail(err, "rotation: out of memory");
    if (rc == 0 && p.kind == GQ_HAD_RANDOM)
        rc = random_block(p.m, seed ^ 0x6a09e667f3bcc909ull, base, err);
    else if (rc == 0 && gq_hadamard_block(&p, pm))
        rc = gq_fail(err, "rotation: out of memory");
    for (size_t i = 0; rc == 0 && pm && i < mm; i++)
        base[i] = pm[i];
    free(pm);
    if (rc) {
        free(base);
        return -1;
    }
    *r = (gq_rotation){.n = n, .m = p.m, .p = p.p, .base = base};
    describe(&p, r->what, sizeof r->what);
    return 0;
}

void gq_hadamard_signs(float *signs, int n, uint64_t seed)
{
    gq_rng r;
    gq_rng_seed(&r, seed);
    for (int i = 0; i < n; i++)
        signs[i] = (gq_rng_u64(&r) >> 63) ? -1.0f : 1.0f;
}
