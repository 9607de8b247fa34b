/* gq-bench list [formats|methods|experiment]: the registered plugins with their parameters and
 * defaults, and the parameters of an experiment file's sections. */
#include <stdio.h>
#include <string.h>

#include "cli/cmd_decl.h"
#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "formats/gq_format.h"
#include "runner/gq_experiment.h"
#include "methods/gq_pipeline.h"

static void list_formats(void)
{
    int n;
    const gq_format *const *all = gq_format_all(&n);
    printf("formats (%d):\n", n);
    for (int i = 0; i < n; i++) {
        printf("\n  %s: %s\n", all[i]->name, all[i]->summary);
        if (gq_params_count(all[i]->params) == 0)
            printf("    (no parameters)\n");
        else
            gq_params_print(stdout, all[i]->params, "    ");
    }
}

static void list_methods(void)
{
    int n;
    const gq_method *const *all = gq_method_all(&n);
    printf("methods (%d); a method may be a chain of transform-only methods and then one weight\n"
           "method, applied in order to each block (JSON [\"smoothquant\", \"rtn\"], command\n"
           "line --method smoothquant,rtn):\n", n);
    for (int i = 0; i < n; i++) {
        printf("\n  %s: %s%s%s\n", gq_method_name(all[i]), gq_method_summary(all[i]),
               gq_method_needs_calibration(all[i]) ? " (needs calibration)" : "",
               all[i]->transform_only ? " (transform only: chain it before a weight method)"
                                      : "");
        if (gq_method_families(all[i]))
            printf("    families: %s\n", gq_method_families(all[i]));
        const gq_param_spec *ps = gq_method_params(all[i]);
        if (gq_params_count(ps) == 0)
            printf("    (no parameters)\n");
        else
            gq_params_print(stdout, ps, "    ");
    }
}

int cmd_list(int argc, char **argv)
{
    const char *what = NULL;
    const cli_spec spec = {
        .cmd = "list",
        .about = "Prints the registered plugins with a summary, their parameters, types, defaults\n"
                 "and ranges. Parameters are given in JSON ({\"name\": \"int\", \"bits\": 3}) or\n"
                 "on the command line with --set key=value.\n",
        .pos_meta = "formats|methods|experiment",
        .pos_what = "list",
        .pos = &what};
    CLI_PARSE_OR_RETURN(&spec, argc, argv);
    if (!what)
        what = "all";
    bool formats = strcmp(what, "formats") == 0, methods = strcmp(what, "methods") == 0;
    if (strcmp(what, "experiment") == 0) {
        gq_experiment_print_params(stdout);
        return GQ_EXIT_OK;
    }
    if (!formats && !methods && strcmp(what, "all") != 0)
        return cli_usage_error("list", "unknown list '%s' (expected formats, methods or "
                                       "experiment)", what);
    if (!methods)
        list_formats();
    if (!formats) {
        if (!methods)
            printf("\n");
        list_methods();
    }
    return GQ_EXIT_OK;
}
