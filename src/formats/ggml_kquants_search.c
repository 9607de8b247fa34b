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

/* compare predicates must be immediates, hence a macro */
#define cmp(a, b, pred) _mm256_cmp_ps(a, b, pred)
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

/* make_qkx_quants of ggml_common.c for 8*NV sub-blocks, sub-block 8k + j in lane j of vector k
 * (NV = 1 or 2: two independent vectors hide the latency of the sequential sums). */
#define NVMAX 2
static inline __attribute__((always_inline)) void
qkx_lanes(const int NV, int n, int nmax, const float *xp, const float *wp, uint8_t *L,
          float *scale_out, float *min_out, float rmin, float rdelta, int nstep, bool use_mad,
          bool v3)
{
    __m256 x[NVMAX][KQ_MAX_N], w[NVMAX][KQ_MAX_N], Lf[NVMAX][KQ_MAX_N], Laux[NVMAX][KQ_MAX_N];
    __m256 min[NVMAX], max[NVMAX], sum_w[NVMAX], sum_x[NVMAX], done[NVMAX], iscale[NVMAX],
        scale[NVMAX], best_error[NVMAX];
    const __m256 zero = _mm256_setzero_ps(), fnmax = _mm256_set1_ps((float)nmax);
    if (n < 1 || n > KQ_MAX_N) /* checked by the caller */
        __builtin_unreachable();
    for (int k = 0; k < NV; k++) {
        gather8(n, xp + 8 * n * k, x[k]);
        if (wp)
            gather8(n, wp + 8 * n * k, w[k]);
        else
            for (int i = 0; i < n; i++)
                w[k][i] = _mm256_mul_ps(x[k][i], x[k][i]);
        min[k] = max[k] = x[k][0];
        sum_w[k] = w[k][0];
        sum_x[k] = _mm256_mul_ps(w[k][0], x[k][0]);
    }
    for (int i = 1; i < n; i++)
        for (int k = 0; k < NV; k++) {
            min[k] = _mm256_min_ps(x[k][i], min[k]); /* x < min ? x : min, as `if (x < min)` */
            max[k] = _mm256_max_ps(x[k][i], max[k]);
            sum_w[k] = _mm256_add_ps(sum_w[k], w[k][i]);
            sum_x[k] = _mm256_add_ps(sum_x[k], _mm256_mul_ps(w[k][i], x[k][i]));
        }
    for (int k = 0; k < NV; k++) {
        min[k] = sel(GT(min[k], zero), zero, min[k]);
        /* lanes whose scalar search stops here: codes 0, scale 0, the_min -min */
        done[k] = v3 ? cmp(max[k], min[k], _CMP_LE_OQ) : cmp(max[k], min[k], _CMP_EQ_OQ);
        iscale[k] = _mm256_div_ps(fnmax, _mm256_sub_ps(max[k], min[k]));
        scale[k] = _mm256_div_ps(_mm256_set1_ps(1.f), iscale[k]);
        for (int i = 0; i < n; i++)
            Lf[k][i] = _mm256_cvtepi32_ps(clamp8(
                nearest8(_mm256_mul_ps(iscale[k], _mm256_sub_ps(x[k][i], min[k]))), 0, nmax));
    }
    for (int k = 0; k < NV; k++)
        best_error[k] = asym_error8(n, x[k], w[k], Lf[k], scale[k], min[k], use_mad);

    for (int is = 0; nstep >= 1 && is <= nstep; is++) {
        __m256 sum_l[NVMAX], sum_l2[NVMAX], sum_xl[NVMAX], solvable[NVMAX];
        __m256 this_scale[NVMAX], this_min[NVMAX], better[NVMAX];
        const __m256 num = _mm256_set1_ps(rmin + rdelta * is + nmax);
        int any = 0;
        for (int k = 0; k < NV; k++) {
            /* min is the best fit so far, as in ggml (not the minimum of x) */
            iscale[k] = _mm256_div_ps(num, _mm256_sub_ps(max[k], min[k]));
            sum_l[k] = sum_l2[k] = sum_xl[k] = zero;
        }
        for (int i = 0; i < n; i++)
            for (int k = 0; k < NV; k++) {
                const __m256 v = _mm256_mul_ps(iscale[k], _mm256_sub_ps(x[k][i], min[k]));
                if (v3) /* v > 0 ? nearest(v < nmax ? v : nmax) : 0, nan -> 0 */
                    Laux[k][i] = _mm256_and_ps(
                        GT(v, zero),
                        _mm256_cvtepi32_ps(nearest8(sel(LT(v, fnmax), v, fnmax))));
                else
                    Laux[k][i] = _mm256_cvtepi32_ps(clamp8(nearest8(v), 0, nmax));
                /* refit_scale_min's sums */
                const __m256 wl = _mm256_mul_ps(w[k][i], Laux[k][i]);
                sum_l[k] = _mm256_add_ps(sum_l[k], wl);
                sum_l2[k] = _mm256_add_ps(sum_l2[k], _mm256_mul_ps(wl, Laux[k][i]));
                sum_xl[k] = _mm256_add_ps(sum_xl[k], _mm256_mul_ps(wl, x[k][i]));
            }
        for (int k = 0; k < NV; k++) {
            const __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w[k], sum_l2[k]),
                                           _mm256_mul_ps(sum_l[k], sum_l[k]));
            solvable[k] = _mm256_andnot_ps(done[k], GT(D, zero));
            any |= !_mm256_testz_ps(solvable[k], solvable[k]);
            this_scale[k] = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_w[k], sum_xl[k]),
                                                        _mm256_mul_ps(sum_x[k], sum_l[k])),
                                          D);
            this_min[k] = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_l2[k], sum_x[k]),
                                                      _mm256_mul_ps(sum_l[k], sum_xl[k])),
                                        D);
            const __m256 pos = GT(this_min[k], zero);
            this_scale[k] = sel(pos, _mm256_div_ps(sum_xl[k], sum_l2[k]), this_scale[k]);
            this_min[k] = sel(pos, zero, this_min[k]);
        }
        if (!any)
            continue;
        __m256 e[NVMAX];
        const __m256 sign = _mm256_set1_ps(-0.f);
        for (int k = 0; k < NV; k++)
            e[k] = zero;
        for (int i = 0; i < n; i++) /* asym_error8, the NV vectors interleaved */
            for (int k = 0; k < NV; k++) {
                __m256 diff = _mm256_sub_ps(
                    _mm256_add_ps(_mm256_mul_ps(this_scale[k], Laux[k][i]), this_min[k]),
                    x[k][i]);
                diff = use_mad ? _mm256_andnot_ps(sign, diff) : _mm256_mul_ps(diff, diff);
                e[k] = _mm256_add_ps(e[k], _mm256_mul_ps(w[k][i], diff));
            }
        for (int k = 0; k < NV; k++) {
            better[k] = _mm256_and_ps(solvable[k], LT(e[k], best_error[k]));
            if (_mm256_testz_ps(better[k], better[k]))
                continue;
            for (int i = 0; i < n; i++)
                Lf[k][i] = sel(better[k], Laux[k][i], Lf[k][i]);
            best_error[k] = sel(better[k], e[k], best_error[k]);
            scale[k] = sel(better[k], this_scale[k], scale[k]);
            min[k] = sel(better[k], this_min[k], min[k]);
        }
    }
    for (int k = 0; k < NV; k++) {
        for (int i = 0; i < n; i++)
            Lf[k][i] = _mm256_andnot_ps(done[k], Lf[k][i]);
        _mm256_storeu_ps(scale_out + 8 * k, _mm256_andnot_ps(done[k], scale[k]));
        _mm256_storeu_ps(min_out + 8 * k, _mm256_xor_ps(min[k], _mm256_set1_ps(-0.f)));
        scatter8(n, Lf[k], 0, L + 8 * n * k);
    }
}

