/* Rotation of the residual stream and of the down_proj input (QuaRot, arXiv:2404.00456), a
 * whole-model transform that leaves the FP function unchanged and spreads outliers over all
 * channels before a weight method quantizes (["rotate", "gptq"]):
 *   1. every RMSNorm weight g is fused into the linears reading it (W[:, j] *= g_j: q/k/v take
 *      the attention norm, gate/up the MLP norm, the classifier the final norm) and set to 1;
 *   2. with Q = D H / sqrt(dim) (gq_hadamard.h; signs D from the parameter `seed`) the residual
 *      stream h becomes h Q: embeddings E <- E Q, linears reading it W <- W Q (q/k/v, gate/up,
 *      classifier), linears writing it W <- Q^T W and b <- Q^T b (o, down);
 *   3. `online` (default): the SwiGLU output a (T, hidden) entering down_proj is rotated at run
 *      time, a <- (a D2) H2 / sqrt(hidden) (gq_layer.down_in_rot; signs D2 from seed + 1): D2 is
 *      folded into up_proj's rows and bias (SiLU(g) * (u D2) = (SiLU(g) * u) D2), the
 *      forward pass applies H2 / sqrt(hidden), and W_down <- W_down D2 H2 / sqrt(hidden).
 * RMSNorm with weight 1 commutes with an orthogonal Q (rms(h Q) = rms(h)), and the down_proj
 * product sees the same values in the rotated basis, so logits are unchanged. The embeddings and
 * the classifier then differ, so a tied classifier is untied (stored, and counted, separately). */
#include "methods/gq_method.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "methods/gq_hadamard.h"
#include "model/gq_stream.h"

typedef struct {
    uint64_t seed;
    bool online;
} rot_params;

static const gq_param_spec rot_specs[] = {
    {"seed", GQ_PARAM_U64, offsetof(rot_params, seed), "0", 0, (double)INT64_MAX, NULL,
     "seed of the random signs D (and of a random block) of the rotation Q = D H / sqrt(dim); "
     "seed + 1 draws those of the online rotation"},
    {"online", GQ_PARAM_BOOL, offsetof(rot_params, online), "true", 0, 0, NULL,
     "rotate down_proj's input online (H / sqrt(hidden) applied at run time, W_down rotated to "
     "match); false: the residual stream only"},
    {0}};

static int rot_check_layer(const void *params, const gq_config *c, int layer,
                           const gq_quantizer *const quant[GQ_N_LINEAR], gq_error *err)
{
    (void)quant;
    const rot_params *p = params;
    const int widths[2] = {c->dim, c->hidden_dim};
    const char *what[2] = {"residual width dim", "hidden width (down_proj input)"};
    for (int i = 0; i < (p->online ? 2 : 1); i++)
        if (!gq_hadamard_supported(widths[i]))
            return gq_fail(err, "layers.%d: rotate: %s %d = 2^k x %d has no rotation here (odd "
                                "parts up to %d are supported)", layer, what[i], widths[i],
                           widths[i] / (widths[i] & -widths[i]), GQ_HADAMARD_MAX_BLOCK);
    return 0;
}

static bool rot_adds_transforms(const void *params) { return ((const rot_params *)params)->online; }

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

/* The tied classifier of an outer model (gq_method.transform_outer) becomes its own copy of
 * the embedding table. */
static int untie(gq_model *m, gq_error *err)
{
    gq_config c = m->cfg;
    c.shared_classifier = false;
    gq_model u;
    if (gq_model_outer_alloc(&u, &c, err) || gq_model_copy_transforms(&u, m, err)) {
        gq_model_free(&u);
        return gq_fail_prefix(err, "rotate: untying the classifier");
    }
    size_t emb = (size_t)c.vocab_size * (size_t)c.dim;
    memcpy(u.tok_embeddings, m->tok_embeddings, emb * sizeof(float));
    memcpy(u.wcls, m->tok_embeddings, emb * sizeof(float));
    memcpy(u.rms_final, m->rms_final, (size_t)c.dim * sizeof(float));
    u.act = m->act;
    memcpy(u.path, m->path, sizeof u.path);
    gq_model_free(m);
    *m = u;
    return 0;
}

/* Block l: norms fused into q/k/v and gate/up, their inputs rotated (W Q), o and down (and
 * their biases) rotated on the output side (Q^T W). */
static int rotate_block(const gq_config *c, gq_layer *L, const gq_rotation *R, const float *signs)
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
        if (gq_rotation_rows(R, L->w[readers[i]], (size_t)rows[readers[i]], signs))
            return -1;
    for (int i = 0; i < 2; i++) {
        const gq_linear_kind k = writers[i];
        if (gq_rotation_cols(R, L->w[k], (size_t)cols[k], signs) ||
            (L->b[k] && gq_rotation_cols(R, L->b[k], 1, signs)))
            return -1;
    }
    return 0;
}

/* Block l's online rotation: the signs D2 into up_proj's rows (and bias), W_down <- W_down D2
 * H2 / sqrt(hidden); the forward pass then rotates down_proj's input by H2 / sqrt(hidden). */
