/* Packed kernels of the K-quants Q4_K and Q6_K (ggml super-blocks of 256). The reference
 * dequantization is the format's own (gq_kq_dequantize_block). AVX2:
 *   Q4_K: 8 sub-blocks of 32, w = D_j * q - M_j with q in 0..15; in the dot the offsets M_j go
 *         through the block sums of x: D_j * sum(q x) - M_j * sum(x).
 *   Q6_K: 16 sub-blocks of 16, w = D_j * (q - 32) with 6-bit q split into low nibbles (ql) and
 *         2 high bits (qh); per half of 128 elements, 32 bytes of ql/qh give 4 runs of 32. */
#include <string.h>

#include "formats/ggml_kquants.h"
#include "packed/packed_internal.h"
#include "packed/pk_simd.h"

/* Super-block i of row r (rows stored interleaved in sets, packed_internal.h). */
static inline const gq_block_q4_K *q4_K_at(const gq_packed_linear *P, int r, int i)
{
    return (const gq_block_q4_K *)pk_blk_hdr(P, r, i);
}
static inline const gq_block_q6_K *q6_K_at(const gq_packed_linear *P, int r, int i)
{
    return (const gq_block_q6_K *)pk_blk_hdr(P, r, i);
}

static void ref_q4_K(const gq_packed_linear *P, int r, float *y)
{
    for (int i = 0; i < P->cols_pad / GQ_QK_K; i++)
        gq_kq_dequantize_block(&gq_kq_q4_K, q4_K_at(P, r, i), y + (size_t)i * GQ_QK_K);
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
        const gq_block_q4_K *bi = q4_K_at(P, r, i);
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
        const gq_block_q4_K *bi = q4_K_at(P, r, i);
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

/* int8 activations: sub-block j of 32 gives D_j * xd * sum(q xq) (unsigned codes, maddubs as
 * is) - M_j * (block sum of x); NR rows per pass share the activation loads. Two accumulators
 * per row (even and odd sub-blocks) halve the dependent FMA chain. */
PK_ALWAYS_INLINE void q8_q4_K_rows(const gq_packed_linear *P, int r, const int NR,
                                   const pk_act *a, float *y)
{
    const int8_t *xq = a->q;
    const float *xd = a->d, *xs = a->s;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[2][PK_ROWS], offs[PK_ROWS];
    for (int k = 0; k < NR; k++) {
        acc[0][k] = acc[1][k] = offs[k] = _mm256_setzero_ps();
    }
    for (int i = 0; i < P->cols_pad / GQ_QK_K; i++, xq += GQ_QK_K, xd += 8, xs += 8) {
        const __m256 xdv = _mm256_loadu_ps(xd), xsv = _mm256_loadu_ps(xs);
        for (int k = 0; k < NR; k++) {
            const gq_block_q4_K *bk = q4_K_at(P, r + k, i);
            __m256 Dv, Mv;
            q4_K_scales_v(bk, &Dv, &Mv);
            /* D_j * xd_j for the 8 sub-blocks at once; the offsets as one vector FMA */
            const __m256 D = _mm256_mul_ps(Dv, xdv); /* lane j broadcast by vpermps, in registers */
            offs[k] = _mm256_fmadd_ps(Mv, xsv, offs[k]);
            for (int c = 0; c < 4; c++) {
                __m256i qs = _mm256_loadu_si256((const __m256i *)(bk->qs + 32 * c));
                __m256i w[2] = {_mm256_and_si256(qs, m4),
                                _mm256_and_si256(_mm256_srli_epi16(qs, 4), m4)};
                for (int p = 0; p < 2; p++) {
                    int j = 2 * c + p;
                    __m256i x = _mm256_loadu_si256((const __m256i *)(xq + 32 * j));
                    acc[p][k] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(D, _mm256_set1_epi32(j)),
                                                _mm256_cvtepi32_ps(pk_dot32_u8i8(w[p], x)),
                                                acc[p][k]);
                }
            }
        }
    }
    for (int k = 0; k < NR; k++)
        acc[0][k] = _mm256_sub_ps(_mm256_add_ps(acc[0][k], acc[1][k]), offs[k]);
    pk_store_rows(acc[0], NULL, NR, y);
}
PK_Q8_ENTRY(q8_q4_K)

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
PK_Q8_ENTRY(q8_q6_K)

const pk_type pk_q4_K = {"q4_K", GQ_QK_K, ref_q4_K, fast_q4_K, dot_q4_K, q8_q4_K, PK_ROWS, PK_ROWS};
const pk_type pk_q6_K = {"q6_K", GQ_QK_K, ref_q6_K, fast_q6_K, dot_q6_K, q8_q6_K, PK_ROWS, PK_ROWS};
#else
const pk_type pk_q4_K = {"q4_K", GQ_QK_K, ref_q4_K, ref_q4_K, pk_dot_generic, NULL, 1, 1};
const pk_type pk_q6_K = {"q6_K", GQ_QK_K, ref_q6_K, ref_q6_K, pk_dot_generic, NULL, 1, 1};
#endif