static void qkx8(int n, int nmax, const float *x, const float *w, uint8_t *L, float *scale,
                 float *min, float rmin, float rdelta, int nstep, bool use_mad, bool v3)
{
    qkx_lanes(1, n, nmax, x, w, L, scale, min, rmin, rdelta, nstep, use_mad, v3);
}

static void qkx16(int n, int nmax, const float *x, const float *w, uint8_t *L, float *scale,
                  float *min, float rmin, float rdelta, int nstep, bool use_mad, bool v3)
{
    qkx_lanes(2, n, nmax, x, w, L, scale, min, rmin, rdelta, nstep, use_mad, v3);
}

/* make_qx_quants(n, nmax, x, L, rmse_type 1, qw) of ggml_common.c, lane j = sub-block j. */
static void qx8(int n, int nmax, const float *xp, const float *qwp, int8_t *L, float *scale_out)
{
    __m256 x[KQ_MAX_N], w[KQ_MAX_N], Lf[KQ_MAX_N];
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

    /* codes l = clamp(nearest(iscale*x), -nmax, nmax-1) and their sums for iscale = -nmax/max */
    __m256 sumlx = zero, suml2 = zero;
    const __m256 iscale0 = _mm256_div_ps(_mm256_set1_ps((float)-nmax), max);
    for (int i = 0; i < n; i++) {
        Lf[i] = _mm256_cvtepi32_ps(clamp8(nearest8(_mm256_mul_ps(iscale0, x[i])), -nmax, nmax - 1));
        sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(w[i], x[i]), Lf[i]));
        suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w[i], Lf[i]), Lf[i]));
    }
    /* suml2 ? sumlx / suml2 : 0 (nan counts as true) */
    __m256 scale = _mm256_and_ps(cmp(suml2, zero, _CMP_NEQ_UQ), _mm256_div_ps(sumlx, suml2));
    __m256 best = _mm256_mul_ps(scale, sumlx);
    /* The trial inverse scales -(nmax + 0.1*is)/max, is = -9..9 but 0, do not depend on each
     * other: two at a time (two independent chains of sums), then kept in ggml's order. */
    static const int trials[18] = {-9, -8, -7, -6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    for (int t = 0; t < 18; t += 2) {
        __m256 Ltry2[2][KQ_MAX_N], slx[2], sl2[2];
        for (int k = 0; k < 2; k++)
            slx[k] = sl2[k] = zero;
        const __m256 isc[2] = {_mm256_div_ps(_mm256_set1_ps(-(nmax + 0.1f * trials[t])), max),
                               _mm256_div_ps(_mm256_set1_ps(-(nmax + 0.1f * trials[t + 1])), max)};
        for (int i = 0; i < n; i++)
            for (int k = 0; k < 2; k++) {
                const __m256 l = _mm256_cvtepi32_ps(
                    clamp8(nearest8(_mm256_mul_ps(isc[k], x[i])), -nmax, nmax - 1));
                Ltry2[k][i] = l;
                slx[k] = _mm256_add_ps(slx[k], _mm256_mul_ps(_mm256_mul_ps(w[i], x[i]), l));
                sl2[k] = _mm256_add_ps(sl2[k], _mm256_mul_ps(_mm256_mul_ps(w[i], l), l));
            }
        for (int k = 0; k < 2; k++) {
            const __m256 upd = _mm256_and_ps(
                GT(sl2[k], zero), GT(_mm256_mul_ps(slx[k], slx[k]), _mm256_mul_ps(best, sl2[k])));
            if (_mm256_testz_ps(upd, upd))
                continue;
            for (int i = 0; i < n; i++)
                Lf[i] = sel(upd, Ltry2[k][i], Lf[i]);
            scale = sel(upd, _mm256_div_ps(slx[k], sl2[k]), scale);
            best = sel(upd, _mm256_mul_ps(scale, slx[k]), best);
        }
    }
    /* done lanes store level 0 = code -nmax */
    for (int i = 0; i < n; i++)
        Lf[i] = sel(done, _mm256_set1_ps((float)-nmax), Lf[i]);
    _mm256_storeu_ps(scale_out, _mm256_andnot_ps(done, scale));
    scatter8(n, Lf, nmax, (uint8_t *)L);
}
#endif

