/* The fast float kernels of src/grad against the plain per-element loops they replace, bit for
 * bit: RoPE (per-position cosines and sines) and the LWC fake quantizer (vectorised extremes,
 * chunked straight-through backward pass), on data with repeated extremes, signed zeros and
 * NaNs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_rng.h"
#include "grad/gq_grad.h"
#include "test_support.h"

/* ---- RoPE: cosine and sine computed for every element */
static void rope_ref(float *x, int B, int T, int width, int hs, int dir)
{
    for (int row = 0; row < B * T; row++) {
        int pos = row % T;
        float *xr = x + (size_t)row * width;
        for (int i = 0; i < width; i += 2) {
            double freq = 1.0 / pow(10000.0, (double)(i % hs) / hs);
            double ang = pos * freq;
            float c = (float)cos(ang), s = (float)(dir * sin(ang));
            float a = xr[i], b = xr[i + 1];
            xr[i] = a * c - b * s;
            xr[i + 1] = a * s + b * c;
        }
    }
}

static void check_rope(int B, int T, int width, int hs)
{
    gq_rng r;
    gq_rng_seed(&r, 41);
    const size_t n = (size_t)B * T * width;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    for (size_t i = 0; i < n; i++) x[i] = y[i] = (float)gq_rng_normal(&r);
    gq_rope_fwd_f(x, B, T, width, hs);
    rope_ref(y, B, T, width, hs, 1);
    assert_memory_equal(x, y, n * sizeof *x);
    gq_rope_bwd_f(x, B, T, width, hs);
    rope_ref(y, B, T, width, hs, -1);
    assert_memory_equal(x, y, n * sizeof *x);
    free(x), free(y);
}

/* small (one thread) and above the parallel threshold, several heads per row */
static void test_rope_bits(void **state)
{
    (void)state;
    check_rope(2, 7, 24, 8);
    check_rope(3, 300, 256, 64);
}

/* ---- LWC: the per-element scans and branches of the quantizer's definition (gq_grad.h) */
typedef struct {
    int imax, imin;
    double sg, sb;
    float wmax, wmin, s, z;
    bool s_free;
    size_t gi, off; /* the group's index and its first weight */
    int n;          /* its length */
} ref_group;

static void ref_fit(ref_group *st, const float *w, int n, const float *gamma, const float *beta,
                    int qmax)
{
    st->imax = st->imin = 0;
    for (int e = 1; e < n; e++) {
        if (w[e] > w[st->imax]) st->imax = e;
        if (w[e] < w[st->imin]) st->imin = e;
    }
    st->wmax = w[st->imax];
    st->wmin = w[st->imin];
    st->sg = gamma ? 1.0 / (1.0 + exp(-(double)*gamma)) : 1.0;
    st->sb = beta ? 1.0 / (1.0 + exp(-(double)*beta)) : 1.0;
    float xmax = (float)(st->sg * st->wmax), xmin = (float)(st->sb * st->wmin);
    float s = (xmax - xmin) / (float)qmax;
    st->s_free = s >= 1e-5f && s <= 1e4f;
    s = s < 1e-5f ? 1e-5f : s > 1e4f ? 1e4f : s;
    st->s = s;
    float z = -xmin / s;
    z = z > 1e4f ? 1e4f : z < -1e4f ? -1e4f : z;
    st->z = (float)nearbyint(z);
}

/* Group kg of row r, located and fitted. */
static ref_group ref_group_at(const float *W, const float *gamma, const float *beta, int r, int kg,
                              int cols, int gs, int qmax)
{
    const int ng = (cols + gs - 1) / gs;
    const size_t gi = (size_t)r * ng + kg, off = (size_t)r * cols + (size_t)kg * gs;
    const int n = cols - kg * gs < gs ? cols - kg * gs : gs;
    ref_group st;
    ref_fit(&st, W + off, n, gamma ? gamma + gi : NULL, beta ? beta + gi : NULL, qmax);
    st.gi = gi;
    st.off = off;
    st.n = n;
    return st;
}

static void ref_bwd(float *dW, float *dgamma, float *dbeta, const float *ddeq, const float *W,
                    const float *gamma, const float *beta, int rows, int cols, int gs, int bits)
{
    const int ng = (cols + gs - 1) / gs, qmax = (1 << bits) - 1;
    for (int r = 0; r < rows; r++)
        for (int kg = 0; kg < ng; kg++) {
            const ref_group st = ref_group_at(W, gamma, beta, r, kg, cols, gs, qmax);
            double ds = 0;
            for (int e = 0; e < st.n; e++) {
                float u = W[st.off + e] / st.s, c = (float)nearbyint(u), q = c + st.z;
                float g = ddeq[st.off + e];
                if (q >= 0 && q <= (float)qmax) {
                    dW[st.off + e] += g;
                    ds += (double)g * (c - u);
                } else {
                    float qc = q < 0 ? 0 : (float)qmax;
                    ds += (double)g * (qc - st.z);
                }
            }
            if (!st.s_free) continue;
            double dxmax = ds / qmax, dxmin = -ds / qmax;
            if (gamma) dgamma[st.gi] += (float)(dxmax * st.wmax * st.sg * (1 - st.sg));
            if (beta) dbeta[st.gi] += (float)(dxmin * st.wmin * st.sb * (1 - st.sb));
            dW[st.off + st.imax] += (float)(dxmax * st.sg);
            dW[st.off + st.imin] += (float)(dxmin * st.sb);
        }
}

