#ifndef GQ_EXPERIMENT_H
#define GQ_EXPERIMENT_H
/* Experiment files: parsing, validation and sweep expansion (schema in README.md,
 * "Experiment files").
 *
 * gq_experiment_load reads the JSON, inlines the reusable pieces it names (JSON files under
 * configs/models/ or configs/methods/), checks every key and type, resolves every file, expands
 * the sweep into cells and validates each cell by parsing its method and format with the
 * registries and checking the format against the model's tensor shapes (formats with a
 * check_shape), the method's plan check and the calibration against the model; it tokenizes
 * the texts to check that the evaluation has a window and the calibration its tokens. Any
 * problem gives one message
 * "<file>: <JSON path>: <what is wrong>" and nothing else happens. */
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>

#include <jansson.h>

#include "core/gq_error.h"
#include "act/gq_act.h"
#include "core/gq_params.h"
#include "eval/gq_eval.h"
#include "formats/gq_format.h"
#include "methods/gq_pipeline.h"
#include "model/gq_stream.h"
#include "model/gq_model.h"

/* How cells measure KL / top-1 against the baseline ($.eval.kl_baseline): keep the baseline's
 * log-probabilities (stored), rerun the baseline model beside each cell (paired), or stored
 * when that fits the budget (auto; see gq_run.h). */
typedef enum { GQ_KL_AUTO = 0, GQ_KL_STORED, GQ_KL_PAIRED } gq_kl_baseline;

/* The sections $.eval, $.calib and $.throughput, parsed once by their parameter tables
 * (gq_exp_eval_params, ... below; `gq-bench list experiment` prints them). */
typedef struct gq_exp_eval {
    char *text;      /* as written: a file under the assets directory */
    int protocol;    /* gq_ppl_protocol */
    int ctx;         /* tokens per window */
    int max_windows; /* 0 = every window */
    int kl_baseline; /* gq_kl_baseline */
} gq_exp_eval;

typedef struct gq_exp_calib {
    char *text;          /* as written; NULL without a $.calib section */
    int n_calib;         /* windows */
    int calib_ctx;       /* tokens per window */
    uint64_t seed;       /* of the window offsets (and of methods that draw numbers) */
} gq_exp_calib;

/* $.throughput: decode/prefill tokens/s of every cell on the packed kernels (gq_packed_measure:
 * protocols in packed/gq_packed.h; warm-up 2 decode steps, int8 decode activations where the
 * format has them, classifier fp32). */
#define GQ_TP_WARMUP 2
typedef struct gq_exp_throughput {
    bool enabled;        /* default true */
    int decode_tokens;   /* timed decode steps (default 16; + GQ_TP_WARMUP <= seq_len) */
    int prefill_tokens;  /* tokens of the timed prefill window (0: min(64, seq_len)) */
    int reps;            /* prefill repetitions, the best is kept (default 3) */
} gq_exp_throughput;

extern const gq_param_spec gq_exp_eval_params[];
extern const gq_param_spec gq_exp_calib_params[];
extern const gq_param_spec gq_exp_throughput_params[];

/* Prints the sections' parameters (types, defaults, ranges) for `gq-bench list experiment`. */
void gq_experiment_print_params(FILE *f);

/* A swept parameter. target says what it changes. */
typedef enum {
    GQ_AXIS_FORMAT, GQ_AXIS_METHOD, GQ_AXIS_N_CALIB, GQ_AXIS_CALIB_CTX,
    GQ_AXIS_ACT, /* "activations.<key>": a key of the entry's activation spec */
    GQ_AXIS_KV,  /* "kv_cache.<key>" */
} gq_axis_target;

typedef struct gq_axis {
    char *name;        /* as written in $.sweep ("bits", "method.damp") */
    const char *param; /* in name: the parameter key without a "method."/"format." prefix */
    json_t *values;    /* non-empty array */
    int zip_group;     /* axes with the same zip_group advance together */
} gq_axis;

/* One entry of $.methods: a method and its format, before sweeping. */
typedef struct gq_exp_method {
    char *label;     /* series name in tables and charts */
    char path[48];   /* "$.methods[2]" */
    char *file;      /* file the entry came from (the experiment or a configs/methods file) */
    json_t *method;  /* {"name": ..., params}, or a chain: a list of such objects */
    json_t *format;  /* {"name": ..., params} */
    gq_propagate propagate;
    json_t *exclude; /* array of axis names not swept for this entry */
    bool calibrates; /* the method with the entry's own parameters needs calibration */
    /* Activation and KV-cache sections of the entry: its own "activations" / "kv_cache"
     * (null: none), else the experiment's; NULL when neither. Paths name where they came from. */
    json_t *act, *kv;
    char act_path[64], kv_path[64];
} gq_exp_method;

