/* gq-bench plot: redraw the charts of a finished experiment from its results.csv. */
#include <libgen.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "runner/gq_results.h"

static void help(void)
{
    printf("usage: gq-bench plot RESULTS_DIR [--out DIR]\n\n"
           "Redraws the charts of results/<experiment>/results.csv (gnuplot, pngcairo) into\n"
           "plots/<experiment>/ next to the results directory, or into --out DIR.\n");
}

int cmd_plot(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            help();
            return GQ_EXIT_OK;
        } else if (!strcmp(argv[i], "--out")) {
            if (i + 1 >= argc)
                return cli_usage_error("plot", "--out needs a directory");
            out = argv[++i];
        } else if (argv[i][0] == '-')
            return cli_usage_error("plot", "unknown option '%s'", argv[i]);
        else if (dir)
            return cli_usage_error("plot", "more than one results directory");
        else
            dir = argv[i];
    }
    if (!dir)
        return cli_usage_error("plot", "missing the results directory (results/<experiment>)");
    /* results/<name> -> plots/<name> beside it */
    char trimmed[4096], a[4096], b[4096], plots[8400];
    snprintf(trimmed, sizeof trimmed, "%s", dir);
    size_t len = strlen(trimmed);
    while (len > 1 && trimmed[len - 1] == '/')
        trimmed[--len] = '\0';
    snprintf(a, sizeof a, "%s", trimmed);
    snprintf(b, sizeof b, "%s", trimmed);
    const char *name = basename(a);
    const char *parent = dirname(b);
    if (out)
        snprintf(plots, sizeof plots, "%s", out);
    else
        snprintf(plots, sizeof plots, "%s/../plots/%s", parent, name);
    int n = 0;
    gq_error err = {{0}};
    if (gq_results_plot(trimmed, plots, &n, &err))
        return cli_report("plot", &err, GQ_EXIT_FAIL);
    printf("wrote %d charts to %s\n", n, plots);
    return GQ_EXIT_OK;
}
