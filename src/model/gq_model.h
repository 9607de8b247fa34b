#ifndef GQ_MODEL_H
#define GQ_MODEL_H
/* A Llama-architecture model in fp32: configuration, weights, loading and saving.
 *
 * Shapes follow llama2.c and PyTorch nn.Linear: every matrix is row-major (out, in), so
 * y = W x quantizes along rows (the input dimension). Files are llama2.c checkpoints: the
 * legacy header (7 int32) or the versioned format (magic "ak42", version 1, fp32). */
#include <stdbool.h>
#include <stddef.h>

#include "core/gq_error.h"

typedef struct gq_config {
    int dim;         /* residual stream width */
    int hidden_dim;  /* SwiGLU hidden width */
    int n_layers;
    int n_heads;
    int n_kv_heads;  /* < n_heads: grouped-query attention */
    int vocab_size;  /* always positive here; shared_classifier says whether wcls is tied */
    int seq_len;     /* maximum context */
    bool shared_classifier;
} gq_config;

static inline int gq_head_size(const gq_config *c) { return c->dim / c->n_heads; }
static inline int gq_kv_dim(const gq_config *c) { return c->dim / c->n_heads * c->n_kv_heads; }

/* The seven linear layers of a block, in the order GPTQ's true-sequential mode groups them. */
typedef enum {
    GQ_LIN_Q,     /* (dim, dim)          attn.q_proj    llama2.c wq */
    GQ_LIN_K,     /* (kv_dim, dim)       attn.k_proj    wk */
    GQ_LIN_V,     /* (kv_dim, dim)       attn.v_proj    wv */
    GQ_LIN_O,     /* (dim, dim)          attn.o_proj    wo */
    GQ_LIN_GATE,  /* (hidden, dim)       mlp.gate_proj  w1 */
    GQ_LIN_UP,    /* (hidden, dim)       mlp.up_proj    w3 */
    GQ_LIN_DOWN,  /* (dim, hidden)       mlp.down_proj  w2 */
    GQ_N_LINEAR
} gq_linear_kind;

/* A linear operator standing in for an fp32 weight in the forward pass (packed quantized
 * weights, src/packed/gq_packed.h): apply writes y (n, out) = x (n, in) · W^T for the shape of
 * the weight it replaces. Prefill calls it with n = B*T, decode with n = 1. */
typedef struct gq_linear_op gq_linear_op;
/* Activation and KV-cache quantizers the forward pass calls (model/gq_act_hook.h). */
typedef struct gq_act_hook gq_act_hook;
struct gq_linear_op {
    void (*apply)(const gq_linear_op *op, float *y, const float *x, int n);
    /* Optional (NULL: none): ys[i] (one token) = ops[i] · x for `count` operators that all
     * have this same function and read the same x (q, k, v; gate, up), so an implementation
     * can prepare x once and run all their rows in one parallel loop. */
    void (*apply_shared)(const gq_linear_op *const *ops, float *const *ys, int count,
                         const float *x);
};

typedef struct gq_layer {
    float *rms_att;  /* (dim) */
    float *rms_ffn;  /* (dim) */
    /* The linears indexed by gq_linear_kind, each (rows, cols) = gq_linear_shape(k). */
    float *w[GQ_N_LINEAR];
    /* Optional explicit transforms of the normalised block inputs (NULL = identity), used by
     * methods whose transform cannot be folded into RMSNorm (AffineQuant): the normalised
     * activations xn (T, dim) become xn · M, M (dim, dim) row-major, before q/k/v (att) or
     * before gate/up (ffn). They cost a dim x dim product per token and count in model size. */
    float *att_in_transform;
    float *ffn_in_transform;
    /* Optional operators replacing the fp32 weights (indexed by gq_linear_kind; NULL = use the
     * weight). Not owned; the loader, synthesizer and clone leave them NULL. */
    const gq_linear_op *op[GQ_N_LINEAR];
} gq_layer;

