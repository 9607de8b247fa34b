/* AffineQuant block optimisation on a random block: the training loss falls over epochs and
 * ends below plain RTN's block error; without transforms and clipping it is RTN. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_rng.h"
#include "grad/gq_affine.h"
#include "test_support.h"

static float *randn(gq_rng *r, size_t n, double scale, double shift)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = (float)(shift + scale * gq_rng_normal(r));
    return p;
}

/* A block of width D, kv width KV, hidden H: norms near 1, weights N(0, w^2), down_proj
 * N(0, w2^2); drawn in a fixed order from r. */
static gq_grad_block_f random_block(gq_rng *r, int D, int KV, int H, double w, double w2)
{
    gq_grad_block_f fp = {.rms_att = randn(r, D, 0.1, 1), .rms_ffn = randn(r, D, 0.1, 1)};
    fp.wq = randn(r, (size_t)D * D, w, 0);
    fp.wk = randn(r, (size_t)KV * D, w, 0);
    fp.wv = randn(r, (size_t)KV * D, w, 0);
    fp.wo = randn(r, (size_t)D * D, w, 0);
    fp.w1 = randn(r, (size_t)H * D, w, 0);
    fp.w3 = randn(r, (size_t)H * D, w, 0);
    fp.w2 = randn(r, (size_t)D * H, w2, 0);
    return fp;
}

static void test_affine_training(void **state)
{
    (void)state;
    gq_rng r;
    gq_rng_seed(&r, 31);
    gq_grad_shape s = {.dim = 32, .hidden = 64, .n_heads = 4, .n_kv_heads = 2};
    const int D = 32, KV = 16, H = 64, B = 4, T = 16;
    gq_grad_block_f fp = random_block(&r, D, KV, H, 0.2, 0.2);
    float *x = randn(&r, (size_t)B * T * D, 1, 0);
    for (int j = 0; j < D; j += 7) /* outlier channels, as in real activations */
        for (int t = 0; t < B * T; t++) x[(size_t)t * D + j] *= 8;
    gq_affine_opts o = {.epochs = 0, .lr = 5e-3, .lwc_lr = 1e-2, .weight_decay = 0, .sf = 1e-2,
                        .alpha = 0.5, .lwc = false, .let = false,
                        .quant = {.bits = 3, .group = 16}};
    gq_affine_state rtn, aq;
    gq_error err;
    assert_int_equal(gq_affine_train(&s, &fp, x, x, B, T, &o, &rtn, &err), 0);
    double rtn_mse;
    assert_int_equal(gq_affine_eval(&rtn, &fp, x, x, B, T, &o.quant, &rtn_mse, &err), 0);
    assert_true(fabs(rtn_mse - rtn.init_loss) <= 1e-9 * rtn_mse);
    assert_true(rtn_mse > 0);
    o.epochs = 6, o.lwc = true, o.let = true;
    assert_int_equal(gq_affine_train(&s, &fp, x, x, B, T, &o, &aq, &err), 0);
    for (int e = 0; e < o.epochs; e++) print_message("epoch %d loss %.6g\n", e, aq.epoch_loss[e]);
    print_message("rtn %.6g init %.6g repairs %d\n", rtn_mse, aq.init_loss, aq.repairs);
    assert_true(aq.epoch_loss[o.epochs - 1] < aq.epoch_loss[0]);
    double aq_mse;
    assert_int_equal(gq_affine_eval(&aq, &fp, x, x, B, T, &o.quant, &aq_mse, &err), 0);
    print_message("final %.6g\n", aq_mse);
    assert_true(aq_mse < rtn_mse);
    gq_affine_state_free(&rtn);
    gq_affine_state_free(&aq);
    float *all[] = {fp.rms_att, fp.rms_ffn, fp.wq, fp.wk, fp.wv, fp.wo, fp.w1, fp.w3, fp.w2, x};
    for (size_t i = 0; i < 10; i++) free(all[i]);
}

/* max |a - b| / max |b| over n values */
static double rel_diff(const float *a, const float *b, size_t n)
{
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i])), m = fmax(m, fabs(b[i]));
    return d / fmax(m, 1e-30);
}

/* The diagonal fast paths (scalings for transforms whose gradual mask is the diagonal: every
 * step of the first epoch, and the whole run with one epoch) against the dense products of the
 * same transforms: the same training up to summation order. */
