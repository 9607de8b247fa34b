/* AffineQuant block optimisation on a random block: the training loss falls over epochs and
 * ends below plain RTN's block error; without transforms and clipping it is RTN. */
#include <math.h>
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

static void test_affine_training(void **state)
{
    (void)state;
    gq_rng r;
    gq_rng_seed(&r, 31);
    gq_grad_shape s = {.dim = 32, .hidden = 64, .n_heads = 4, .n_kv_heads = 2};
    const int D = 32, KV = 16, H = 64, B = 4, T = 16;
    gq_grad_block_f fp = {.rms_att = randn(&r, D, 0.1, 1), .rms_ffn = randn(&r, D, 0.1, 1),
                          .wq = randn(&r, D * D, 0.2, 0), .wk = randn(&r, KV * D, 0.2, 0),
                          .wv = randn(&r, KV * D, 0.2, 0), .wo = randn(&r, D * D, 0.2, 0),
                          .w1 = randn(&r, H * D, 0.2, 0), .w3 = randn(&r, H * D, 0.2, 0),
                          .w2 = randn(&r, D * H, 0.2, 0)};
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

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_affine_training)};
    return cmocka_run_group_tests_name("affine", tests, NULL, NULL);
}
