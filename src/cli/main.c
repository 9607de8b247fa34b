/* gq-bench: entry point and subcommand dispatch. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_plugins.h"
#include "core/gq_log.h"
#include "dist/gq_dist.h"
#include "core/gq_threads.h"
#include "gq_version.h"

#include "cli/cmd_decl.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
#define GQ_COMMAND(name, fn, summary) {#name, fn, summary},
#include "cli/commands.h"
#undef GQ_COMMAND
};

static void usage(FILE *f)
{
    fprintf(f, "gq-bench %s: weight-quantization benchmarks for Llama-family models\n\n"
               "usage: gq-bench [--plugin FILE.so]... COMMAND [options]   (COMMAND --help for details)\n\n"
               "commands:\n", GQ_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nenvironment:\n"
               "  GQ_ASSETS          assets directory (default: assets)\n"
               "  GQ_ASSETS_MIRROR   local mirror used by scripts/fetch-assets.sh\n"
               "  GQ_PLUGINS         plugins to load first, ':'-separated (like --plugin)\n"
               "  OMP_NUM_THREADS    default thread count when --threads is not given\n");
}

int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("gq-bench %s (revision %s)\n", GQ_VERSION, GQ_VCS_REVISION);
    printf("compiler: %s\n", __VERSION__);
    printf("blas: %s\n", gq_blas_description());
    printf("threads: %d\n", gq_threads_get());
    printf("mpi: %s\n", gq_dist_library());
    return GQ_EXIT_OK;
}

static int run_command(int argc, char **argv)
{
    gq_threads_set(gq_threads_get()); /* BLAS on one thread whatever its build: gq_gemm.h */
    int rc = cli_load_plugins(&argc, &argv);
    if (rc != GQ_EXIT_OK)
        return rc;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? GQ_EXIT_USAGE : GQ_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0)
        return cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "gq-bench: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return GQ_EXIT_USAGE;
}

/* Under mpirun every rank joins the MPI job first (dist/gq_dist.h); alone, nothing changes. */
int main(int argc, char **argv)
{
    gq_error err = {{0}};
    if (gq_dist_init(&argc, &argv, &err)) {
        fprintf(stderr, "gq-bench: %s\n", err.msg);
        return GQ_EXIT_FAIL;
    }
    int rc = run_command(argc, argv);
    gq_dist_finalize();
    return rc;
}
