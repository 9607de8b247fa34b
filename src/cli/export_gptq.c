/* gq-bench export --format gptq: the quantize pipeline, then the model written as a GPTQ
 * checkpoint directory whose packed codes are the ones the method chose
 * (runner/gq_gptq_export.h). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_export.h"
#include "cli/cli_quantize.h"
#include "runner/gq_gptq_export.h"

static int write_gptq(const cli_quantized *q, gq_error *err)
{
    return gq_export_gptq(q->out_path, q->plan, q->out, q->rep, err);
}

static const cli_quantize_writer gptq_writer = {
    .cmd = "export --format gptq",
    .about = "Output: a GPTQ checkpoint directory (AutoGPTQ/GPTQModel layout, checkpoint_format\n"
             "gptq = v1): config.json with quantization_config, quantize_config.json and\n"
             "model.safetensors with, per block linear, qweight (int32, codes packed along the\n"
             "input, low bits first), qzeros (int32, zero point minus one, packed along the\n"
             "output), scales (fp16, groups x out) and g_idx (int32, act_order's groups); the\n"
             "other tensors fp16. The codes are the int format's own: --quant int with bits 2, 4\n"
             "or 8, fp16 scales, zero sym_gptq (GPTQ's sym=True) or sym (sym=False), a group\n"
             "size dividing every linear's input. Anything else is refused before any work.\n",
    .out_meta = "DIR",
    .check_plan = gq_export_gptq_check,
    .write = write_gptq,
    .out_dir = true,
};

int export_gptq(int argc, char **argv)
{
    int rc = cli_export_no_float_type(argc, argv, gptq_writer.cmd, "GPTQ");
    if (rc)
        return rc;
    return cli_quantize_export(argc, argv, &gptq_writer);
}
