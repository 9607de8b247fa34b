#ifndef GQ_METHOD_H
#define GQ_METHOD_H
/* Method plugins and the model-quantization entry point.
 *
 * A method decides what each linear layer's weights become (RTN, GPTQ, AWQ, PRAQ,
 * AffineQuant), using calibration activations where it needs them, and hands the rounding to
 * a format (formats/gq_format.h). The pipeline (gq_quantize_model) walks the blocks: it
 * captures block l's inputs over the calibration windows, lets the method quantize block l,
 * then computes block l+1's inputs from the full-precision or the quantized block
 * (`propagate`). Memory stays bounded by one block plus the calibration activations.
 *
 * The method-facing part of this header (gq_method, gq_block_ctx) is owned by the methods
 * code; the entry point and report below are what the CLI and the experiment runner use. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/gq_error.h"
#include "core/gq_params.h"
#include "formats/gq_format.h"
#include "model/gq_forward.h"
#include "model/gq_model.h"

typedef struct gq_method gq_method;
typedef struct gq_block_ctx gq_block_ctx;

/* Registry */
const gq_method *gq_method_find(const char *name);
const gq_method *const *gq_method_all(int *n);
/* Adds a method at run time (plugins, plugin/gq_plugin.h): fails on NULL, an invalid name,
 * a missing summary/params/quantize_block, a bad propagate, or a name already taken. */
int gq_method_register(const gq_method *method, gq_error *err);
/* Removes the methods registered after the first n (n from gq_method_all before): the plugin
 * loader's undo when a plugin's init fails part-way. */
void gq_method_truncate(int n);
const char *gq_method_name(const gq_method *m);
const char *gq_method_summary(const gq_method *m);
const gq_param_spec *gq_method_params(const gq_method *m);
bool gq_method_needs_calibration(const gq_method *m);

/* A configured method: plugin + parsed parameters (from {"name": ..., params...}). */
typedef struct gq_method_cfg {
    const gq_method *method;
    void *params;
} gq_method_cfg;
int gq_method_cfg_from_json(const json_t *spec, const char *path, gq_method_cfg *cfg, gq_error *err);
int gq_method_cfg_init(gq_method_cfg *cfg, const char *name, const json_t *params, const char *path,
                       gq_error *err);
void gq_method_cfg_free(gq_method_cfg *cfg);
json_t *gq_method_cfg_to_json(const gq_method_cfg *cfg);

/* Which tensors get which format. Rules are fnmatch globs over tensor names
 * ("layers.*.attn.*", "layers.0.mlp.down_proj", "classifier"); the first matching rule wins;
 * block linears that match no rule use the plan's default quantizer; embeddings, norms and the
 * classifier stay full precision unless a rule names them. */
typedef struct gq_tensor_rule {
    char pattern[128];
    bool keep_fp;           /* leave matching tensors in full precision */
    gq_quantizer quantizer; /* otherwise their format */
} gq_tensor_rule;

typedef enum { GQ_PROPAGATE_METHOD_DEFAULT, GQ_PROPAGATE_FP, GQ_PROPAGATE_QUANTIZED } gq_propagate;

typedef struct gq_quant_plan {
    gq_method_cfg method;
    gq_quantizer quantizer;      /* default format of block linears */
    const gq_tensor_rule *rules;
    int n_rules;
    const int *calib_tokens;     /* (n_calib, calib_ctx) token ids, row-major; NULL if unused */
    int n_calib;
    int calib_ctx;
    gq_propagate propagate;
    uint64_t seed;
} gq_quant_plan;

typedef struct gq_tensor_report {
    char name[96];          /* "layers.3.mlp.down_proj" */
    char format[96];        /* quantizer label, or "fp32" when kept */
    int rows, cols;
    bool quantized;
    size_t bytes;           /* storage of this tensor as quantized (or 4 bytes/weight if kept) */
    double recon_err;       /* ||W X - Q X||_F^2 / ||W X||_F^2 over the calibration inputs, NaN if
                               not measured */
    json_t *extra;          /* method-specific metrics (alpha, GPTQ loss, ...), may be NULL */
} gq_tensor_report;

