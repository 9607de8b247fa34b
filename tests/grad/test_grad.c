/* Finite-difference checks of every backward function in src/grad (double precision), plus
 * direct checks of the forward conventions, the inverse and AdamW.
 * Each check: loss L = <R, f(params)> with a random R, so dL/dy = R; the analytic gradient from
 * the backward function must match central differences to a relative error below 1e-3. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fd_check.h"
#include "grad/gq_grad.h"
#include "test_support.h"

#define FD_H 1e-6
#define FD_TOL 1e-3

/* ---- linear and matmul ------------------------------------------------------------------ */
typedef struct {
    int n, in, out;
    bool matmul; /* y = x·M (M (in, out)) instead of x·W^T */
    bool diag;   /* y = x·diag(M) (in == out), M's off-diagonal entries ignored */
    double *x, *W, *R, *y;
} lin_ctx;

static double lin_loss(void *p)
{
    lin_ctx *c = p;
    if (c->diag)
        gq_matmul_diag_fwd_d(c->y, c->x, c->W, c->n, c->in);
    else if (c->matmul)
        gq_matmul_fwd_d(c->y, c->x, c->W, c->n, c->in, c->out);
    else
        gq_linear_fwd_d(c->y, c->x, c->W, c->n, c->in, c->out);
    return fd_dot(c->R, c->y, (size_t)c->n * c->out);
}

static void check_linear(bool matmul, bool diag)
{
    gq_rng r;
    gq_rng_seed(&r, 11);
    lin_ctx c = {.n = 5, .in = 7, .out = diag ? 7 : 4, .matmul = matmul, .diag = diag};
    size_t nx = (size_t)c.n * c.in, nw = (size_t)c.in * c.out, ny = (size_t)c.n * c.out;
    c.x = fd_zeros(nx), c.W = fd_zeros(nw), c.R = fd_zeros(ny), c.y = fd_zeros(ny);
    fd_randn(&r, c.x, nx, 1), fd_randn(&r, c.W, nw, 1), fd_randn(&r, c.R, ny, 1);
    double *dx = fd_zeros(nx), *dW = fd_zeros(nw);
    /* accumulation: start from 1 and subtract it afterwards */
    for (size_t i = 0; i < nx; i++) dx[i] = 1;
    if (diag)
        gq_matmul_diag_bwd_d(dx, dW, c.R, c.x, c.W, c.n, c.in);
    else if (matmul)
        gq_matmul_bwd_d(dx, dW, c.R, c.x, c.W, c.n, c.in, c.out);
    else
        gq_linear_bwd_d(dx, dW, c.R, c.x, c.W, c.n, c.in, c.out);
    for (size_t i = 0; i < nx; i++) dx[i] -= 1;
    assert_true(fd_rel_error(lin_loss, &c, c.x, dx, nx, FD_H) < FD_TOL);
    assert_true(fd_rel_error(lin_loss, &c, c.W, dW, nw, FD_H) < FD_TOL);
    free(c.x), free(c.W), free(c.R), free(c.y), free(dx), free(dW);
}

static void test_linear(void **state) { (void)state; check_linear(false, false); }
static void test_matmul(void **state) { (void)state; check_linear(true, false); }
/* the diagonal product's gradient is the dense one's diagonal; the off-diagonal entries of M,
 * which it does not read, get none (and finite differences see none) */
static void test_matmul_diag(void **state) { (void)state; check_linear(true, true); }

/* ---- inverse ------------------------------------------------------------------------------ */
typedef struct {
    int k;
    double *A, *B, *R;
} inv_ctx;

static double inv_loss(void *p)
{
    inv_ctx *c = p;
    gq_error err;
    assert_int_equal(gq_mat_inverse(c->B, c->A, c->k, "A", &err), 0);
    return fd_dot(c->R, c->B, (size_t)c->k * c->k);
}

