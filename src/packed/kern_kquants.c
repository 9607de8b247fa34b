/* Packed kernels of the K-quants Q4_K and Q6_K (ggml super-blocks of 256, stored in sets of
 * rows, packed_internal.h: Q4_K 8 rows with code pieces of 4 bytes, Q6_K 4 rows block by block). The
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

/* Q4_K storage: sets of 8 rows (one per 32-bit lane of the decode kernel), pieces of 4 bytes;
 * Q6_K: sets of 4 rows, whole super-blocks. */
#define Q4K_SET 8
#define Q4K_PIECE 4
#define Q6K_SET 4

/* Super-block i of a row (rb = pk_rowblocks_of, once per row) as a contiguous block: in place
 * for plain rows, else assembled in tmp from the interleaved set (packed_internal.h). Q6_K's
 * blocks are always whole (its header is the block). */
static inline const gq_block_q4_K *q4_K_at(const pk_rowblocks *rb, int i, gq_block_q4_K *tmp)
{
    if (rb->plain)
        return (const gq_block_q4_K *)(rb->hdr + (size_t)i * rb->step);
    pk_rb_copy(rb, i, tmp, 16, Q4K_PIECE, GQ_QK_K / 2 / Q4K_PIECE);
    return tmp;
}
static inline const gq_block_q6_K *q6_K_at(const pk_rowblocks *rb, int i)
{
    return (const gq_block_q6_K *)(rb->hdr + (size_t)i * rb->step);
}

static void ref_q4_K(const gq_packed_linear *P, int r, float *y)
{
    const pk_rowblocks rb = pk_rowblocks_of(P, r);
    for (int i = 0; i < P->cols_pad / GQ_QK_K; i++) {
        gq_block_q4_K tmp;
        gq_kq_dequantize_block(&gq_kq_q4_K, q4_K_at(&rb, i, &tmp), y + (size_t)i * GQ_QK_K);
    }
}

