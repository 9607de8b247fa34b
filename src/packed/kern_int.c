/* Packed kernels of the "int" format, 4 and 8 bits: w = s * (code - z) per group of P->group
 * columns, the int format's reconstruction ((code - z) is an exact small integer, so one
 * rounding as there). int4: the set layout of packed_internal.h (scales and zero points inline,
 * rows in sets of 8, code pieces of 4 bytes); int8: one byte per column per row, fp16 scales and zero points in their
 * own arrays (z = P->zconst when not stored). */
#include "core/gq_half.h"
#include "packed/packed_internal.h"
#include "packed/pk_simd.h"

/* int4 storage: sets of 8 rows (one per 32-bit lane of the decode kernel), pieces of 4 bytes. */
#define I4_SET 8
#define I4_PIECE 4

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
    return (*pk_i4_byte(P, r, j / 32, j % 16) >> (j % 32 < 16 ? 0 : 4)) & 0xF;
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
    uint8_t qs[16]; /* the row's 16 code bytes of the block, from its pieces */
    const uint8_t *piece0 = pk_i4_byte(P, r, b, 0);
    for (int n = 0; n < 16 / I4_PIECE; n++)
        memcpy(qs + I4_PIECE * n, piece0 + n * I4_SET * I4_PIECE, I4_PIECE);
    pk_nibbles4x8(qs, v);
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

/* int4 on one set of 8 rows, one row per 32-bit lane (as the 4-bit ggml kernels, kern_legacy.c):
 * per block, the low nibbles of code piece n are the rows' elements 4n..4n+3 and the high ones
 * 16+4n..16+4n+3, against those activations broadcast; the int16 pair sums of the block's 4
 * pieces (below 2^15) go through one madd, giving each row's integer dot U of the codes. Per
 * group the U are summed times the activation scales and the zero points come off once, z *
 * (sum of pk_act.s over the group's blocks), as the ggml kernels fold their offsets; then the
 * rows' scales (one load each per group, as the zero points). */
PK_ALWAYS_INLINE void q8_int4_set(const gq_packed_linear *P, int r, const int ASYM,
                                  const pk_act *a, float *y)
{
    const int bpg = P->group / 32, nb = P->cols_pad / 32;
    const size_t hb = P->hdr_bytes, group_bytes = hb + (size_t)bpg * I4_SET * 16;
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    const __m256 zc = _mm256_set1_ps((float)P->zconst);
    __m256 acc = _mm256_setzero_ps();
    const uint8_t *h = pk_i4_group(P, r, 0);
    for (int b0 = 0; b0 < nb; b0 += bpg, h += group_bytes) {
        const __m256 s8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
        const __m256 z = ASYM ? _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(
                                    _mm_loadl_epi64((const __m128i *)(h + 2 * I4_SET))))
                              : zc;
        __m256 gacc = _mm256_setzero_ps();
        const int b1 = b0 + bpg < nb ? b0 + bpg : nb;
        float xs = 0.0f; /* sum of the group's x, as the quantized activations give it */
        for (int b = b0; b < b1; b++)
            xs += a->s[b];
        const uint8_t *codes = h + hb;
        for (int b = b0; b < b1; b++, codes += I4_SET * 16) {
            const int8_t *xq = a->q + 32 * b;
            __m256i s16 = _mm256_setzero_si256();
            for (int n = 0; n < 4; n++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(codes + 32 * n));
                int32_t xlo, xhi; /* activations 4n..4n+3 and 16+4n..16+4n+3 */
                memcpy(&xlo, xq + 4 * n, 4);
                memcpy(&xhi, xq + 16 + 4 * n, 4);
                s16 = _mm256_add_epi16(
                    s16, _mm256_add_epi16(
                             _mm256_maddubs_epi16(_mm256_and_si256(v, m4), _mm256_set1_epi32(xlo)),
                             _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4),
                                                  _mm256_set1_epi32(xhi))));
            }
            gacc = _mm256_fmadd_ps(_mm256_broadcast_ss(a->d + b),
                                   _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, ones)), gacc);
        }
        acc = _mm256_fmadd_ps(s8, _mm256_fnmadd_ps(z, _mm256_set1_ps(xs), gacc), acc);
    }
    pk_store_lanes(acc, P->rows - r < I4_SET ? P->rows - r : I4_SET, y);
}

/* Every pass is the whole set holding rows r..r+nr-1 (the last set may have fewer real rows);
 * asymmetric (zero points in the headers) and symmetric (P->zconst) compiled apart. */
static void q8_int4(const gq_packed_linear *P, int r, int nr, const pk_act *a, float *y)
{
    (void)nr;
    if (P->hdr_bytes == 3 * I4_SET)
        q8_int4_set(P, r, 1, a, y);
    else
        q8_int4_set(P, r, 0, a, y);
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

const pk_type pk_int4 = {"int4", 32, ref_int4, fast_int4, dot_int4, q8_int4, false, I4_SET, I4_PIECE};
const pk_type pk_int8 = {"int8", 32, ref_int8, fast_int8, dot_int8, q8_int8, false, 1, 32};
#else
const pk_type pk_int4 = {"int4", 32, ref_int4, ref_int4, pk_dot_generic, NULL, false, I4_SET, I4_PIECE};
const pk_type pk_int8 = {"int8", 32, ref_int8, ref_int8, pk_dot_generic, NULL, false, 1, 32};
#endif