static void test_inverse(void **state)
{
    (void)state;
    gq_rng r;
    gq_rng_seed(&r, 12);
    inv_ctx c = {.k = 6};
    size_t kk = 36;
    c.A = fd_zeros(kk), c.B = fd_zeros(kk), c.R = fd_zeros(kk);
    fd_randn(&r, c.A, kk, 0.5), fd_randn(&r, c.R, kk, 1);
    for (int i = 0; i < c.k; i++) c.A[i * c.k + i] += 2;
    inv_loss(&c);
    /* A · A^-1 = I */
    for (int i = 0; i < c.k; i++)
        for (int j = 0; j < c.k; j++) {
            double s = 0;
            for (int l = 0; l < c.k; l++) s += c.A[i * c.k + l] * c.B[l * c.k + j];
            assert_true(fabs(s - (i == j)) < 1e-12);
        }
    double *dA = fd_zeros(kk);
    gq_inverse_bwd_d(dA, c.R, c.B, c.k);
    assert_true(fd_rel_error(inv_loss, &c, c.A, dA, kk, FD_H) < FD_TOL);
    /* a singular matrix is refused with a message naming it */
    double S[4] = {1, 2, 2, 4}, Si[4];
    gq_error err;
    assert_int_equal(gq_mat_inverse(Si, S, 2, "layers.0.att_transform", &err), -1);
    assert_non_null(strstr(err.msg, "layers.0.att_transform"));
    free(c.A), free(c.B), free(c.R), free(dA);
}

/* ---- RMSNorm ------------------------------------------------------------------------------ */
typedef struct {
    int n, d;
    double *x, *w, *R, *y;
} norm_ctx;

static double norm_loss(void *p)
{
    norm_ctx *c = p;
    gq_rmsnorm_fwd_d(c->y, c->x, c->w, c->n, c->d);
    return fd_dot(c->R, c->y, (size_t)c->n * c->d);
}

static void test_rmsnorm(void **state)
{
    (void)state;
    gq_rng r;
    gq_rng_seed(&r, 13);
    norm_ctx c = {.n = 4, .d = 9};
    size_t nx = 36;
    c.x = fd_zeros(nx), c.w = fd_zeros(c.d), c.R = fd_zeros(nx), c.y = fd_zeros(nx);
    fd_randn(&r, c.x, nx, 2), fd_randn(&r, c.w, c.d, 1), fd_randn(&r, c.R, nx, 1);
    norm_loss(&c);
    /* forward: row 0 by hand */
    double ss = 0;
    for (int j = 0; j < c.d; j++) ss += c.x[j] * c.x[j];
    assert_true(fabs(c.y[3] - c.x[3] / sqrt(ss / c.d + 1e-5) * c.w[3]) < 1e-12);
    double *dx = fd_zeros(nx), *dw = fd_zeros(c.d);
    gq_rmsnorm_bwd_d(dx, dw, c.R, c.x, c.w, c.n, c.d);
    assert_true(fd_rel_error(norm_loss, &c, c.x, dx, nx, FD_H) < FD_TOL);
    assert_true(fd_rel_error(norm_loss, &c, c.w, dw, c.d, FD_H) < FD_TOL);
    free(c.x), free(c.w), free(c.R), free(c.y), free(dx), free(dw);
}

/* ---- RoPE ---------------------------------------------------------------------------------- */
typedef struct {
    int B, T, width, hs;
    double *x, *R, *y;
} rope_ctx;

static double rope_loss(void *p)
{
    rope_ctx *c = p;
    size_t n = (size_t)c->B * c->T * c->width;
    memcpy(c->y, c->x, n * sizeof *c->y);
    gq_rope_fwd_d(c->y, c->B, c->T, c->width, c->hs);
    return fd_dot(c->R, c->y, n);
}

static void test_rope(void **state)
{
    (void)state;
    gq_rng r;
    gq_rng_seed(&r, 14);
    rope_ctx c = {.B = 2, .T = 5, .width = 12, .hs = 6};
    size_t n = 120;
    c.x = fd_zeros(n), c.R = fd_zeros(n), c.y = fd_zeros(n);
    fd_randn(&r, c.x, n, 1), fd_randn(&r, c.R, n, 1);
    rope_loss(&c);
    /* llama2.c convention: window 1, position 3, pair (8, 9): head_dim = 8 % 6 = 2 */
    size_t row = (size_t)(1 * 5 + 3) * 12;
    double ang = 3.0 / pow(10000.0, 2.0 / 6.0), a = c.x[row + 8], b = c.x[row + 9];
    assert_true(fabs(c.y[row + 8] - (a * cos(ang) - b * sin(ang))) < 1e-12);
    assert_true(fabs(c.y[row + 9] - (a * sin(ang) + b * cos(ang))) < 1e-12);
    /* position 0 of each window is unrotated */
    assert_true(fabs(c.y[5 * 12 + 7] - c.x[5 * 12 + 7]) < 1e-15);
    double *dx = fd_zeros(n);
    memcpy(dx, c.R, n * sizeof *dx);
    gq_rope_bwd_d(dx, c.B, c.T, c.width, c.hs);
    assert_true(fd_rel_error(rope_loss, &c, c.x, dx, n, FD_H) < FD_TOL);
    free(c.x), free(c.R), free(c.y), free(dx);
}