/* One unit of work: a configured method + format + calibration, or the unquantized baseline.
 * The method and format are parsed once (mc, q) when the sweep is expanded; method and format
 * keep their canonical JSON for the results and for telling cells apart. */
typedef struct gq_cell {
    char id[16];          /* "baseline", "c001", ... */
    int entry;            /* index into methods, -1 for the baseline */
    gq_method_cfg mc;     /* the parsed method; zero for the baseline */
    gq_quantizer q;       /* the parsed default format of block linears; zero for the baseline */
    json_t *method;       /* canonical method JSON (every parameter); NULL for the baseline */
    json_t *format;       /* canonical format JSON; NULL for the baseline */
    const char *method_name; /* "gptq", or "none" for the baseline (static) */
    char format_label[96];/* "int4 g128 asym", or "fp32" */
    bool needs_calib;
    int n_calib, calib_ctx; /* 0 when the method uses no calibration */
    json_t *axes;         /* {"bits": 4, ...}: the swept values that apply to this cell */
    char *sweep;          /* the same as "bits=4 group_size=128" ("" when not swept) */
    bool has_act, has_kv; /* activation / KV-cache quantizers (act/gq_act.h) */
    gq_act_cfg act, kv;   /* parsed with the swept values; zero when absent */
} gq_cell;

#define GQ_EXP_PATH 4096 /* resolved input paths (PATH_MAX) */

typedef struct gq_experiment {
    char *file;            /* the experiment file as given */
    char *name;            /* $.name or the file's stem */
    char *description;     /* "" when absent */
    json_t *resolved;      /* the experiment with included files inlined (for provenance) */
    char config_sha256[65];/* of the experiment file's bytes */
    char key[65];          /* resume key: sha256 of the canonical experiment + input file hashes */

    /* model */
    char model_path[GQ_EXP_PATH];  /* resolved checkpoint, "" for synthetic */
    char *synthetic;        /* synthetic preset name, NULL for a file */
    uint64_t synthetic_seed;
    char *model_label;      /* "stories260K.bin" or "synthetic:tiny:seed1" */
    gq_stream_mode stream;  /* $.model.stream (a file or directory only) */
    char tokenizer_path[GQ_EXP_PATH];
    gq_config cfg;          /* the model's configuration (read during validation) */
    char model_sha256[65], tokenizer_sha256[65];
    /* sha256 of an HF model directory's config.json ("" for a llama2.c file); model_sha256 is
     * then one hash over its weight files in index order (gq_model_hashes) */
    char model_config_sha256[65];
    /* The baseline row's weights, read with the configuration: the fp32 model ("fp32
     * baseline", "fp32", 32 bpw), or a quantized checkpoint's block linears as their codes hold
     * them ("gptq checkpoint baseline", their format label or "mixed", bits per weight of
     * codes and float linears; tensors outside the block linears load as fp32). */
    char base_series[64], base_format[96];
    double base_bpw;
    size_t base_linear_bytes;

    gq_exp_eval eval;
    char eval_path[GQ_EXP_PATH]; /* eval.text resolved */
    char eval_sha256[65];
    size_t eval_windows;    /* windows the cells score (max_windows applied) */

    gq_exp_throughput throughput;

    /* calibration (used by methods that need it) */
    bool has_calib;
    gq_exp_calib calib;     /* defaults without a section (the seed still reaches methods) */
    char calib_path[GQ_EXP_PATH];
    char calib_sha256[65];
    size_t calib_first;     /* first token calibration windows may start at: after the evaluated
                               tokens when calibration and evaluation read the same text */
    size_t calib_tokens;    /* tokens of the calibration text */

    gq_exp_method *methods;
    int n_methods;
    gq_tensor_rule *rules;
    int n_rules;
    gq_axis *axes;
    int n_axes;
    gq_cell *cells;         /* cells[0] is the baseline */
    int n_cells;
    json_t *plugins;        /* [{"path", "sha256"}] loaded for $.plugins; NULL without */
} gq_experiment;

/* Loads the model's header to validate shapes, hashes every input file and expands the sweep.
 * On failure the message starts with the file at fault and its JSON path. */
int gq_experiment_load(const char *path, gq_experiment *e, gq_error *err);
void gq_experiment_free(gq_experiment *e);

/* Prints the cells as a table (for --dry-run). */
void gq_experiment_print_cells(const gq_experiment *e, FILE *f);

#endif
