#ifndef GQ_FORWARD_H
#define GQ_FORWARD_H
/* The Llama forward pass over whole windows (prefill), block by block, plus single-token decode.
 *
 * Shapes: a batch is B windows of T tokens each, every window at positions 0..T-1 (a fresh
 * context). Activations are row-major (B*T, width). Matrix products go through gq_sgemm
 * (fixed output tiles, the same bits for any thread count) over all B*T rows at once; causal
 * attention runs per (window, head) under OpenMP.
 * RMSNorm eps 1e-5; RoPE as llama2.c (pairs (2i, 2i+1), theta 10000); SwiGLU MLP. Hugging
 * Face configurations change eps, theta and its scaling, add biases, per-head q/k norms
 * (Qwen3) and a sliding attention window (Mistral); see gq_config. */
#include "core/gq_error.h"
#include "model/gq_model.h"

typedef struct gq_forward_ws gq_forward_ws;

/* Scratch for batches of up to max_tokens = B*T tokens with T <= cfg->seq_len. */
gq_forward_ws *gq_forward_ws_new(const gq_config *c, int max_tokens, gq_error *err);
void gq_forward_ws_free(gq_forward_ws *ws);

/* Stages of a prefill, for gq_forward_ws_time_stages. */
typedef enum {
    GQ_FWD_EMBED,      /* token embeddings */
    GQ_FWD_NORM,       /* RMSNorms, the residual adds, explicit input transforms */
    GQ_FWD_QKV,        /* q, k, v projections */
    GQ_FWD_ROPE,       /* q/k head norms, RoPE, KV-cache quantization */
    GQ_FWD_ATTENTION,  /* causal attention (scores, softmax, P v) */
    GQ_FWD_O,          /* o_proj */
    GQ_FWD_GATE_UP,    /* gate and up projections */
    GQ_FWD_SWIGLU,     /* SiLU(gate) * up */
    GQ_FWD_DOWN,       /* down_proj */
    GQ_FWD_CLASSIFIER, /* final RMSNorm and the classifier */
    GQ_FWD_N_STAGES
} gq_fwd_stage;
extern const char *const gq_fwd_stage_names[GQ_FWD_N_STAGES];

/* While stage_s is non-NULL, the forward functions on ws add the wall seconds of each stage to
 * stage_s[stage] (GQ_FWD_N_STAGES doubles, caller-owned and zeroed by the caller); NULL stops.
 * The marks sit between stages, so the stages' times add up to the prefill's. */
void gq_forward_ws_time_stages(gq_forward_ws *ws, double *stage_s);

/* Returns the pages of the per-token scratch buffers to the system (their contents are dead
 * between calls; a later call faults them back in zeroed, as allocated), so a workspace
 * sized for many tokens holds no memory while its owner does other work. */
void gq_forward_ws_trim(gq_forward_ws *ws);

/* While p is non-NULL, a prefill of a streamed model (gq_model_streamed) adds one unit to p
 * per block it has run: such a batch converts every block from storage and can take minutes. */
struct gq_progress;
void gq_forward_ws_block_progress(gq_forward_ws *ws, struct gq_progress *p);

/* logits (B*T, vocab) for tokens (B, T). */
int gq_forward_prefill(const gq_model *m, const int *tokens, int B, int T, gq_forward_ws *ws,
                       float *logits, gq_error *err);

/* x (B*T, dim) = token embeddings of tokens (B, T). */
void gq_embed(const gq_model *m, const int *tokens, int n, float *x);

/* Intermediate activations of one block, written when a pointer is non-NULL (caller-owned). */
typedef struct gq_block_trace {
    float *attn_in;  /* (B*T, dim)    input of q/k/v: RMSNorm(x) (times att_in_transform) */
    float *attn_ctx; /* (B*T, q_dim)  attention output before o_proj = input of o_proj */
    float *mlp_in;   /* (B*T, dim)    input of gate/up: RMSNorm(x + attn) (times ffn_in_transform) */
    float *mlp_act;  /* (B*T, hidden) SiLU(gate) * up = input of down_proj */
    /* Trace only: the block stops once mlp_act is written (down_proj and the last residual
     * add are skipped, so x is not the block's output afterwards). */
    bool no_output;
} gq_block_trace;