static void ref_q6_K(const gq_packed_linear *P, int r, float *y)
{
    const pk_rowblocks rb = pk_rowblocks_of(P, r);
    for (int i = 0; i < P->cols_pad / GQ_QK_K; i++)
        gq_kq_dequantize_block(&gq_kq_q6_K, q6_K_at(&rb, i), y + (size_t)i * GQ_QK_K);
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
    const pk_rowblocks rb = pk_rowblocks_of(P, r);
    for (int i = 0; i < P->cols_pad / GQ_QK_K; i++) {
        gq_block_q4_K tmp;
        const gq_block_q4_K *bi = q4_K_at(&rb, i, &tmp);
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
    const pk_rowblocks rb = pk_rowblocks_of(P, r);
    __m256 acc = _mm256_setzero_ps(), offs = _mm256_setzero_ps();
    for (int i = 0; i < P->cols_pad / GQ_QK_K; i++, x += GQ_QK_K, xs += 8) {
        gq_block_q4_K tmp;
        const gq_block_q4_K *bi = q4_K_at(&rb, i, &tmp);
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

/* A whole Q6_K block as 16 pieces of 16 signed codes (piece j: elements 16j..16j+15) with the
 * scale d * scales[j] of each in s. */
static inline void q6_K_pieces(const gq_block_q6_K *b, __m128i q[16], float s[16])
{
    const float d = pk_fp16(b->d);
    for (int h = 0; h < 2; h++) {
        __m256i v[4];
        q6_K_half(b, h, v);
        for (int k = 0; k < 4; k++) {
            q[8 * h + 2 * k] = _mm256_castsi256_si128(v[k]);
            q[8 * h + 2 * k + 1] = _mm256_extracti128_si256(v[k], 1);
        }
    }
    for (int j = 0; j < 16; j++)
        s[j] = d * b->scales[j];
}

static void fast_q6_K(const gq_packed_linear *P, int r, float *y)
{
    const pk_rowblocks rb = pk_rowblocks_of(P, r);
    __m128i q[16];
    float s[16];
    for (int i = 0; i < P->cols_pad / GQ_QK_K; i++, y += GQ_QK_K) {
        q6_K_pieces(q6_K_at(&rb, i), q, s);
        for (int j = 0; j < 16; j++)
            pk_store16_i8(q[j], _mm256_set1_ps(s[j]), y + 16 * j);
    }
}

static float dot_q6_K(const gq_packed_linear *P, int r, const float *x, const float *xs)
{
    const pk_rowblocks rb = pk_rowblocks_of(P, r);
    (void)xs;
    __m128i q[16];
    float s[16];
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < P->cols_pad / GQ_QK_K; i++, x += GQ_QK_K) {
        q6_K_pieces(q6_K_at(&rb, i), q, s);
        for (int j = 0; j < 16; j++)
            acc = _mm256_fmadd_ps(_mm256_set1_ps(s[j]), pk_dot16_i8(q[j], x + 16 * j), acc);
    }
    return pk_hsum(acc);
}

/* Q4_K on Q8_K activations (one scale dk per 256, as llama.cpp's Q4_K x Q8_K dot), so a
 * super-block is all integer. One set of 8 rows, one row per 32-bit lane: 8 headers (d, dmin,
 * scales[12]; 128 bytes), then 32 code pieces of 8 rows x 4 bytes. Piece 8c + m holds bytes
 * 4m..4m+3 of the row's 64-element chunk c: low nibbles elements 64c+4m.. of sub-block 2c, high
 * nibbles 64c+32+4m.. of sub-block 2c+1, each against those 4 activations broadcast. A chunk's 8
 * pieces' maddubs sums per sub-block stay in int16 (below 8 * 2 * 15 * 127 < 2^15), and one
 * madd weights them by the rows' 6-bit scales; ISUM, the super-block's integer dot, is below
 * 2^25 (converted to float with at most one rounding, 2^-24 relative). y += d dk ISUM - dmin dk
 * MSUM, MSUM = sum_j m_j * (sum of the codes of x over sub-block j). */
/* pshufb controls giving each 32-bit lane its own bytes b0 and b1 zero-extended to int16:
 * LANE_BYTES16[j] = (j, j) for j < 4 (a scale as an int16 pair), [4 + t] = (2t, 2t + 1). */
#define LB16_HALF(b0, b1)                                                                    \
    b0, -1, b1, -1, 4 + b0, -1, 4 + b1, -1, 8 + b0, -1, 8 + b1, -1, 12 + b0, -1, 12 + b1, -1
#define LB16(b0, b1) {LB16_HALF(b0, b1), LB16_HALF(b0, b1)}
static const int8_t LANE_BYTES16[6][32] __attribute__((aligned(32))) = {
    LB16(0, 0), LB16(1, 1), LB16(2, 2), LB16(3, 3), LB16(0, 1), LB16(2, 3)};

static inline __m256i lane_bytes16(int k)
{
    return _mm256_load_si256((const __m256i *)LANE_BYTES16[k]);
}

PK_ALWAYS_INLINE void q4_K_set8(const uint8_t *set, const pk_act *a, int i, __m256 *acc)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    /* header dword t of row k in lane k: 4 x 4 transposes of rows (p, p + 4) */
    __m256i H[4];
    for (int p = 0; p < 4; p++)
        H[p] = _mm256_loadu2_m128i((const __m128i *)(set + 16 * (p + 4)),
                                   (const __m128i *)(set + 16 * p));
    const __m256i lo01 = _mm256_unpacklo_epi32(H[0], H[1]), hi01 = _mm256_unpackhi_epi32(H[0], H[1]);
    const __m256i lo23 = _mm256_unpacklo_epi32(H[2], H[3]), hi23 = _mm256_unpackhi_epi32(H[2], H[3]);
    const __m256i T0 = _mm256_unpacklo_epi64(lo01, lo23), T1 = _mm256_unpackhi_epi64(lo01, lo23);
    const __m256i T2 = _mm256_unpacklo_epi64(hi01, hi23), T3 = _mm256_unpackhi_epi64(hi01, hi23);
    /* T0: d | dmin; T1..T3: scales[0..11] as words u0, u1, u2 -> the 6-bit fields, 4 per lane
     * (ggml's get_scale_min_k4: sub-blocks 0-3 whole in u0 and u1; 4-7 from the nibbles of u2
     * and the top 2 bits of u0, u1) */
    const __m256i m6 = _mm256_set1_epi32(0x3F3F3F3F), lo4 = _mm256_set1_epi32(0x0F0F0F0F);
    const __m256i top = _mm256_set1_epi32(0x30303030);
    const __m256i sc[2] = {_mm256_and_si256(T1, m6),
                           _mm256_or_si256(_mm256_and_si256(T3, lo4),
                                           _mm256_and_si256(_mm256_srli_epi32(T1, 2), top))};
    const __m256i mn[2] = {_mm256_and_si256(T2, m6),
                           _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(T3, 4), lo4),
                                           _mm256_and_si256(_mm256_srli_epi32(T2, 2), top))};
    __m256 dmin;
    const __m256 dk = _mm256_broadcast_ss(a->dk + i);
    const __m256 d = _mm256_mul_ps(pk_fp16_pairs(T0, &dmin), dk);
    /* MSUM first (fewer live registers in the code loop): mins of sub-blocks 2t, 2t+1 as an
     * int16 pair per lane, times bsk[2t], bsk[2t+1] */
    __m256i msum = _mm256_setzero_si256();
    for (int t = 0; t < 4; t++) {
        const __m256i pair = _mm256_shuffle_epi8(mn[t / 2], lane_bytes16(4 + t % 2));
        int32_t bs;
        memcpy(&bs, a->bsk + 8 * i + 2 * t, 4);
        msum = _mm256_add_epi32(msum, _mm256_madd_epi16(pair, _mm256_set1_epi32(bs)));
    }
    *acc = _mm256_fnmadd_ps(_mm256_mul_ps(dmin, dk), _mm256_cvtepi32_ps(msum), *acc);
    const int8_t *x = a->q + 256 * i;
    const uint8_t *pc = set + Q4K_SET * 16;
    __m256i isum = _mm256_setzero_si256();
