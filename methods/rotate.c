/* Rotation of the residual stream (QuaRot, arXiv:2404.00456), a whole-model transform that
 * leaves the FP function unchanged and spreads outliers over all channels before a weight
 * method quantizes (["rotate", "gptq"]):
 *   1. every RMSNorm weight g is fused into the linears reading it (W[:, j] *= g_j: q/k/v take
 *      the attention norm, gate/up the MLP norm, the classifier the final norm) and set to 1;
 *   2. with Q = D H / sqrt(dim) (gq_hadamard.h; signs D from the parameter `seed`) the residual
 *      stream h becomes h Q: embeddings E <- E Q, linears reading it W <- W Q (q/k/v, gate/up,
 *      classifier), linears writing it W <- Q^T W and b <- Q^T b (o, down).
 * RMSNorm with weight 1 commutes with an orthogonal Q (rms(h Q) = rms(h)), so every block
 * computes the same values rotated, and logits are unchanged. The embeddings and the
 * classifier then differ, so a tied classifier is untied (stored, and counted, separately).
 * Only power-of-two widths are supported. The online Hadamard of the down_proj input (QuaRot's
 * second rotation, computed at run time) is not applied. */
#include "methods/gq_method.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "methods/gq_hadamard.h"

typedef struct {
    uint64_t seed;
} rot_params;

static const gq_param_spec rot_specs[] = {
    {"seed", GQ_PARAM_U64, offsetof(rot_params, seed), "0", 0, (double)INT64_MAX, NULL,
     "seed of the random signs D of the rotation Q = D H / sqrt(dim)"},
    {0}};

static int rot_check_layer(const void *params, const gq_config *c, int layer,
                           const gq_quantizer *const quant[GQ_N_LINEAR], gq_error *err)
{
    (void)params, (void)quant;
    if (!gq_hadamard_supported(c->dim))
        return gq_fail(err, "layers.%d: rotate needs a power-of-two residual width for its "
                            "Walsh-Hadamard transform; dim %d is not one", layer, c->dim);
    return 0;
}

/* W (rows, dim)[:, j] *= g_j for each of the n linears, then g = 1. */
static void fuse_norm(float *g, float *const *ws, const int *rows, int n, int dim)
{
    for (int i = 0; i < n; i++)
        for (int r = 0; r < rows[i]; r++)
            for (int j = 0; j < dim; j++)
                ws[i][(size_t)r * dim + j] *= g[j];
    for (int j = 0; j < dim; j++)
        g[j] = 1.0f;
}

/* The tied classifier becomes its own copy of the embedding table. */
static int untie(gq_model *m, gq_error *err)
{
    gq_model view = *m, u;
    view.cfg.shared_classifier = false;
    view.wcls = m->tok_embeddings;
    if (gq_model_clone(&view, &u, err))
        return gq_fail_prefix(err, "rotate: untying the classifier");
    u.act = m->act;
    memcpy(u.path, m->path, sizeof u.path);
    gq_model_free(m);
    *m = u;
    return 0;
}

/* Block l: norms fused into q/k/v and gate/up, their inputs rotated (W Q), o and down (and
 * their biases) rotated on the output side (Q^T W). */
static int rotate_block(const gq_config *c, gq_layer *L, const float *signs)
{
    const int dim = c->dim;
    int rows[GQ_N_LINEAR], cols[GQ_N_LINEAR];
    for (int k = 0; k < GQ_N_LINEAR; k++)
        gq_linear_shape(c, (gq_linear_kind)k, &rows[k], &cols[k]);
    float *att[3] = {L->w[GQ_LIN_Q], L->w[GQ_LIN_K], L->w[GQ_LIN_V]};
    float *mlp[2] = {L->w[GQ_LIN_GATE], L->w[GQ_LIN_UP]};
    const int att_rows[3] = {rows[GQ_LIN_Q], rows[GQ_LIN_K], rows[GQ_LIN_V]};
    const int mlp_rows[2] = {rows[GQ_LIN_GATE], rows[GQ_LIN_UP]};
    fuse_norm(L->rms_att, att, att_rows, 3, dim);
    fuse_norm(L->rms_ffn, mlp, mlp_rows, 2, dim);
    static const gq_linear_kind readers[5] = {GQ_LIN_Q, GQ_LIN_K, GQ_LIN_V, GQ_LIN_GATE,
                                              GQ_LIN_UP};
    static const gq_linear_kind writers[2] = {GQ_LIN_O, GQ_LIN_DOWN};
    for (int i = 0; i < 5; i++)
        if (gq_hadamard_rows(L->w[readers[i]], (size_t)rows[readers[i]], dim, signs))
            return -1;
    for (int i = 0; i < 2; i++) {
        const gq_linear_kind k = writers[i];
        if (gq_hadamard_cols(L->w[k], dim, (size_t)cols[k], signs) ||
            (L->b[k] && gq_hadamard_cols(L->b[k], dim, 1, signs)))
            return -1;
    }
    return 0;
}

static int rot_model(const void *params, gq_model *m, gq_error *err)
{
    const gq_config *c = &m->cfg;
    const int dim = c->dim;
    if (rot_check_layer(params, c, 0, NULL, err))
        return -1;
    for (int l = 0; l < c->n_layers; l++)
        if (m->layers[l].att_in_transform || m->layers[l].ffn_in_transform)
            return gq_fail(err, "layers.%d: rotate folds the RMSNorm weights into the linears, "
                                "which an explicit input transform follows here", l);
    if (c->shared_classifier && untie(m, err))
        return -1;
    float *signs = malloc((size_t)dim * sizeof *signs);
    if (!signs)
        return gq_fail(err, "rotate: out of memory");
    gq_hadamard_signs(signs, dim, ((const rot_params *)params)->seed);
    int rc = 0;
    for (int l = 0; l < c->n_layers && !rc; l++)
        rc = rotate_block(c, &m->layers[l], signs);
    float *cls[1] = {m->wcls};
    const int vocab[1] = {c->vocab_size};
    fuse_norm(m->rms_final, cls, vocab, 1, dim);
    if (!rc)
        rc = gq_hadamard_rows(m->wcls, (size_t)c->vocab_size, dim, signs) ||
             gq_hadamard_rows(m->tok_embeddings, (size_t)c->vocab_size, dim, signs);
    free(signs);
    return rc ? gq_fail(err, "rotate: out of memory") : 0;
}

GQ_METHOD_DEFINE(gq_method_rotate, "rotate",
                 "QuaRot rotation: RMSNorms fused, residual stream rotated by a random-sign "
                 "Walsh-Hadamard Q (power-of-two dim)",
                 rot_params, rot_specs, .propagate = GQ_PROPAGATE_FP, .transform_only = true,
                 .transform_model = rot_model, .check_layer = rot_check_layer,
                 .families = "every family with a power-of-two dim: norms fuse into q/k/v, "
                             "gate/up and the classifier; biases of q/k/v and gate/up unchanged, "
                             "o/down biases rotated (b <- Q^T b); q/k norms act on head outputs, "
                             "unchanged; a tied classifier is untied (counted in model_bytes)");
