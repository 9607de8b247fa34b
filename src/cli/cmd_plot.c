/* gq-bench plot: redraw the charts of a finished experiment from its results.csv. */
#include <libgen.h>
#include <stdio.h>
#include <string.h>

#include "cli/cmd_decl.h"
#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "runner/gq_results.h"

int cmd_plot(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL;
    const cli_opt opts[] = {
        CLI_OPT("out", "DIR", CLI_STR, &out,
                "chart directory (default: plots/<experiment> beside results/)"),
    };
    const cli_spec spec = {
        .cmd = "plot",
        .about = "Redraws the charts of results/<experiment>/results.csv (gnuplot, pngcairo) into\n"
                 "plots/<experiment>/ next to the results directory, or into --out DIR.\n",
        CLI_OPTS(opts),
        .pos_meta = "RESULTS_DIR",
        .pos_what = "results directory (results/<experiment>)",
        .pos = &dir,
        .pos_required = true};
    CLI_PARSE_OR_RETURN(&spec, argc, argv);
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
