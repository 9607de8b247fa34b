/* Packed kernels of the llama.cpp 32-element blocks: Q4_0, Q4_1, Q8_0 and ggml's MXFP4 (the
 * 4-bit ones stored in sets of 8 rows, packed_internal.h). The reference dequantization is the
 * format's own (ggml's to_float) on the reassembled block; the AVX2 fp32 paths decode 16 codes
 * at a time to floats: Q4_0 w = d*(q-8), Q4_1 w = d*q + m (the offset folded through the block
 * sum of x in the dot), Q8_0 w = d*q, MXFP4 w = kvalue[q] * e8m0/2 (pshufb lookup); the int8-
 * activation dots are below. */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "formats/ggml_legacy.h"
#include "packed/packed_internal.h"
#include "packed/pk_simd.h"

/* The 4-bit formats' storage: sets of 8 rows, code pieces of 4 bytes (packed_internal.h). */
#define LEG_SET 8
#define LEG_PIECE 4

/* Block i of a row (rb) as the format's block b of `size` bytes: a header, then 16 code bytes. */
static inline __attribute__((always_inline)) void leg_block(const pk_rowblocks *rb, int i,
                                                            void *b, size_t size)
{
    pk_rb_copy(rb, i, b, size - 16, LEG_PIECE, 16 / LEG_PIECE);
}

static void ref_q4_0(const gq_packed_linear *P, int r, float *y)
{
    const pk_rowblocks rb = pk_rowblocks_of(P, r);
    for (int i = 0; i < P->cols_pad / 32; i++) {
        gq_block_q4_0 b;
        leg_block(&rb, i, &b, sizeof b);
        gq_ggml_q4_0.dequantize_row(&b, 32, y + 32 * i);
    }
}
static void ref_q4_1(const gq_packed_linear *P, int r, float *y)
{
    const pk_rowblocks rb = pk_rowblocks_of(P, r);
    for (int i = 0; i < P->cols_pad / 32; i++) {
        gq_block_q4_1 b;
        leg_block(&rb, i, &b, sizeof b);
        gq_ggml_q4_1.dequantize_row(&b, 32, y + 32 * i);
    }
}
static void ref_q8_0(const gq_packed_linear *P, int r, float *y)
{
    gq_ggml_q8_0.dequantize_row(pk_row(P, r), P->cols_pad, y);
}
static void ref_mxfp4(const gq_packed_linear *P, int r, float *y)
{
    const pk_rowblocks rb = pk_rowblocks_of(P, r);
    for (int i = 0; i < P->cols_pad / 32; i++) {
        gq_block_mxfp4 b;
        leg_block(&rb, i, &b, sizeof b);
        gq_ggml_mxfp4.dequantize_row(&b, 32, y + 32 * i);
    }
}

#if PK_AVX2
/* Q4_0: signed codes q - 8 of one block, elements 0..15 and 16..31. */
static inline void q4_0_codes(const gq_block_q4_0 *b, __m128i *lo, __m128i *hi)
{
    const __m128i eight = _mm_set1_epi8(8);
    pk_nibbles16(b->qs, lo, hi);
    *lo = _mm_sub_epi8(*lo, eight);
    *hi = _mm_sub_epi8(*hi, eight);
}

static void fast_q4_0(const gq_packed_linear *P, int r, float *y)
{
    const pk_rowblocks rb = pk_rowblocks_of(P, r);
    for (int i = 0; i < P->cols_pad / 32; i++, y += 32) {
        gq_block_q4_0 bi;
        leg_block(&rb, i, &bi, sizeof bi);
        __m128i lo, hi;
        q4_0_codes(&bi, &lo, &hi);
        __m256 d = _mm256_set1_ps(pk_fp16(bi.d));
        pk_store16_i8(lo, d, y);
        pk_store16_i8(hi, d, y + 16);
    }
}

static float dot_q4_0(const gq_packed_linear *P, int r, const float *x, const float *xs)
{
    const pk_rowblocks rb = pk_rowblocks_of(P, r);
    (void)xs;
    const __m128i eight = _mm_set1_epi8(8);
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < P->cols_pad / 32; i++, x += 32) {
        gq_block_q4_0 bi;
        leg_block(&rb, i, &bi, sizeof bi);
        __m128i v[4];
        pk_nibbles4x8(bi.qs, v);
        pk_sub4x8(v, eight);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(pk_fp16(bi.d)), pk_dot4x8_i8(v, x), acc);
    }
    return pk_hsum(acc);
}

