/* Packed kernels of the "int" format, 4 and 8 bits (layout in gq_packed.h): per row, blocks of
 * 32 codes (int4: 16 bytes, byte j = element j low nibble, element j+16 high nibble; int8: 32
 * bytes), and per group of P->group columns an fp16 scale s and a zero point z (stored per group
 * for asym, the constant P->zconst otherwise). w = s * (code - z), the int format's
 * reconstruction: (code - z) is an exact small integer, so one rounding as there. */
#include "core/gq_half.h"
#include "packed/packed_internal.h"
#include "packed/pk_simd.h"

static inline float grp_scale(const gq_packed_linear *P, int r, int g)
{
    return gq_fp16_to_fp32(P->scales[(size_t)r * P->n_groups + g]);
}

static inline int grp_zero(const gq_packed_linear *P, int r, int g)
{
    return P->zeros ? P->zeros[(size_t)r * P->n_groups + g] : P->zconst;
}

static void ref_int4(const gq_packed_linear *P, int r, float *y)
{
    const uint8_t *q = pk_row(P, r);
    for (int j = 0; j < P->cols_pad; j++) {
        int g = j / P->group, blk = j / 32, e = j % 32;
        uint8_t byte = q[16 * blk + (e & 15)];
        int code = e < 16 ? byte & 0xF : byte >> 4;
        y[j] = grp_scale(P, r, g) * (float)(code - grp_zero(P, r, g));
    }
}

static void ref_int8(const gq_packed_linear *P, int r, float *y)
{
    const uint8_t *q = pk_row(P, r);
    for (int j = 0; j < P->cols_pad; j++) {
        int g = j / P->group;
        y[j] = grp_scale(P, r, g) * (float)(q[j] - grp_zero(P, r, g));
    }
}

#if PK_AVX2
/* Signed codes (code - z) of int4 block b, elements 0..15 and 16..31. */
static inline void int4_codes(const uint8_t *q, int b, int z, __m128i *lo, __m128i *hi)
{
    const __m128i zv = _mm_set1_epi8((char)z);
    pk_nibbles16(q + 16 * b, lo, hi);
    *lo = _mm_sub_epi8(*lo, zv);
    *hi = _mm_sub_epi8(*hi, zv);
}

static void fast_int4(const gq_packed_linear *P, int r, float *y)
{
    const uint8_t *q = pk_row(P, r);
    const int bpg = P->group / 32;
    for (int b = 0; b < P->cols_pad / 32; b++, y += 32) {
        int g = b / bpg;
        __m128i lo, hi;
        int4_codes(q, b, grp_zero(P, r, g), &lo, &hi);
        __m256 s = _mm256_set1_ps(pk_fp16(P->scales[(size_t)r * P->n_groups + g]));
        pk_store16_i8(lo, s, y);
        pk_store16_i8(hi, s, y + 16);
    }
}

static float dot_int4(const gq_packed_linear *P, int r, const float *x, const float *xs)
{
    (void)xs;
    const uint8_t *q = pk_row(P, r);
    const int bpg = P->group / 32, nb = P->cols_pad / 32;
    __m256 acc = _mm256_setzero_ps();
    for (int g = 0; g < P->n_groups; g++) {
        const __m128i z = _mm_set1_epi8((char)grp_zero(P, r, g));
        int b1 = (g + 1) * bpg < nb ? (g + 1) * bpg : nb;
        __m256 gs = _mm256_setzero_ps();
        for (int b = g * bpg; b < b1; b++) {
            __m128i v[4];
            pk_nibbles4x8(q + 16 * b, v);
            pk_sub4x8(v, z);
            gs = _mm256_add_ps(gs, pk_dot4x8_i8(v, x + 32 * b));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(pk_fp16(P->scales[(size_t)r * P->n_groups + g])),
                              gs, acc);
    }
    return pk_hsum(acc);
}

static void fast_int8(const gq_packed_linear *P, int r, float *y)
{
    const uint8_t *q = pk_row(P, r);
    const int bpg = P->group / 32;
    for (int b = 0; b < P->cols_pad / 32; b++) {
        int g = b / bpg;
        __m256 s = _mm256_set1_ps(pk_fp16(P->scales[(size_t)r * P->n_groups + g])), z = _mm256_set1_ps((float)grp_zero(P, r, g));
        for (int k = 0; k < 4; k++) {
            __m128i v = _mm_loadl_epi64((const __m128i *)(q + 32 * b + 8 * k));
            __m256 c = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
            _mm256_storeu_ps(y + 32 * b + 8 * k, _mm256_mul_ps(_mm256_sub_ps(c, z), s));
        }
    }
}

