/* Packed kernels of the K-quants Q4_K and Q6_K (ggml super-blocks of 256, stored in sets of 4
 * rows: Q4_K with its code pieces interleaved, Q6_K block by block; packed_internal.h). The
 * reference dequantization is the format's own (gq_kq_dequantize_block). AVX2:
 *   Q4_K: 8 sub-blocks of 32, w = D_j * q - M_j with q in 0..15; in the fp32 dot the offsets M_j
 *         go through the block sums of x: D_j * sum(q x) - M_j * sum(x); on int8 activations it
 *         pairs with Q8_K (q4_K_set_q8k below).
 *   Q6_K: 16 sub-blocks of 16, w = D_j * (q - 32) with 6-bit q split into low nibbles (ql) and
 *         2 high bits (qh); per half of 128 elements, 32 bytes of ql/qh give 4 runs of 32. */
#include <stdbool.h>
#include <string.h>

#include "formats/ggml_kquants.h"
#include "packed/packed_internal.h"
#include "packed/pk_simd.h"

/* Super-block i of row r as a contiguous block: in place for plain rows, else assembled in
 * tmp from the interleaved set (packed_internal.h). */
static inline const gq_block_q4_K *q4_K_at(const gq_packed_linear *P, int r, int i,
                                           gq_block_q4_K *tmp)
{
    if (r >= P->il_rows)
        return (const gq_block_q4_K *)pk_blk_hdr(P, r, i);
    pk_blk_copy(P, r, i, tmp);
    return tmp;
}
static inline const gq_block_q6_K *q6_K_at(const gq_packed_linear *P, int r, int i)
{
    return (const gq_block_q6_K *)pk_blk_hdr(P, r, i);
}

static void ref_q4_K(const gq_packed_linear *P, int r, float *y)
{
    for (int i = 0; i < P->cols_pad / GQ_QK_K; i++) {
        gq_block_q4_K tmp;
        gq_kq_dequantize_block(&gq_kq_q4_K, q4_K_at(P, r, i, &tmp), y + (size_t)i * GQ_QK_K);
    }
}

static void ref_q6_K(const gq_packed_linear *P, int r, float *y)
{
    for (int i = 0; i < P->cols_pad / GQ_QK_K; i++)
        gq_kq_dequantize_block(&gq_kq_q6_K, q6_K_at(P, r, i), y + (size_t)i * GQ_QK_K);
}

#if PK_AVX2
/* D_j = d * ls_j and M_j = dmin * lm_j of a Q4_K block (the format's float operations), lane
 * j of D and M. The 6-bit scales and mins (layout in formats/ggml_kquants.h) are unpacked as
 * 32-bit words of 4 bytes (sub-blocks 0-3 whole in bytes 0-3 and 4-7; 4-7 from the nibbles of
 * bytes 8-11 and the top 2 bits of bytes 0-7) then widened to floats: no per-byte scalar work. */
static inline void q4_K_scales_v(const gq_block_q4_K *b, __m256 *D, __m256 *M)
{
    uint32_t u[3];
    memcpy(u, b->scales, sizeof u);
    const uint32_t m6 = 0x3F3F3F3Fu, m4 = 0x0F0F0F0Fu, top = 0x30303030u;
    const uint64_t ls = (u[0] & m6) | (uint64_t)((u[2] & m4) | ((u[0] >> 2) & top)) << 32;
    const uint64_t lm = (u[1] & m6) | (uint64_t)(((u[2] >> 4) & m4) | ((u[1] >> 2) & top)) << 32;
    const __m256 fs = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)ls)));
    const __m256 fm = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)lm)));
    *D = _mm256_mul_ps(_mm256_set1_ps(pk_fp16(b->d)), fs);
    *M = _mm256_mul_ps(_mm256_set1_ps(pk_fp16(b->dmin)), fm);
}

/* The same as arrays D[8], M[8]. */
static inline void q4_K_scales(const gq_block_q4_K *b, float D[8], float M[8])
{
    __m256 d, m;
    q4_K_scales_v(b, &d, &m);
    _mm256_storeu_ps(D, d);
    _mm256_storeu_ps(M, m);
}

