/* gq-bench run: run an experiment file (sweep of methods x formats x parameters). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/gq_log.h"
#include "core/gq_threads.h"
#include "runner/gq_experiment.h"
#include "runner/gq_run.h"

static void help(void)
{
    printf("usage: gq-bench run EXPERIMENT.json [options]\n\n"
           "Quantizes the model once per sweep cell, evaluates perplexity, KL divergence and top-1\n"
           "agreement against the unquantized baseline on the same windows, and writes\n"
           "results/<name>/results.csv, results/<name>/results.h5 and plots/<name>/*.png.\n"
           "Finished cells are journaled: running the same command again after an interruption\n"
           "finishes the remaining cells. The file format is described in README.md\n"
           "(\"Experiment files\").\n\n"
           "options:\n"
           "  --dry-run        validate and print the cells, do nothing else\n"
           "  --out-dir DIR    write results/ and plots/ under DIR (default: .)\n"
           "  --threads N      threads in total (default: OMP_NUM_THREADS or all cores)\n"
           "  --jobs N         run N cells side by side, threads split between them (default 1)\n"
           "  --fresh          discard results of a different definition of this experiment\n"
           "  --no-plots       do not draw charts\n"
           "  --quiet          only warnings and the summary table\n\n"
           "exit status: 0 done, 1 a cell failed (finished cells are kept), 2 invalid experiment\n"
           "or options (nothing was written)\n");
}

int cmd_run(int argc, char **argv)
{
    const char *file = NULL;
    gq_run_opts o = {.out_dir = ".", .threads = 0, .jobs = 1, .plots = true, .summary = stdout};
    bool dry = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help();
            return GQ_EXIT_OK;
        } else if (!strcmp(a, "--dry-run"))
            dry = true;
        else if (!strcmp(a, "--fresh"))
            o.fresh = true;
        else if (!strcmp(a, "--no-plots"))
            o.plots = false;
        else if (!strcmp(a, "--quiet"))
            gq_log_set_level(GQ_LOG_WARN);
        else if (!strcmp(a, "--out-dir") || !strcmp(a, "--threads") || !strcmp(a, "--jobs")) {
            if (i + 1 >= argc)
                return cli_usage_error("run", "%s needs a value", a);
            const char *val = argv[++i];
            if (!strcmp(a, "--out-dir"))
                o.out_dir = val;
            else if (cli_int("run", a, val, 1, 4096, &v))
                return GQ_EXIT_USAGE;
            else if (!strcmp(a, "--threads"))
                o.threads = (int)v;
            else
                o.jobs = (int)v;
        } else if (a[0] == '-')
            return cli_usage_error("run", "unknown option '%s'", a);
        else if (file)
            return cli_usage_error("run", "more than one experiment file ('%s', '%s')", file, a);
        else
            file = a;
    }
    if (!file)
        return cli_usage_error("run", "missing the experiment file");
    o.threads = gq_threads_set(o.threads);
    if (o.jobs > o.threads)
        return cli_usage_error("run", "--jobs %d is more than the %d threads", o.jobs, o.threads);

    gq_experiment e;
    gq_error err = {{0}};
    if (gq_experiment_load(file, &e, &err))
        return cli_report("run", &err, GQ_EXIT_USAGE);
    int rc = GQ_EXIT_OK;
    if (dry)
        gq_experiment_print_cells(&e, stdout);
    else if (gq_run_check(&e, &o, &err))
        rc = cli_report("run", &err, GQ_EXIT_USAGE);
    else if (gq_run_experiment(&e, &o, &err))
        rc = cli_report("run", &err, GQ_EXIT_FAIL);
    gq_experiment_free(&e);
    return rc;
}