static void check_fast_vs_dense(int epochs)
{
    gq_rng r;
    gq_rng_seed(&r, 32);
    gq_grad_shape s = {.dim = 32, .hidden = 64, .n_heads = 4, .n_kv_heads = 2};
    const int D = 32, KV = 16, H = 64, B = 3, T = 16, hs = 8;
    gq_grad_block_f fp = random_block(&r, D, KV, H, 0.2, 0.2);
    float *x = randn(&r, (size_t)B * T * D, 1, 0), *xq = randn(&r, (size_t)B * T * D, 1, 0);
    for (size_t i = 0; i < (size_t)B * T * D; i++) xq[i] = x[i] + 0.05f * xq[i];
    gq_affine_opts o = {.epochs = epochs, .lr = 1e-2, .lwc_lr = 5e-2, .sf = 1e-2, .alpha = 0.5,
                        .lwc = true, .let = true, .quant = {.bits = 3, .group = 16},
                        .aug_loss = true};
    gq_affine_state fast, dense;
    gq_error err;
    assert_int_equal(gq_affine_train(&s, &fp, x, xq, B, T, &o, &fast, &err), 0);
    o.dense = true;
    assert_int_equal(gq_affine_train(&s, &fp, x, xq, B, T, &o, &dense, &err), 0);
    for (int e = 0; e < epochs; e++) {
        print_message("epochs %d: epoch %d loss fast %.9g dense %.9g\n", epochs, e,
                      fast.epoch_loss[e], dense.epoch_loss[e]);
        assert_true(fabs(fast.epoch_loss[e] - dense.epoch_loss[e]) <= 1e-4 * dense.epoch_loss[e]);
    }
    const double da = rel_diff(fast.A_att, dense.A_att, (size_t)D * D),
                 df = rel_diff(fast.A_ffn, dense.A_ffn, (size_t)D * D),
                 dv = rel_diff(fast.A_vo, dense.A_vo, (size_t)s.n_kv_heads * hs * hs);
    print_message("A rel. differences att %.3g ffn %.3g vo %.3g\n", da, df, dv);
    assert_true(da < 1e-4 && df < 1e-4 && dv < 1e-4);
    for (int k = 0; k < 7; k++) {
        const size_t n = (size_t)(k == 1 || k == 2 ? KV : k == 4 || k == 5 ? H : D) * 2;
        assert_true(rel_diff(fast.gamma[k], dense.gamma[k], n) < 1e-4);
        assert_true(rel_diff(fast.beta[k], dense.beta[k], n) < 1e-4);
    }
    /* the fold: a diagonal state (one epoch) takes the fast path there too */
    gq_grad_block_f ff, fd;
    assert_int_equal(gq_affine_fold(&fast, &fp, &ff, NULL, &err), 0);
    assert_int_equal(gq_affine_fold(&dense, &fp, &fd, NULL, &err), 0);
    assert_true(rel_diff(ff.wv, fd.wv, (size_t)KV * D) < 1e-4);
    assert_true(rel_diff(ff.wo, fd.wo, (size_t)D * D) < 1e-4);
    assert_true(rel_diff(ff.m_att, fd.m_att, (size_t)D * D) < 1e-4);
    gq_affine_block_free(&ff), gq_affine_block_free(&fd);
    gq_affine_state_free(&fast), gq_affine_state_free(&dense);
    float *all[] = {fp.rms_att, fp.rms_ffn, fp.wq, fp.wk, fp.wv, fp.wo, fp.w1, fp.w3, fp.w2, x, xq};
    for (size_t i = 0; i < 11; i++) free(all[i]);
}

static void test_fast_vs_dense_one_epoch(void **state) { (void)state; check_fast_vs_dense(1); }
static void test_fast_vs_dense_three_epochs(void **state) { (void)state; check_fast_vs_dense(3); }

/* The same state at 1 and 2 threads, on a block large enough that the training, the attention
 * and the diagonal gradients' column blocks run in parallel (a diagonal first epoch, then the
 * full band: dense products and inverses). */