/* Codes of sub-blocks 2c (low nibbles of qs[32c..32c+32)) and 2c+1 (high nibbles), as two
 * runs of 16 bytes each. */
static inline void q4_K_chunk(const gq_block_q4_K *b, int c, __m128i lo[2], __m128i hi[2])
{
    pk_nibbles16(b->qs + 32 * c, &lo[0], &hi[0]);
    pk_nibbles16(b->qs + 32 * c + 16, &lo[1], &hi[1]);
}

static void fast_q4_K(const gq_packed_linear *P, int r, float *y)
{
    for (int i = 0; i < P->cols_pad / GQ_QK_K; i++) {
        gq_block_q4_K tmp;
        const gq_block_q4_K *bi = q4_K_at(P, r, i, &tmp);
        float D[8], M[8];
        q4_K_scales(bi, D, M);
        for (int c = 0; c < 4; c++) {
            __m128i q[2][2]; /* [sub-block parity][half] */
            q4_K_chunk(bi, c, q[0], q[1]);
            for (int p = 0; p < 2; p++) {
                __m256 d = _mm256_set1_ps(D[2 * c + p]), m = _mm256_set1_ps(M[2 * c + p]);
                float *o = y + 64 * c + 32 * p;
                for (int h = 0; h < 2; h++) {
                    __m256 a, e;
                    pk_i8x16_to_f32(q[p][h], &a, &e);
                    _mm256_storeu_ps(o + 16 * h, _mm256_sub_ps(_mm256_mul_ps(a, d), m));
                    _mm256_storeu_ps(o + 16 * h + 8, _mm256_sub_ps(_mm256_mul_ps(e, d), m));
                }
            }
        }
        y += GQ_QK_K;
    }
}

static float dot_q4_K(const gq_packed_linear *P, int r, const float *x, const float *xs)
{
    __m256 acc = _mm256_setzero_ps(), offs = _mm256_setzero_ps();
    for (int i = 0; i < P->cols_pad / GQ_QK_K; i++, x += GQ_QK_K, xs += 8) {
        gq_block_q4_K tmp;
        const gq_block_q4_K *bi = q4_K_at(P, r, i, &tmp);
        float D[8], M[8];
        q4_K_scales(bi, D, M);
        const __m128i m = _mm_set1_epi8(0x0F);
        for (int c = 0; c < 4; c++) { /* sub-blocks 2c (low nibbles) and 2c+1 (high) */
            __m128i lo[4], hi[4];
            for (int k = 0; k < 4; k++) {
                __m128i a = _mm_loadl_epi64((const __m128i *)(bi->qs + 32 * c + 8 * k));
                lo[k] = _mm_and_si128(a, m);
                hi[k] = _mm_and_si128(_mm_srli_epi16(a, 4), m);
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(D[2 * c]), pk_dot4x8_i8(lo, x + 64 * c), acc);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(D[2 * c + 1]), pk_dot4x8_i8(hi, x + 64 * c + 32),
                                  acc);
        }
        offs = _mm256_fmadd_ps(_mm256_loadu_ps(M), _mm256_loadu_ps(xs), offs);
    }
    return pk_hsum(acc) - pk_hsum(offs);
}

/* Signed codes q - 32 of half h of a Q6_K block: v[k] holds elements 128h + 32k + 0..31. */
static inline void q6_K_half(const gq_block_q6_K *b, int h, __m256i v[4])
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03);
    const __m256i off = _mm256_set1_epi8(32);
    __m256i ql0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
    __m256i ql1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
    __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
    __m256i lows[4] = {_mm256_and_si256(ql0, m4), _mm256_and_si256(ql1, m4),
                       _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                       _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4)};
    for (int k = 0; k < 4; k++) {
        __m256i hb = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), m2);
        v[k] = _mm256_sub_epi8(_mm256_or_si256(lows[k], _mm256_slli_epi16(hb, 4)), off);
    }
}

