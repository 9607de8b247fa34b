/* Packed kernels of the "int" format, 4 and 8 bits (layout in gq_packed.h): per row, the codes
 * (int4: units of 64 columns in 32 bytes, byte j = element j in the low nibble and element
 * 32 + j in the high nibble, so one 32-byte load and two masks give two 32-column blocks in
 * element order; int8: one byte per column), and per group of P->group columns an fp16 scale s
 * and a zero point z (stored per group for asym, the constant P->zconst otherwise).
 * w = s * (code - z), the int format's reconstruction: (code - z) is an exact small integer,
 * so one rounding as there. */
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

/* Code of column j of an int4 row (layout above). */
static inline int int4_code(const uint8_t *q, int j)
{
    return (q[32 * (j / 64) + j % 32] >> (j % 64 < 32 ? 0 : 4)) & 0xF;
}

static void ref_int4(const gq_packed_linear *P, int r, float *y)
{
    const uint8_t *q = pk_row(P, r);
    for (int j = 0; j < P->cols_pad; j++) {
        int g = j / P->group;
        y[j] = grp_scale(P, r, g) * (float)(int4_code(q, j) - grp_zero(P, r, g));
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
/* The 32 codes of int4 block b (columns 32b..32b+32) as bytes in element order. */
static inline __m256i int4_block(const uint8_t *q, int b)
{
    __m256i v = _mm256_loadu_si256((const __m256i *)(q + 16 * (b & ~1)));
    if (b & 1)
        v = _mm256_srli_epi16(v, 4);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/* Signed codes (code - z) of int4 block b as 4 runs of 8 bytes (pk_dot4x8_i8 order). */
static inline void int4_runs(const uint8_t *q, int b, int z, __m128i v[4])
{
    __m256i c = _mm256_sub_epi8(int4_block(q, b), _mm256_set1_epi8((char)z));
    v[0] = _mm256_castsi256_si128(c);
    v[1] = _mm_srli_si128(v[0], 8);
    v[2] = _mm256_extracti128_si256(c, 1);
    v[3] = _mm_srli_si128(v[2], 8);
}

static void fast_int4(const gq_packed_linear *P, int r, float *y)
{
    const uint8_t *q = pk_row(P, r);
    const int bpg = P->group / 32;
    for (int b = 0; b < P->cols_pad / 32; b++, y += 32) {
        int g = b / bpg;
        __m128i v[4];
        int4_runs(q, b, grp_zero(P, r, g), v);
        __m256 s = _mm256_set1_ps(pk_fp16(P->scales[(size_t)r * P->n_groups + g]));
        for (int k = 0; k < 4; k++)
            _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(pk_cvt8_i8(v[k]), s));
    }
}

static float dot_int4(const gq_packed_linear *P, int r, const float *x, const float *xs)
{
    (void)xs;
    const uint8_t *q = pk_row(P, r);
    const int bpg = P->group / 32, nb = P->cols_pad / 32;
    __m256 acc = _mm256_setzero_ps();
    for (int g = 0; g < P->n_groups; g++) {
        const int z = grp_zero(P, r, g);
        int b1 = (g + 1) * bpg < nb ? (g + 1) * bpg : nb;
        __m256 gs = _mm256_setzero_ps();
        for (int b = g * bpg; b < b1; b++) {
            __m128i v[4];
            int4_runs(q, b, z, v);
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

/* int8 activations, both widths: per group g, s_g * sum_b xd_b * I_b with the exact block dot
 * I_b = sum (code - z) xq = U_b - c * X_b per int32 lane: U_b the maddubs + madd dot of byte
 * weights u, X_b the activation lane sums (pk_act.lanes), c the offset that makes u - c =
 * code - z: int4 u = the code (unsigned, 0..15), c = z; int8 u = code - 128 (signed: the code
 * with its top bit flipped), c = z - 128. Lanes stay below 2^17, so converting U_b and
 * subtracting c * X_b in float is exact. */
PK_ALWAYS_INLINE __m256 int_block_q8(__m256i u_dot, __m256 c, const float *lanes)
{
    return _mm256_fnmadd_ps(c, _mm256_loadu_ps(lanes), _mm256_cvtepi32_ps(u_dot));
}

/* int4: the blocks of a group two at a time where they share a 32-byte unit (one load, two
 * masks), each with its own accumulator (two independent FMA chains per row); NR rows per
 * pass share the activation loads. */
PK_ALWAYS_INLINE void q8_int4_rows(const gq_packed_linear *P, int r, const int NR,
                                   const pk_act *a, float *y)
{
    const int bpg = P->group / 32, nb = P->cols_pad / 32;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const uint8_t *q[PK_ROWS];
    __m256 acc[PK_ROWS];
    for (int k = 0; k < NR; k++) {
        q[k] = pk_row(P, r + k);
        acc[k] = _mm256_setzero_ps();
    }
    for (int g = 0; g < P->n_groups; g++) {
        const int b0 = g * bpg, b1 = b0 + bpg < nb ? b0 + bpg : nb;
        __m256 z[PK_ROWS], ga[PK_ROWS], gb[PK_ROWS];
        for (int k = 0; k < NR; k++) {
            z[k] = _mm256_set1_ps((float)grp_zero(P, r + k, g));
            ga[k] = gb[k] = _mm256_setzero_ps();
        }
        int b = b0;
        for (; b < b1; b++) { /* a block without its unit partner in this group */
            if (!(b & 1) && b + 1 < b1)
                break;
            const __m256i x = _mm256_loadu_si256((const __m256i *)(a->q + 32 * b));
            const __m256 dx = _mm256_set1_ps(a->d[b]);
            for (int k = 0; k < NR; k++) {
                __m256 i = int_block_q8(pk_dot32_u8i8(int4_block(q[k], b), x), z[k],
                                        a->lanes + 8 * b);
                ga[k] = _mm256_fmadd_ps(dx, i, ga[k]);
            }
        }
        for (; b + 1 < b1; b += 2) {
            const __m256i x0 = _mm256_loadu_si256((const __m256i *)(a->q + 32 * b));
            const __m256i x1 = _mm256_loadu_si256((const __m256i *)(a->q + 32 * b + 32));
            const __m256 d0 = _mm256_set1_ps(a->d[b]), d1 = _mm256_set1_ps(a->d[b + 1]);
            for (int k = 0; k < NR; k++) {
                if (NR == PK_ROWS)
                    pk_prefetch_ahead(q[k] + 16 * b, PK_ROWS * P->row_bytes, 1);
                const __m256i v = _mm256_loadu_si256((const __m256i *)(q[k] + 16 * b));
                const __m256i lo = _mm256_and_si256(v, m4);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                ga[k] = _mm256_fmadd_ps(
                    d0, int_block_q8(pk_dot32_u8i8(lo, x0), z[k], a->lanes + 8 * b), ga[k]);
                gb[k] = _mm256_fmadd_ps(
                    d1, int_block_q8(pk_dot32_u8i8(hi, x1), z[k], a->lanes + 8 * b + 8), gb[k]);
            }
        }
        if (b < b1) { /* an even last block whose partner is in the next group */
            const __m256i x = _mm256_loadu_si256((const __m256i *)(a->q + 32 * b));
            const __m256 dx = _mm256_set1_ps(a->d[b]);
            for (int k = 0; k < NR; k++) {
                __m256 i = int_block_q8(pk_dot32_u8i8(int4_block(q[k], b), x), z[k],
                                        a->lanes + 8 * b);
                ga[k] = _mm256_fmadd_ps(dx, i, ga[k]);
            }
        }
        for (int k = 0; k < NR; k++) {
            const float s = pk_fp16(P->scales[(size_t)(r + k) * P->n_groups + g]);
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(s), _mm256_add_ps(ga[k], gb[k]), acc[k]);
        }
    }
    pk_store_rows(acc, NULL, NR, y);
}
PK_Q8_ENTRY(q8_int4)

PK_ALWAYS_INLINE void q8_int8_rows(const gq_packed_linear *P, int r, const int NR,
                                   const pk_act *a, float *y)
{
    const int bpg = P->group / 32, nb = P->cols_pad / 32;
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    const uint8_t *q[PK_ROWS];
    __m256 acc[PK_ROWS];
    for (int k = 0; k < NR; k++) {
        q[k] = pk_row(P, r + k);
        acc[k] = _mm256_setzero_ps();
    }
    for (int g = 0; g < P->n_groups; g++) {
        int b0 = g * bpg, b1 = b0 + bpg < nb ? b0 + bpg : nb;
        __m256 c[PK_ROWS], gacc[PK_ROWS];
        for (int k = 0; k < NR; k++) {
            c[k] = _mm256_set1_ps((float)(grp_zero(P, r + k, g) - 128));
            gacc[k] = _mm256_setzero_ps();
        }
        for (int b = b0; b < b1; b++) {
            const __m256i x = _mm256_loadu_si256((const __m256i *)(a->q + 32 * b));
            const __m256 dx = _mm256_set1_ps(a->d[b]);
            for (int k = 0; k < NR; k++) {
                if (NR == PK_ROWS)
                    pk_prefetch_ahead(q[k] + 32 * b, PK_ROWS * P->row_bytes, 1);
                __m256i u = _mm256_xor_si256(
                    _mm256_loadu_si256((const __m256i *)(q[k] + 32 * b)), flip);
                gacc[k] = _mm256_fmadd_ps(
                    dx, int_block_q8(pk_dot32_i8i8(u, x), c[k], a->lanes + 8 * b), gacc[k]);
            }
        }
        for (int k = 0; k < NR; k++) {
            const float s = pk_fp16(P->scales[(size_t)(r + k) * P->n_groups + g]);
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(s), gacc[k], acc[k]);
        }
    }
    pk_store_rows(acc, NULL, NR, y);
}
PK_Q8_ENTRY(q8_int8)

const pk_type pk_int4 = {"int4", 64, ref_int4, fast_int4, dot_int4, q8_int4, PK_ROWS, 1};
const pk_type pk_int8 = {"int8", 32, ref_int8, fast_int8, dot_int8, q8_int8, 1, 1};
#else
const pk_type pk_int4 = {"int4", 64, ref_int4, ref_int4, pk_dot_generic, NULL, 1, 1};
const pk_type pk_int8 = {"int8", 32, ref_int8, ref_int8, pk_dot_generic, NULL, 1, 1};
#endif