static void ref_fwd(float *deq, const float *W, const float *gamma, const float *beta, int rows,
                    int cols, int gs, int bits)
{
    const int ng = (cols + gs - 1) / gs, qmax = (1 << bits) - 1;
    for (int r = 0; r < rows; r++)
        for (int kg = 0; kg < ng; kg++) {
            const ref_group st = ref_group_at(W, gamma, beta, r, kg, cols, gs, qmax);
            for (int e = 0; e < st.n; e++) {
                float q = (float)nearbyint(W[st.off + e] / st.s) + st.z;
                q = q < 0 ? 0 : q > (float)qmax ? (float)qmax : q;
                deq[st.off + e] = (q - st.z) * st.s;
            }
        }
}

/* Rows of W (rows, cols) with the cases the scans must agree on: values drawn from a few levels
 * (ties of the extremes at several positions), signed zeros as the only extremes, a NaN first
 * and a NaN later in a group. */
static void fill_cases(gq_rng *r, float *W, int rows, int cols, int gs)
{
    for (size_t i = 0; i < (size_t)rows * cols; i++) W[i] = (float)gq_rng_normal(r);
    for (int j = 0; j < cols; j++) W[cols + j] = (float)((int)gq_rng_below(r, 5) - 2) * 0.25f;
    for (int j = 0; j < cols; j++) W[2 * cols + j] = gq_rng_below(r, 2) ? 0.0f : -0.0f;
    W[3 * cols] = NAN;
    W[3 * cols + gs + 3] = NAN;
}

/* a and b (n) hold the same bits, NaNs (whatever their payload) at the same places */
static void assert_same_floats(const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (isnan(a[i]) || isnan(b[i]))
            assert_true(isnan(a[i]) && isnan(b[i]));
        else if (memcmp(&a[i], &b[i], sizeof *a))
            fail_msg("element %zu: %.9g vs %.9g", i, a[i], b[i]);
}

static void check_lwc(int rows, int cols, int gs, int bits, bool lwc)
{
    gq_rng r;
    gq_rng_seed(&r, 42);
    const int ng = (cols + gs - 1) / gs;
    const size_t nw = (size_t)rows * cols, nG = (size_t)rows * ng;
    float *W = malloc(nw * sizeof *W), *R = malloc(nw * sizeof *R);
    float *a = calloc(nw, sizeof *a), *b = calloc(nw, sizeof *b);
    float *gamma = malloc(nG * sizeof *gamma), *beta = malloc(nG * sizeof *beta);
    float *ga = calloc(nG, sizeof *ga), *gb = calloc(nG, sizeof *gb);
    float *ba = calloc(nG, sizeof *ba), *bb = calloc(nG, sizeof *bb);
    fill_cases(&r, W, rows, cols, gs);
    for (size_t i = 0; i < nw; i++) R[i] = (float)gq_rng_normal(&r);
    for (size_t i = 0; i < nG; i++) {
        gamma[i] = (float)(2 + gq_rng_normal(&r));
        beta[i] = (float)(2 + gq_rng_normal(&r));
    }
    const float *gm = lwc ? gamma : NULL, *bt = lwc ? beta : NULL;
    const gq_lwc_spec spec = {.bits = bits, .group = gs, .round = GQ_ROUND_NEAREST};
    gq_lwc_quant_fwd_f(a, W, gm, bt, rows, cols, &spec);
    ref_fwd(b, W, gm, bt, rows, cols, gs, bits);
    assert_same_floats(a, b, nw);
    for (size_t i = 0; i < nw; i++) a[i] = b[i] = (float)(i % 3) - 1.0f; /* accumulated into */
    gq_lwc_quant_bwd_f(a, ga, ba, R, W, gm, bt, rows, cols, &spec);
    ref_bwd(b, gb, bb, R, W, gm, bt, rows, cols, gs, bits);
    assert_same_floats(a, b, nw);
    assert_same_floats(ga, gb, nG);
    assert_same_floats(ba, bb, nG);
    void *all[] = {W, R, a, b, gamma, beta, ga, gb, ba, bb};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
}

/* groups of 32 and of 100 columns (a shorter last group, a chunk boundary inside a group),
 * with and without learned clipping; enough rows for the parallel loop */
static void test_lwc_bits(void **state)
{
    (void)state;
    check_lwc(6, 96, 32, 4, true);
    check_lwc(6, 96, 32, 3, false);
    check_lwc(700, 250, 100, 4, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_rope_bits),
                                       cmocka_unit_test(test_lwc_bits)};
    return cmocka_run_group_tests_name("grad kernels", tests, NULL, NULL);
}
