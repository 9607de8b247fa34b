#ifndef GQ_ACT_H
#define GQ_ACT_H
/* Activation and KV-cache quantizers, fake-quantized in the accuracy path (README.md,
 * "Activations and the KV cache").
 *
 * An activation spec names a registry format and how its scales are taken:
 *   {"format": "int", "bits": 8, "zero": "sym",          (the format and its parameters)
 *    "granularity": "token",  "group_size": 128,          (tensor | token | group of input channels)
 *    "scales": "dynamic", "calibration": "max", "percentile": 99.99}
 * The input x (n tokens, width) of a linear is cut into segments (a window of tokens, a token,
 * or group_size consecutive channels of a token); each segment gets one state of the format's
 * group interface (fit_group on the segment, dynamic) or a calibrated one (static: fit_group on
 * the calibrated range {lo, hi}, one per tensor or per channel group, shared by every token),
 * and each element becomes quant_elem(state, x). A KV-cache spec is the same with granularity
 * token | head | group (of a head) and dynamic scales only; keys are quantized after RoPE.
 *
 * $.activations may hold "overrides": [{"pattern": glob, "keep_fp": true} or {"pattern": glob,
 * spec...}], matched against the linears' tensor names exactly as the weight overrides
 * (gq_tensor_quantizer: first match wins). */
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "core/gq_error.h"
#include "formats/gq_format.h"
#include "methods/gq_pipeline.h"
#include "model/gq_act_hook.h"
#include "model/gq_model.h"

typedef enum { GQ_ACT_TENSOR, GQ_ACT_TOKEN, GQ_ACT_GROUP, GQ_ACT_HEAD } gq_act_granularity;
typedef enum { GQ_ACT_DYNAMIC, GQ_ACT_STATIC } gq_act_scales;
typedef enum { GQ_ACT_CAL_MAX, GQ_ACT_CAL_PERCENTILE, GQ_ACT_CAL_MSE } gq_act_calibration;

/* One quantizer of activations (or of the KV cache). */
typedef struct gq_act_spec {
    bool kv;            /* a KV-cache spec */
    int granularity;    /* gq_act_granularity */
    int group_size;     /* channels per group (GQ_ACT_GROUP) */
    int scales;         /* gq_act_scales */
    int calibration;    /* gq_act_calibration (static) */
    double percentile;  /* GQ_ACT_CAL_PERCENTILE: the range is [p_(100-q), p_q] of the values */
    gq_quantizer q;     /* the format and its parameters */
    bool fixed_blocks;  /* the format fixes its own blocks (no "granularity" parameter: mx, q8_0) */
} gq_act_spec;

/* A parsed $.activations (default spec + override rules) or $.kv_cache (no rules) section. */
typedef struct gq_act_cfg {
    gq_act_spec def;
    gq_tensor_rule *rules;   /* n_rules; quantizer = the rule's spec's format (or keep_fp) */
    gq_act_spec *rule_specs; /* n_rules */
    int n_rules;
    json_t *canonical;       /* every key with its value, for results and the resume key */
} gq_act_cfg;

/* Parses a section object at JSON path `path` ("$.activations"). kv: the KV-cache table. */
int gq_act_cfg_parse(const json_t *obj, const char *path, bool kv, gq_act_cfg *out,
                     gq_error *err);
void gq_act_cfg_free(gq_act_cfg *a);
/* Checks the section against a model before any work: a format usable for activations (a group
 * interface, blocks that match the granularity), group sizes that divide the widths (every
 * linear input; for the KV cache the head size), static scales only per tensor or group, with
 * a format scaled per tensor/channel/group, and only when has_calib. */
int gq_act_cfg_check(const gq_act_cfg *a, const gq_config *c, const char *path, bool has_calib,
                     gq_error *err);
/* The spec the input of tensor `name` ("layers.3.mlp.down_proj") gets: the first matching
 * override's, NULL when that keeps it fp32, else the section's default. */
const gq_act_spec *gq_act_cfg_spec(const gq_act_cfg *a, const char *name);
/* Whether any spec of the section uses static scales. */
bool gq_act_cfg_is_static(const gq_act_cfg *a);
/* The parameter tables, for `gq-bench list experiment`. */
extern const gq_param_spec gq_act_params[];
extern const gq_param_spec gq_kv_params[];

/* Result columns of a spec: element bits (scales not counted), the format without its
 * granularity ("int8 sym", "fp8_e4m3", "mxfp4"), the granularity ("token", "tensor", "g32",
 * "head") and the scales ("dynamic", "static max", "static p99.99", "static mse"). */
int gq_act_spec_bits(const gq_act_spec *s);
void gq_act_spec_format(const gq_act_spec *s, char *buf, size_t n);
void gq_act_spec_granularity(const gq_act_spec *s, char *buf, size_t n);
void gq_act_spec_scales(const gq_act_spec *s, char *buf, size_t n);

/* Columns of segments a row of `width` is cut into (0: the whole window, per tensor); the KV
 * cache's head granularity needs the head size. */
int gq_act_seg_cols(const gq_act_spec *s, int width, int head_size);
/* Dynamic quantization of x (n, width), rows in windows of T: xq (may equal x). */
void gq_act_quant_dynamic(const gq_act_spec *s, const float *x, float *xq, int n, int width,
                          int T, int head_size);
/* Static: states (one per segment of a row: 1 per tensor, ceil(width/group_size) per group,
 * group_state_bytes each) fitted on calibrated ranges. */
