#ifndef GQ_METHOD_H
#define GQ_METHOD_H
/* The method plugin contract: what a method author reads.
 *
 * A method decides what each linear layer's weights become (RTN, GPTQ, AWQ, PRAQ,
 * AffineQuant), using calibration activations where it needs them, and hands the rounding to
 * a format (formats/gq_format.h). The pipeline (methods/gq_pipeline.h) walks the blocks: it
 * captures block l's inputs over the calibration windows, lets the method quantize block l
 * (quantize_block below), then computes block l+1's inputs from the full-precision or the
 * quantized block (`propagate`). A method is registered in methods.def, or by a plugin
 * through plugin/gq_plugin.h. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/gq_error.h"
#include "core/gq_params.h"
#include "formats/gq_format.h"
#include "model/gq_act_hook.h"
#include "model/gq_forward.h"
#include "model/gq_model.h"

typedef struct gq_method gq_method;
typedef struct gq_block_ctx gq_block_ctx;

/* Stage timing for benchmarks (gq-bench bench quantize). A method brackets each stage of its
 * block with t0 = gq_stage_begin(ctx) ... gq_stage_end(ctx, t0, name, limit, work); the sink,
 * when one listens, receives the stage's name, its wall time, and its work: FLOPs for a stage
 * bounded by matrix products (GQ_LIMIT_SGEMM / GQ_LIMIT_DGEMM, the precision of its
 * products), bytes moved for a streaming stage (GQ_LIMIT_BANDWIDTH). Stage names in use:
 * "forward" (block forward passes on the calibration tokens), "hessian", "stats", "salience"
 * (a statistic computed through products, PRAQ's unit importance), "search",
 * "clip", "factor", "columns" (GPTQ's rounding with error feedback), "round", AffineQuant's
 * "aq invert", "aq fold", "aq forward", "aq backward", "aq fold-bwd", "aq mask", "aq quant",
 * "aq adamw" (src/grad/affine_cost.h),
 * "recon error" (the pipeline's per-linear error), "fingerprint" (gq_block_fingerprint).
 * Without a sink nothing happens. */
typedef enum { GQ_LIMIT_SGEMM, GQ_LIMIT_DGEMM, GQ_LIMIT_BANDWIDTH } gq_stage_limit;
typedef struct gq_stage_sink {
    void (*record)(void *user, const char *stage, gq_stage_limit limit, double work,
                   double seconds);
    void *user;
} gq_stage_sink;

/* Which block's outputs feed the next block during quantization. */
typedef enum { GQ_PROPAGATE_METHOD_DEFAULT, GQ_PROPAGATE_FP, GQ_PROPAGATE_QUANTIZED } gq_propagate;

/* For block l the pipeline hands the method a gq_block_ctx: a private copy of the block's FP
 * weights (`w`), the block inputs of every calibration window (`x`, B windows x T tokens, the
 * residual stream entering block l), the quantizer of each linear after tensor-rule
 * resolution (`quant[k]`, NULL for linears that stay FP) and a buffer per linear for its
 * quantized reconstruction (`q[k]`). The method
 *   - may apply function-preserving transforms to `w` (AWQ folds its scales into the norms and
 *     linears; the FP block computed from `w` must stay the FP block's function),
 *   - must fill q[k] and set done[k] for every linear with a quantizer (gq_block_quantize_rtn
 *     does both for plain rounding, and keeps the format's codes of q[k] in codes[k]),
 *   - adds metrics to the report through gq_block_extra() and notes through gq_block_note(),
 *     and its stage times to t_stats / t_search / t_quant.
 * After the method returns, the pipeline measures each linear's reconstruction error on the
 * inputs that the transformed FP block `w` gives it, writes the block into the output model and
 * computes the next block's inputs from the FP (`w`) or quantized (`q`) block. */