typedef struct gq_model {
    gq_config cfg;
    float *tok_embeddings; /* (vocab, dim) */
    gq_layer *layers;      /* n_layers entries */
    float *rms_final;      /* (dim) */
    float *wcls;           /* (vocab, dim); equals tok_embeddings when shared_classifier */
    const gq_linear_op *cls_op; /* optional operator replacing wcls (NULL = use wcls) */
    /* Optional activation / KV-cache quantizers (NULL = none). Not owned; the loader,
     * synthesizer and clone leave it NULL. */
    const gq_act_hook *act;
    char path[4096];       /* file the model came from, up to PATH_MAX ("" for generated or
                              cloned models) */
    /* storage: either a private copy-on-write mapping of the file or one heap block */
    void *map;
    size_t map_size;
    float *heap;
    size_t heap_floats;
    /* storage of explicit transforms set with gq_model_set_in_transform (n_layers * 2 slots of
     * dim*dim, allocated on first use) */
    float *transforms;
} gq_model;

/* Name of a linear kind ("attn.q_proj") and of a tensor ("layers.3.attn.q_proj"). Other
 * tensors are named "tok_embeddings", "classifier", "layers.L.attn_norm", "layers.L.ffn_norm",
 * "final_norm". */
const char *gq_linear_name(gq_linear_kind k);
void gq_tensor_name(int layer, gq_linear_kind k, char *buf, size_t n);
/* (rows, cols) = (out, in) of a block's linear. */
void gq_linear_shape(const gq_config *c, gq_linear_kind k, int *rows, int *cols);

/* Loads a llama2.c checkpoint. The header is checked for sane values and the file size against
 * the size the header implies; errors name the file and the expected and actual sizes.
 * The weights are mapped copy-on-write: writing to them never changes the file. */
int gq_model_load(const char *path, gq_model *m, gq_error *err);
/* Deep copy into one writable heap block; explicit transforms are copied into model-owned
 * storage (see gq_model_set_in_transform). */
int gq_model_clone(const gq_model *src, gq_model *dst, gq_error *err);
/* Writes a llama2.c legacy checkpoint atomically. Fails if the model has explicit transforms
 * (the format cannot hold them). */
int gq_model_save(const gq_model *m, const char *path, gq_error *err);
/* The same in the versioned fp32 format ("ak42", version 1). */
int gq_model_save_v1(const gq_model *m, const char *path, gq_error *err);
void gq_model_free(gq_model *m);

/* Sets layer l's explicit input transform (ffn=false: before q/k/v, true: before gate/up) to a
 * copy of M (dim, dim) owned by the model; M NULL restores the identity (pointer NULL). */
int gq_model_set_in_transform(gq_model *m, int l, bool ffn, const float *M, gq_error *err);
bool gq_model_has_transforms(const gq_model *m);

/* Fails on the first NaN or infinity in a stored tensor, naming the tensor and the index
 * (a corrupt checkpoint would otherwise give a NaN perplexity). `what` names the source. */
int gq_model_check_finite(const gq_model *m, const char *what, gq_error *err);

/* Checks a configuration for sane values (positive sizes, dim % n_heads == 0,
 * n_heads % n_kv_heads == 0, even head size, limits); `what` names the source in messages. */
int gq_config_check(const gq_config *c, const char *what, gq_error *err);
/* Refuses a configuration whose full-context KV cache exceeds 1 GiB and 64 times the size of
 * the file (`bytes`) it came from: a small file claiming a huge context or depth. */
int gq_config_check_plausible(const gq_config *c, size_t bytes, const char *path,
                              gq_error *err);
/* A zeroed model of configuration c in one heap block (as gq_model_clone makes), for loaders
 * of other file formats; wcls aliases tok_embeddings when c->shared_classifier. */
int gq_model_alloc(const gq_config *c, gq_model *m, gq_error *err);
/* Number of floats of each stored tensor group, for sizes and layouts. */
size_t gq_layer_floats(const gq_config *c);

/* Parameter count of the stored tensors (embeddings, norms, linears, separate classifier). */
size_t gq_model_param_count(const gq_config *c);

#endif
