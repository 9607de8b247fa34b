#ifndef GQ_CLI_QUANTIZE_H
#define GQ_CLI_QUANTIZE_H
/* The quantize pipeline of `gq-bench quantize` (options, plan, calibration, report) with the
 * output left to a writer, so that `gq-bench export --format F` writers reuse it whole. */
#include <stdbool.h>

#include "core/gq_error.h"
#include "methods/gq_pipeline.h"
#include "model/gq_model.h"
#include "text/gq_tokenizer.h"

/* A quantized model as a writer gets it. */
typedef struct cli_quantized {
    const gq_quant_plan *plan;
    const gq_model *fp;           /* the loaded model */
    const gq_model *out;          /* the fake-quantized model (reconstructions) */
    const gq_quant_report *rep;   /* with the codes the method chose */
    const gq_tokenizer *tok;
    const char *model_path;
    const char *out_path;
    const char *float_type;       /* --float-type (export writers), "f32" by default */
} cli_quantized;

typedef struct cli_quantize_writer {
    const char *cmd;          /* the message prefix and help name: "export --format gguf" */
    const char *about;        /* what the output is, for --help */
    const char *out_meta;     /* "M.gguf" */
    /* Refusals of the plan before any work (NULL: none); the message names the option. */
    int (*check_plan)(const gq_quant_plan *plan, const gq_config *c, gq_error *err);
    int (*write)(const cli_quantized *q, gq_error *err);
    bool out_dir;             /* --out names a directory (created; checked writable first) */
} cli_quantize_writer;

/* `gq-bench quantize` with the writer's output: the format option is --quant (--format names
 * the writer), --float-type chooses how unquantized matrices are stored. */
int cli_quantize_export(int argc, char **argv, const cli_quantize_writer *w);

#endif
