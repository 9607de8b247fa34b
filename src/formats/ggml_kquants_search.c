/* Batched K-quant scale searches (see ggml_kquants.h): ggml's make_qkx2/qkx3_quants and
 * make_qx_quants (rmse_type 1) for 8 sub-blocks at once.
 *
 * AVX2 builds put sub-block j in float lane j, and every lane performs exactly the float
 * operations of the scalar search in ggml_common.c, in the same order: the sums run over the
 * elements of a sub-block one after the other as there, nearest_int is the same add-1.5*2^23
 * trick on the same values, division stays division, and no product is fused with a sum (the
 * scalar code is compiled without FMA contraction, -std=c11). Branches of the scalar code
 * become compare masks that select, lane by lane, what the branch would have kept; lanes whose
 * scalar search ends early (constant or all-zero sub-blocks) are finished off by a final
 * select. Other builds loop over the scalar searches, which stay the reference. */
#include "formats/ggml_kquants.h"

#include <assert.h>

#if defined(__AVX2__)
#include <immintrin.h>

#define KQ_MAX_N 32 /* longest sub-block */

/* gq_nearest_int in 8 lanes: the same float add, the same mantissa bits. */
static inline __m256i nearest8(__m256 f)
{
    const __m256i bits = _mm256_castps_si256(_mm256_add_ps(f, _mm256_set1_ps(12582912.f)));
    return _mm256_sub_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)),
                            _mm256_set1_epi32(0x00400000));
}

static inline __m256i clamp8(__m256i v, int lo, int hi)
{
    return _mm256_max_epi32(_mm256_set1_epi32(lo), _mm256_min_epi32(_mm256_set1_epi32(hi), v));
}

static inline __m256 sel(__m256 mask, __m256 if_true, __m256 if_false)
{
    return _mm256_blendv_ps(if_false, if_true, mask);
}

static inline __m256 cmp(__m256 a, __m256 b, int pred) { return _mm256_cmp_ps(a, b, pred); }
#define GT(a, b) cmp(a, b, _CMP_GT_OQ)
#define LT(a, b) cmp(a, b, _CMP_LT_OQ)

/* v[i] = lane j holds p[j*n + i], for i < n: 8 sub-blocks of n transposed to element-major. */
static void gather8(int n, const float *p, __m256 *v)
{
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                           _mm256_set1_epi32(n));
    for (int i = 0; i < n; i++)
        v[i] = _mm256_i32gather_ps(p + i, idx, 4);
}

/* Codes held as exact small floats (lane j, element i) back to L[j*n + i] + add. */
static void scatter8(int n, const __m256 *Lf, int add, uint8_t *L)
{
    for (int i = 0; i < n; i++) {
        _Alignas(32) int32_t t[8];
        _mm256_store_si256((__m256i *)t, _mm256_cvttps_epi32(Lf[i]));
        for (int j = 0; j < 8; j++)
            L[j * n + i] = (uint8_t)(t[j] + add);
    }
}

/* asym_error of ggml_common.c: sum w * err(scale*L + min - x), err |.| or (.)^2. */
static inline __m256 asym_error8(int n, const __m256 *x, const __m256 *w, const __m256 *Lf,
                                 __m256 scale, __m256 min, bool use_mad)
{
    const __m256 sign = _mm256_set1_ps(-0.f);
    __m256 e = _mm256_setzero_ps();
    for (int i = 0; i < n; i++) {
        __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, Lf[i]), min), x[i]);
        diff = use_mad ? _mm256_andnot_ps(sign, diff) : _mm256_mul_ps(diff, diff);
        e = _mm256_add_ps(e, _mm256_mul_ps(w[i], diff));
    }
    return e;
}