static void fast_q6_K(const gq_packed_linear *P, int r, float *y)
{
    for (int i = 0; i < P->cols_pad / GQ_QK_K; i++) {
        const gq_block_q6_K *bi = q6_K_at(P, r, i);
        const float d = pk_fp16(bi->d);
        for (int h = 0; h < 2; h++) {
            __m256i v[4];
            q6_K_half(bi, h, v);
            for (int k = 0; k < 4; k++) {
                float *o = y + 128 * h + 32 * k;
                const int8_t *sc = bi->scales + 8 * h + 2 * k; /* sub-blocks of 16 */
                pk_store16_i8(_mm256_castsi256_si128(v[k]), _mm256_set1_ps(d * sc[0]), o);
                pk_store16_i8(_mm256_extracti128_si256(v[k], 1), _mm256_set1_ps(d * sc[1]),
                              o + 16);
            }
        }
        y += GQ_QK_K;
    }
}

static float dot_q6_K(const gq_packed_linear *P, int r, const float *x, const float *xs)
{
    (void)xs;
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < P->cols_pad / GQ_QK_K; i++, x += GQ_QK_K) {
        const gq_block_q6_K *bi = q6_K_at(P, r, i);
        const float d = pk_fp16(bi->d);
        for (int h = 0; h < 2; h++) {
            __m256i v[4];
            q6_K_half(bi, h, v);
            for (int k = 0; k < 4; k++) {
                const float *xp = x + 128 * h + 32 * k;
                const int8_t *sc = bi->scales + 8 * h + 2 * k;
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * sc[0]),
                                      pk_dot16_i8(_mm256_castsi256_si128(v[k]), xp), acc);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * sc[1]),
                                      pk_dot16_i8(_mm256_extracti128_si256(v[k], 1), xp + 16),
                                      acc);
            }
        }
    }
    return pk_hsum(acc);
}

/* Q4_K on Q8_K activations (one scale dk per 256, as llama.cpp's Q4_K x Q8_K dot), so a
 * super-block is all integer. One interleaved set of 4 rows (576 bytes: 4 headers d, dmin,
 * scales[12], then code pieces of 16 bytes, piece n of the 4 rows together), two rows per
 * 256-bit vector: piece 2c+h of rows A and B is one load; its low nibbles are elements
 * 16h..16h+15 of sub-block 2c, its high nibbles those of sub-block 2c+1. The two halves' maddubs
 * sums (int16, below 2 * 2 * 15 * 127) are added, and madd with the sub-block's 6-bit scale
 * (int16, per row's 128-bit lane) gives int32 lanes 0-3 for row A and 4-7 for row B (ISUM <
 * 2^23, exact in float). y += d dk ISUM - dmin dk MSUM, MSUM = sum_j m_j * (sum of the codes
 * of x over sub-block j) by one madd of the mins with bsk. acc[p]: rows 2p, 2p+1. */
