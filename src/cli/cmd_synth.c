/* gq-bench synth: writes a synthetic checkpoint of a real model shape (see model/gq_synth.h). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/gq_fileio.h"
#include "core/gq_time.h"
#include "model/gq_model.h"
#include "model/gq_synth.h"

static const char *const CMD = "synth";

int cmd_synth(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"preset", required_argument, 0, 'p'}, {"seed", required_argument, 0, 's'},
        {"out", required_argument, 0, 'o'},    {"format", required_argument, 0, 'f'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    const char *preset = NULL, *out = NULL, *format = "legacy";
    long seed = 0;
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'p': preset = optarg; break;
        case 'o': out = optarg; break;
        case 'f': format = optarg; break;
        case 's':
            if (cli_int(CMD, "--seed", optarg, 0, 1L << 62, &seed) != 0)
                return GQ_EXIT_USAGE;
            break;
        case 'h':
            printf("usage: gq-bench synth --preset NAME --out PATH [--seed N] [--format legacy|v1]\n\n"
                   "Writes a synthetic llama2.c checkpoint: Student-t (nu=4) linear weights scaled\n"
                   "1/sqrt(fan_in) with a few outlier input columns, norms near 1 with a few\n"
                   "outlier residual channels; the same file for the same preset and seed.\n\n"
                   "  --preset NAME   %s\n"
                   "  --out PATH      output checkpoint, written atomically\n"
                   "  --seed N        generator seed (default 0)\n"
                   "  --format F      legacy (llama2.c header) or v1 (\"ak42\" version 1); default legacy\n",
                   gq_synth_preset_names());
            return GQ_EXIT_OK;
        default:
            return cli_usage_error(CMD, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (!preset || !out)
        return cli_usage_error(CMD, "--preset and --out are required");
    if (strcmp(format, "legacy") != 0 && strcmp(format, "v1") != 0)
        return cli_usage_error(CMD, "--format: '%s' is not legacy or v1", format);
    gq_error err = {{0}};
    gq_config c;
    if (gq_synth_preset(preset, &c, &err) != 0 || gq_check_writable("--out", out, &err) != 0)
        return cli_report(CMD, &err, GQ_EXIT_USAGE);
    gq_model m;
    double t0 = gq_now();
    if (gq_model_synth_config(&c, (uint64_t)seed, &m, &err) != 0)
        return cli_report(CMD, &err, GQ_EXIT_FAIL);
    int rc = strcmp(format, "v1") == 0 ? gq_model_save_v1(&m, out, &err)
                                       : gq_model_save(&m, out, &err);
    if (rc == 0)
        printf("%s: preset %s seed %ld, dim %d hidden %d layers %d heads %d/%d vocab %d seq %d, "
               "%zu parameters, %s format (%.1f s)\n", out, preset, seed, c.dim, c.hidden_dim,
               c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len,
               gq_model_param_count(&c), format, gq_now() - t0);
    gq_model_free(&m);
    return rc == 0 ? GQ_EXIT_OK : cli_report(CMD, &err, GQ_EXIT_FAIL);
}
