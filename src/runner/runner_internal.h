#ifndef GQ_RUNNER_INTERNAL_H
#define GQ_RUNNER_INTERNAL_H
/* Functions shared between the runner's files (not part of its public interface). */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/gq_error.h"
#include "model/gq_model.h"
#include "runner/gq_experiment.h"
#include "qmodel/gq_qmodel.h"
#include "runner/gq_results.h"

/* Parses $.sweep and $.zip and fills e->axes and e->cells (baseline first). Needs e->cfg. */
/* Cells a sweep may have unless GQ_SWEEP_MAX_CELLS says otherwise. */
#define GQ_SWEEP_MAX_CELLS_DEFAULT 10000
int gq_sweep_expand(gq_experiment *e, gq_error *err);

/* Frees what a cell owns (parsed method and format, JSON, sweep text). */
void gq_cell_release(gq_cell *c);

/* Tokenizes the texts against the model's tokenizer (vocabulary checked), fills eval_windows,
 * the text hashes, calib_tokens and calib_first; fails when the evaluation has no window. */
int gq_exp_check_inputs(gq_experiment *e, gq_error *err);
/* Whether n_calib windows of calib_ctx tokens fit in the calibration text after calib_first
 * (at most as many tokens as it holds there). */
int gq_exp_check_calib(const gq_experiment *e, int n_calib, int calib_ctx, gq_error *err);

/* The model named by the experiment: loaded from its checkpoint or generated. */
int gq_runner_model_open(const gq_experiment *e, gq_model *m, gq_error *err);
/* The same, with the codes a quantized checkpoint holds (GPTQ, AWQ, native) in *q (zeroed for
 * other models). */
int gq_runner_model_open_codes(const gq_experiment *e, gq_model *m, gq_qcodes *q,
                               gq_error *err);
/* Its configuration into e->cfg and its baseline's weights into e->base_* (cheap: maps the file
 * or generates the model once). */
int gq_runner_model_describe(gq_experiment *e, gq_error *err);
/* Loads the shared objects of $.plugins (exp_plugins.c) into e->plugins. */
int gq_exp_load_plugins(gq_experiment *e, json_t *root, gq_error *err);


/* Bytes of the block linears in fp32 (the baseline's packed_bytes). */
size_t gq_runner_fp32_linear_bytes(const gq_config *c);

/* Throughput of m (a cell's quantized model with its quantizer q and report rep, or the fp32
 * baseline with q = rep = NULL) per $.throughput. Not measured (out->measured false, out->note
 * says why) when disabled, when the overrides make the model differ from one packed quantizer
 * on every block linear, or when q has no packed kernel. Errors: out of memory. */
int gq_runner_throughput(const gq_experiment *e, const gq_model *m, const gq_quantizer *q,
                         const gq_quant_report *rep, gq_cell_throughput *out, gq_error *err);
/* The baseline's throughput: a model loaded from a quantized checkpoint runs on the packed
 * kernels from its own codes (not measured, with the reason, when its linears do not share
 * one packed format); any other model in fp32 as gq_runner_throughput(e, m, NULL, NULL), but
 * for a model whose blocks are converted on acquire (not measured, the note says why). */
int gq_runner_throughput_loaded(const gq_experiment *e, const gq_model *m, const gq_qcodes *qc,
                                gq_cell_throughput *out, gq_error *err);

/* Lets a throughput measurement run alone: cells compute inside shared sections; a
 * measurement waits until no shared section is open and keeps new ones from opening until it
 * is done (waiting measurements go before new cells, so none starves). */
typedef struct gq_tp_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int busy;    /* open shared sections */
    int waiting; /* measurements waiting */
    bool active; /* a measurement running */
} gq_tp_gate;
void gq_tp_gate_init(gq_tp_gate *g);
void gq_tp_gate_destroy(gq_tp_gate *g);
void gq_tp_gate_enter_shared(gq_tp_gate *g);
void gq_tp_gate_leave_shared(gq_tp_gate *g);
void gq_tp_gate_enter_exclusive(gq_tp_gate *g);
void gq_tp_gate_leave_exclusive(gq_tp_gate *g);

#endif