static void fast_q4_1(const gq_packed_linear *P, int r, float *y)
{
    const pk_rowblocks rb = pk_rowblocks_of(P, r);
    for (int i = 0; i < P->cols_pad / 32; i++, y += 32) {
        gq_block_q4_1 bi;
        leg_block(&rb, i, &bi, sizeof bi);
        __m128i q[2];
        pk_nibbles16(bi.qs, &q[0], &q[1]);
        __m256 d = _mm256_set1_ps(pk_fp16(bi.d)), m = _mm256_set1_ps(pk_fp16(bi.m));
        for (int h = 0; h < 2; h++) { /* ggml: x0*d + m, rounded product then sum */
            __m256 a, c;
            pk_i8x16_to_f32(q[h], &a, &c);
            _mm256_storeu_ps(y + 16 * h, _mm256_add_ps(_mm256_mul_ps(a, d), m));
            _mm256_storeu_ps(y + 16 * h + 8, _mm256_add_ps(_mm256_mul_ps(c, d), m));
        }
    }
}

static float dot_q4_1(const gq_packed_linear *P, int r, const float *x, const float *xs)
{
    const pk_rowblocks rb = pk_rowblocks_of(P, r);
    __m256 acc = _mm256_setzero_ps();
    float offs = 0.0f; /* sum of m * (block sum of x) */
    for (int i = 0; i < P->cols_pad / 32; i++, x += 32) {
        gq_block_q4_1 bi;
        leg_block(&rb, i, &bi, sizeof bi);
        __m128i v[4];
        pk_nibbles4x8(bi.qs, v);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(pk_fp16(bi.d)), pk_dot4x8_i8(v, x), acc);
        offs += pk_fp16(bi.m) * xs[i];
    }
    return pk_hsum(acc) + offs;
}

static void fast_q8_0(const gq_packed_linear *P, int r, float *y)
{
    const gq_block_q8_0 *b = (const gq_block_q8_0 *)pk_row(P, r);
    for (int i = 0; i < P->cols_pad / 32; i++, y += 32) {
        __m256 d = _mm256_set1_ps(pk_fp16(b[i].d));
        pk_store16_i8(_mm_loadu_si128((const __m128i *)b[i].qs), d, y);
        pk_store16_i8(_mm_loadu_si128((const __m128i *)(b[i].qs + 16)), d, y + 16);
    }
}

static float dot_q8_0(const gq_packed_linear *P, int r, const float *x, const float *xs)
{
    (void)xs;
    const gq_block_q8_0 *b = (const gq_block_q8_0 *)pk_row(P, r);
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < P->cols_pad / 32; i++, x += 32)
        acc = _mm256_fmadd_ps(_mm256_set1_ps(pk_fp16(b[i].d)), pk_dot32_i8_mem(b[i].qs, x), acc);
    return pk_hsum(acc);
}

/* MXFP4: element values (doubled E2M1, signed) by table lookup of the nibbles. */
static inline void mxfp4_values(const gq_block_mxfp4 *b, __m128i lut, __m128i *lo, __m128i *hi)
{
    pk_nibbles16(b->qs, lo, hi);
    *lo = _mm_shuffle_epi8(lut, *lo);
    *hi = _mm_shuffle_epi8(lut, *hi);
}

static void fast_mxfp4(const gq_packed_linear *P, int r, float *y)
{
    const pk_rowblocks rb = pk_rowblocks_of(P, r);
    const __m128i lut = _mm_loadu_si128((const __m128i *)gq_kvalues_mxfp4);
    for (int i = 0; i < P->cols_pad / 32; i++, y += 32) {
        gq_block_mxfp4 bi;
        leg_block(&rb, i, &bi, sizeof bi);
        __m128i lo, hi;
        mxfp4_values(&bi, lut, &lo, &hi);
        __m256 d = _mm256_set1_ps(pk_e8m0_half(bi.e));
        pk_store16_i8(lo, d, y);
        pk_store16_i8(hi, d, y + 16);
    }
}

static float dot_mxfp4(const gq_packed_linear *P, int r, const float *x, const float *xs)
{
    const pk_rowblocks rb = pk_rowblocks_of(P, r);
    (void)xs;
    const __m128i lut = _mm_loadu_si128((const __m128i *)gq_kvalues_mxfp4);
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < P->cols_pad / 32; i++, x += 32) {
        gq_block_mxfp4 bi;
        leg_block(&rb, i, &bi, sizeof bi);
        __m128i v[4];
        pk_nibbles4x8(bi.qs, v);
        for (int k = 0; k < 4; k++)
            v[k] = _mm_shuffle_epi8(lut, v[k]);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(pk_e8m0_half(bi.e)), pk_dot4x8_i8(v, x), acc);
    }
    return pk_hsum(acc);
}

