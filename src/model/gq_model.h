#ifndef GQ_MODEL_H
#define GQ_MODEL_H
/* A Llama-architecture model in fp32: configuration, weights, loading and saving.
 *
 * Shapes follow llama2.c and PyTorch nn.Linear: every matrix is row-major (out, in), so
 * y = W x quantizes along rows (the input dimension). Files are llama2.c checkpoints: the
 * legacy header (7 int32) or the versioned format (magic "ak42", version 1, fp32), or
 * Hugging Face model directories (config.json + safetensors, gq_hf.h).
 *
 * q and k rows are kept in llama2.c's RoPE layout (each head rotates the pairs (2i, 2i+1));
 * Hugging Face checkpoints (rotate-half: pairs (i, i + head_dim/2)) are permuted at load and
 * back at export, which is exact. */
#include <stdbool.h>
#include <stddef.h>

#include "core/gq_error.h"

/* Model families: what config.json `architectures` names (llama2.c files are GQ_FAMILY_LLAMA2C). */
typedef enum {
    GQ_FAMILY_LLAMA2C = 0,
    GQ_FAMILY_LLAMA,   /* LlamaForCausalLM */
    GQ_FAMILY_MISTRAL, /* MistralForCausalLM */
    GQ_FAMILY_QWEN2,   /* Qwen2ForCausalLM */
    GQ_FAMILY_QWEN3,   /* Qwen3ForCausalLM */
    GQ_N_FAMILY
} gq_family;

/* RoPE frequency scaling (config.json rope_scaling). */
typedef enum {
    GQ_ROPE_PLAIN = 0, /* freq_i = theta^(-2i/head_size) */
    GQ_ROPE_LINEAR,    /* freq_i / factor */
    GQ_ROPE_DYNAMIC,   /* NTK: only beyond original_max_positions, which seq_len never exceeds
                          here (seq_len = max_position_embeddings), so plain within the model */
    GQ_ROPE_LLAMA3,    /* Llama 3.1: low frequencies / factor, high kept, smooth between */
} gq_rope_kind;

typedef struct gq_rope_scaling {
    gq_rope_kind kind;
    float factor;
    float low_freq_factor, high_freq_factor; /* llama3 */
    int original_max_positions;              /* llama3, dynamic */
} gq_rope_scaling;

typedef struct gq_config {
    int dim;         /* residual stream width */
    int hidden_dim;  /* SwiGLU hidden width */
    int n_layers;
    int n_heads;
    int n_kv_heads;  /* < n_heads: grouped-query attention */
    int vocab_size;  /* always positive here; shared_classifier says whether wcls is tied */
    int seq_len;     /* maximum context */
    bool shared_classifier;
    /* Architecture fields of Hugging Face configs. Zero means llama2.c's value, so a
     * llama2.c configuration (all zero here) computes exactly what it always did. */
    gq_family family;
    int head_dim;         /* 0: dim / n_heads */
    float norm_eps;       /* RMSNorm epsilon; 0: 1e-5 */
    float rope_theta;     /* RoPE base; 0: 10000 */
    gq_rope_scaling rope_scaling;
    int sliding_window;   /* 0: none; else position t attends to keys t-W+1 .. t */
    unsigned bias_mask;   /* bit k set: linear k (gq_linear_kind) has a bias (out) */
    bool qk_norm;         /* per-head RMSNorm (head_size weights) on q and k before RoPE */
} gq_config;

static inline int gq_head_size(const gq_config *c)
{
    return c->head_dim ? c->head_dim : c->dim / c->n_heads;
}
static inline int gq_kv_dim(const gq_config *c) { return gq_head_size(c) * c->n_kv_heads; }
/* Width of q and of the attention output (input of o_proj): n_heads x head size. */
static inline int gq_q_dim(const gq_config *c) { return gq_head_size(c) * c->n_heads; }
static inline float gq_norm_eps(const gq_config *c) { return c->norm_eps > 0 ? c->norm_eps : 1e-5f; }
static inline float gq_rope_theta(const gq_config *c)
{
    return c->rope_theta > 0 ? c->rope_theta : 10000.0f;
}
static inline bool gq_has_bias(const gq_config *c, int k) { return (c->bias_mask >> k) & 1u; }
/* Name of a family ("llama2.c", "LlamaForCausalLM", ...). */
const char *gq_family_name(gq_family f);

