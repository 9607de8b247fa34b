#ifndef GQ_PIPELINE_H
#define GQ_PIPELINE_H
/* The model-quantization entry point and the method registry, for the CLI and the experiment
 * runner (a method author reads methods/gq_method.h only).
 *
 * gq_quantize_model walks the blocks: it captures block l's inputs over the calibration
 * windows, lets the method quantize block l, then computes block l+1's inputs from the
 * full-precision or the quantized block (`propagate`). Memory stays bounded by one block plus
 * the calibration activations. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/gq_error.h"
#include "core/gq_params.h"
#include "formats/gq_format.h"
#include "methods/gq_method.h"
#include "model/gq_model.h"

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
/* gq_method.families, or NULL. */
const char *gq_method_families(const gq_method *m);
const gq_param_spec *gq_method_params(const gq_method *m);
bool gq_method_needs_calibration(const gq_method *m);

/* A configured method: plugin + parsed parameters (from {"name": ..., params...}), or a chain
 * (from a list [spec, spec, ...]: transform-only methods, then one weight method, applied in
 * order to each block; its method is named "smoothquant+rtn" and its params are the chain's,
 * methods/method_chain.h). A transform-only method on its own is refused. */
typedef struct gq_method_cfg {
    const gq_method *method;
    void *params;
} gq_method_cfg;
int gq_method_cfg_from_json(const json_t *spec, const char *path, gq_method_cfg *cfg, gq_error *err);
/* name: one method, or a chain "smoothquant,rtn" whose members each take the parameters of
 * `params` that their table has (a parameter no member has is an error). */
int gq_method_cfg_init(gq_method_cfg *cfg, const char *name, const json_t *params, const char *path,
                       gq_error *err);
void gq_method_cfg_free(gq_method_cfg *cfg);
/* {"name": ..., every parameter}, or for a chain the list of its members' objects. */
json_t *gq_method_cfg_to_json(const gq_method_cfg *cfg);

/* Which tensors get which format. Rules are fnmatch globs over tensor names
 * ("layers.*.attn.*", "layers.0.mlp.down_proj", "classifier"); the first matching rule wins;
 * block linears that match no rule use the plan's default quantizer; embeddings, norms and the
 * classifier stay full precision unless a rule names them. */
typedef struct gq_tensor_rule {
    char *pattern;          /* the glob, owned (gq_tensor_rule_free) */
    bool keep_fp;           /* leave matching tensors in full precision */
    gq_quantizer quantizer; /* otherwise their format */
} gq_tensor_rule;

/* Frees a rule's pattern and quantizer (either may be unset). */
void gq_tensor_rule_free(gq_tensor_rule *r);

/* The one answer to "which format does tensor `name` get?", for the pipeline, validation and
 * throughput: the quantizer of the first rule matching `name` (NULL when that rule keeps it
 * full precision); without a match, block_default for block linears ("layers.L.attn.q_proj",
 * ...) and NULL (full precision) for "tok_embeddings" and "classifier". With a tied classifier
 * (shared_classifier) the two names are one tensor: "tok_embeddings" takes its own rule's
 * quantizer, else the "classifier" rule's, and "classifier" answers the same. */
const gq_quantizer *gq_tensor_quantizer(const gq_quantizer *block_default,
                                        const gq_tensor_rule *rules, int n_rules,
                                        bool shared_classifier, const char *name);

/* Where the quantized model goes block by block (a streaming writer), so that no whole
 * quantized copy is held: gq_quantize_model calls outer once, then block for l = 0, 1, ...
 * as each block is finished. */
typedef struct gq_quant_sink {
    /* The output's tok_embeddings, rms_final and wcls (quantized where a rule says so); m's
     * blocks are not set. */
    int (*outer)(void *user, const gq_model *m, gq_error *err);
    /* Block l as the output holds it: norms, biases, q/k norms, the linears (reconstructions
     * where quantized). codes[k] and perm[k] are what gq_quant_report.linear_codes/linear_perm
     * would hold (NULL where none); all valid during the call only. */
    int (*block)(void *user, const gq_config *c, int l, const gq_layer *L,
                 uint8_t *const codes[GQ_N_LINEAR], int32_t *const perm[GQ_N_LINEAR],
                 gq_error *err);
    void *user;
    /* The sink keeps L's explicit input transforms and online rotation (a cell's coded model,
     * runner/gq_coded_model.h); false: methods that add them are refused (file writers). */
    bool holds_transforms;
} gq_quant_sink;

/* A block's working copy: its FP weights and a reconstruction per linear, in one buffer that
 * gq_quantize_model reuses from block to block (every block has the same shapes), so that only
 * the first block writes to memory the kernel has not yet mapped. A caller that runs the
 * pipeline repeatedly on blocks of one shape (a benchmark's rounds) may own one and pass it in
 * the plan; the contents never carry from one block to the next. */
typedef struct gq_block_buffers gq_block_buffers;
gq_block_buffers *gq_block_buffers_new(void);
void gq_block_buffers_free(gq_block_buffers *b);

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
    const gq_stage_sink *stages; /* stage timing listener (gq-bench bench quantize), or NULL */
    /* The activation quantizers the quantized model will be evaluated with (NULL: weight-only),
     * for methods that train through them (gq_block_ctx.act); the caller calibrates their
     * static scales on the quantized model afterwards. */
    gq_act_hook *act;
    const gq_quant_sink *sink;   /* block-by-block output, or NULL */
    int stop_after_blocks;       /* > 0: quantize only blocks 0..N-1 (a benchmark of a large
                                    model: needs a sink and no out model, which would be
                                    incomplete) */
    gq_block_buffers *buffers;   /* the caller's block working copy, or NULL (one per run) */
} gq_quant_plan;