/* ---- the 4-bit blocks (q4_0, q4_1, mxfp4) on int8 activations: one set of 8 rows, one row
 * per 32-bit lane of a 256-bit vector. A block's code bytes are 4 pieces of 8 rows x 4 bytes
 * (packed_internal.h): the low nibbles of piece n are the rows' elements 4n..4n+3, the high
 * ones 16+4n..16+4n+3, so a maddubs against those 4 activations broadcast to every lane leaves
 * each row's products in its own lane, and the block's 8 scales are one vector. The codes are
 * unsigned: q4_0 q (its -8 through 8 d * block sum of x), mxfp4 table value + 12 (the -12
 * likewise), q4_1 q (its m through m * block sum). The int16 pair sums of several pieces are
 * added before one madd: all 4 for q4_0 and q4_1 (below 4 * 2 * 2 * 15 * 127 < 2^15), 2 for
 * mxfp4 (codes up to 24); then one float product per block and row. (AVX512-VNNI's dpbusd
 * would fuse maddubs and madd but measured no faster on Zen 4, `bench matvec`.) ---- */
enum { LEG_Q4_0, LEG_Q4_1, LEG_MXFP4, LEG_MXFP4N };

/* Block scales of a set's 8 rows from its headers (q4_1: *m = the offsets). */
PK_ALWAYS_INLINE __m256 leg8_scales(const uint8_t *hdr, const int kind, __m256 *m)
{
    if (kind == LEG_Q4_1) /* 8 x (d, m) */
        return pk_fp16_pairs(_mm256_loadu_si256((const __m256i *)hdr), m);
    if (kind == LEG_MXFP4 || kind == LEG_MXFP4N) { /* E8M0 halved: 2^(e-128) as float bits
                                                     (e - 1) << 23, subnormal below e = 2 */
        const __m256i e = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)hdr));
        const __m256i normal = _mm256_slli_epi32(_mm256_sub_epi32(e, _mm256_set1_epi32(1)), 23);
        if (kind == LEG_MXFP4N)
            return _mm256_castsi256_ps(normal);
        const __m256i sub = _mm256_sllv_epi32(_mm256_set1_epi32(0x00200000), e);
        return _mm256_castsi256_ps(
            _mm256_blendv_epi8(normal, sub, _mm256_cmpgt_epi32(_mm256_set1_epi32(2), e)));
    }
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)hdr));
}

/* Block i of one set (blk: its 8 headers of hb bytes, then its code pieces): acc += d * xd *
 * (integer dot of the unsigned codes), offs += (d, or q4_1's m) * s (pk_act). */
PK_ALWAYS_INLINE void leg8_block(const uint8_t *blk, const int kind, const int hb,
                                 const pk_act *a, int i, __m256 *acc, __m256 *offs)
{
    const bool mx = kind == LEG_MXFP4 || kind == LEG_MXFP4N;
    const int depth = mx ? 2 : 4; /* pieces summed in int16 before a madd */
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    const __m256i lut = _mm256_add_epi8(
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)gq_kvalues_mxfp4)),
        _mm256_set1_epi8(12));
    __m256 m = _mm256_setzero_ps();
    const __m256 d = leg8_scales(blk, kind, &m);
    *offs = _mm256_fmadd_ps(kind == LEG_Q4_1 ? m : d, _mm256_broadcast_ss(a->s + i), *offs);
    const uint8_t *codes = blk + LEG_SET * hb;
    const int8_t *xq = a->q + 32 * i;
    __m256i isum = _mm256_setzero_si256(), s16 = _mm256_setzero_si256();
    for (int n = 0; n < 4; n++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(codes + 32 * n));
        __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        if (mx) {
            lo = _mm256_shuffle_epi8(lut, lo);
            hi = _mm256_shuffle_epi8(lut, hi);
        }
        int32_t xlo, xhi; /* activations 4n..4n+3 and 16+4n..16+4n+3 */
        memcpy(&xlo, xq + 4 * n, 4);
        memcpy(&xhi, xq + 16 + 4 * n, 4);
        s16 = _mm256_add_epi16(s16, _mm256_add_epi16(
                                        _mm256_maddubs_epi16(lo, _mm256_set1_epi32(xlo)),
                                        _mm256_maddubs_epi16(hi, _mm256_set1_epi32(xhi))));
        if ((n + 1) % depth == 0) {
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(s16, ones));
            s16 = _mm256_setzero_si256();
        }
    }
    *acc = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_broadcast_ss(a->d + i)),
                           _mm256_cvtepi32_ps(isum), *acc);
}

/* Rows r..r+nr-1: one whole set, or (the plain rows after the last set, nr < 8) the same
 * arithmetic on a set gathered block by block; every row's sum is its own lane's. */