PK_ALWAYS_INLINE void q4_K_set_q8k(const uint8_t *set, const pk_act *a, int i, __m256 acc[2])
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i m6 = _mm256_set1_epi32(0x3F3F3F3F), lo4 = _mm256_set1_epi32(0x0F0F0F0F);
    const __m256i top = _mm256_set1_epi32(0x30303030);
    const __m256i H[2] = {_mm256_loadu_si256((const __m256i *)set),
                          _mm256_loadu_si256((const __m256i *)(set + 32))};
    /* d, dmin of the 4 rows (dword 0 of each header) as floats [dA mA dB mB dC mC dD mD] * dk */
    const __m128i d01 = _mm_unpacklo_epi32(_mm256_castsi256_si128(H[0]), _mm256_extracti128_si256(H[0], 1));
    const __m128i d23 = _mm_unpacklo_epi32(_mm256_castsi256_si128(H[1]), _mm256_extracti128_si256(H[1], 1));
    const __m256 dm = _mm256_mul_ps(_mm256_cvtph_ps(_mm_unpacklo_epi64(d01, d23)),
                                    _mm256_set1_ps(a->dk[i]));
    const __m256i bs = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(a->bsk + 8 * i)));
    __m256i sc[2], isum[2];
    for (int p = 0; p < 2; p++) {
        /* per header lane, dwords [dd, u0, u1, u2] -> bytes 0-7 scales, 8-15 mins (ggml's
         * get_scale_min_k4 on 32-bit words, as q4_K_scales_v) */
        const __m256i P_ = _mm256_shuffle_epi32(H[p], _MM_SHUFFLE(3, 2, 3, 1)); /* u0 u2 u1 u2 */
        const __m256i Q_ = _mm256_shuffle_epi32(H[p], _MM_SHUFFLE(2, 2, 1, 1)); /* u0 u0 u1 u1 */
        const __m256i S_ = _mm256_srlv_epi32(P_, _mm256_setr_epi32(0, 0, 0, 4, 0, 0, 0, 4));
        const __m256i hi = _mm256_or_si256(_mm256_and_si256(S_, lo4),
                                           _mm256_and_si256(_mm256_srli_epi32(Q_, 2), top));
        const __m256i U = _mm256_permute4x64_epi64(
            _mm256_blend_epi32(_mm256_and_si256(S_, m6), hi, 0xAA), _MM_SHUFFLE(3, 1, 2, 0));
        sc[p] = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(U));        /* [A sc | B sc] */
        const __m256i mn = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(U, 1)); /* mins */
        const __m256 mx = _mm256_permutevar8x32_ps(dm, _mm256_setr_epi32(4 * p + 1, 4 * p + 1, 4 * p + 1, 4 * p + 1, 4 * p + 3, 4 * p + 3, 4 * p + 3, 4 * p + 3));
        acc[p] = _mm256_fnmadd_ps(mx, _mm256_cvtepi32_ps(_mm256_madd_epi16(mn, bs)), acc[p]);
        isum[p] = _mm256_setzero_si256();
    }
    const int8_t *x = a->q + 256 * i;
    const uint8_t *pieces = set + 4 * 16;
    for (int c = 0; c < 4; c++) {
        const __m256i x0 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(x + 64 * c)));
        const __m256i x1 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(x + 64 * c + 16)));
        const __m256i x2 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(x + 64 * c + 32)));
        const __m256i x3 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(x + 64 * c + 48)));
        const __m256i pick_lo = _mm256_set1_epi16((short)(0x0100 * (4 * c + 1) + 4 * c));
        const __m256i pick_hi = _mm256_set1_epi16((short)(0x0100 * (4 * c + 3) + 4 * c + 2));
        for (int p = 0; p < 2; p++) {
            const __m256i v0 = _mm256_loadu_si256((const __m256i *)(pieces + 64 * (2 * c) + 32 * p));
            const __m256i v1 = _mm256_loadu_si256((const __m256i *)(pieces + 64 * (2 * c + 1) + 32 * p));
            const __m256i tl = _mm256_add_epi16(
                _mm256_maddubs_epi16(_mm256_and_si256(v0, m4), x0),
                _mm256_maddubs_epi16(_mm256_and_si256(v1, m4), x1));
            const __m256i th = _mm256_add_epi16(
                _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v0, 4), m4), x2),
                _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v1, 4), m4), x3));
            isum[p] = _mm256_add_epi32(isum[p], _mm256_madd_epi16(tl, _mm256_shuffle_epi8(sc[p], pick_lo)));
            isum[p] = _mm256_add_epi32(isum[p], _mm256_madd_epi16(th, _mm256_shuffle_epi8(sc[p], pick_hi)));
        }
    }
    for (int p = 0; p < 2; p++) {
        const __m256 dx = _mm256_permutevar8x32_ps(dm, _mm256_setr_epi32(4 * p, 4 * p, 4 * p, 4 * p, 4 * p + 2, 4 * p + 2, 4 * p + 2, 4 * p + 2));
        acc[p] = _mm256_fmadd_ps(dx, _mm256_cvtepi32_ps(isum[p]), acc[p]);
    }
}

