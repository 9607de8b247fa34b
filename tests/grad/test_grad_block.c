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

static void check_block(bool transforms)
{
    gq_rng r;
    gq_rng_seed(&r, 21);
    blk_ctx c = {.s = {.dim = 8, .hidden = 12, .n_heads = 4, .n_kv_heads = 2}, .B = 2, .T = 3};
    gq_error err;
    assert_int_equal(gq_grad_tape_init_d(&c.tape, &c.s, c.B, c.T, &err), 0);
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
    gq_grad_tape_free_d(&c.tape);
}

static void test_block_plain(void **state) { (void)state; check_block(false); }
static void test_block_transforms(void **state) { (void)state; check_block(true); }

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
    };
    return cmocka_run_group_tests_name("grad_block", tests, NULL, NULL);
}