/* ---- attention ----------------------------------------------------------------------------- */
typedef struct {
    int B, T, nh, nkv, hs;
    double *q, *k, *v, *R, *out, *P;
} att_ctx;

static double att_loss(void *p)
{
    att_ctx *c = p;
    gq_attention_fwd_d(c->out, c->P, c->q, c->k, c->v, c->B, c->T, c->nh, c->nkv, c->hs);
    return fd_dot(c->R, c->out, (size_t)c->B * c->T * c->nh * c->hs);
}

/* T > GQ_ATT_ROWS (64) spans several causal row blocks, the last one partial */
static void check_attention(int B, int T, int nh, int nkv)
{
    gq_rng r;
    gq_rng_seed(&r, 15);
    att_ctx c = {.B = B, .T = T, .nh = nh, .nkv = nkv, .hs = 3};
    size_t nq = (size_t)c.B * c.T * c.nh * c.hs, nk = (size_t)c.B * c.T * c.nkv * c.hs;
    c.q = fd_zeros(nq), c.k = fd_zeros(nk), c.v = fd_zeros(nk), c.R = fd_zeros(nq);
    c.out = fd_zeros(nq), c.P = fd_zeros((size_t)c.B * c.nh * c.T * c.T);
    fd_randn(&r, c.q, nq, 1), fd_randn(&r, c.k, nk, 1), fd_randn(&r, c.v, nk, 1);
    fd_randn(&r, c.R, nq, 1);
    att_loss(&c);
    /* causal: every probability row sums to 1 and is 0 above the diagonal; the first token
     * attends only to itself, so its output is its (shared) value head */
    for (int bh = 0; bh < c.B * c.nh; bh++)
        for (int t = 0; t < c.T; t++) {
            double s = 0;
            for (int j = 0; j < c.T; j++) {
                double pj = c.P[((size_t)bh * c.T + t) * c.T + j];
                if (j > t) assert_true(pj == 0);
                s += pj;
            }
            assert_true(fabs(s - 1) < 1e-12);
        }
    /* the last head reads the last kv head */
    assert_true(fabs(c.out[(nh - 1) * c.hs + 1] - c.v[(nkv - 1) * c.hs + 1]) < 1e-12);
    double *dq = fd_zeros(nq), *dk = fd_zeros(nk), *dv = fd_zeros(nk);
    gq_attention_bwd_d(dq, dk, dv, c.R, c.P, c.q, c.k, c.v, c.B, c.T, c.nh, c.nkv, c.hs);
    assert_true(fd_rel_error(att_loss, &c, c.q, dq, nq, FD_H) < FD_TOL);
    assert_true(fd_rel_error(att_loss, &c, c.k, dk, nk, FD_H) < FD_TOL);
    assert_true(fd_rel_error(att_loss, &c, c.v, dv, nk, FD_H) < FD_TOL);
    free(c.q), free(c.k), free(c.v), free(c.R), free(c.out), free(c.P);
    free(dq), free(dk), free(dv);
}

static void test_attention(void **state) { (void)state; check_attention(2, 4, 4, 2); }
static void test_attention_row_blocks(void **state) { (void)state; check_attention(1, 150, 2, 1); }

/* ---- SwiGLU -------------------------------------------------------------------------------- */
typedef struct {
    size_t m;
    double *g, *u, *R, *h;
} swi_ctx;

static double swi_loss(void *p)
{
    swi_ctx *c = p;
    gq_swiglu_fwd_d(c->h, c->g, c->u, c->m);
    return fd_dot(c->R, c->h, c->m);
}

