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