static int rotate_down_input(const gq_config *c, gq_layer *L, const gq_rotation *H,
                             const float *signs)
{
    const int hid = c->hidden_dim, dim = c->dim;
    for (int j = 0; j < hid; j++) {
        float *row = L->w[GQ_LIN_UP] + (size_t)j * dim;
        for (int i = 0; i < dim; i++)
            row[i] *= signs[j];
        if (L->b[GQ_LIN_UP])
            L->b[GQ_LIN_UP][j] *= signs[j];
    }
    return gq_rotation_rows(H, L->w[GQ_LIN_DOWN], (size_t)dim, signs);
}

/* rot (n) and its signs (n) from seed; NULL signs on failure. */
static float *rotation_of(int n, uint64_t seed, gq_rotation *rot, gq_error *err)
{
    if (gq_hadamard_build(rot, n, seed, err))
        return gq_fail_prefix(err, "rotate"), NULL;
    float *signs = malloc((size_t)n * sizeof *signs);
    if (!signs) {
        gq_rotation_free(rot);
        return gq_fail(err, "rotate: out of memory"), NULL;
    }
    gq_hadamard_signs(signs, n, seed);
    return signs;
}

static int check_model(const void *params, const gq_model *m, gq_error *err)
{
    if (rot_check_layer(params, &m->cfg, 0, NULL, err))
        return -1;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        if (m->layers[l].att_in_transform || m->layers[l].ffn_in_transform)
            return gq_fail(err, "layers.%d: rotate folds the RMSNorm weights into the linears, "
                                "which an explicit input transform follows here", l);
        if (m->layers[l].down_in_rot && ((const rot_params *)params)->online)
            return gq_fail(err, "layers.%d: rotate: down_proj's input is already rotated "
                                "online", l);
    }
    return 0;
}

/* Steps 1-3 on the embeddings and classifier, and the online rotation recorded in the
 * model (gq_method.transform_outer). */
static int rot_outer(const void *params, gq_model *m, gq_error *err)
{
    const rot_params *p = params;
    if (check_model(params, m, err) || (m->cfg.shared_classifier && untie(m, err)))
        return -1;
    const gq_config *c = &m->cfg;
    gq_rotation R;
    float *signs = rotation_of(c->dim, p->seed, &R, err);
    if (!signs)
        return -1;
    float *cls[1] = {m->wcls};
    const int vocab[1] = {c->vocab_size};
    fuse_norm(m->rms_final, cls, vocab, 1, c->dim);
    int rc = gq_rotation_rows(&R, m->wcls, (size_t)c->vocab_size, signs) ||
             gq_rotation_rows(&R, m->tok_embeddings, (size_t)c->vocab_size, signs);
    gq_rotation_free(&R);
    free(signs);
    if (rc)
        return gq_fail(err, "rotate: out of memory");
    if (!p->online)
        return 0;
    gq_rotation H;
    if (gq_hadamard_build(&H, c->hidden_dim, p->seed + 1, err))
        return gq_fail_prefix(err, "rotate");
    rc = gq_model_set_down_rotation(m, &H, err);
    gq_rotation_free(&H);
    return rc;
}

/* Steps 1-3 on one block (gq_method.transform_block); the rotations are rebuilt from the
 * seed, which costs far less than applying them. */
static int rot_block(const void *params, const gq_config *c, gq_layer *L, gq_error *err)
{
    const rot_params *p = params;
    gq_rotation R, H;
    float *signs = rotation_of(c->dim, p->seed, &R, err);
    if (!signs)
        return -1;
    int rc = rotate_block(c, L, &R, signs);
    gq_rotation_free(&R);
    free(signs);
    if (!rc && p->online) {
        if (!(signs = rotation_of(c->hidden_dim, p->seed + 1, &H, err)))
            return -1;
        rc = rotate_down_input(c, L, &H, signs);
        gq_rotation_free(&H);
        free(signs);
    }
    return rc ? gq_fail(err, "rotate: out of memory") : 0;
}

GQ_METHOD_DEFINE(gq_method_rotate, "rotate",
                 "QuaRot rotation: RMSNorms fused, residual stream rotated by Q = D H / sqrt(dim) "
                 "and (online) down_proj's input by H / sqrt(hidden) at run time. H = B (x) "
                 "Walsh-Hadamard: B = [1] for powers of two; else the smallest Paley I (q+1, q "
                 "prime = 3 mod 4) or Paley II (2(q+1), q prime = 1 mod 4) Hadamard block of "
                 "order <= 256 dividing the width; else a seeded random orthogonal block of the "
                 "width's odd part (not Hadamard; e.g. 172 = 43 x 4, 11008 = 43 x 256); widths "
                 "with an odd part above 256 are refused",
                 rot_params, rot_specs, .propagate = GQ_PROPAGATE_FP, .transform_only = true,
                 .transform_outer = rot_outer, .transform_block = rot_block,
                 .check_layer = rot_check_layer,
                 .adds_transforms = rot_adds_transforms,
                 .families = "every family whose dim (and hidden width, online) has a rotation: "
                             "norms fuse into q/k/v, gate/up and the classifier; biases of "
                             "q/k/v and gate unchanged, up's bias takes the online signs, o/down "
                             "biases rotated (b <- Q^T b); q/k norms act on head outputs, "
                             "unchanged; a tied classifier is untied (counted in model_bytes); "
                             "online: AWQ, PRAQ and AffineQuant refuse the rotated block "
                             "(up->down scales no longer fold); llama2.c/HF/GGUF exports refuse "
                             "the model");
