#include "core/gq_rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void gq_rng_seed(gq_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t gq_rng_u64(gq_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double gq_rng_uniform(gq_rng *r) { return (double)(gq_rng_u64(r) >> 11) * 0x1.0p-53; }

uint64_t gq_rng_below(gq_rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = gq_rng_u64(r);
    while (x >= limit);
    return x % n;
}

double gq_rng_normal(gq_rng *r)
{
    double u1 = gq_rng_uniform(r);
    double u2 = gq_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double gq_rng_student_t(gq_rng *r, double nu)
{
    /* t = Z / sqrt(V / nu), V ~ chi^2(nu) approximated as a sum of squares for integer nu,
     * which is exact; non-integer nu is rounded. */
    int k = (int)(nu + 0.5);
    if (k < 1)
        k = 1;
    double z = gq_rng_normal(r);
    double v = 0;
    for (int i = 0; i < k; i++) {
        double g = gq_rng_normal(r);
        v += g * g;
    }
    double t = z / sqrt(v / k);
    if (k > 2)
        t *= sqrt((double)(k - 2) / k);
    return t;
}