static void test_swiglu(void **state)
{
    (void)state;
    gq_rng r;
    gq_rng_seed(&r, 16);
    swi_ctx c = {.m = 40};
    c.g = fd_zeros(c.m), c.u = fd_zeros(c.m), c.R = fd_zeros(c.m), c.h = fd_zeros(c.m);
    fd_randn(&r, c.g, c.m, 3), fd_randn(&r, c.u, c.m, 1), fd_randn(&r, c.R, c.m, 1);
    swi_loss(&c);
    assert_true(fabs(c.h[5] - c.g[5] / (1 + exp(-c.g[5])) * c.u[5]) < 1e-12);
    double *dg = fd_zeros(c.m), *du = fd_zeros(c.m);
    gq_swiglu_bwd_d(dg, du, c.R, c.g, c.u, c.m);
    assert_true(fd_rel_error(swi_loss, &c, c.g, dg, c.m, FD_H) < FD_TOL);
    assert_true(fd_rel_error(swi_loss, &c, c.u, du, c.m, FD_H) < FD_TOL);
    free(c.g), free(c.u), free(c.R), free(c.h), free(dg), free(du);
}

/* ---- fake quantization with learnable clipping --------------------------------------------- */
typedef struct {
    int rows, cols;
    gq_lwc_spec spec;
    double *W, *gamma, *beta, *R, *deq;
} lwc_ctx;

static double lwc_loss(void *p)
{
    lwc_ctx *c = p;
    gq_lwc_quant_fwd_d(c->deq, c->W, c->gamma, c->beta, c->rows, c->cols, &c->spec);
    return fd_dot(c->R, c->deq, (size_t)c->rows * c->cols);
}

static void test_lwc_gradients(void **state)
{
    (void)state;
    gq_rng r;
    gq_rng_seed(&r, 17);
    /* identity rounding = the function whose derivative the STE returns */
    lwc_ctx c = {.rows = 4, .cols = 16, .spec = {.bits = 3, .group = 8, .round = GQ_ROUND_IDENTITY}};
    size_t nw = 64, ng = 8;
    c.W = fd_zeros(nw), c.gamma = fd_zeros(ng), c.beta = fd_zeros(ng), c.R = fd_zeros(nw);
    c.deq = fd_zeros(nw);
    fd_randn(&r, c.W, nw, 1), fd_randn(&r, c.R, nw, 1);
    for (size_t g = 0; g < ng; g++) { /* around the init, some groups strongly clipped */
        c.gamma[g] = GQ_LWC_INIT - (double)g * 0.4;
        c.beta[g] = 1.0 + (double)g * 0.3;
    }
    double *dW = fd_zeros(nw), *dga = fd_zeros(ng), *dbe = fd_zeros(ng);
    gq_lwc_quant_bwd_d(dW, dga, dbe, c.R, c.W, c.gamma, c.beta, c.rows, c.cols, &c.spec);
    /* the clipping parameters receive a gradient through the clamped elements */
    assert_true(fd_dot(dga, dga, ng) > 0);
    assert_true(fd_rel_error(lwc_loss, &c, c.gamma, dga, ng, FD_H) < FD_TOL);
    assert_true(fd_rel_error(lwc_loss, &c, c.beta, dbe, ng, FD_H) < FD_TOL);
    assert_true(fd_rel_error(lwc_loss, &c, c.W, dW, nw, FD_H) < FD_TOL);
    /* without lwc the same checks for W (min/max path) */
    double *gamma = c.gamma, *beta = c.beta;
    c.gamma = c.beta = NULL;
    memset(dW, 0, nw * sizeof *dW);
    gq_lwc_quant_bwd_d(dW, NULL, NULL, c.R, c.W, NULL, NULL, c.rows, c.cols, &c.spec);
    assert_true(fd_rel_error(lwc_loss, &c, c.W, dW, nw, FD_H) < FD_TOL);
    free(c.W), free(gamma), free(beta), free(c.R), free(c.deq), free(dW), free(dga), free(dbe);
}

