/* gq-bench run: run an experiment file (sweep of methods x formats x parameters). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cmd_decl.h"
#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "cli/cli_output.h"
#include "core/gq_threads.h"
#include "dist/gq_dist.h"
#include "runner/gq_experiment.h"
#include "runner/gq_run.h"

/* "--shard I/N": 1 <= I <= N <= 4096. */
static int parse_shard(const char *text, gq_run_opts *o)
{
    int i = 0, n = 0, end = 0;
    if (sscanf(text, "%d/%d%n", &i, &n, &end) != 2 || text[end] || n < 1 || n > 4096 || i < 1 ||
        i > n)
        return cli_usage_error("run", "--shard '%s': expected I/N with 1 <= I <= N <= 4096",
                               text);
    o->shard = i;
    o->n_shards = n;
    return 0;
}

/* A rank other than 0 of an MPI job: runs the cells rank 0 hands out. */
static int run_as_worker(const char *file, const gq_run_opts *o)
{
    gq_error err = {{0}};
    int rc = gq_run_rank_worker(file, o, &err);
    if (rc < 0)
        return cli_report("run", &err, GQ_EXIT_FAIL);
    return rc; /* rank 0's status when it stopped before the cells; it said why */
}

/* The threads, jobs, shard and MPI layout of the parsed options: o->threads becomes the count in
 * use; combinations that cannot run are usage errors (GQ_EXIT_USAGE, said on stderr). */
static int check_layout(const char *shard, gq_run_opts *o)
{
    o->threads = gq_threads_set(o->threads);
    if (o->jobs > o->threads)
        return cli_usage_error("run", "--jobs %d is more than the %d threads", o->jobs,
                               o->threads);
    if (shard && parse_shard(shard, o))
        return GQ_EXIT_USAGE;
    if (gq_dist_size() > 1 && (shard || o->jobs > 1))
        return cli_usage_error("run", "%s under mpirun: every rank runs one cell at a time "
                               "(start more ranks instead)", shard ? "--shard" : "--jobs");
    if (o->split_eval && gq_dist_size() < 2)
        return cli_usage_error("run", "--split-eval needs mpirun with 2 ranks or more");
    return 0;
}

/* Rank 0 (or the only process): loads the experiment, then prints its cells (--dry-run) or
 * checks, locks and runs it; the workers of an MPI job are released with the status. */
static int run_file(const char *file, bool dry, const gq_run_opts *o)
{
    gq_experiment e;
    gq_error err = {{0}};
    if (gq_experiment_load(file, &e, &err)) {
        gq_run_release_workers(GQ_EXIT_USAGE);
        return cli_report("run", &err, GQ_EXIT_USAGE);
    }
    int rc = GQ_EXIT_OK, lock = -1;
    if (dry)
        gq_experiment_print_cells(&e, stdout);
    else if (gq_run_check(&e, o, &err) || (lock = gq_run_lock(&e, o, &err)) < 0)
        rc = cli_report("run", &err, GQ_EXIT_USAGE);
    else if (gq_run_experiment(&e, o, &err))
        rc = cli_report("run", &err, GQ_EXIT_FAIL);
    gq_run_release_workers(rc);
    if (lock >= 0)
        close(lock);
    gq_experiment_free(&e);
    return rc;
}

int cmd_run(int argc, char **argv)
{
    const char *file = NULL;
    gq_run_opts o = {.out_dir = ".", .threads = 0, .jobs = 1, .plots = true, .summary = stdout};
    bool dry = false;
    cli_output out = {0};
    long threads = 0, jobs = 1;
    cli_list exports = {0};
    const char *shard = NULL;
    const cli_opt opts[] = {
        CLI_OPT("dry-run", NULL, CLI_FLAG, &dry, "validate and print the cells, do nothing else"),
        CLI_OPT("out-dir", "DIR", CLI_STR, &o.out_dir, "write results/ and plots/ under DIR",
                .def = "."),
        CLI_OPT("threads", "N", CLI_INT, &threads,
                "threads in total, per rank under mpirun (default: OMP_NUM_THREADS or\n"
                "all cores)", .min = 1,
                .max = 4096),
        CLI_OPT("jobs", "N", CLI_INT, &jobs, "run N cells side by side, threads split between them",
                .def = "1", .min = 1, .max = 4096),
        CLI_OPT("shard", "I/N", CLI_STR, &shard,
                "compute only share I of N (every N-th cell in sweep order from the\n"
                "I-th) into results/<name>/shard-IofN; then `gq-bench merge`"),
        CLI_OPT("split-eval", NULL, CLI_FLAG, &o.split_eval,
                "under mpirun: run each cell on all ranks, its evaluation windows\n"
                "split among them (for cells whose evaluation dominates)"),
        CLI_OPT("fresh", NULL, CLI_FLAG, &o.fresh,
                "discard results of a different definition of this experiment"),
        CLI_OUTPUT_OPTS(&out),
        CLI_OPT("export-gguf", "CELL", CLI_LIST, &exports,
                "also write cell CELL (c001, ...) as results/<name>/CELL.gguf\n"
                "(run even when journaled; refused up front when GGUF cannot hold it)",
                .max = CLI_LIST_MAX),
        CLI_OPT("export-float-type", "T", CLI_CHOICE, &o.export_float_type,
                "unquantized matrices of the exports", .def = "f32",
                .choices = "f32|f16|bf16"),
    };
    const cli_spec spec = {
        .cmd = "run",
        .about =
            "Quantizes the model once per sweep cell, evaluates perplexity, KL divergence and\n"
            "top-1 agreement against the unquantized baseline on the same windows, and writes\n"
            "results/<name>/results.csv, results/<name>/results.h5 and plots/<name>/*.png.\n"
            "Finished cells are journaled: running the same command again after an interruption\n"
            "finishes the remaining cells. The file format is described in README.md\n"
            "(\"Experiment files\").\n"
            "Under mpirun (-np N) rank 0 validates, journals and writes the results and every\n"
            "rank runs cells with --threads threads, the largest expected cost first.\n",
        CLI_OPTS(opts),
        .pos_meta = "EXPERIMENT.json",
        .pos_what = "experiment file",
        .pos = &file,
        .pos_required = true,
        .epilog = "exit status: 0 done, 1 a cell failed (finished cells are kept), 2 invalid\n"
                  "experiment or options, or another run is writing into the same results\n"
                  "directory (nothing was written)\n"};
    CLI_PARSE_OR_RETURN(&spec, argc, argv);
    o.plots = cli_output_apply(&out);
    o.export_gguf = exports.v;
    o.n_export_gguf = exports.n;
    o.threads = (int)threads;
    o.jobs = (int)jobs;
    if (check_layout(shard, &o))
        return GQ_EXIT_USAGE;
    if (gq_dist_rank() > 0)
        return run_as_worker(file, &o);
    return run_file(file, dry, &o);
}
