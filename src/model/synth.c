/* Synthetic model generator (see gq_synth.h for the weight distributions). */
#include "model/gq_synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_rng.h"
#include "model/model_internal.h"

typedef struct {
    const char *name;
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    bool shared_classifier;
} preset;

static const preset presets[] = {
    /*                 dim   hidden layers heads kv  vocab  seq   shared */
    {"tiny",              64,   172,   2,    8,  4,   512,  128,  false},
    {"stories15M",        288,  768,   6,    6,  6, 32000,  256,  true},
    {"stories110M",       768,  2048, 12,   12, 12, 32000, 1024,  true},
    {"llama2-7b-2layers", 4096, 11008, 2,   32, 32, 32000, 2048,  false},
    {"llama2-7b",         4096, 11008, 32,  32, 32, 32000, 4096,  false},
};

const char *gq_synth_preset_names(void)
{
    return "tiny, stories15M, stories110M, llama2-7b-2layers, llama2-7b";
}

int gq_synth_preset(const char *name, gq_config *c, gq_error *err)
{
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (strcmp(name, presets[i].name) == 0) {
            const preset *p = &presets[i];
            *c = (gq_config){.dim = p->dim, .hidden_dim = p->hidden_dim,
                             .n_layers = p->n_layers, .n_heads = p->n_heads,
                             .n_kv_heads = p->n_kv_heads, .vocab_size = p->vocab_size,
                             .seq_len = p->seq_len, .shared_classifier = p->shared_classifier};
            return 0;
        }
    return gq_fail(err, "unknown synthetic preset '%s' (known: %s)", name,
                   gq_synth_preset_names());
}

/* Independent stream for (seed, tensor, row): splitmix64 seeding decorrelates the inputs. */
static void stream(gq_rng *r, uint64_t seed, uint64_t tensor, uint64_t row)
{
    gq_rng_seed(r, seed * 0x9E3779B97F4A7C15ull ^ (tensor << 40) ^ row);
}

/* Student-t with 4 degrees of freedom, unit variance: Z / sqrt(chi2_4 / 4) with
 * chi2_4 = -2 ln(U1 U2), times sqrt(1/2). */
static float student_t4(gq_rng *r)
{
    double u1 = 1.0 - gq_rng_uniform(r), u2 = 1.0 - gq_rng_uniform(r);
    double chi2 = -2.0 * log(u1 * u2);
    return (float)(gq_rng_normal(r) / sqrt(chi2 / 4.0) * sqrt(0.5));
}

/* W (rows, cols) ~ t4 / sqrt(cols), with a few outlier columns scaled 4..8x. */
static int fill_linear(float *W, int rows, int cols, uint64_t seed, uint64_t tensor)
{
    float *colscale = malloc((size_t)cols * sizeof(float));
    if (!colscale)
        return -1;
    float base = 1.0f / sqrtf((float)cols);
    for (int j = 0; j < cols; j++)
        colscale[j] = base;
    gq_rng r;
    stream(&r, seed, tensor, UINT64_MAX);
    int n_out = cols / 256 > 1 ? cols / 256 : 1;
    for (int i = 0; i < n_out; i++)
        colscale[gq_rng_below(&r, (uint64_t)cols)] = base * (float)(4.0 + 4.0 * gq_rng_uniform(&r));
#pragma omp parallel for schedule(static) if ((long)rows * cols >= 65536)
    for (int i = 0; i < rows; i++) {
        gq_rng rr;
        stream(&rr, seed, tensor, (uint64_t)i);
        float *w = W + (size_t)i * cols;
        for (int j = 0; j < cols; j++)
            w[j] = student_t4(&rr) * colscale[j];
    }
    free(colscale);
    return 0;
}

/* Norm weights 1 + 0.05 N(0,1), the outlier residual channels near 4. */
static void fill_norm(float *w, int dim, const unsigned char *outlier, uint64_t seed,
                      uint64_t tensor)
{
    gq_rng r;
    stream(&r, seed, tensor, 0);
    for (int j = 0; j < dim; j++)
        w[j] = (float)((outlier[j] ? 4.0 : 1.0) * (1.0 + 0.05 * gq_rng_normal(&r)));
}

