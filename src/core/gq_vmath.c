/* Vectorised exp and softmax (gq_vmath.h). The AVX2 functions mirror the scalar reference
 * operation by operation; tests/core/test_vmath.c checks that they agree bit for bit. */
#include "core/gq_vmath.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define VM_AVX2 1
#endif

#define EXP_MIN -87.33654f /* ln 2^-126: below it the result is 0 (no subnormals) */
#define EXP_HI 88.75f
#define LOG2E 1.44269504f
#define LN2_HI 0.693359375f    /* few mantissa bits: n * LN2_HI is exact for |n| <= 256 */
#define LN2_LO -2.12194440e-4f /* ln 2 - LN2_HI */

/* 1/k! for k = 7 .. 2 (Taylor coefficients of e^r; the terms r and 1 have coefficient 1). */
static const float TAYLOR[6] = {1.0f / 5040.0f, 1.0f / 720.0f, 1.0f / 120.0f,
                                1.0f / 24.0f,   1.0f / 6.0f,   0.5f};

static float pow2i(int e) /* 2^e for -126 <= e <= 127 */
{
    uint32_t u = (uint32_t)(e + 127) << 23;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The scalar exp of element type T, shared by gq_expf_ref and gq_exp_ref: SFX is the libm
 * suffix of T (f or nothing), [LO, HI] the input range, COEF the Taylor coefficients from the
 * highest degree down to 1/2!, POW2 the exact power of two of T; every other constant is T's. */
#define DEFINE_EXP_REF(NAME, T, SFX, LO, HI, L2E, LN2H, LN2L, COEF, POW2)                      \
    T NAME(T x)                                                                                \
    {                                                                                          \
        if (x != x)                                                                            \
            return x + x;                                                                      \
        if (x < LO)                                                                            \
            return (T)0;                                                                       \
        x = HI < x ? HI : x; /* the operand order of _mm256_min_ps / _pd */                    \
        T nf = rint##SFX(x * L2E);                                                             \
        T r = fma##SFX(-nf, LN2H, x);                                                          \
        r = fma##SFX(-nf, LN2L, r);                                                            \
        T p = COEF[0];                                                                         \
        for (size_t k = 1; k < sizeof COEF / sizeof COEF[0]; k++)                              \
            p = fma##SFX(p, r, COEF[k]);                                                       \
        p = fma##SFX(p, r, (T)1);                                                              \
        p = fma##SFX(p, r, (T)1);                                                              \
        int n = (int)nf, n1 = n >> 1, n2 = n - n1; /* both factors normal */                   \
        return p * POW2(n1) * POW2(n2);                                                        \
    }

DEFINE_EXP_REF(gq_expf_ref, float, f, EXP_MIN, EXP_HI, LOG2E, LN2_HI, LN2_LO, TAYLOR, pow2i)

#ifdef VM_AVX2
static inline __m256 exp8(__m256 x)
{
    const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_MIN), _CMP_LT_OQ); /* NaN: false */
    x = _mm256_min_ps(_mm256_set1_ps(EXP_HI), _mm256_max_ps(_mm256_set1_ps(EXP_MIN), x));
    __m256 nf = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(nf, _mm256_set1_ps(LN2_HI), x);
    r = _mm256_fnmadd_ps(nf, _mm256_set1_ps(LN2_LO), r);
    __m256 p = _mm256_set1_ps(TAYLOR[0]);
    for (int k = 1; k < 6; k++)
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(TAYLOR[k]));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i n = _mm256_cvtps_epi32(nf), n1 = _mm256_srai_epi32(n, 1);
    __m256i n2 = _mm256_sub_epi32(n, n1), bias = _mm256_set1_epi32(127);
    __m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_andnot_ps(tiny, _mm256_mul_ps(_mm256_mul_ps(p, f1), f2));
}

/* Lanes i < k set. */
static inline __m256i head_mask(int k)
{
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), iota);
}

static inline float hmax8(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

/* ((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7)) */
static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
#endif

void gq_vexpf(float *y, const float *x, int n)
{
    int i = 0;
#ifdef VM_AVX2
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, exp8(_mm256_loadu_ps(x + i)));
#endif
    for (; i < n; i++)
        y[i] = gq_expf_ref(x[i]);
}

float gq_exp_row_ref(float *row, int n, int len)
{
    float mx = -INFINITY, lane[8] = {0};
    for (int j = 0; j < n; j++)
        mx = row[j] > mx ? row[j] : mx;
    for (int j = 0; j < n; j++) {
        row[j] = gq_expf_ref(row[j] - mx);
        lane[j % 8] += row[j];
    }
    memset(row + n, 0, (size_t)(len - n) * sizeof *row);
    return ((lane[0] + lane[4]) + (lane[2] + lane[6])) +
           ((lane[1] + lane[5]) + (lane[3] + lane[7]));
}

void gq_softmax_row_ref(float *row, int n, int len)
{
    float inv = 1.0f / gq_exp_row_ref(row, n, len);
    for (int j = 0; j < n; j++)
        row[j] *= inv;
}

#ifdef VM_AVX2
float gq_exp_row(float *row, int n, int len)
{
    const int n8 = n & ~7;
    const __m256i tail = head_mask(n - n8);
    __m256 vmx = _mm256_set1_ps(-INFINITY);
    for (int j = 0; j < n8; j += 8)
        vmx = _mm256_max_ps(_mm256_loadu_ps(row + j), vmx);
    if (n8 < n)
        vmx = _mm256_max_ps(_mm256_blendv_ps(vmx, _mm256_maskload_ps(row + n8, tail),
                                             _mm256_castsi256_ps(tail)), vmx);
    const __m256 mx = _mm256_set1_ps(hmax8(vmx));
    __m256 acc = _mm256_setzero_ps();
    for (int j = 0; j < n8; j += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(row + j), mx));
        _mm256_storeu_ps(row + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (n8 < n) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_maskload_ps(row + n8, tail), mx));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(tail));
        _mm256_maskstore_ps(row + n8, tail, e);
        acc = _mm256_add_ps(acc, e);
    }
    memset(row + n, 0, (size_t)(len - n) * sizeof *row);
    return hsum8(acc);
}

