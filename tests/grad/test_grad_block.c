/* The whole block forward + backward, composed from the single operations, checked by finite
 * differences on a tiny grouped-query block (double precision), with and without the explicit
 * input transforms. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fd_check.h"
#include "grad/gq_grad.h"
#include "test_support.h"

#define N_FIELDS 11

typedef struct {
    gq_grad_shape s;
    int B, T;
    gq_grad_block_d p;
    gq_grad_tape_d tape;
    double *x, *R, *out;
} blk_ctx;

static double blk_loss(void *v)
{
    blk_ctx *c = v;
    gq_block_fwd_d(c->out, c->x, &c->p, &c->tape);
    return fd_dot(c->R, c->out, (size_t)c->B * c->T * c->s.dim);
}

/* The fields of a block in struct order, with their sizes. */
static void fields(gq_grad_block_d *b, const gq_grad_shape *s, double ***f, size_t *n)
{
    const size_t D = (size_t)s->dim, KV = D / s->n_heads * s->n_kv_heads, H = (size_t)s->hidden;
    double **p[N_FIELDS] = {&b->rms_att, &b->wq, &b->wk, &b->wv, &b->wo, &b->rms_ffn,
                            &b->w1, &b->w2, &b->w3, &b->m_att, &b->m_ffn};
    const size_t sz[N_FIELDS] = {D, D * D, KV * D, KV * D, D * D, D, H * D, D * H, H * D, D * D,
                                 D * D};
    memcpy(f, p, sizeof p);
    memcpy(n, sz, sizeof sz);
}

/* A stand-in activation quantizer for the finite-difference checks: xq = x + e_k with a fixed
 * noise e_k per linear (its true derivative is the identity the straight-through estimator
 * assumes), so the differences see the products read xq while the gradient passes through. */
static void frozen_noise_quant(const gq_grad_actq_d *a, int k, const double *x, double *xq,
                               int n, int width, int T)
{
    (void)T;
    const double *e = ((double *const *)a->user)[k];
    for (size_t i = 0; i < (size_t)n * width; i++) xq[i] = x[i] + e[i];
}

static void check_block_act(bool transforms, const bool has[7])
{
    gq_rng r;
    gq_rng_seed(&r, 21);
    blk_ctx c = {.s = {.dim = 8, .hidden = 12, .n_heads = 4, .n_kv_heads = 2}, .B = 2, .T = 3};
    gq_error err;
    assert_int_equal(gq_grad_tape_init_d(&c.tape, &c.s, c.B, c.T, &err), 0);
    double *noise[7] = {0};
    gq_grad_actq_d act = {.quant = frozen_noise_quant, .user = noise};
    for (int k = 0; has && k < 7; k++) {
        size_t w = k == 6 ? (size_t)c.s.hidden : (size_t)c.s.dim, nn = (size_t)c.B * c.T * w;
        act.has[k] = has[k];
        noise[k] = fd_zeros(nn);
        fd_randn(&r, noise[k], nn, 0.3);
    }
    if (has)
        assert_int_equal(gq_grad_tape_set_act_d(&c.tape, &act, &err), 0);
    double **f[N_FIELDS], **gf[N_FIELDS];
    size_t sz[N_FIELDS];
    gq_grad_block_d grad = {0};
    fields(&c.p, &c.s, f, sz);
    fields(&grad, &c.s, gf, sz);
    for (int i = 0; i < N_FIELDS; i++) {
        bool is_transform = i >= 9;
        if (is_transform && !transforms) continue;
        *f[i] = fd_zeros(sz[i]);
        *gf[i] = fd_zeros(sz[i]);
        fd_randn(&r, *f[i], sz[i], is_transform ? 0.2 : 0.5);
        if (i == 0 || i == 5) /* norm weights around 1 */
            for (size_t j = 0; j < sz[i]; j++) (*f[i])[j] += 1;
        if (is_transform)
            for (int j = 0; j < c.s.dim; j++) (*f[i])[j * c.s.dim + j] += 1;
    }
    size_t nx = (size_t)c.B * c.T * c.s.dim;
    c.x = fd_zeros(nx), c.R = fd_zeros(nx), c.out = fd_zeros(nx);
    fd_randn(&r, c.x, nx, 1), fd_randn(&r, c.R, nx, 1);
    double *dx = fd_zeros(nx);
    blk_loss(&c);
    gq_block_bwd_d(dx, &grad, c.R, c.x, &c.p, &c.tape);
    assert_true(fd_rel_error(blk_loss, &c, c.x, dx, nx, 1e-6) < 1e-3);
    for (int i = 0; i < N_FIELDS; i++) {
        if (!*f[i]) continue;
        double e = fd_rel_error(blk_loss, &c, *f[i], *gf[i], sz[i], 1e-6);
        if (!(e < 1e-3)) fail_msg("block field %d: relative error %g", i, e);
    }
    for (int i = 0; i < N_FIELDS; i++) free(*f[i]), free(*gf[i]);
    free(c.x), free(c.R), free(c.out), free(dx);
    for (int k = 0; k < 7; k++) free(noise[k]);
    gq_grad_tape_free_d(&c.tape);
}