/* sum s_g * (sum code*x - z_g * sum x) over groups. */
static float dot_int8(const gq_packed_linear *P, int r, const float *x, const float *xs)
{
    const uint8_t *q = pk_row(P, r);
    const int bpg = P->group / 32, nb = P->cols_pad / 32;
    __m256 acc = _mm256_setzero_ps();
    float offs = 0.0f;
    for (int g = 0; g < P->n_groups; g++) {
        int b1 = (g + 1) * bpg < nb ? (g + 1) * bpg : nb;
        __m256 gs = _mm256_setzero_ps();
        float xsum = 0.0f;
        for (int b = g * bpg; b < b1; b++) {
            const uint8_t *qb = q + 32 * b;
            const float *xb = x + 32 * b;
            for (int k = 0; k < 4; k++) {
                __m128i v = _mm_loadl_epi64((const __m128i *)(qb + 8 * k));
                gs = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)),
                                     _mm256_loadu_ps(xb + 8 * k), gs);
            }
            xsum += xs[b];
        }
        float s = pk_fp16(P->scales[(size_t)r * P->n_groups + g]);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(s), gs, acc);
        offs += s * (float)grp_zero(P, r, g) * xsum;
    }
    return pk_hsum(acc) - offs;
}

/* int8 activations, both widths: per group g, s_g * sum_b xd_b * I_b with the exact integer
 * block dot I_b = sum (code - z) xq = U_b - c * X_b: U_b the dot of byte weights u, X_b the sum
 * of xq (per int32 lane, shared by the rows), c the offset that makes u - c = code - z:
 * int4 u = the code (unsigned, 0..15), c = z; int8 u = code - 128 (signed: the code with its
 * top bit flipped), c = z - 128. |I_b| < 2^21. NR rows per pass share the activation loads. */
PK_ALWAYS_INLINE void q8_int_rows(const gq_packed_linear *P, int r, const int NR, const int bits,
                                  const int8_t *xq, const float *xd, const float *xs, float *y)
{
    (void)xs;
    const int bpg = P->group / 32, nb = P->cols_pad / 32;
    const __m256i flip = _mm256_set1_epi8((char)0x80), ones = _mm256_set1_epi8(1);
    const uint8_t *q[PK_ROWS];
    __m256 acc[PK_ROWS];
    for (int k = 0; k < NR; k++) {
        q[k] = pk_row(P, r + k);
        acc[k] = _mm256_setzero_ps();
    }
    for (int g = 0; g < P->n_groups; g++) {
        int b0 = g * bpg, b1 = b0 + bpg < nb ? b0 + bpg : nb;
        __m256i c[PK_ROWS];
        __m256 gacc[PK_ROWS];
        for (int k = 0; k < NR; k++) {
            c[k] = _mm256_set1_epi32(grp_zero(P, r + k, g) - (bits == 4 ? 0 : 128));
            gacc[k] = _mm256_setzero_ps();
        }
        for (int b = b0; b < b1; b++) {
            const __m256i x = _mm256_loadu_si256((const __m256i *)(xq + 32 * b));
            const __m256i xsum = pk_dot32_u8i8(ones, x);
            const __m256 dx = _mm256_set1_ps(xd[b]);
            for (int k = 0; k < NR; k++) {
                if (NR == PK_ROWS)
                    pk_prefetch_ahead(q[k] + (bits / 2) * b, PK_ROWS * P->row_bytes, 1);
                __m256i u = bits == 4
                    ? pk_dot32_u8i8(pk_nibbles32(q[k] + 16 * b), x)
                    : pk_dot32_i8i8(_mm256_xor_si256(
                          _mm256_loadu_si256((const __m256i *)(q[k] + 32 * b)), flip), x);
                __m256i i = _mm256_sub_epi32(u, _mm256_mullo_epi32(c[k], xsum));
                gacc[k] = _mm256_fmadd_ps(dx, _mm256_cvtepi32_ps(i), gacc[k]);
            }
        }
        for (int k = 0; k < NR; k++) {
            const float s = pk_fp16(P->scales[(size_t)(r + k) * P->n_groups + g]);
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(s), gacc[k], acc[k]);
        }
    }
    pk_store_rows(acc, NULL, NR, y);
}

PK_ALWAYS_INLINE void q8_int4_rows(const gq_packed_linear *P, int r, const int NR,
                                   const int8_t *xq, const float *xd, const float *xs, float *y)
{
    q8_int_rows(P, r, NR, 4, xq, xd, xs, y);
}
PK_Q8_ENTRY(q8_int4)

PK_ALWAYS_INLINE void q8_int8_rows(const gq_packed_linear *P, int r, const int NR,
                                   const int8_t *xq, const float *xd, const float *xs, float *y)
{
    q8_int_rows(P, r, NR, 8, xq, xd, xs, y);
}
PK_Q8_ENTRY(q8_int8)

const pk_type pk_int4 = {"int4", 32, ref_int4, fast_int4, dot_int4, q8_int4, 1};
const pk_type pk_int8 = {"int8", 32, ref_int8, fast_int8, dot_int8, q8_int8, 1};
#else
const pk_type pk_int4 = {"int4", 32, ref_int4, ref_int4, pk_dot_generic, NULL, 1};
const pk_type pk_int8 = {"int8", 32, ref_int8, ref_int8, pk_dot_generic, NULL, 1};
#endif