typedef struct gq_quant_report {
    gq_tensor_report *tensors;
    int n_tensors;
    double t_stats;         /* seconds capturing activations and statistics */
    double t_search;        /* seconds in searches (AWQ alpha/clip, optimisation) */
    double t_quant;         /* seconds rounding weights */
    size_t linear_weights;  /* weights in quantized block linears */
    size_t linear_bytes;    /* their storage */
    size_t model_bytes;     /* whole model: quantized tensors as stored + the rest in fp32 */
    json_t *notes;          /* array of strings: retries, explicit transforms, warnings */
} gq_quant_report;

void gq_quant_report_free(gq_quant_report *r);

/* ---- The plugin side: what a method sees of one block ------------------------------------
 *
 * For block l the pipeline hands the method a gq_block_ctx: a private copy of the block's FP
 * weights (`w`), the block inputs of every calibration window (`x`, B windows x T tokens, the
 * residual stream entering block l), the quantizer of each linear after tensor-rule
 * resolution (`quant[k]`, NULL for linears that stay FP) and a buffer per linear for its
 * quantized reconstruction (`q[k]`). The method
 *   - may apply function-preserving transforms to `w` (AWQ folds its scales into the norms and
 *     linears; the FP block computed from `w` must stay the FP block's function),
 *   - must fill q[k] and set done[k] for every linear with a quantizer (gq_block_quantize_rtn
 *     does both for plain rounding),
 *   - adds metrics to the report through gq_block_extra() and notes through gq_block_note(),
 *     and its stage times to t_stats / t_search / t_quant.
 * After the method returns, the pipeline measures each linear's reconstruction error on the
 * inputs that the transformed FP block `w` gives it, writes the block into the output model and
 * computes the next block's inputs from the FP (`w`) or quantized (`q`) block. */
struct gq_block_ctx {
    const gq_config *cfg;
    int layer;
    const gq_quant_plan *plan;
    gq_layer w;                               /* working FP weights (pipeline-owned buffers) */
    const gq_layer *orig;                     /* the block in the FP model (read-only) */
    const gq_quantizer *quant[GQ_N_LINEAR];   /* format of each linear, NULL = stays FP */
    float *q[GQ_N_LINEAR];                    /* (rows, cols) reconstructions, filled by the method */
    bool done[GQ_N_LINEAR];
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
    /* Whether the method leaves explicit input transforms in the model (NULL: never); a
     * llama2.c checkpoint cannot hold them, so `quantize --out` refuses such a plan up front. */
    bool (*adds_transforms)(const void *params);
};

bool gq_method_cfg_needs_calibration(const gq_method_cfg *cfg);
bool gq_method_cfg_adds_transforms(const gq_method_cfg *cfg);
/* The method's check_layer (0 when it has none): what validation runs for every layer. */
int gq_method_cfg_check_layer(const gq_method_cfg *cfg, const gq_config *c, int layer,
                              const gq_quantizer *const quant[GQ_N_LINEAR], gq_error *err);

/* Runs the block on ctx->x (copied, not modified) with the working weights `w`, or, when
 * `quantized`, with q[k] substituted for every linear whose done[k] is set. Writes the trace
 * pointers that are non-NULL and, when x_out is non-NULL, the block outputs (B*T, dim). */
int gq_block_run(gq_block_ctx *ctx, bool quantized, gq_block_trace *trace, float *x_out,
                 gq_error *err);
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

/* The metric object of linear k in the report (created on first use, owned by the ctx). */
json_t *gq_block_extra(gq_block_ctx *ctx, gq_linear_kind k);
/* Adds "layers.L: <message>" to the report's notes and the log (warning level). */
void gq_block_note(gq_block_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Quantizes `fp` into `out` (a new writable model holding the fake-quantized weights, i.e.
 * the reconstructions in fp32) and fills the report. `fp` is not modified. */
int gq_quantize_model(const gq_model *fp, const gq_quant_plan *plan, gq_model *out,
                      gq_quant_report *report, gq_error *err);

#endif