static void check_block(bool transforms) { check_block_act(transforms, NULL); }

static void test_block_plain(void **state) { (void)state; check_block(false); }
static void test_block_transforms(void **state) { (void)state; check_block(true); }

/* Activation quantizers on every linear input, and on some only (q and down read x). */
static void test_block_act_all(void **state)
{
    (void)state;
    const bool all[7] = {1, 1, 1, 1, 1, 1, 1};
    check_block_act(true, all);
}

static void test_block_act_some(void **state)
{
    (void)state;
    const bool some[7] = {0, 1, 1, 1, 1, 0, 0};
    check_block_act(true, some);
}

/* Rounding the inputs (per-token INT4 min/max, a real quantizer): the output is the block whose
 * products read the rounded inputs, and the weight gradients are dy^T xq (checked on w2
 * against the scalar sum over the saved rounded down_proj input). */
static void int4_token_quant(const gq_grad_actq_d *a, int k, const double *x, double *xq, int n,
                             int width, int T)
{
    (void)a, (void)k, (void)T;
    for (int r = 0; r < n; r++) {
        const double *xr = x + (size_t)r * width;
        double mn = xr[0], mx = xr[0];
        for (int j = 1; j < width; j++) mn = fmin(mn, xr[j]), mx = fmax(mx, xr[j]);
        double s = (mx - mn) / 15;
        for (int j = 0; j < width; j++)
            xq[(size_t)r * width + j] = s > 0 ? mn + nearbyint((xr[j] - mn) / s) * s : xr[j];
    }
}

static void test_block_act_weight_grad_reads_xq(void **state)
{
    (void)state;
    gq_rng r;
    gq_rng_seed(&r, 23);
    gq_grad_shape s = {.dim = 8, .hidden = 12, .n_heads = 4, .n_kv_heads = 2};
    const int B = 1, T = 4, n = B * T, D = 8, H = 12;
    gq_grad_block_d p = {0}, g = {0};
    double **f[N_FIELDS], **gf[N_FIELDS];
    size_t sz[N_FIELDS];
    fields(&p, &s, f, sz);
    fields(&g, &s, gf, sz);
    for (int i = 0; i < 9; i++) {
        *f[i] = fd_zeros(sz[i]), *gf[i] = fd_zeros(sz[i]);
        fd_randn(&r, *f[i], sz[i], 0.5);
    }
    gq_grad_actq_d act = {.has = {1, 1, 1, 1, 1, 1, 1}, .quant = int4_token_quant};
    gq_grad_tape_d tp;
    gq_error err;
    assert_int_equal(gq_grad_tape_init_d(&tp, &s, B, T, &err), 0);
    assert_int_equal(gq_grad_tape_set_act_d(&tp, &act, &err), 0);
    double *x = fd_zeros((size_t)n * D), *out = fd_zeros((size_t)n * D),
           *R = fd_zeros((size_t)n * D), *aq = fd_zeros((size_t)n * H);
    fd_randn(&r, x, (size_t)n * D, 1), fd_randn(&r, R, (size_t)n * D, 1);
    gq_block_fwd_d(out, x, &p, &tp);
    int4_token_quant(&act, 6, tp.a, aq, n, H, T);
    for (size_t i = 0; i < (size_t)n * H; i++) assert_true(aq[i] == tp.xq[6][i]);
    /* the MLP output is exactly aq · w2^T added to h */
    for (int t = 0; t < n; t++)
        for (int o = 0; o < D; o++) {
            double y = tp.h[(size_t)t * D + o];
            for (int j = 0; j < H; j++) y += aq[(size_t)t * H + j] * p.w2[(size_t)o * H + j];
            assert_true(fabs(y - out[(size_t)t * D + o]) < 1e-12 * (1 + fabs(y)));
        }
    gq_block_bwd_d(NULL, &g, R, x, &p, &tp);
    for (int o = 0; o < D; o++)
        for (int j = 0; j < H; j++) {
            double want = 0;
            for (int t = 0; t < n; t++) want += R[(size_t)t * D + o] * aq[(size_t)t * H + j];
            assert_true(fabs(g.w2[(size_t)o * H + j] - want) < 1e-12 * (1 + fabs(want)));
        }
    for (int i = 0; i < N_FIELDS; i++) free(*f[i]), free(*gf[i]);
    free(x), free(out), free(R), free(aq);
    gq_grad_tape_free_d(&tp);
}