#pragma GCC unroll 4 /* whole: sc[j / 4] and the shuffle controls then stay in registers */
    for (int c = 0; c < 4; c++, pc += 8 * 32, x += 64) {
        __m256i slo = _mm256_setzero_si256(), shi = _mm256_setzero_si256();
        for (int m = 0; m < 8; m++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(pc + 32 * m));
            int32_t xlo, xhi;
            memcpy(&xlo, x + 4 * m, 4);
            memcpy(&xhi, x + 32 + 4 * m, 4);
            slo = _mm256_add_epi16(slo, _mm256_maddubs_epi16(_mm256_and_si256(v, m4),
                                                             _mm256_set1_epi32(xlo)));
            shi = _mm256_add_epi16(shi, _mm256_maddubs_epi16(
                                            _mm256_and_si256(_mm256_srli_epi16(v, 4), m4),
                                            _mm256_set1_epi32(xhi)));
        }
        /* the scale of sub-block j (byte j % 4 of sc[j / 4]) as an int16 pair per lane */
        for (int h = 0; h < 2; h++) {
            const int j = 2 * c + h;
            const __m256i s16 = _mm256_shuffle_epi8(sc[j / 4], lane_bytes16(j % 4));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(h ? shi : slo, s16));
        }
    }
    *acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(isum), *acc);
}

/* Rows r..r+nr-1: one whole set, or (the plain rows after the last set, nr < 8) the same
 * kernel on a set gathered per super-block, the last row repeated. */
static void q8_q4_K(const gq_packed_linear *P, int r, int nr, const pk_act *a, float *y)
{
    __m256 acc = _mm256_setzero_ps();
    const int nb = P->cols_pad / GQ_QK_K;
    if (r < P->il_rows) {
        const uint8_t *set = pk_il_base(P, r, 0);
        for (int i = 0; i < nb; i++, set += Q4K_SET * sizeof(gq_block_q4_K))
            q4_K_set8(set, a, i, &acc);
    } else {
        uint8_t gathered[Q4K_SET * sizeof(gq_block_q4_K)];
        for (int i = 0; i < nb; i++) {
            pk_set_gather(P, r, nr, i, gathered);
            q4_K_set8(gathered, a, i, &acc);
        }
    }
    pk_store_lanes(acc, nr, y);
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
    pk_rowblocks rb[PK_ROWS];
    __m256 acc[PK_ROWS];
    for (int k = 0; k < NR; k++) {
        rb[k] = pk_rowblocks_of(P, r + k);
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
                const gq_block_q6_K *bk = q6_K_at(&rb[k], i);
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

const pk_type pk_q4_K = {"q4_K", GQ_QK_K, ref_q4_K, fast_q4_K, dot_q4_K, q8_q4_K, true, Q4K_SET, Q4K_PIECE};
const pk_type pk_q6_K = {"q6_K", GQ_QK_K, ref_q6_K, fast_q6_K, dot_q6_K, q8_q6_K, false, Q6K_SET, 16};
#else
const pk_type pk_q4_K = {"q4_K", GQ_QK_K, ref_q4_K, ref_q4_K, pk_dot_generic, NULL, false, Q4K_SET, Q4K_PIECE};
const pk_type pk_q6_K = {"q6_K", GQ_QK_K, ref_q6_K, ref_q6_K, pk_dot_generic, NULL, false, Q6K_SET, 16};
#endif