void gq_softmax_row(float *row, int n, int len)
{
    const int n8 = n & ~7;
    const __m256i tail = head_mask(n - n8);
    const __m256 inv = _mm256_set1_ps(1.0f / gq_exp_row(row, n, len));
    for (int j = 0; j < n8; j += 8)
        _mm256_storeu_ps(row + j, _mm256_mul_ps(_mm256_loadu_ps(row + j), inv));
    if (n8 < n)
        _mm256_maskstore_ps(row + n8, tail,
                            _mm256_mul_ps(_mm256_maskload_ps(row + n8, tail), inv));
}
#else
float gq_exp_row(float *row, int n, int len) { return gq_exp_row_ref(row, n, len); }
void gq_softmax_row(float *row, int n, int len) { gq_softmax_row_ref(row, n, len); }
#endif

/* Double precision: the same scheme with a degree-13 Taylor polynomial (truncation below
 * 1e-17 relative for |r| <= ln2/2) and fdlibm's two-part ln 2. */
#define EXPD_MIN -708.0 /* above ln 2^-1022: no subnormal results */
#define EXPD_HI 709.5
#define LOG2E_D 1.4426950408889634
#define LN2_HI_D 6.93147180369123816490e-01 /* n * LN2_HI_D exact for |n| < 2^21 */
#define LN2_LO_D 1.90821492927058770002e-10

/* 1/k! for k = 13 .. 2. */
static const double TAYLOR_D[12] = {
    1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
    1.0 / 362880.0,     1.0 / 40320.0,     1.0 / 5040.0,     1.0 / 720.0,
    1.0 / 120.0,        1.0 / 24.0,        1.0 / 6.0,        0.5};

static double pow2d(int e) /* 2^e for -1022 <= e <= 1023 */
{
    uint64_t u = (uint64_t)(e + 1023) << 52;
    double f;
    memcpy(&f, &u, sizeof f);
    return f;
}

DEFINE_EXP_REF(gq_exp_ref, double, , EXPD_MIN, EXPD_HI, LOG2E_D, LN2_HI_D, LN2_LO_D, TAYLOR_D,
               pow2d)

/* max and first index of the max of x[0..n) (n >= 1); NaN entries are skipped. */
static float row_max(const float *x, int n, int *argmax)
{
    float mx = x[0];
    int am = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > mx) {
            mx = x[i];
            am = i;
        }
    *argmax = am;
    return mx;
}

double gq_lse_row_ref(const float *x, int n, int *argmax)
{
    float mx = row_max(x, n, argmax);
    double lane[8] = {0};
    for (int i = 0; i < n; i++)
        lane[i % 8] += gq_exp_ref((double)x[i] - mx);
    return mx + log(((lane[0] + lane[4]) + (lane[2] + lane[6])) +
                    ((lane[1] + lane[5]) + (lane[3] + lane[7])));
}

#ifdef VM_AVX2
static inline __m256d pow2d4(__m128i e) /* 2^e, 4 int32 lanes in -1022..1023 */
{
    __m256i b = _mm256_add_epi64(_mm256_cvtepi32_epi64(e), _mm256_set1_epi64x(1023));
    return _mm256_castsi256_pd(_mm256_slli_epi64(b, 52));
}

static inline __m256d expd4(__m256d x)
{
    const __m256d tiny = _mm256_cmp_pd(x, _mm256_set1_pd(EXPD_MIN), _CMP_LT_OQ);
    x = _mm256_min_pd(_mm256_set1_pd(EXPD_HI), _mm256_max_pd(_mm256_set1_pd(EXPD_MIN), x));
    __m256d nf = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(LOG2E_D)),
                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256d r = _mm256_fnmadd_pd(nf, _mm256_set1_pd(LN2_HI_D), x);
    r = _mm256_fnmadd_pd(nf, _mm256_set1_pd(LN2_LO_D), r);
    __m256d p = _mm256_set1_pd(TAYLOR_D[0]);
    for (int k = 1; k < 12; k++)
        p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(TAYLOR_D[k]));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
    __m128i n = _mm256_cvtpd_epi32(nf), n1 = _mm_srai_epi32(n, 1), n2 = _mm_sub_epi32(n, n1);
    return _mm256_andnot_pd(tiny, _mm256_mul_pd(_mm256_mul_pd(p, pow2d4(n1)), pow2d4(n2)));
}

double gq_lse_row(const float *x, int n, int *argmax)
{
    float mx = row_max(x, n, argmax);
    const __m256d m = _mm256_set1_pd((double)mx);
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd(); /* lanes 0-3, 4-7 */
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256d a = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
        __m256d b = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
        lo = _mm256_add_pd(lo, expd4(_mm256_sub_pd(a, m)));
        hi = _mm256_add_pd(hi, expd4(_mm256_sub_pd(b, m)));
    }
    double lane[8];
    _mm256_storeu_pd(lane, lo);
    _mm256_storeu_pd(lane + 4, hi);
    for (; i < n; i++)
        lane[i % 8] += gq_exp_ref((double)x[i] - mx);
    return mx + log(((lane[0] + lane[4]) + (lane[2] + lane[6])) +
                    ((lane[1] + lane[5]) + (lane[3] + lane[7])));
}
#else
double gq_lse_row(const float *x, int n, int *argmax) { return gq_lse_row_ref(x, n, argmax); }
#endif