struct gq_block_ctx {
    const gq_config *cfg;
    int layer;
    gq_layer w;                               /* working FP weights (pipeline-owned buffers) */
    const gq_layer *orig;                     /* the block in the FP model (read-only) */
    const gq_quantizer *quant[GQ_N_LINEAR];   /* format of each linear, NULL = stays FP */
    float *q[GQ_N_LINEAR];                    /* (rows, cols) reconstructions, filled by the method */
    bool done[GQ_N_LINEAR];
    /* The format's storage of q[k] (gq_quantizer_bytes(quant[k], rows, cols) bytes, zeroed):
     * has_codes[k] says q[k] is exactly quant[k]'s dequantize() of them, with q[k]'s columns
     * in the order in_perm[k] when that is set (cols entries, malloc'd by the method, freed by
     * the pipeline: column i of the storage is column in_perm[k][i] of q[k]; GPTQ's dynamic
     * groups under act_order). The pipeline hands them on (packed weights, exports);
     * gq_block_quantize_rtn fills codes and has_codes and clears in_perm. */
    uint8_t *codes[GQ_N_LINEAR];
    bool has_codes[GQ_N_LINEAR];
    int32_t *in_perm[GQ_N_LINEAR];
    const float *x;                           /* (B*T, dim) block inputs; NULL without calibration */
    const float *x_fp;                        /* (B*T, dim) inputs of block l in the FP model:
                                                 its own stream when the method sets
                                                 needs_fp_inputs and propagation is quantized,
                                                 else equal to x */
    float *transform_store[2];                /* storage of the att / ffn explicit transforms
                                                 (use gq_block_in_transform) */
    int B, T;
    gq_forward_ws *ws;                        /* scratch for B*T tokens; NULL without calibration */
    json_t *extra[GQ_N_LINEAR];               /* per-linear metric objects (created on demand) */
    json_t *notes;                            /* the report's notes array */
    double t_stats, t_search, t_quant;        /* seconds spent by the method in each stage */
    const gq_stage_sink *stages;              /* stage timing listener, NULL = none */
    /* The cell's activation quantizers (model/gq_act_hook.h; NULL: weight-only evaluation):
     * a method may run its block's linear inputs through them while it optimises (AffineQuant),
     * and refit their static ranges (calibrate_input) as the inputs change. */
    gq_act_hook *act;
    /* The pipeline's FP trace of this block (gq_block_trace_fp), which its report reuses.
     * Pipeline-owned: a method reads them only through gq_block_trace_fp. fp_trace holds the
     * trace buffers, fp_out (B*T, dim) the block outputs (scratch when fp_trace->no_output:
     * propagation is quantized and nobody reads them), fp_trace_of the fingerprint of `w`
     * (gq_block_fingerprint) when gq_block_trace_fp last filled them, 0 when it has not. */
    gq_block_trace *fp_trace;
    float *fp_out;
    uint64_t fp_trace_of;
};

struct gq_method {
    const char *name;
    const char *summary;
    const gq_param_spec *params;   /* parameter table ({0} when there are none) */
    size_t params_size;
    /* Optional cross-field checks after parsing. */
    int (*validate)(const void *params, const char *path, gq_error *err);
    /* Whether calibration activations are needed (NULL: never). */
    bool (*needs_calibration)(const void *params);
    gq_propagate propagate;        /* the reference's choice: GQ_PROPAGATE_FP or _QUANTIZED */
    bool needs_fp_inputs;          /* keep the FP model's block inputs (ctx->x_fp) as well */
    int (*quantize_block)(const void *params, gq_block_ctx *ctx, gq_error *err);
    /* Optional check, before any work, of what a plan gives one layer: the quantizer of each
     * linear (NULL = kept in full precision). Fails with a message naming layer and linear. */
    int (*check_layer)(const void *params, const gq_config *cfg, int layer,
                       const gq_quantizer *const quant[GQ_N_LINEAR], gq_error *err);
    /* Whether the method leaves explicit input transforms or an online rotation (rotate) in the
     * model (NULL: never); a llama2.c checkpoint cannot hold them, so `quantize --out` refuses
     * such a plan up front. */
    bool (*adds_transforms)(const void *params);
    /* The method only applies function-preserving transforms to `w` and quantizes nothing
     * (SmoothQuant): it runs in a chain before one weight method (["smoothquant", "rtn"]),
     * never alone. */
    bool transform_only;
    /* Optional whole-model step of a transform-only method (rotate: the residual stream's
     * rotation touches the embeddings, every block and the classifier). It runs as a streamed
     * view of the FP model (gq_model_step_view, methods/gq_pipeline.h), so that no whole copy
     * of the model exists:
     *   - transform_outer, once, on a model holding the embeddings, final norm and classifier
     *     (private fp32 copies) and the source's per-block transforms and online rotation,
     *     every block's tensors NULL: it checks the model, transforms those tensors and may
     *     set per-block state (rotate's online rotation) or replace *m by an outer model of
     *     another config (gq_model_outer_alloc; gq_model_free the old one: rotate unties a
     *     tied classifier);
     *   - transform_block, each time a block of the view is acquired, on a private fp32 copy
     *     of the source's block (c: the view's config after transform_outer).
     * Together they are a function-preserving transform of the whole model. The pipeline then
     * quantizes the view's blocks and takes embeddings, classifier and sizes from it, as if it
     * were the input. Both or neither; a transform-only method with them may leave
     * quantize_block NULL. In a chain the members' outer steps run first, in order, and each
     * block goes through the members' block steps in order. */
    int (*transform_outer)(const void *params, gq_model *m, gq_error *err);
    int (*transform_block)(const void *params, const gq_config *c, gq_layer *L, gq_error *err);
    /* How the method treats the parts Hugging Face families add (biases, q/k norms, head_dim,
     * RoPE variants), shown by `gq-bench list methods` (NULL: not stated). */
    const char *families;
};

