/* gq-bench export --format awq: the quantize pipeline, then the model written as an AWQ GEMM
 * checkpoint directory whose packed codes are the ones the method chose
 * (runner/gq_awq_export.h). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_export.h"
#include "cli/cli_quantize.h"
#include "runner/gq_awq_export.h"

static int write_awq(const cli_quantized *q, gq_error *err)
{
    return gq_export_awq(q->out_path, q->plan, q->out, q->rep, err);
}

static const cli_quantize_writer awq_writer = {
    .cmd = "export --format awq",
    .about = "Output: an AWQ checkpoint directory (AutoAWQ's GEMM layout, version gemm):\n"
             "config.json with quantization_config and model.safetensors with, per block\n"
             "linear, qweight (int32 (in, out/8), codes packed along the output in AWQ's order:\n"
             "nibbles 0..7 hold outputs 0, 2, 4, 6, 1, 3, 5, 7), qzeros (int32 (groups, out/8),\n"
             "the zero points packed alike) and scales (fp16, groups x out); the other tensors\n"
             "fp16. The codes are the int format's own: --quant int with bits 4, zero asym,\n"
             "fp16 scales, granularity group with a group size dividing every linear's input,\n"
             "outputs in multiples of 8. Anything else is refused before any work.\n",
    .out_meta = "DIR",
    .check_plan = gq_export_awq_check,
    .write = write_awq,
    .out_dir = true,
};

int export_awq(int argc, char **argv)
{
    int rc = cli_export_no_float_type(argc, argv, awq_writer.cmd, "AWQ");
    if (rc)
        return rc;
    return cli_quantize_export(argc, argv, &awq_writer);
}
