/* gq-bench merge: the shard journals of a job array into results.csv, results.h5 and charts. */
#include <stdio.h>

#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "cli/cli_output.h"
#include "cli/cmd_decl.h"
#include "runner/gq_run.h"

int cmd_merge(int argc, char **argv)
{
    const char *dir = NULL, *experiment = NULL;
    cli_output out = {0};
    const cli_opt opts[] = {
        CLI_OPT("experiment", "FILE", CLI_STR, &experiment,
                "the experiment file (default: the one the shards recorded)"),
        CLI_OUTPUT_OPTS(&out),
    };
    const cli_spec spec = {
        .cmd = "merge",
        .about =
            "Merges the journals of `gq-bench run EXP.json --shard I/N` (I = 1..N, e.g. the\n"
            "tasks of a Slurm job array) under results/<name>/shard-IofN into\n"
            "results/<name>/.journal and writes results.csv, results.h5 and plots/<name>/*.png\n"
            "as one run of the experiment writes them. Refused, with nothing written, when a\n"
            "shard is missing or belongs to another experiment definition, or a cell has no\n"
            "record.\n",
        CLI_OPTS(opts),
        .pos_meta = "RESULTS_DIR",
        .pos_what = "results directory (results/<name>)",
        .pos = &dir,
        .pos_required = true,
        .epilog = "exit status: 0 done, 1 writing failed, 2 invalid or incomplete shards\n"};
    CLI_PARSE_OR_RETURN(&spec, argc, argv);
    const bool plots = cli_output_apply(&out);
    gq_error err = {{0}};
    int usage = 1;
    if (gq_run_merge(dir, experiment, plots, stdout, &usage, &err))
        return cli_report("merge", &err, usage ? GQ_EXIT_USAGE : GQ_EXIT_FAIL);
    return GQ_EXIT_OK;
}