PK_ALWAYS_INLINE void q8_leg8(const gq_packed_linear *P, int r, int nr, const int kind,
                              const int hb, const int blk_bytes, const pk_act *a, float *y)
{
    const float off_factor = kind == LEG_Q4_0 ? 8.0f : kind == LEG_Q4_1 ? -1.0f : 12.0f;
    const int nb = P->cols_pad / 32;
    __m256 acc = _mm256_setzero_ps(), offs = _mm256_setzero_ps();
    if (r < P->il_rows) { /* the two loops apart: no call inside this one */
        const uint8_t *set = pk_il_base(P, r, 0);
        for (int i = 0; i < nb; i++, set += LEG_SET * blk_bytes)
            leg8_block(set, kind, hb, a, i, &acc, &offs);
    } else {
        uint8_t gathered[LEG_SET * 20];
        for (int i = 0; i < nb; i++) {
            pk_set_gather(P, r, nr, i, gathered);
            leg8_block(gathered, kind, hb, a, i, &acc, &offs);
        }
    }
    pk_store_lanes(_mm256_fnmadd_ps(_mm256_set1_ps(off_factor), offs, acc), nr, y);
}

static void q8_q4_0(const gq_packed_linear *P, int r, int nr, const pk_act *a, float *y)
{
    q8_leg8(P, r, nr, LEG_Q4_0, 2, sizeof(gq_block_q4_0), a, y);
}

static void q8_q4_1(const gq_packed_linear *P, int r, int nr, const pk_act *a, float *y)
{
    q8_leg8(P, r, nr, LEG_Q4_1, 4, sizeof(gq_block_q4_1), a, y);
}

/* MXFP4: the exponent-only scale conversion when every block exponent is >= 2. */
static void q8_mxfp4(const gq_packed_linear *P, int r, int nr, const pk_act *a, float *y)
{
    if (P->e8m0_normal)
        q8_leg8(P, r, nr, LEG_MXFP4N, 1, sizeof(gq_block_mxfp4), a, y);
    else
        q8_leg8(P, r, nr, LEG_MXFP4, 1, sizeof(gq_block_mxfp4), a, y);
}

/* ---- Q8_0 on int8 activations: one integer dot per block, one float scale product per block
 * (rows one at a time: its wide rows stream best alone, pk_type.set_rows 1) ---- */
static inline __m256i xq_block(const int8_t *xq, int b)
{
    return _mm256_loadu_si256((const __m256i *)(xq + 32 * b));
}

PK_ALWAYS_INLINE void q8_q8_0_rows(const gq_packed_linear *P, int r, const int NR,
                                   const pk_act *a, float *y)
{
    const int8_t *xq = a->q;
    const float *xd = a->d, *xs = a->s;
    (void)xs;
    const gq_block_q8_0 *b[PK_ROWS];
    __m256 acc[PK_ROWS];
    for (int k = 0; k < NR; k++) {
        b[k] = (const gq_block_q8_0 *)pk_row(P, r + k);
        acc[k] = _mm256_setzero_ps();
    }
    for (int i = 0; i < P->cols_pad / 32; i++) {
        const __m256i x = xq_block(xq, i);
        for (int k = 0; k < NR; k++) {
            __m256i w = _mm256_loadu_si256((const __m256i *)b[k][i].qs);
            __m256 p = _mm256_cvtepi32_ps(pk_dot32_i8i8(w, x));
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(pk_fp16(b[k][i].d) * xd[i]), p, acc[k]);
        }
    }
    pk_store_rows(acc, NULL, NR, y);
}
PK_Q8_ENTRY(q8_q8_0, 1)


const pk_type pk_q4_0 = {"q4_0", 32, ref_q4_0, fast_q4_0, dot_q4_0, q8_q4_0, false, LEG_SET, LEG_PIECE};
const pk_type pk_q4_1 = {"q4_1", 32, ref_q4_1, fast_q4_1, dot_q4_1, q8_q4_1, false, LEG_SET, LEG_PIECE};
const pk_type pk_q8_0 = {"q8_0", 32, ref_q8_0, fast_q8_0, dot_q8_0, q8_q8_0, false, 1, 32};
const pk_type pk_mxfp4 = {"mxfp4_ggml", 32, ref_mxfp4, fast_mxfp4, dot_mxfp4, q8_mxfp4, false, LEG_SET, LEG_PIECE};
#else
/* Without AVX2 the reference kernels are the fast ones. */
const pk_type pk_q4_0 = {"q4_0", 32, ref_q4_0, ref_q4_0, pk_dot_generic, NULL, false, LEG_SET, LEG_PIECE};
const pk_type pk_q4_1 = {"q4_1", 32, ref_q4_1, ref_q4_1, pk_dot_generic, NULL, false, LEG_SET, LEG_PIECE};
const pk_type pk_q8_0 = {"q8_0", 32, ref_q8_0, ref_q8_0, pk_dot_generic, NULL, false, 1, 32};
const pk_type pk_mxfp4 = {"mxfp4_ggml", 32, ref_mxfp4, ref_mxfp4, pk_dot_generic, NULL, false, LEG_SET, LEG_PIECE};
#endif
