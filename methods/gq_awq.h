#ifndef GQ_AWQ_H
#define GQ_AWQ_H
/* AWQ's scale search, scale folding and clipping search (mit-han-lab/llm-awq
 * awq/quantize/auto_scale.py and auto_clip.py), shared by the AWQ and PRAQ plugins, which
 * differ only in the per-channel salience s_x that the search raises to the power alpha. */
#include <stdbool.h>
#include <stddef.h>

#include "methods/gq_method.h"

typedef struct gq_awq_params {
    int n_grid;          /* alpha = i / n_grid, i = 0 .. n_grid-1 (20) */
    bool duo_scaling;    /* AutoAWQ: s = s_x^a / (w_mean^(1-a) + 1e-4); llm-awq: s = s_x^a */
    bool scale_v_o;      /* the v_proj -> o_proj group (only when the shapes match) */
    bool clip;           /* auto_clip search (skipped for q and k) */
    int clip_grid;       /* shrink candidates 1 - i / clip_grid (20) */
    double max_shrink;   /* i < max_shrink * clip_grid (0.5) */
    int clip_tokens;     /* sub-sample every (n / clip_tokens)-th token for the clip loss (512) */
} gq_awq_params;

/* Parameter-table entries of gq_awq_params embedded as member `m` of struct `T`. */
#define GQ_AWQ_PARAM_SPECS(T, m)                                                                   \
    {"n_grid", GQ_PARAM_INT, offsetof(T, m.n_grid), "20", 1, 1000, NULL,                           \
     "scale search grid: alpha = i/n_grid for i < n_grid (1 = alpha 0 only = RTN)"},                \
    {"duo_scaling", GQ_PARAM_BOOL, offsetof(T, m.duo_scaling), "false", 0, 0, NULL,                \
     "AutoAWQ's s = s_x^a / (w_mean^(1-a) + 1e-4) instead of llm-awq's s_x^a"},                    \
    {"scale_v_o", GQ_PARAM_BOOL, offsetof(T, m.scale_v_o), "true", 0, 0, NULL,                     \
     "search the v_proj -> o_proj scales (only when v and o have the same shape)"},                \
    {"clip", GQ_PARAM_BOOL, offsetof(T, m.clip), "true", 0, 0, NULL,                               \
     "auto_clip: per (row, group) symmetric clipping search, skipped for q and k"},                \
    {"clip_grid", GQ_PARAM_INT, offsetof(T, m.clip_grid), "20", 1, 1000, NULL,                     \
     "clip candidates max|w| * (1 - i/clip_grid)"},                                                \
    {"max_shrink", GQ_PARAM_FLOAT, offsetof(T, m.max_shrink), "0.5", 0, 1, NULL,                   \
     "clip candidates for i < max_shrink * clip_grid"},                                             \
    {"clip_tokens", GQ_PARAM_INT, offsetof(T, m.clip_tokens), "512", 1, 1 << 30, NULL,             \
     "tokens sub-sampled (every n/clip_tokens-th) for the clip loss"}

/* The four LLaMA scaling groups. */
typedef enum {
    GQ_AWQ_QKV,     /* prev: attn_norm,  scaled: q, k, v,   inspected: whole attention */
    GQ_AWQ_VO,      /* prev: v_proj rows, scaled: o,        inspected: o_proj */
    GQ_AWQ_GATEUP,  /* prev: ffn_norm,   scaled: gate, up,  inspected: whole MLP */
    GQ_AWQ_DOWN,    /* prev: up_proj rows, scaled: down,    inspected: down_proj */
    GQ_AWQ_N_GROUPS
} gq_awq_group;

/* Salience s_x (n_in values) of a group's input channels from the FP block trace; *flops gets
 * the FLOPs of the matrix products it ran (0 when none: the stage is then bounded by reading
 * the inputs). NULL hook = AWQ's mean |x|. */
typedef int (*gq_awq_salience_fn)(const void *user, const gq_block_ctx *ctx,
                                  const gq_block_trace *fp_trace, gq_awq_group g, float *s,
                                  double *flops, gq_error *err);

/* Search, fold, clip and round block ctx. `user` is passed to the salience hook. */
int gq_awq_quantize_block(const gq_awq_params *p, gq_awq_salience_fn salience, const void *user,
                          gq_block_ctx *ctx, gq_error *err);

/* Applies scales s of group g to the working weights (function-preserving):
 * prev op /= s (norm weights, or the last rows of the previous linear), scaled linears'
 * input columns *= s. */
void gq_awq_fold(gq_block_ctx *ctx, gq_awq_group g, const float *s);

#endif
