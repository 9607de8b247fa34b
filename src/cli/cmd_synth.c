/* gq-bench synth: writes a synthetic checkpoint of a real model shape (see model/gq_synth.h). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli/cmd_decl.h"
#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "core/gq_time.h"
#include "model/gq_model.h"
#include "model/gq_synth.h"

static const char *const CMD = "synth";

int cmd_synth(int argc, char **argv)
{
    const char *preset = NULL, *out = NULL, *format = NULL, *dtype = NULL;
    uint64_t seed = 0;
    long shard_mb = 0;
    const cli_opt opts[] = {
        CLI_OPT("preset", "NAME", CLI_STR, &preset, gq_synth_preset_names(), .required = true),
        CLI_OPT("out", "PATH", CLI_OUT, &out, "output checkpoint, written atomically",
                .required = true),
        CLI_OPT("seed", "N", CLI_SEED, &seed, "generator seed", .def = "0"),
        CLI_OPT("format", "F", CLI_CHOICE, &format,
                "legacy (llama2.c header), v1 (\"ak42\" version 1) or hf (a Hugging Face\n"
                "directory written block by block: one block in memory at a time)",
                .def = "legacy", .choices = "legacy|v1|hf"),
        CLI_OPT("dtype", "T", CLI_CHOICE, &dtype, "weights' dtype with --format hf",
                .def = "bf16", .choices = "f32|f16|bf16"),
        CLI_OPT("shard-mb", "N", CLI_INT, &shard_mb,
                "with --format hf: largest shard in MB (10^6 bytes), as transformers'\n"
                "max_shard_size; more than one shard adds model.safetensors.index.json",
                .def = "5000", .min = 1, .max = 1e9),
    };
    const cli_spec spec = {
        .cmd = CMD,
        .about = "Writes a synthetic checkpoint: Student-t (nu=4) linear weights scaled\n"
        "1/sqrt(fan_in) with a few outlier input columns, norms near 1 with a few\n"
        "outlier residual channels; the same file for the same preset and seed.\n",
        CLI_OPTS(opts)};
    CLI_PARSE_OR_RETURN(&spec, argc, argv);
    gq_error err = {{0}};
    gq_config c;
    if (gq_synth_preset(preset, &c, &err) != 0)
        return cli_report(CMD, &err, GQ_EXIT_USAGE);
    double t0 = gq_now();
    if (strcmp(format, "hf") == 0) {
        if (gq_synth_write_hf(&c, seed, out, gq_st_dtype_parse(dtype),
                              (size_t)shard_mb * 1000000u, &err))
            return cli_report(CMD, &err, GQ_EXIT_FAIL);
        printf("%s: preset %s seed %llu, %zu parameters, HF directory (%s, %.1f s)\n", out,
               preset, (unsigned long long)seed, gq_model_param_count(&c), dtype,
               gq_now() - t0);
        return GQ_EXIT_OK;
    }
    gq_model m;
    if (gq_model_synth_config(&c, seed, &m, &err) != 0)
        return cli_report(CMD, &err, GQ_EXIT_FAIL);
    int rc = strcmp(format, "v1") == 0 ? gq_model_save_v1(&m, out, &err)
                                       : gq_model_save(&m, out, &err);
    if (rc == 0)
        printf("%s: preset %s seed %llu, dim %d hidden %d layers %d heads %d/%d vocab %d seq %d, "
               "%zu parameters, %s format (%.1f s)\n", out, preset, (unsigned long long)seed, c.dim, c.hidden_dim,
               c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len,
               gq_model_param_count(&c), format, gq_now() - t0);
    gq_model_free(&m);
    return rc == 0 ? GQ_EXIT_OK : cli_report(CMD, &err, GQ_EXIT_FAIL);
}
