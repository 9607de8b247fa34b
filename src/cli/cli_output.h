#ifndef GQ_CLI_OUTPUT_H
#define GQ_CLI_OUTPUT_H
/* The output switches of the commands that write an experiment's results (run, merge):
 * --no-plots and --quiet, as two rows of the command's option table. */
#include <stdbool.h>

#include "cli/cli_opts.h"

typedef struct cli_output {
    bool no_plots, quiet;
} cli_output;

/* The two option rows, in a cli_opt array initializer: CLI_OUTPUT_OPTS(&out). */
#define CLI_OUTPUT_OPTS(o)                                                                       \
    CLI_OPT("no-plots", NULL, CLI_FLAG, &(o)->no_plots, "do not draw charts"),                    \
        CLI_OPT("quiet", NULL, CLI_FLAG, &(o)->quiet, "only warnings and the summary table")

/* After parsing: --quiet lowers the log to warnings. Returns whether charts are drawn. */
bool cli_output_apply(const cli_output *o);

#endif
