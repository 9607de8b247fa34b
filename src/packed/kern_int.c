/* Packed kernels of the "int" format, 4 and 8 bits: w = s * (code - z) per group of P->group
 * columns, the int format's reconstruction ((code - z) is an exact small integer, so one
 * rounding as there). int4: the set layout of packed_internal.h (scales and zero points inline,
 * rows in sets of 4); int8: one byte per column per row, fp16 scales and zero points in their
 * own arrays (z = P->zconst when not stored). */
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

/* Code of column j of int4 row r. */
static inline int int4_code(const gq_packed_linear *P, int r, int j)
{
    return (pk_i4_block(P, r, j / 32)[j % 16] >> (j % 32 < 16 ? 0 : 4)) & 0xF;
}

static void ref_int4(const gq_packed_linear *P, int r, float *y)
{
    for (int j = 0; j < P->cols_pad; j++) {
        int g = j / P->group;
        y[j] = gq_fp16_to_fp32(pk_i4_scale(P, r, g)) * (float)(int4_code(P, r, j) - pk_i4_zero(P, r, g));
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
/* Signed codes (code - z) of int4 block b of row r as 4 runs of 8 (pk_dot4x8_i8 order). */
static inline void int4_runs(const gq_packed_linear *P, int r, int b, int z, __m128i v[4])
{
    pk_nibbles4x8(pk_i4_block(P, r, b), v);
    pk_sub4x8(v, _mm_set1_epi8((char)z));
}

static void fast_int4(const gq_packed_linear *P, int r, float *y)
{
    const int bpg = P->group / 32;
    for (int b = 0; b < P->cols_pad / 32; b++, y += 32) {
        int g = b / bpg;
        __m128i v[4];
        int4_runs(P, r, b, pk_i4_zero(P, r, g), v);
        __m256 s = _mm256_set1_ps(pk_fp16(pk_i4_scale(P, r, g)));
        for (int k = 0; k < 4; k++)
            _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(pk_cvt8_i8(v[k]), s));
    }
}

static float dot_int4(const gq_packed_linear *P, int r, const float *x, const float *xs)
{
    (void)xs;
    const int bpg = P->group / 32, nb = P->cols_pad / 32;
    __m256 acc = _mm256_setzero_ps();
    for (int g = 0; g < P->n_groups; g++) {
        const int z = pk_i4_zero(P, r, g);
        int b1 = (g + 1) * bpg < nb ? (g + 1) * bpg : nb;
        __m256 gs = _mm256_setzero_ps();
        for (int b = g * bpg; b < b1; b++) {
            __m128i v[4];
            int4_runs(P, r, b, z, v);
            gs = _mm256_add_ps(gs, pk_dot4x8_i8(v, x + 32 * b));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(pk_fp16(pk_i4_scale(P, r, g))), gs, acc);
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

/* int4 on a whole set of 4 rows, two rows per 256-bit vector (as the 4-bit ggml kernels): per
 * block, rows 2p and 2p+1's 32 code bytes are one load, low nibbles (elements 0..15) meet
 * activations 0..15 broadcast to both lanes and high nibbles 16..31; lanes 0-3 are row 2p's
 * partial sums U, lanes 4-7 row 2p+1's, and U - z * pairs (pk_act.pairs, the matching sums of
 * xq) is the exact integer dot of (code - z) (lanes below 2^14, exact in float). Per group the
 * set's 4 scales and zero points are one load each. */
PK_ALWAYS_INLINE void q8_int4_rows(const gq_packed_linear *P, int r, const int ASYM,
                                   const pk_act *a, float *y)
{
    const int bpg = P->group / 32, nb = P->cols_pad / 32;
    const size_t hb = P->hdr_bytes, group_bytes = hb + (size_t)bpg * PK_IL * 16;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i pick[2] = {_mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1),
                             _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3)};
    const __m256 zc = _mm256_set1_ps((float)P->zconst);
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    const uint8_t *h = pk_i4_group(P, r, 0);
    for (int b0 = 0; b0 < nb; b0 += bpg, h += group_bytes) {
        const __m256 s4 = _mm256_castps128_ps256(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)h)));
        __m256 z[2] = {zc, zc};
        if (ASYM) {
            const __m256 z4 = _mm256_castps128_ps256(
                _mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_loadu_si32(h + 8))));
            z[0] = _mm256_permutevar8x32_ps(z4, pick[0]);
            z[1] = _mm256_permutevar8x32_ps(z4, pick[1]);
        }
        __m256 gacc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        const int b1 = b0 + bpg < nb ? b0 + bpg : nb;
        const uint8_t *codes = h + hb;
        const int8_t *xq = a->q + 32 * b0;
        const float *pairs = a->pairs + 4 * b0, *d = a->d + b0;
        for (int b = b0; b < b1; b++, codes += PK_IL * 16, xq += 32, pairs += 4, d++) {
            const __m256i xlo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)xq));
            const __m256i xhi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(xq + 16)));
            const __m256 pl = _mm256_broadcast_ps((const __m128 *)pairs);
            const __m256 dx = _mm256_broadcast_ss(d);
            for (int p = 0; p < 2; p++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(codes + 32 * p));
                const __m256i lo = _mm256_and_si256(v, m4);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                const __m256 u = _mm256_cvtepi32_ps(pk_dot_halves(lo, hi, xlo, xhi));
                gacc[p] = _mm256_fmadd_ps(dx, _mm256_fnmadd_ps(z[p], pl, u), gacc[p]);
            }
        }
        for (int p = 0; p < 2; p++)
            acc[p] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(s4, pick[p]), gacc[p], acc[p]);
    }
    pk_store_pairs(acc, _mm_setzero_ps(), P->rows - r < 4 ? P->rows - r : 4, y);
}

/* Every pass is the whole set holding rows r..r+nr-1 (the last set may have fewer real rows);
 * asymmetric (zero points in the headers) and symmetric (P->zconst) compiled apart. */
static void q8_int4(const gq_packed_linear *P, int r, int nr, const pk_act *a, float *y)
{
    (void)nr;
    if (P->hdr_bytes == 12)
        q8_int4_rows(P, r, 1, a, y);
    else
        q8_int4_rows(P, r, 0, a, y);
}

/* int8 on int8 activations: per group g, s_g * sum_b xd_b * I_b with the exact block dot
 * I_b = sum (code - z) xq = U_b - c * X_b per int32 lane: U_b the maddubs + madd dot of the
 * signed bytes u = code - 128 (the code with its top bit flipped), X_b the activation lane sums
 * (pk_act.lanes), c = z - 128. Lanes stay below 2^17, so converting U_b and subtracting
 * c * X_b in float is exact. */
PK_ALWAYS_INLINE __m256 int_block_q8(__m256i u_dot, __m256 c, const float *lanes)
{
    return _mm256_fnmadd_ps(c, _mm256_loadu_ps(lanes), _mm256_cvtepi32_ps(u_dot));
}

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
PK_Q8_ENTRY(q8_int8, 1)

const pk_type pk_int4 = {"int4", 32, ref_int4, fast_int4, dot_int4, q8_int4, PK_ROWS, false};
const pk_type pk_int8 = {"int8", 32, ref_int8, fast_int8, dot_int8, q8_int8, 1, false};
#else
const pk_type pk_int4 = {"int4", 32, ref_int4, ref_int4, pk_dot_generic, NULL, 1, false};
const pk_type pk_int8 = {"int8", 32, ref_int8, ref_int8, pk_dot_generic, NULL, 1, false};
#endif
