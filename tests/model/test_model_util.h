#ifndef TEST_MODEL_UTIL_H
#define TEST_MODEL_UTIL_H
/* Shared by the model tests: comparisons and test registration lists. */
#include "test_support.h"

#include <math.h>

#include "model/gq_model.h"

/* max |a - b| / (1 + |b|) over n floats. */
static inline double max_rel_diff(const float *a, const float *b, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / (1.0 + fabs((double)b[i]));
        if (!(d <= worst)) /* catches NaN */
            worst = isnan(d) ? INFINITY : d;
    }
    return worst;
}

/* Every tensor of a equals b's bit for bit. */
static inline void assert_same_weights(const gq_model *a, const gq_model *b)
{
    const gq_config *c = &a->cfg;
    assert_memory_equal(&a->cfg, &b->cfg, sizeof a->cfg);
    size_t d = (size_t)c->dim, emb = (size_t)c->vocab_size * d;
    assert_memory_equal(a->tok_embeddings, b->tok_embeddings, emb * 4);
    assert_memory_equal(a->wcls, b->wcls, emb * 4);
    assert_memory_equal(a->rms_final, b->rms_final, d * 4);
    for (int l = 0; l < c->n_layers; l++) {
        assert_memory_equal(a->layers[l].rms_att, b->layers[l].rms_att, d * 4);
        assert_memory_equal(a->layers[l].rms_ffn, b->layers[l].rms_ffn, d * 4);
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            int r, co;
            gq_linear_shape(c, (gq_linear_kind)k, &r, &co);
            assert_memory_equal(a->layers[l].w[k],
                                b->layers[l].w[k],
                                (size_t)r * co * 4);
        }
    }
}

extern const struct CMUnitTest model_io_tests[];
extern const size_t model_io_tests_n;
extern const struct CMUnitTest model_cli_tests[];
extern const size_t model_cli_tests_n;
extern const struct CMUnitTest model_hf_tests[];
extern const size_t model_hf_tests_n;

#endif