/* The seven linear layers of a block, in the order GPTQ's true-sequential mode groups them. */
typedef enum {
    GQ_LIN_Q,     /* (q_dim, dim)        attn.q_proj    llama2.c wq */
    GQ_LIN_K,     /* (kv_dim, dim)       attn.k_proj    wk */
    GQ_LIN_V,     /* (kv_dim, dim)       attn.v_proj    wv */
    GQ_LIN_O,     /* (dim, q_dim)        attn.o_proj    wo */
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
/* A Kronecker-structured orthogonal rotation (model/gq_rotation.h). */
typedef struct gq_rotation gq_rotation;
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
    /* Biases indexed by gq_linear_kind, (rows) each, in the rows' order (q and k biases are
     * permuted with their rows); NULL when the config has none. */
    float *b[GQ_N_LINEAR];
    /* Per-head RMSNorm weights of q and k (head_size), NULL unless cfg.qk_norm. */
    float *q_norm, *k_norm;
    /* Optional explicit transforms of the normalised block inputs (NULL = identity), used by
     * methods whose transform cannot be folded into RMSNorm (AffineQuant): the normalised
     * activations xn (T, dim) become xn · M, M (dim, dim) row-major, before q/k/v (att) or
     * before gate/up (ffn). They cost a dim x dim product per token and count in model size. */
    float *att_in_transform;
    float *ffn_in_transform;
    /* Optional operators replacing the fp32 weights (indexed by gq_linear_kind; NULL = use the
     * weight). Not owned; the loader, synthesizer and clone leave them NULL. */
    const gq_linear_op *op[GQ_N_LINEAR];
    /* Optional online rotation of down_proj's input (NULL = none; QuaRot, methods/rotate.c):
     * the SwiGLU output a (T, hidden) becomes a H / sqrt(hidden) before down_proj (and before
     * its activation quantizer). Owned by gq_model.rotation; set with gq_model_set_down_rotation. */
    const gq_rotation *down_in_rot;
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
    /* storage of the layers' down_in_rot (one rotation shared by every block; NULL: none) */
    gq_rotation *rotation;
    /* Streamed weights (model/gq_stream.h): NULL when every block is resident in fp32. */
    struct gq_block_source *blocks;
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
/* Copies block l's tensors (norms, linears, biases, q/k norms) from src into dst's storage;
 * both of configuration c, src acquired when streamed. Transforms and rotation are not
 * tensors of the block and stay as they are. */
void gq_layer_copy(const gq_config *c, gq_layer *dst, const gq_layer *src, int l);
/* Writes a llama2.c legacy checkpoint atomically. Fails if the model has explicit transforms
 * (the format cannot hold them). */
int gq_model_save(const gq_model *m, const char *path, gq_error *err);
/* A llama2.c checkpoint holds only llama2.c's architecture: eps 1e-5, RoPE theta 10000
 * unscaled, head size dim / n_heads, no biases, q/k norms or sliding window. */
bool gq_model_llama2c_compatible(const gq_config *c);
/* The same in the versioned fp32 format ("ak42", version 1). */
int gq_model_save_v1(const gq_model *m, const char *path, gq_error *err);
void gq_model_free(gq_model *m);

/* Sets layer l's explicit input transform (ffn=false: before q/k/v, true: before gate/up) to a
 * copy of M (dim, dim) owned by the model; M NULL restores the identity (pointer NULL). */
int gq_model_set_in_transform(gq_model *m, int l, bool ffn, const float *M, gq_error *err);
/* Whether the model has explicit input transforms or an online rotation: run-time transforms
 * that llama2.c, HF and GGUF files cannot hold (gq_model_transforms_what names them). */
bool gq_model_has_transforms(const gq_model *m);
/* "explicit input transforms (AffineQuant)" or "an online rotation of the down_proj input
 * (rotate)", for refusals; "" when the model has neither. */
const char *gq_model_transforms_what(const gq_model *m);
/* Every block's down_in_rot becomes a model-owned copy of r (r NULL: none). */
int gq_model_set_down_rotation(gq_model *m, const gq_rotation *r, gq_error *err);
/* dst (same n_layers and dim as src) takes model-owned copies of src's explicit input
 * transforms and online rotation. */
int gq_model_copy_transforms(gq_model *dst, const gq_model *src, gq_error *err);

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
/* Number of floats of each stored tensor group, for sizes and layouts (norms, linears, biases
 * and q/k norms of one block). */
size_t gq_layer_floats(const gq_config *c);

/* A block's tensors beyond the llama2.c ones (biases, q/k norms), in storage order: each with
 * its slot in the layer, its length and its name ("layers.L.attn.q_proj.bias",
 * "layers.L.attn.q_norm", "layers.L.attn.k_norm"). Returns the count (at most
 * GQ_MAX_EXTRAS). */
#define GQ_MAX_EXTRAS (GQ_N_LINEAR + 2)
typedef struct gq_extra_tensor {
    float **slot;
    size_t n;
    char name[64];
} gq_extra_tensor;
int gq_layer_extras(const gq_config *c, gq_layer *L, int l, gq_extra_tensor *out);

/* Parameter count of the stored tensors (embeddings, norms, linears, separate classifier). */
size_t gq_model_param_count(const gq_config *c);

#endif