static void test_lwc_forward(void **state)
{
    (void)state;
    gq_rng r;
    gq_rng_seed(&r, 18);
    const int rows = 3, cols = 32, bits = 3, qmax = 7;
    gq_lwc_spec spec = {.bits = bits, .group = 16, .round = GQ_ROUND_NEAREST};
    double W[96], deq[96], deq2[96], gamma[6], beta[6];
    fd_randn(&r, W, 96, 1);
    gq_lwc_quant_fwd_d(deq, W, NULL, NULL, rows, cols, &spec);
    /* plain asymmetric min/max RTN, by hand, half-to-even */
    for (int g = 0; g < 6; g++) {
        const double *w = W + g * 16;
        double mx = w[0], mn = w[0];
        for (int e = 1; e < 16; e++) mx = fmax(mx, w[e]), mn = fmin(mn, w[e]);
        double s = (mx - mn) / qmax, z = nearbyint(-mn / s);
        for (int e = 0; e < 16; e++) {
            double q = fmin(fmax(nearbyint(w[e] / s) + z, 0), qmax);
            assert_true(fabs(deq[g * 16 + e] - (q - z) * s) < 1e-12);
        }
        /* the group's extremes are reproduced to within half a step */
        assert_true(fabs(deq[g * 16] - w[0]) <= s / 2 + 1e-12);
    }
    /* sigmoid(40) == 1 in double: lwc at saturation equals no lwc */
    for (int g = 0; g < 6; g++) gamma[g] = beta[g] = 40;
    gq_lwc_quant_fwd_d(deq2, W, gamma, beta, rows, cols, &spec);
    assert_memory_equal(deq, deq2, sizeof deq);
    /* clipping shrinks the range: every reconstruction inside [sb*min - s/2, sg*max + s/2] */
    for (int g = 0; g < 6; g++) gamma[g] = beta[g] = 0; /* sigmoid = 0.5 */
    gq_lwc_quant_fwd_d(deq2, W, gamma, beta, rows, cols, &spec);
    for (int g = 0; g < 6; g++) {
        const double *w = W + g * 16;
        double mx = w[0], mn = w[0];
        for (int e = 1; e < 16; e++) mx = fmax(mx, w[e]), mn = fmin(mn, w[e]);
        double s = 0.5 * (mx - mn) / qmax;
        for (int e = 0; e < 16; e++) {
            assert_true(deq2[g * 16 + e] <= 0.5 * mx + s / 2 + 1e-12);
            assert_true(deq2[g * 16 + e] >= 0.5 * mn - s / 2 - 1e-12);
        }
    }
}

/* ---- AdamW --------------------------------------------------------------------------------- */
static void test_adamw(void **state)
{
    (void)state;
    gq_adamw opt;
    gq_adamw_init(&opt, 0.1, 0.01);
    float p[2] = {1.0f, -2.0f}, m[2] = {0}, v[2] = {0};
    const float g1[2] = {0.5f, -1.0f}, g2[2] = {0.25f, 2.0f};
    /* reference, in double: torch.optim.AdamW step by step */
    double P[2] = {1.0, -2.0}, M[2] = {0}, V[2] = {0};
    const float *gs[2] = {g1, g2};
    for (int t = 1; t <= 2; t++) {
        gq_adamw_begin_step(&opt);
        gq_adamw_update(&opt, p, gs[t - 1], m, v, 2);
        for (int i = 0; i < 2; i++) {
            double g = gs[t - 1][i];
            P[i] *= 1 - 0.1 * 0.01;
            M[i] = 0.9 * M[i] + 0.1 * g;
            V[i] = 0.999 * V[i] + 0.001 * g * g;
            double mh = M[i] / (1 - pow(0.9, t)), vh = V[i] / (1 - pow(0.999, t));
            P[i] -= 0.1 * mh / (sqrt(vh) + 1e-8);
        }
    }
    for (int i = 0; i < 2; i++) assert_true(fabs(p[i] - P[i]) < 1e-6);
    /* minimises a quadratic */
    gq_adamw_init(&opt, 0.05, 0);
    float x = 0, mx = 0, vx = 0;
    for (int s = 0; s < 400; s++) {
        float gx = 2 * (x - 3);
        gq_adamw_begin_step(&opt);
        gq_adamw_update(&opt, &x, &gx, &mx, &vx, 1);
    }
    assert_true(fabs(x - 3) < 0.05);
}

static void test_diag_dominance(void **state)
{
    (void)state;
    const float ok[4] = {2, -1.5f, 0.5f, -1}, bad[4] = {2, 0.5f, 1, -1}, tie[4] = {1, 1, 0, 1};
    assert_true(gq_diag_dominant_f(ok, 2));
    assert_false(gq_diag_dominant_f(bad, 2));
    assert_false(gq_diag_dominant_f(tie, 2)); /* strict */
}


int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_matmul_diag),
        cmocka_unit_test(test_inverse),       cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),          cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_row_blocks),
        cmocka_unit_test(test_swiglu),        cmocka_unit_test(test_lwc_gradients),
        cmocka_unit_test(test_lwc_forward),   cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_diag_dominance),
    };
    int fails = cmocka_run_group_tests_name("grad", tests, NULL, NULL);
    return fails + test_grad_block_main();
}
