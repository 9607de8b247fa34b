/* gq-bench export --format gguf: the quantize pipeline, then the model written as a llama GGUF
 * whose quantized tensors hold the codes the method chose (runner/gq_export.h). */
#include <libgen.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli_export.h"
#include "cli/cli_quantize.h"
#include "runner/gq_export.h"

static int write_gguf(const cli_quantized *q, gq_error *err)
{
    char base[4096];
    snprintf(base, sizeof base, "%s", q->model_path);
    char *name = basename(base), *dot = strrchr(name, '.');
    if (dot && dot != name)
        *dot = '\0';
    return gq_export_gguf(q->out_path, q->plan, q->out, q->rep, q->tok, name, q->float_type,
                          err);
}

static const cli_quantize_writer gguf_writer = {
    .cmd = "export --format gguf",
    .about = "Output: a GGUF v3 file for llama.cpp (llama architecture): the quantized tensors\n"
             "hold the codes the method chose (ggml types q4_0, q4_1, q5_0, q5_1, q8_0,\n"
             "q2_K..q6_K, mxfp4_ggml), the others --float-type, norms f32; the vocabulary as\n"
             "tokenizer.ggml.* keys. A plan with another format, explicit transforms, or a method\n"
             "that hands over reconstructions only is refused before anything is written.\n",
    .out_meta = "M.gguf",
    .check_plan = gq_export_gguf_check,
    .write = write_gguf,
};

int export_gguf(int argc, char **argv)
{
    return cli_quantize_export(argc, argv, &gguf_writer);
}