/* Applies block l in place: x += attn(norm(x)); x += mlp(norm(x)). x is (B*T, dim). */
void gq_block_forward(const gq_model *m, int l, float *x, int B, int T, gq_forward_ws *ws,
                      gq_block_trace *trace);

/* Sub-modules of a block on given inputs, without residuals (AWQ inspects them):
 *   attention: xin (B*T, dim) input of q/k/v -> out (B*T, dim) = o_proj(attention(q, k, v));
 *              ctx_out (optional, (B*T, dim)) receives the input of o_proj.
 *   mlp:       xin (n, dim) input of gate/up -> out (n, dim) = down(SiLU(gate) * up);
 *              act_out (optional, (n, hidden)) receives the input of down_proj. */
void gq_attention_forward(const gq_config *c, const gq_layer *L, const float *xin, int B, int T,
                          float *out, gq_forward_ws *ws, float *ctx_out);
void gq_mlp_forward(const gq_config *c, const gq_layer *L, const float *xin, int n, float *out,
                    gq_forward_ws *ws, float *act_out);

/* act (n, width) = SiLU(g) * u = g * (1 / (1 + exp(-g))) * u element by element, exp by
 * gq_vexpf (core/gq_vmath.h): an element's value does not depend on n or width; act may be g. */
void gq_swiglu(float *act, const float *g, const float *u, int n, int width);

/* out (n, width) = x / sqrt(mean(x^2) + 1e-5) * w, row by row (out may equal x). */
void gq_rmsnorm(float *out, const float *x, const float *w, int n, int width);
/* The same with the model's epsilon (gq_norm_eps). */
void gq_rmsnorm_eps(float *out, const float *x, const float *w, int n, int width, float eps);
/* y (n, out) = x (n, in) · W^T with W (out, in) row-major (gq_sgemm). */
void gq_linear(float *y, const float *x, const float *W, int n, int in, int out);
/* The same for linear k of a block: through L->op[k] when set (packed weights), else
 * gq_linear on the fp32 weight; then + L->b[k] on every row when the linear has a bias. */
void gq_block_linear(const gq_layer *L, gq_linear_kind k, float *y, const float *x, int n, int in,
                     int out);

/* Single-token decode with a KV cache, for generation. It is also the per-token reference the
 * batched path is tested against: written for clarity in llama2.c run.c's order of operations
 * (sequential float sums per output, rows of a matrix-vector product in parallel), so greedy
 * generation reproduces run.c's output. */
typedef struct gq_decode gq_decode;
gq_decode *gq_decode_new(const gq_model *m, gq_error *err);
/* The same with a KV cache of n_pos positions (1..seq_len): allocations follow what a request
 * needs, not what a header claims (a seq_len of 2^20 with 1024 layers is 17.9 GB). */
gq_decode *gq_decode_new_n(const gq_model *m, int n_pos, gq_error *err);
/* Bytes of a decode state of n_pos positions, and the up-front check gq_decode_new_n runs:
 * n_pos within 1..seq_len and the state no larger than the machine's physical memory. */
size_t gq_decode_bytes(const gq_config *c, int n_pos);
int gq_decode_check(const gq_config *c, int n_pos, gq_error *err);
void gq_decode_free(gq_decode *d);
/* logits (vocab) for `token` at position pos (0 <= pos < n_pos of gq_decode_new_n; positions
 * in order). */
int gq_decode_step(gq_decode *d, int token, int pos, float *logits, gq_error *err);

/* Reference logits (T, vocab) of one window of T tokens at positions 0..T-1, by decode steps. */
int gq_forward_ref(const gq_model *m, const int *tokens, int T, float *logits, gq_error *err);

#endif
