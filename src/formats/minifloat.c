/* Element rounding for the small float formats (see minifloat.h). */
#include "formats/minifloat.h"

#include <math.h>

#include "core/gq_half.h"

/*                                   name   e  m  bias emax max */
const gq_minifloat gq_mf_e2m1 = {"e2m1", 2, 1, 1, 2, 6.0f};
const gq_minifloat gq_mf_e3m2 = {"e3m2", 3, 2, 3, 4, 28.0f};
const gq_minifloat gq_mf_e2m3 = {"e2m3", 2, 3, 1, 2, 7.5f};
const gq_minifloat gq_mf_e4m3 = {"e4m3", 4, 3, 7, 8, 448.0f};     /* S.1111.111 is NaN */
const gq_minifloat gq_mf_e5m2 = {"e5m2", 5, 2, 15, 15, 57344.0f}; /* S.11111.xx Inf/NaN */

int gq_floor_log2f(float a)
{
    uint32_t u = gq_f32_bits(a) & 0x7fffffffu;
    int e = (int)(u >> 23);
    if (e)
        return e - 127;
    /* subnormal: value = m * 2^-149 */
    return 31 - __builtin_clz(u) - 149;
}

int gq_ceil_log2f(float a)
{
    uint32_t u = gq_f32_bits(a) & 0x7fffffffu;
    int fl = gq_floor_log2f(a);
    uint32_t frac = (u >> 23) ? (u & 0x7fffffu) : (u & ~(1u << (31 - __builtin_clz(u))));
    return fl + (frac != 0);
}

uint32_t gq_mf_encode(const gq_minifloat *f, float x, float *y)
{
    const int emin = 1 - f->bias;
    float a = fabsf(x);
    /* Spacing of the grid around a: 2^(e - mbits) with e = exponent of a, at least emin. */
    int e = a > 0.0f ? gq_floor_log2f(a) : emin;
    if (e < emin)
        e = emin;
    /* a / 2^(e-mbits) is exact (a power-of-two scaling that cannot underflow here), so
     * rintf rounds a itself, ties to even. */
    float v = rintf(a * gq_pow2f(f->mbits - e)) * gq_pow2f(e - f->mbits);
    if (v > f->max)
        v = f->max;
    if (v == 0.0f) {
        *y = 0.0f;
        return 0;
    }
    uint32_t sign = signbit(x) ? 1u : 0u;
    uint32_t ef, mant;
    int ev = gq_floor_log2f(v);
    if (ev < emin) { /* subnormal: v = mant * 2^(emin - mbits) */
        ef = 0;
        mant = (uint32_t)(v * gq_pow2f(f->mbits - emin));
    } else {
        ef = (uint32_t)(ev + f->bias);
        mant = (gq_f32_bits(v) >> (23 - f->mbits)) & ((1u << f->mbits) - 1u);
    }
    *y = sign ? -v : v;
    return sign << (f->ebits + f->mbits) | ef << f->mbits | mant;
}

float gq_mf_decode(const gq_minifloat *f, uint32_t code)
{
    uint32_t mant = code & ((1u << f->mbits) - 1u);
    uint32_t ef = (code >> f->mbits) & ((1u << f->ebits) - 1u);
    uint32_t sign = (code >> (f->ebits + f->mbits)) & 1u;
    float v = ef == 0 ? (float)mant * gq_pow2f(1 - f->bias - f->mbits)
                      : (float)(mant | (1u << f->mbits)) * gq_pow2f((int)ef - f->bias - f->mbits);
    return sign ? -v : v;
}