/* make_qkx_quants of ggml_common.c, lane j = sub-block j. */
static void qkx8(int n, int nmax, const float *xp, const float *wp, uint8_t *L, float *scale_out,
                 float *min_out, float rmin, float rdelta, int nstep, bool use_mad, bool v3)
{
    __m256 x[KQ_MAX_N], w[KQ_MAX_N], Lf[KQ_MAX_N], Laux[KQ_MAX_N];
    const __m256 zero = _mm256_setzero_ps(), fnmax = _mm256_set1_ps((float)nmax);
    if (n < 1 || n > KQ_MAX_N) /* checked by the caller */
        __builtin_unreachable();
    gather8(n, xp, x);
    if (wp)
        gather8(n, wp, w);
    else
        for (int i = 0; i < n; i++)
            w[i] = _mm256_mul_ps(x[i], x[i]);

    __m256 min = x[0], max = x[0], sum_w = w[0], sum_x = _mm256_mul_ps(w[0], x[0]);
    for (int i = 1; i < n; i++) {
        min = _mm256_min_ps(x[i], min); /* x < min ? x : min, as `if (x < min) min = x` */
        max = _mm256_max_ps(x[i], max);
        sum_w = _mm256_add_ps(sum_w, w[i]);
        sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(w[i], x[i]));
    }
    min = sel(GT(min, zero), zero, min);
    /* lanes whose scalar search stops here: codes 0, scale 0, the_min -min */
    const __m256 done = cmp(max, min, v3 ? _CMP_LE_OQ : _CMP_EQ_OQ);
    __m256 iscale = _mm256_div_ps(fnmax, _mm256_sub_ps(max, min));
    __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.f), iscale);
    for (int i = 0; i < n; i++)
        Lf[i] = _mm256_cvtepi32_ps(
            clamp8(nearest8(_mm256_mul_ps(iscale, _mm256_sub_ps(x[i], min))), 0, nmax));
    __m256 best_error = asym_error8(n, x, w, Lf, scale, min, use_mad);

    for (int is = 0; nstep >= 1 && is <= nstep; is++) {
        /* min is the best fit so far, as in ggml (not the minimum of x) */
        iscale = _mm256_div_ps(_mm256_set1_ps(rmin + rdelta * is + nmax), _mm256_sub_ps(max, min));
        for (int i = 0; i < n; i++) {
            const __m256 v = _mm256_mul_ps(iscale, _mm256_sub_ps(x[i], min));
            if (v3) /* v > 0 ? nearest(v < nmax ? v : nmax) : 0, nan -> 0 */
                Laux[i] = _mm256_and_ps(
                    GT(v, zero), _mm256_cvtepi32_ps(nearest8(sel(LT(v, fnmax), v, fnmax))));
            else
                Laux[i] = _mm256_cvtepi32_ps(clamp8(nearest8(v), 0, nmax));
        }
        /* refit_scale_min */
        __m256 sum_l = zero, sum_l2 = zero, sum_xl = zero;
        for (int i = 0; i < n; i++) {
            const __m256 wl = _mm256_mul_ps(w[i], Laux[i]);
            sum_l = _mm256_add_ps(sum_l, wl);
            sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wl, Laux[i]));
            sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wl, x[i]));
        }
        const __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
        const __m256 solvable = _mm256_andnot_ps(done, GT(D, zero));
        if (_mm256_testz_ps(solvable, solvable))
            continue;
        __m256 this_scale = _mm256_div_ps(
            _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)), D);
        __m256 this_min = _mm256_div_ps(
            _mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)), D);
        const __m256 pos = GT(this_min, zero);
        this_scale = sel(pos, _mm256_div_ps(sum_xl, sum_l2), this_scale);
        this_min = sel(pos, zero, this_min);
        const __m256 cur_error = asym_error8(n, x, w, Laux, this_scale, this_min, use_mad);
        const __m256 better = _mm256_and_ps(solvable, LT(cur_error, best_error));
        if (_mm256_testz_ps(better, better))
            continue;
        for (int i = 0; i < n; i++)
            Lf[i] = sel(better, Laux[i], Lf[i]);
        best_error = sel(better, cur_error, best_error);
        scale = sel(better, this_scale, scale);
        min = sel(better, this_min, min);
    }
    for (int i = 0; i < n; i++)
        Lf[i] = _mm256_andnot_ps(done, Lf[i]);
    _mm256_storeu_ps(scale_out, _mm256_andnot_ps(done, scale));
    _mm256_storeu_ps(min_out, _mm256_xor_ps(min, _mm256_set1_ps(-0.f)));
    scatter8(n, Lf, 0, L);
}