/* A needs_calibration for methods that always calibrate. */
bool gq_method_calibrates(const void *params);

/* Defines the method `sym` (registry name, one-line summary, parameter struct type P and its
 * table); the optional members follow as designated initializers:
 *     GQ_METHOD_DEFINE(gq_method_rtn, "rtn", "round-to-nearest ...", rtn_params, rtn_specs,
 *                      .propagate = GQ_PROPAGATE_FP, .quantize_block = rtn_block); */
#define GQ_METHOD_DEFINE(sym, name_text, summary_text, P, specs, ...)                            \
    const gq_method sym = {.name = (name_text), .summary = (summary_text), .params = (specs),   \
                           .params_size = sizeof(P), __VA_ARGS__}

/* Runs the block on ctx->x (copied, not modified) with the working weights `w`, or, when
 * `quantized`, with q[k] substituted for every linear whose done[k] is set. Writes the trace
 * pointers that are non-NULL and, when x_out is non-NULL, the block outputs (B*T, dim). */
int gq_block_run(gq_block_ctx *ctx, bool quantized, gq_block_trace *trace, float *x_out,
                 gq_error *err);
/* The FP block `w` run on ctx->x into the pipeline's buffers: *trace (read-only for the
 * method, valid until it returns) gets every linear's input, and the block outputs go to the
 * pipeline's fp_out when it propagates them (else the pass stops after down_proj's input). The call records the fingerprint of `w`; when `w` still has it as the
 * method returns, the pipeline's report and FP propagation use this pass instead of running
 * the block again, else (a method that transformed `w` afterwards: AWQ's scale folding,
 * SmoothQuant) they run their own. */
int gq_block_trace_fp(gq_block_ctx *ctx, const gq_block_trace **trace, gq_error *err);
/* A 64-bit hash of every value of the working block `w` (norms, biases, q/k norms, explicit
 * transforms, linears): equal for equal bits, different (but for a 2^-64 chance) when
 * anything changed; never 0. Records a "fingerprint" stage (bytes read). */
uint64_t gq_block_fingerprint(const gq_block_ctx *ctx);
/* A view of the block with q[k] substituted for the linears in done[] when `quantized`. */
gq_layer gq_block_view(const gq_block_ctx *ctx, bool quantized);
/* Rounds `w` (rows, cols of linear k; NULL = the working weight) with quant[k] into q[k],
 * with an optional per-column importance (imatrix), and marks it done. Adds to t_quant. */
int gq_block_quantize_rtn(gq_block_ctx *ctx, gq_linear_kind k, const float *w,
                          const float *imatrix, gq_error *err);
/* Allocates all four trace buffers for B*T tokens in one block (free with
 * gq_block_trace_free). */
int gq_block_trace_alloc(const gq_block_ctx *ctx, gq_block_trace *trace, gq_error *err);
void gq_block_trace_free(gq_block_trace *trace);
/* The input of linear k in a trace: attn_in (q, k, v), attn_ctx (o), mlp_in (gate, up),
 * mlp_act (down). */
float *gq_trace_input(const gq_block_trace *trace, gq_linear_kind k);

/* Gives block ctx an explicit input transform (ffn=false: before q/k/v, true: before gate/up)
 * and returns its (dim, dim) storage, holding the current transform (identity if it had none).
 * The pipeline stores it in the output model and counts it in model_bytes. */
float *gq_block_in_transform(gq_block_ctx *ctx, bool ffn);

/* Stage timing (see gq_stage_sink): the start time, then the record of the finished stage
 * (nothing without a sink); gq_stage_add records a stage timed elsewhere (its total seconds). */
double gq_stage_begin(const gq_block_ctx *ctx);
void gq_stage_end(const gq_block_ctx *ctx, double t0, const char *stage, gq_stage_limit limit,
                  double work);
void gq_stage_add(const gq_block_ctx *ctx, const char *stage, gq_stage_limit limit, double work,
                  double seconds);
/* FLOPs of one forward pass of a block over B windows of T tokens: 2 * tokens * (weights of
 * the seven linears) + causal attention 4 * head_size * n_heads * B * T (T + 1) / 2. */
double gq_block_forward_flops(const gq_config *c, int B, int T);

/* The metric object of linear k in the report (created on first use, owned by the ctx). */
json_t *gq_block_extra(gq_block_ctx *ctx, gq_linear_kind k);
/* Adds "layers.L: <message>" to the report's notes and the log (warning level). */
void gq_block_note(gq_block_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