void gq_act_quant_static(const gq_act_spec *s, const uint8_t *states, const float *x, float *xq,
                         int n, int width);

/* Bounded range statistics of one linear input with a static spec (act_stats.c), fed chunk
 * by chunk of rows (n, width): pass 1 (gq_act_stats_minmax) keeps each segment's running min
 * and max, the "max" rule's exact range; the percentile and MSE rules need a pass 2
 * (gq_act_stats_hist) over the same rows, a histogram of GQ_ACT_HIST_BINS equal bins over each
 * segment's [min, max]. Memory: 2 floats (+ the histogram) per segment, whatever the number
 * of rows. */
#define GQ_ACT_HIST_BINS 65536
typedef struct gq_act_stats {
    const gq_act_spec *spec;
    int nseg, seg;   /* segments of a row (1 per tensor, width / group_size per group), width */
    float *mn, *mx;  /* (nseg) */
    uint64_t *hist;  /* (nseg, GQ_ACT_HIST_BINS), NULL for the max rule */
    uint64_t count;  /* values seen per segment */
} gq_act_stats;
int gq_act_stats_init(gq_act_stats *st, const gq_act_spec *s, int width, gq_error *err);
void gq_act_stats_free(gq_act_stats *st);
bool gq_act_stats_needs_hist(const gq_act_stats *st);
void gq_act_stats_minmax(gq_act_stats *st, const float *X, size_t n, int width);
void gq_act_stats_hist(gq_act_stats *st, const float *X, size_t n, int width);
/* (lo, hi) per segment by the spec's rule (see gq_act_calibrate). */
void gq_act_stats_ranges(const gq_act_stats *st, float *ranges);

/* The per-cell activation state the forward pass sees through its hook: the spec of every
 * linear input, the calibrated ranges and states of static specs, the KV-cache spec. */
typedef struct gq_act_model {
    gq_act_hook hook; /* set m->act = &am->hook */
    gq_config cfg;
    const gq_act_spec **in; /* n_layers * GQ_N_LINEAR (l * GQ_N_LINEAR + k); NULL: unquantized */
    float **ranges;         /* per linear input of a static spec: (lo, hi) per segment */
    uint8_t **states;       /* per linear input of a static spec: the fitted states */
    const gq_act_spec *kv;  /* NULL: fp32 cache */
    int skip_layer;         /* calibration: this block's inputs pass unquantized (-1: none) */
} gq_act_model;

/* Resolves every linear's spec (acts and kv may be NULL). Static specs need gq_act_calibrate
 * (or gq_act_load) before the model runs. */
int gq_act_model_init(gq_act_model *am, const gq_config *c, const gq_act_cfg *acts,
                      const gq_act_cfg *kv, gq_error *err);
void gq_act_model_free(gq_act_model *am);
bool gq_act_model_needs_calibration(const gq_act_model *am);
/* Calibrates the static specs on (n_calib, ctx) token windows through model m with the hook
 * attached, block by block: block l's inputs are observed with blocks < l quantized (and l's
 * own linear inputs unquantized), the ranges chosen by each spec's calibration rule. The
 * windows go through block l in chunks (gq_act_calib_chunk) whose linear inputs feed
 * gq_act_stats; only the residual stream (n_calib * ctx, dim) is held whole. */
int gq_act_calibrate(gq_act_model *am, const gq_model *m, const int *tokens, int n_calib,
                     int ctx, gq_error *err);
/* The same with chunks of `chunk` windows (tests compare chunkings). */
int gq_act_calibrate_chunked(gq_act_model *am, const gq_model *m, const int *tokens,
                             int n_calib, int ctx, int chunk, gq_error *err);
/* Windows per chunk: about GQ_ACT_CALIB_TOKENS tokens, a multiple of the windows that fill
 * whole 256-row product tiles (so that chunked products round as one product would). */
#define GQ_ACT_CALIB_TOKENS 8192
int gq_act_calib_chunk(int n_calib, int ctx);
/* The hook's calibrate_input: refits the static ranges of linear (layer, k) from its inputs x
 * (n, width) by the spec's rule (nothing for a dynamic or unquantized input). */
int gq_act_hook_calibrate_input(gq_act_hook *h, int layer, gq_linear_kind k, const float *x,
                                size_t n, int width, gq_error *err);
/* Sets the static ranges of linear (l, k) and fits their states (gq_act_load and tests). */
int gq_act_set_ranges(gq_act_model *am, int l, gq_linear_kind k, const float *ranges,
                      gq_error *err);
/* Number of (lo, hi) pairs of linear (l, k)'s static ranges (0 when not static). */
int gq_act_n_ranges(const gq_act_model *am, int l, gq_linear_kind k);

/* The file saved beside a quantized checkpoint ("<checkpoint>.act.json"): the sections, the
 * checkpoint's sha256 and the static ranges (exact float values). */
void gq_act_file_path(const char *checkpoint, char *buf, size_t n);
int gq_act_save(const gq_act_model *am, const gq_act_cfg *acts, const gq_act_cfg *kv,
                const char *checkpoint, const char *path, gq_error *err);
/* Loads it for model m (whose checkpoint must hash as recorded): fills the sections (acts, kv
 * zeroed when absent; *has_acts, *has_kv say which) and an initialised, calibrated am. */
int gq_act_load(const char *path, const gq_model *m, const char *checkpoint, gq_act_cfg *acts,
                bool *has_acts, gq_act_cfg *kv, bool *has_kv, gq_act_model *am, gq_error *err);

#endif
