/* gq-bench export --format F ...: one writer per target format (cli_export.h); this file only
 * finds --format and hands the whole command line to that writer. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_export.h"
#include "cli/cmd_decl.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} export_target;

static const export_target targets[] = {
    {"awq", export_awq, "AWQ checkpoint (AutoAWQ GEMM layout) of an int4 asym quantization"},
    {"gguf", export_gguf, "GGUF v3 for llama.cpp: quantize with --method/--quant, write the codes"},
    {"gptq", export_gptq, "GPTQ checkpoint (AutoGPTQ v1 layout) of an int-format quantization"},
    {"hf", export_hf, "Hugging Face directory (config.json + safetensors) of any loadable model"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: gq-bench export --format F [options of that format]\n"
               "       gq-bench export --format F --help\n\nformats:\n");
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++)
        fprintf(f, "  %-6s %s\n", targets[i].name, targets[i].summary);
}

/* The value of --format (--format F or --format=F), or NULL. */
static const char *format_arg(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--format") == 0)
            return i + 1 < argc ? argv[i + 1] : NULL;
        if (strncmp(argv[i], "--format=", 9) == 0)
            return argv[i] + 9;
    }
    return NULL;
}

int cli_export_no_float_type(int argc, char **argv, const char *cmd, const char *target)
{
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "--float-type", 12) == 0) {
            cli_usage_error(cmd, "--float-type: %s checkpoints store the unquantized tensors "
                                 "in fp16 (the kernels' dtype)", target);
            return GQ_EXIT_USAGE;
        }
    return 0;
}

int cmd_export(int argc, char **argv)
{
    const char *f = format_arg(argc, argv);
    if (!f) {
        for (int i = 1; i < argc; i++)
            if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
                usage(stdout);
                return GQ_EXIT_OK;
            }
        cli_usage_error("export", "--format is required (one of the formats below)");
        usage(stderr);
        return GQ_EXIT_USAGE;
    }
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++)
        if (strcmp(f, targets[i].name) == 0)
            return targets[i].run(argc, argv);
    cli_usage_error("export", "--format %s: not an export format", f);
    usage(stderr);
    return GQ_EXIT_USAGE;
}