typedef struct gq_tensor_report {
    char name[96];          /* "layers.3.mlp.down_proj" */
    char format[96];        /* quantizer label, or "fp32" when kept */
    int rows, cols;
    bool quantized;
    size_t bytes;           /* storage of this tensor as quantized (or 4 bytes/weight if kept) */
    double recon_err;       /* ||W X - Q X||_F^2 / ||W X||_F^2 over the calibration inputs
                               (gq_recon_error), NaN if not measured */
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
    /* n_layers * GQ_N_LINEAR (index l * GQ_N_LINEAR + k): the storage of each quantized block
     * linear in its format, exactly the codes whose dequantize() is the linear's weights in
     * the output model, as the method chose them; NULL for linears kept FP and where the
     * method gave only reconstructions (GPTQ on a format without store_groups). Owned. */
    uint8_t **linear_codes;
    /* Same index: NULL when the storage holds the weights' columns in order, else (cols) the
     * order it holds them in: column i of the storage is column linear_perm[..][i] of the
     * weights (GPTQ's dynamic groups under act_order); a product computes W x as
     * storage · x[perm]. Owned. */
    int32_t **linear_perm;
    size_t n_linear_codes;
    /* The storage of tok_embeddings and of a separate classifier when a rule quantized them
     * (their reconstructions in the output model), else NULL. Owned. */
    uint8_t *embd_codes, *cls_codes;
} gq_quant_report;

void gq_quant_report_free(gq_quant_report *r);

/* The reconstruction error of the report, ||W X - Q X||_F^2 / ||W X||_F^2 for W, Q (rows,
 * cols) over calibration inputs X (n, cols) of one linear, on a fixed token sample:
 * all n tokens when n <= GQ_RECON_TOKENS, else GQ_RECON_TOKENS of them, token j of the
 * sample (gq_recon_token) drawn from the j-th of GQ_RECON_TOKENS equal strata of the n tokens
 * (window-major order), [floor(j n / S), floor((j + 1) n / S)), at offset splitmix64(j) mod
 * the stratum's length, S = GQ_RECON_TOKENS. The sample depends on n only (not on the seed or
 * the threads); the products run on at most 2048 tokens at a time, sums in double, in sample
 * order. NaN (and err set) when out of memory or not finite. */
#define GQ_RECON_TOKENS 1024
double gq_recon_error(const float *W, const float *Q, const float *X, size_t n, int rows,
                      int cols, gq_error *err);
/* Index of the j-th sampled token among n (j < gq_recon_tokens(n)), and the sample's size. */
size_t gq_recon_token(size_t j, size_t n);
size_t gq_recon_tokens(size_t n);

/* gq_tensor_quantizer under a plan (a const gq_quant_plan *) for a model of config c: the
 * format tensor `name` gets, NULL when it stays full precision. */
const gq_quantizer *gq_plan_tensor_quantizer(const void *plan, const gq_config *c,
                                             const char *name);

bool gq_method_cfg_needs_calibration(const gq_method_cfg *cfg);
bool gq_method_cfg_adds_transforms(const gq_method_cfg *cfg);
/* The method's check_layer (0 when it has none): what validation runs for every layer. */
int gq_method_cfg_check_layer(const gq_method_cfg *cfg, const gq_config *c, int layer,
                              const gq_quantizer *const quant[GQ_N_LINEAR], gq_error *err);

/* The model a method with a whole-model step (gq_method.transform_outer / transform_block:
 * rotate) quantizes: a streamed view of src (model/gq_stream.h) holding the transformed
 * embeddings and classifier, whose block l, when acquired, is a private fp32 copy of src's
 * block l with the method's block step applied (src acquired and released meanwhile). src
 * must outlive the view and is not modified; memory is the embeddings/classifier once more
 * and one block per acquired block. Logits and every block equal those of the transform
 * applied to a whole copy. */
int gq_model_step_view(const gq_model *src, const gq_method_cfg *mc, gq_model *view,
                       gq_error *err);

/* Quantizes `fp` into `out` (a new writable model holding the fake-quantized weights, i.e.
 * the reconstructions in fp32) and fills the report. `fp` is not modified. When the method
 * has a whole-model step (rotate) the blocks are quantized from its view of `fp`
 * (gq_model_step_view), and `out` has the view's config (rotate unties a tied classifier). */
/* A streamed `fp` (model/gq_stream.h) is read one block at a time. With plan->sink, `out` may
 * be NULL: each block goes to the sink as it is finished, the report keeps no codes
 * (linear_codes entries stay NULL: the sink had them), and methods that add explicit input
 * transforms are refused unless the sink holds_transforms. Memory is then one block in fp32 (its working copy and
 * reconstructions) besides the calibration activations and the embeddings/classifier. */
int gq_quantize_model(const gq_model *fp, const gq_quant_plan *plan, gq_model *out,
                      gq_quant_report *report, gq_error *err);

#endif