static void test_threads_same_bits(void **state)
{
    (void)state;
    gq_rng r;
    gq_rng_seed(&r, 33);
    gq_grad_shape s = {.dim = 256, .hidden = 4096, .n_heads = 4, .n_kv_heads = 2};
    const int D = 256, KV = 128, H = 4096, B = 2, T = 128;
    gq_grad_block_f fp = random_block(&r, D, KV, H, 0.05, 0.02);
    float *x = randn(&r, (size_t)B * T * D, 1, 0);
    gq_affine_opts o = {.epochs = 2, .lr = 1e-2, .lwc_lr = 5e-2, .sf = 1e-2, .alpha = 0.5,
                        .lwc = true, .let = true, .quant = {.bits = 4, .group = 128}};
    gq_affine_state st[2];
    gq_error err;
    const int saved = omp_get_max_threads();
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t + 1);
        assert_int_equal(gq_affine_train(&s, &fp, x, x, B, T, &o, &st[t], &err), 0);
    }
    omp_set_num_threads(saved);
    assert_memory_equal(st[0].epoch_loss, st[1].epoch_loss, 2 * sizeof(double));
    assert_memory_equal(st[0].A_att, st[1].A_att, (size_t)D * D * sizeof(float));
    assert_memory_equal(st[0].A_ffn, st[1].A_ffn, (size_t)D * D * sizeof(float));
    assert_memory_equal(st[0].A_vo, st[1].A_vo, (size_t)s.n_kv_heads * 64 * 64 * sizeof(float));
    for (int k = 0; k < 7; k++) {
        const size_t rows = k == 1 || k == 2 ? KV : k == 4 || k == 5 ? H : D;
        const size_t n = rows * (k == 6 ? H / 128 : D / 128) * sizeof(float);
        assert_memory_equal(st[0].gamma[k], st[1].gamma[k], n);
        assert_memory_equal(st[0].beta[k], st[1].beta[k], n);
    }
    gq_affine_state_free(&st[0]), gq_affine_state_free(&st[1]);
    float *all[] = {fp.rms_att, fp.rms_ffn, fp.wq, fp.wk, fp.wv, fp.wo, fp.w1, fp.w3, fp.w2, x};
    for (size_t i = 0; i < 10; i++) free(all[i]);
}

/* The fold the training makes in its own buffers (opts.fold) is gq_affine_fold's, bit for bit,
 * for a diagonal (one epoch) and a banded (three epochs) state. */
static void check_fold_in_training(int epochs)
{
    gq_rng r;
    gq_rng_seed(&r, 34);
    gq_grad_shape s = {.dim = 32, .hidden = 64, .n_heads = 4, .n_kv_heads = 2};
    const int D = 32, KV = 16, H = 64, B = 2, T = 16;
    gq_grad_block_f fp = random_block(&r, D, KV, H, 0.2, 0.2), in_training, separate;
    float *x = randn(&r, (size_t)B * T * D, 1, 0);
    gq_affine_opts o = {.epochs = epochs, .lr = 1e-2, .lwc_lr = 5e-2, .sf = 1e-2, .alpha = 0.5,
                        .lwc = true, .let = true, .quant = {.bits = 3, .group = 16},
                        .fold = &in_training};
    gq_affine_state st;
    gq_error err;
    assert_int_equal(gq_affine_train(&s, &fp, x, x, B, T, &o, &st, &err), 0);
    assert_int_equal(gq_affine_fold(&st, &fp, &separate, NULL, &err), 0);
    const float *a[9] = {in_training.wq, in_training.wk, in_training.wv, in_training.wo,
                         in_training.w1, in_training.w3, in_training.w2, in_training.m_att,
                         in_training.m_ffn};
    const float *b[9] = {separate.wq, separate.wk, separate.wv, separate.wo, separate.w1,
                         separate.w3, separate.w2, separate.m_att, separate.m_ffn};
    const size_t n[9] = {D * D, KV * D, KV * D, D * D, H * D, H * D, D * H, D * D, D * D};
    for (int i = 0; i < 9; i++) assert_memory_equal(a[i], b[i], n[i] * sizeof(float));
    assert_ptr_equal(in_training.rms_att, fp.rms_att);
    gq_affine_block_free(&in_training), gq_affine_block_free(&separate);
    gq_affine_state_free(&st);
    o.let = false; /* nothing to fold */
    assert_int_equal(gq_affine_train(&s, &fp, x, x, B, T, &o, &st, &err), -1);
    float *all[] = {fp.rms_att, fp.rms_ffn, fp.wq, fp.wk, fp.wv, fp.wo, fp.w1, fp.w3, fp.w2, x};
    for (size_t i = 0; i < 10; i++) free(all[i]);
}

static void test_fold_in_training(void **state)
{
    (void)state;
    check_fold_in_training(1);
    check_fold_in_training(3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_affine_training),
                                       cmocka_unit_test(test_fast_vs_dense_one_epoch),
                                       cmocka_unit_test(test_fast_vs_dense_three_epochs),
                                       cmocka_unit_test(test_threads_same_bits),
                                       cmocka_unit_test(test_fold_in_training)};
    return cmocka_run_group_tests_name("affine", tests, NULL, NULL);
}