void gq_kq_qkx_quants_batch(int nsub, int n, int nmax, const float *x, const float *weights,
                            uint8_t *L, float *scale, float *the_min, float rmin, float rdelta,
                            int nstep, bool use_mad, bool v3)
{
    assert(n >= 1 && n <= 32 && nsub % 8 == 0);
#if defined(__AVX2__)
    int j = 0;
    for (; j + 16 <= nsub; j += 16)
        qkx16(n, nmax, x + n * j, weights ? weights + n * j : NULL, L + n * j, scale + j,
              the_min + j, rmin, rdelta, nstep, use_mad, v3);
    for (; j < nsub; j += 8)
        qkx8(n, nmax, x + n * j, weights ? weights + n * j : NULL, L + n * j, scale + j,
             the_min + j, rmin, rdelta, nstep, use_mad, v3);
#else
    uint8_t Laux[32];
    for (int j = 0; j < nsub; j++) {
        const float *w = weights ? weights + n * j : NULL;
        scale[j] = (v3 ? gq_make_qkx3_quants : gq_make_qkx2_quants)(
            n, nmax, x + n * j, w, L + n * j, &the_min[j], Laux, rmin, rdelta, nstep, use_mad);
    }
#endif
}

void gq_kq_qx_quants_batch(int nsub, int n, int nmax, const float *x, const float *qw, int8_t *L,
                           float *scale)
{
    assert(n >= 1 && n <= 32 && nsub % 8 == 0);
#if defined(__AVX2__)
    for (int j = 0; j < nsub; j += 8)
        qx8(n, nmax, x + n * j, qw ? qw + n * j : NULL, L + n * j, scale + j);
#else
    for (int j = 0; j < nsub; j++)
        scale[j] = gq_make_qx_quants(n, nmax, x + n * j, L + n * j, 1, qw ? qw + n * j : NULL);
#endif
}
