#ifndef GQ_EXPERIMENT_H
#define GQ_EXPERIMENT_H
/* Experiment files: parsing, validation and sweep expansion (schema in README.md,
 * "Experiment files").
 *
 * gq_experiment_load reads the JSON, inlines the reusable pieces it names (JSON files under
 * configs/models/ or configs/methods/), checks every key and type, resolves every file, expands
 * the sweep into cells and validates each cell by parsing its method and format with the
 * registries and checking the format against the model's tensor shapes (formats with a
 * check_shape). Any problem gives one message
 * "<file>: <JSON path>: <what is wrong>" and nothing else happens. */
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>

#include <jansson.h>

#include "core/gq_error.h"
#include "eval/gq_eval.h"
#include "formats/gq_format.h"
#include "methods/gq_pipeline.h"
#include "model/gq_model.h"

/* How cells measure KL / top-1 against the baseline ($.eval.kl_baseline): keep the baseline's
 * log-probabilities (stored), rerun the baseline model beside each cell (paired), or stored
 * when that fits the budget (auto; see gq_run.h). */
typedef enum { GQ_KL_AUTO = 0, GQ_KL_STORED, GQ_KL_PAIRED } gq_kl_baseline;

/* $.throughput: decode/prefill tokens/s of every cell on the packed kernels (gq_packed_measure:
 * protocols in packed/gq_packed.h; warm-up 2 decode steps, int8 decode activations where the
 * format has them, classifier fp32). */
#define GQ_TP_WARMUP 2
typedef struct gq_exp_throughput {
    bool enabled;        /* default true */
    int decode_tokens;   /* timed decode steps (default 16; + GQ_TP_WARMUP <= seq_len) */
    int prefill_tokens;  /* tokens of the timed prefill window (default min(64, seq_len)) */
    int reps;            /* prefill repetitions, the best is kept (default 3) */
} gq_exp_throughput;

/* A swept parameter. target says what it changes. */
typedef enum { GQ_AXIS_FORMAT, GQ_AXIS_METHOD, GQ_AXIS_N_CALIB, GQ_AXIS_CALIB_CTX } gq_axis_target;

typedef struct gq_axis {
    char name[64];   /* as written in $.sweep ("bits", "method.damp") */
    char param[64];  /* parameter key without a "method."/"format." prefix */
    json_t *values;  /* non-empty array */
    int zip_group;   /* axes with the same zip_group advance together */
} gq_axis;

/* One entry of $.methods: a method and its format, before sweeping. */
typedef struct gq_exp_method {
    char label[96];  /* series name in tables and charts */
    char path[48];   /* "$.methods[2]" */
    char file[1024]; /* file the entry came from (the experiment or a configs/methods file) */
    json_t *method;  /* {"name": ..., params} */
    json_t *format;  /* {"name": ..., params} */
    gq_propagate propagate;
    json_t *exclude; /* array of axis names not swept for this entry */
} gq_exp_method;

/* One unit of work: a configured method + format + calibration, or the unquantized baseline. */
typedef struct gq_cell {
    char id[16];          /* "baseline", "c001", ... */
    int entry;            /* index into methods, -1 for the baseline */
    json_t *method;       /* canonical method JSON (every parameter); NULL for the baseline */
    json_t *format;       /* canonical format JSON; NULL for the baseline */
    char method_name[32]; /* "gptq", or "none" for the baseline */
    char format_label[96];/* "int4 g128 asym", or "fp32" */
    bool needs_calib;
    int n_calib, calib_ctx; /* 0 when the method uses no calibration */
    json_t *axes;         /* {"bits": 4, ...}: the swept values that apply to this cell */
    char sweep[256];      /* the same as "bits=4 group_size=128" */
} gq_cell;

typedef struct gq_experiment {
    char file[1024];       /* the experiment file as given */
    char name[96];         /* $.name or the file's stem */
    char description[512];
    json_t *resolved;      /* the experiment with included files inlined (for provenance) */
    char config_sha256[65];/* of the experiment file's bytes */
    char key[65];          /* resume key: sha256 of the canonical experiment + input file hashes */

    /* model */
    char model_path[1024];  /* resolved checkpoint, "" for synthetic */
    char synthetic[32];     /* synthetic preset name, "" for a file */
    uint64_t synthetic_seed;
    char model_label[128];  /* "stories260K.bin" or "synthetic:tiny:seed1" */
    char tokenizer_path[1024];
    gq_config cfg;          /* the model's configuration (read during validation) */
    char model_sha256[65], tokenizer_sha256[65];

    /* evaluation */
    char eval_path[1024];
    char eval_sha256[65];
    gq_ppl_protocol protocol;
    int ctx;
    int max_windows;        /* 0 = every window */
    gq_kl_baseline kl_baseline;

    gq_exp_throughput throughput;

    /* calibration (used by methods that need it) */
    bool has_calib;
    char calib_path[1024];
    char calib_sha256[65];
    int n_calib, calib_ctx;
    uint64_t seed;

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