/* Biases ~ 0.1 t4 and q/k norm weights 1 + 0.05 N(0,1), when the configuration has them
 * (ids after the layer's linears, so llama2.c shapes keep their weights). */
static void fill_extras(const gq_config *c, gq_layer *L, int l, uint64_t seed, uint64_t *tensor)
{
    gq_extra_tensor ex[GQ_MAX_EXTRAS];
    int ne = gq_layer_extras(c, L, l, ex);
    for (int i = 0; i < ne; i++) {
        gq_rng r;
        stream(&r, seed, (*tensor)++, 0);
        bool norm = ex[i].slot == &L->q_norm || ex[i].slot == &L->k_norm;
        for (size_t j = 0; j < ex[i].n; j++)
            (*ex[i].slot)[j] = norm ? (float)(1.0 + 0.05 * gq_rng_normal(&r))
                                    : 0.1f * student_t4(&r);
    }
}

/* The residual channels whose norm weights are near 4 (dim flags). */
static unsigned char *outlier_channels(const gq_config *c, uint64_t seed)
{
    unsigned char *outlier = calloc((size_t)c->dim, 1);
    if (!outlier)
        return NULL;
    gq_rng r;
    stream(&r, seed, 0, UINT64_MAX - 1);
    int n_res_out = c->dim / 256 > 1 ? c->dim / 256 : 1;
    for (int i = 0; i < n_res_out; i++)
        outlier[gq_rng_below(&r, (uint64_t)c->dim)] = 1;
    return outlier;
}

/* Tensor ids in a fixed order, independent of the storage layout: 1 the embeddings, then per
 * block its two norms, seven linears and extras, then the final norm and the classifier. */
static uint64_t layer_first_id(const gq_config *c, int l)
{
    gq_extra_tensor ex[GQ_MAX_EXTRAS];
    gq_layer scratch = {0};
    int ne = gq_layer_extras(c, &scratch, 0, ex);
    return 2 + (uint64_t)l * (uint64_t)(2 + GQ_N_LINEAR + ne);
}

int gq_synth_outer(const gq_config *c, uint64_t seed, gq_model *m)
{
    unsigned char *outlier = outlier_channels(c, seed);
    if (!outlier)
        return -1;
    uint64_t tensor = layer_first_id(c, c->n_layers);
    int rc = fill_linear(m->tok_embeddings, c->vocab_size, c->dim, seed, 1);
    fill_norm(m->rms_final, c->dim, outlier, seed, tensor++);
    if (!c->shared_classifier)
        rc |= fill_linear(m->wcls, c->vocab_size, c->dim, seed, tensor++);
    free(outlier);
    return rc;
}

int gq_synth_layer(const gq_config *c, uint64_t seed, int l, gq_layer *L)
{
    unsigned char *outlier = outlier_channels(c, seed);
    if (!outlier)
        return -1;
    uint64_t tensor = layer_first_id(c, l);
    fill_norm(L->rms_att, c->dim, outlier, seed, tensor++);
    fill_norm(L->rms_ffn, c->dim, outlier, seed, tensor++);
    int rc = 0;
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        int rows, cols;
        gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
        rc |= fill_linear(L->w[k], rows, cols, seed, tensor++);
    }
    fill_extras(c, L, l, seed, &tensor);
    free(outlier);
    return rc;
}

int gq_model_synth_config(const gq_config *c, uint64_t seed, gq_model *m, gq_error *err)
{
    if (gq_config_check(c, "synthetic model", err) != 0)
        return -1;
    if (gq_model_heap_alloc(m, c, err) != 0)
        return gq_fail_prefix(err, "synthetic model");
    int rc = gq_synth_outer(c, seed, m);
    for (int l = 0; l < c->n_layers && !rc; l++)
        rc = gq_synth_layer(c, seed, l, &m->layers[l]);
    if (rc != 0) {
        gq_model_free(m);
        return gq_fail(err, "synthetic model: out of memory");
    }
    return 0;
}

int gq_model_synth(const char *name, uint64_t seed, gq_model *m, gq_error *err)
{
    gq_config c;
    if (gq_synth_preset(name, &c, err) != 0)
        return -1;
    return gq_model_synth_config(&c, seed, m, err);
}