/* Rows r..r+nr-1: one interleaved set, or (the plain rows after the last set) the same kernel
 * on a set assembled per super-block, the last row repeated. */
static void q8_q4_K(const gq_packed_linear *P, int r, int nr, const pk_act *a, float *y)
{
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    const bool il = r < P->il_rows;
    uint8_t set[PK_ROWS * sizeof(gq_block_q4_K)];
    for (int i = 0; i < P->cols_pad / GQ_QK_K; i++) {
        if (!il)
            pk_set_gather(P, r, nr, i, set);
        q4_K_set_q8k(il ? pk_il_base(P, r, i) : set, a, i, acc);
    }
    pk_store_pairs(acc, _mm_setzero_ps(), nr, y);
}

/* Q6_K on int8 activations: per run of 32 (one activation block, two sub-blocks of 16), the
 * signed codes q - 32 times xq by maddubs (|q - 32| <= 32: pairs <= 8128), the pairs weighted
 * by the sub-blocks' int8 scales in the same madd (low lane: sub-block 2k, high: 2k+1; sums
 * < 2^21), then one float product d * xd per run. */
PK_ALWAYS_INLINE void q8_q6_K_rows(const gq_packed_linear *P, int r, const int NR,
                                   const pk_act *a, float *y)
{
    const int8_t *xq = a->q;
    const float *xd = a->d, *xs = a->s;
    (void)xs;
    /* pshufb masks replicating int16 word 2k in the low lane and 2k+1 in the high lane */
    __m256i pick[4];
    for (int k = 0; k < 4; k++)
        pick[k] = _mm256_setr_m128i(_mm_set1_epi16((short)(0x0100 * (4 * k + 1) + 4 * k)),
                                    _mm_set1_epi16((short)(0x0100 * (4 * k + 3) + 4 * k + 2)));
    __m256 acc[PK_ROWS];
    for (int k = 0; k < NR; k++) {
        acc[k] = _mm256_setzero_ps();
    }
    for (int i = 0; i < P->cols_pad / GQ_QK_K; i++) {
        for (int h = 0; h < 2; h++) {
            const int8_t *xh = xq + GQ_QK_K * i + 128 * h;
            const float *dh = xd + 8 * i + 4 * h;
            __m256i x[4];
            for (int c = 0; c < 4; c++)
                x[c] = _mm256_loadu_si256((const __m256i *)(xh + 32 * c));
            for (int k = 0; k < NR; k++) {
                const gq_block_q6_K *bk = q6_K_at(P, r + k, i);
                const float d = pk_fp16(bk->d);
                __m256i v[4];
                q6_K_half(bk, h, v);
                __m256i sc = _mm256_broadcastsi128_si256(
                    _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(bk->scales + 8 * h))));
                for (int c = 0; c < 4; c++) {
                    __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(v[c], v[c]),
                                                       _mm256_sign_epi8(x[c], v[c]));
                    __m256i p = _mm256_madd_epi16(p16, _mm256_shuffle_epi8(sc, pick[c]));
                    acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(d * dh[c]), _mm256_cvtepi32_ps(p),
                                             acc[k]);
                }
            }
        }
    }
    pk_store_rows(acc, NULL, NR, y);
}
PK_Q8_ENTRY(q8_q6_K, PK_ROWS)

const pk_type pk_q4_K = {"q4_K", GQ_QK_K, ref_q4_K, fast_q4_K, dot_q4_K, q8_q4_K, PK_ROWS, true, PK_ROWS, 16};
const pk_type pk_q6_K = {"q6_K", GQ_QK_K, ref_q6_K, fast_q6_K, dot_q6_K, q8_q6_K, PK_ROWS, false, PK_ROWS, 16};
#else
const pk_type pk_q4_K = {"q4_K", GQ_QK_K, ref_q4_K, ref_q4_K, pk_dot_generic, NULL, 1, false, PK_ROWS, 16};
const pk_type pk_q6_K = {"q6_K", GQ_QK_K, ref_q6_K, ref_q6_K, pk_dot_generic, NULL, 1, false, PK_ROWS, 16};
#endif