/* The float instantiation computes the same block (to float rounding). */
static void test_block_float_matches_double(void **state)
{
    (void)state;
    gq_rng r;
    gq_rng_seed(&r, 22);
    gq_grad_shape s = {.dim = 16, .hidden = 24, .n_heads = 4, .n_kv_heads = 2};
    const int B = 2, T = 5;
    gq_grad_block_d pd = {0};
    gq_grad_block_f pf = {0};
    double **fd[N_FIELDS];
    float **ff[N_FIELDS] = {&pf.rms_att, &pf.wq, &pf.wk, &pf.wv, &pf.wo, &pf.rms_ffn,
                            &pf.w1, &pf.w2, &pf.w3, &pf.m_att, &pf.m_ffn};
    size_t sz[N_FIELDS];
    fields(&pd, &s, fd, sz);
    for (int i = 0; i < N_FIELDS; i++) {
        *fd[i] = fd_zeros(sz[i]);
        fd_randn(&r, *fd[i], sz[i], 0.3);
        if (i >= 9)
            for (int j = 0; j < s.dim; j++) (*fd[i])[j * s.dim + j] += 1;
        *ff[i] = malloc(sz[i] * sizeof(float));
        for (size_t j = 0; j < sz[i]; j++) (*ff[i])[j] = (float)(*fd[i])[j];
    }
    size_t nx = (size_t)B * T * s.dim;
    double *xd = fd_zeros(nx), *od = fd_zeros(nx);
    float *xf = malloc(nx * sizeof *xf), *of = malloc(nx * sizeof *of);
    fd_randn(&r, xd, nx, 1);
    for (size_t i = 0; i < nx; i++) xf[i] = (float)xd[i];
    gq_grad_tape_d td;
    gq_grad_tape_f tf;
    gq_error err;
    assert_int_equal(gq_grad_tape_init_d(&td, &s, B, T, &err), 0);
    assert_int_equal(gq_grad_tape_init_f(&tf, &s, B, T, &err), 0);
    gq_block_fwd_d(od, xd, &pd, &td);
    gq_block_fwd_f(of, xf, &pf, &tf);
    for (size_t i = 0; i < nx; i++) assert_true(fabs(of[i] - od[i]) < 1e-4 * (1 + fabs(od[i])));
    for (int i = 0; i < N_FIELDS; i++) free(*fd[i]), free(*ff[i]);
    free(xd), free(od), free(xf), free(of);
    gq_grad_tape_free_d(&td);
    gq_grad_tape_free_f(&tf);
}

int test_grad_block_main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_block_plain),
        cmocka_unit_test(test_block_transforms),
        cmocka_unit_test(test_block_float_matches_double),
        cmocka_unit_test(test_block_act_all),
        cmocka_unit_test(test_block_act_some),
        cmocka_unit_test(test_block_act_weight_grad_reads_xq),
    };
    return cmocka_run_group_tests_name("grad_block", tests, NULL, NULL);
}
