#ifndef GQ_MF_TABLE_H
#define GQ_MF_TABLE_H
/* Table-driven element rounding for the small float formats: the same codes and values as
 * gq_mf_encode (minifloat.h) for every float, through one lookup per element.
 *
 * For a finite |x| the result of gq_mf_encode depends only on the float's exponent field E,
 * the top mbits+1 bits of its mantissa (the kept bits and the rounding bit) and whether any
 * lower mantissa bit is set (the sticky bit): the grid spacing is fixed within a float binade,
 * so rounding to nearest, ties to even is decided by those bits. Exponents below e_lo round
 * to 0 (under half the smallest spacing) and above e_hi saturate, so E is clamped to
 * [e_lo, e_hi]. Index = (E - e_lo) << (mbits + 2) | top bits << 1 | sticky.
 * Entry = (value bits >> (23 - mbits)) << 16 | magnitude code; entry 0 is the value 0 (code 0,
 * the sign not kept, as in gq_mf_encode). Non-finite x (E = 255) go through gq_mf_encode. */
#include <stdint.h>

#include "formats/minifloat.h"

#define GQ_MF_TABLE_MAX 1024

typedef struct gq_mf_table {
    const gq_minifloat *f;
    int e_lo, e_hi;   /* float exponent fields covered; finite E are clamped to them */
    int top;          /* mantissa bits in the index: mbits + 1 */
    uint32_t entry[GQ_MF_TABLE_MAX];
} gq_mf_table;

/* The table of f (one of the gq_mf_* element formats), built once on first use
 * (thread-safe). */
const gq_mf_table *gq_mf_table_of(const gq_minifloat *f);

/* Index of the lookup for |x|'s bits a (a < 0x7f800000). */
static inline uint32_t gq_mf_table_index(const gq_mf_table *t, uint32_t a)
{
    uint32_t e = a >> 23;
    e = e < (uint32_t)t->e_lo ? (uint32_t)t->e_lo : e > (uint32_t)t->e_hi ? (uint32_t)t->e_hi : e;
    const int low = 23 - t->top;
    return (e - (uint32_t)t->e_lo) << (t->top + 1) | ((a >> low) & ((1u << t->top) - 1u)) << 1 |
           ((a & ((1u << low) - 1u)) != 0);
}

/* gq_mf_encode(t->f, x, y) through the table. */
static inline uint32_t gq_mf_table_encode(const gq_mf_table *t, float x, float *y)
{
    union { float f; uint32_t u; } v = { .f = x };
    const uint32_t a = v.u & 0x7fffffffu;
    if (a >= 0x7f800000u) /* Inf, NaN: the reference's arithmetic */
        return gq_mf_encode(t->f, x, y);
    const uint32_t ent = t->entry[gq_mf_table_index(t, a)];
    const uint32_t sign = ent ? v.u >> 31 : 0u;
    v.u = (ent >> 16) << (23 - t->f->mbits) | sign << 31;
    *y = v.f;
    return (ent & 0xffffu) | sign << (t->f->ebits + t->f->mbits);
}

#endif