/* make_qx_quants(n, nmax, x, L, rmse_type 1, qw) of ggml_common.c, lane j = sub-block j. */
static void qx8(int n, int nmax, const float *xp, const float *qwp, int8_t *L, float *scale_out)
{
    __m256 x[KQ_MAX_N], w[KQ_MAX_N], Lf[KQ_MAX_N], Ltry[KQ_MAX_N];
    const __m256 zero = _mm256_setzero_ps(), sign = _mm256_set1_ps(-0.f);
    if (n < 1 || n > KQ_MAX_N) /* checked by the caller */
        __builtin_unreachable();
    gather8(n, xp, x);
    if (qwp)
        gather8(n, qwp, w);
    else
        for (int i = 0; i < n; i++)
            w[i] = _mm256_mul_ps(x[i], x[i]);

    /* signed_absmax: the first value of largest magnitude */
    __m256 max = zero, amax = zero;
    for (int i = 0; i < n; i++) {
        const __m256 ax = _mm256_andnot_ps(sign, x[i]), gt = GT(ax, amax);
        amax = sel(gt, ax, amax);
        max = sel(gt, x[i], max);
    }
    const __m256 done = LT(amax, _mm256_set1_ps(GQ_GGML_GROUP_MAX_EPS)); /* L 0, scale 0 */

    /* codes l = clamp(nearest(iscale*x), -nmax, nmax-1) and the sums of one inverse scale */
#define QX_CODES(iscale, Lout, sumlx, suml2)                                                    \
    do {                                                                                     \
        sumlx = suml2 = zero;                                                                \
        for (int i = 0; i < n; i++) {                                                        \
            Lout[i] = _mm256_cvtepi32_ps(                                                    \
                clamp8(nearest8(_mm256_mul_ps(iscale, x[i])), -nmax, nmax - 1));             \
            sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(w[i], x[i]), Lout[i])); \
            suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w[i], Lout[i]), Lout[i])); \
        }                                                                                    \
    } while (0)

    __m256 sumlx, suml2;
    const __m256 iscale0 = _mm256_div_ps(_mm256_set1_ps((float)-nmax), max);
    QX_CODES(iscale0, Lf, sumlx, suml2);
    /* suml2 ? sumlx / suml2 : 0 (nan counts as true) */
    __m256 scale = _mm256_and_ps(cmp(suml2, zero, _CMP_NEQ_UQ), _mm256_div_ps(sumlx, suml2));
    __m256 best = _mm256_mul_ps(scale, sumlx);
    for (int is = -9; is <= 9; ++is) {
        if (is == 0)
            continue;
        const __m256 iscale = _mm256_div_ps(_mm256_set1_ps(-(nmax + 0.1f * is)), max);
        QX_CODES(iscale, Ltry, sumlx, suml2);
        const __m256 upd = _mm256_and_ps(
            GT(suml2, zero), GT(_mm256_mul_ps(sumlx, sumlx), _mm256_mul_ps(best, suml2)));
        if (_mm256_testz_ps(upd, upd))
            continue;
        for (int i = 0; i < n; i++)
            Lf[i] = sel(upd, Ltry[i], Lf[i]);
        scale = sel(upd, _mm256_div_ps(sumlx, suml2), scale);
        best = sel(upd, _mm256_mul_ps(scale, sumlx), best);
    }
#undef QX_CODES
    /* done lanes store level 0 = code -nmax */
    for (int i = 0; i < n; i++)
        Lf[i] = sel(done, _mm256_set1_ps((float)-nmax), Lf[i]);
    _mm256_storeu_ps(scale_out, _mm256_andnot_ps(done, scale));
    scatter8(n, Lf, nmax, (uint8_t *)L);
}
#endif

void gq_kq_qkx_quants8(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                       float scale[8], float the_min[8], float rmin, float rdelta, int nstep,
                       bool use_mad, bool v3)
{
    assert(n >= 1 && n <= 32);
#if defined(__AVX2__)
    qkx8(n, nmax, x, weights, L, scale, the_min, rmin, rdelta, nstep, use_mad, v3);
#else
    uint8_t Laux[32];
    for (int j = 0; j < 8; j++) {
        const float *w = weights ? weights + n * j : NULL;
        scale[j] = (v3 ? gq_make_qkx3_quants : gq_make_qkx2_quants)(
            n, nmax, x + n * j, w, L + n * j, &the_min[j], Laux, rmin, rdelta, nstep, use_mad);
    }
#endif
}

void gq_kq_qx_quants8(int n, int nmax, const float *x, const float *qw, int8_t *L,
                      float scale[8])
{
    assert(n >= 1 && n <= 32);
#if defined(__AVX2__)
    qx8(n, nmax, x, qw, L, scale);
#else
    for (int j = 0; j < 8; j++)
        scale[j] = gq_make_qx_quants(n, nmax, x + n * j, L + n * j, 1, qw ? qw + n * j : NULL);
#endif
}
