#ifndef GQ_MINIFLOAT_H
#define GQ_MINIFLOAT_H
/* Small floating-point element formats (FP4 E2M1, FP6 E3M2/E2M3, FP8 E4M3/E5M2) and float
 * exponent helpers. One place for element rounding, shared by the fp and mx formats.
 *
 * Rounding is to nearest, ties to even; values above the largest normal saturate to it
 * (sign kept), so no Inf or NaN code is ever produced (E4M3 follows OCP "fn": no Inf, max
 * 448; E5M2 saturates at 57344 instead of overflowing to Inf). Subnormals: below
 * 2^(1-bias) the spacing stays 2^(1-bias-mbits). Codes are sign | exponent | mantissa in
 * 1 + ebits + mbits bits; zero is always code 0 (the sign of zero is not kept). */
#include <math.h>
#include <stdint.h>

typedef struct gq_minifloat {
    const char *name; /* "e2m1", ... */
    int ebits, mbits, bias;
    int emax;         /* exponent of the largest normal: floor(log2(max)) */
    float max;        /* largest normal */
} gq_minifloat;

extern const gq_minifloat gq_mf_e2m1, gq_mf_e3m2, gq_mf_e2m3, gq_mf_e4m3, gq_mf_e5m2;

static inline int gq_mf_bits(const gq_minifloat *f) { return 1 + f->ebits + f->mbits; }

/* floor(log2(|a|)) of a finite non-zero float from its bits (subnormals included). */
int gq_floor_log2f(float a);
/* ceil(log2(|a|)) likewise. */
int gq_ceil_log2f(float a);
/* 2^k for -126 <= k <= 127, exact. */
static inline float gq_pow2f(int k)
{
    union { uint32_t u; float f; } v = { .u = (uint32_t)(k + 127) << 23 };
    return v.f;
}

/* Rounds x to the element grid; returns its code and stores the value in *y. x finite.
 * Inline: this is the inner loop of the fp and mx formats. */
static inline uint32_t gq_mf_encode(const gq_minifloat *f, float x, float *y)
{
    const int emin = 1 - f->bias;
    union { float f; uint32_t u; } a = { .f = x };
    const uint32_t sign = a.u >> 31;
    a.u &= 0x7fffffffu;
    /* Grid spacing around |x|: 2^(e - mbits), e = exponent of |x| but at least emin (float
     * subnormals are far below every emin here). Scaling by it is exact, so rintf rounds
     * |x| itself to nearest, ties to even. */
    int e = (int)(a.u >> 23) - 127;
    if (e < emin)
        e = emin;
    float v = rintf(a.f * gq_pow2f(f->mbits - e)) * gq_pow2f(e - f->mbits);
    if (v > f->max)
        v = f->max;
    if (v == 0.0f) {
        *y = 0.0f;
        return 0;
    }
    union { float f; uint32_t u; } b = { .f = v };
    int ev = (int)(b.u >> 23) - 127;
    uint32_t ef, mant;
    if (ev < emin) { /* subnormal: v = mant * 2^(emin - mbits) */
        ef = 0;
        mant = (uint32_t)(v * gq_pow2f(f->mbits - emin));
    } else {
        ef = (uint32_t)(ev + f->bias);
        mant = (b.u >> (23 - f->mbits)) & ((1u << f->mbits) - 1u);
    }
    b.u |= sign << 31;
    *y = b.f;
    return sign << (f->ebits + f->mbits) | ef << f->mbits | mant;
}

/* The value of a code. */
static inline float gq_mf_decode(const gq_minifloat *f, uint32_t code)
{
    uint32_t mant = code & ((1u << f->mbits) - 1u);
    uint32_t ef = (code >> f->mbits) & ((1u << f->ebits) - 1u);
    uint32_t sign = (code >> (f->ebits + f->mbits)) & 1u;
    union { float f; uint32_t u; } v;
    if (ef == 0)
        v.f = (float)mant * gq_pow2f(1 - f->bias - f->mbits);
    else
        v.u = (uint32_t)((int)ef - f->bias + 127) << 23 | mant << (23 - f->mbits);
    v.u |= sign << 31;
    return v.f;
}

#endif
