/* Global plugin options: GQ_PLUGINS=a.so:b.so, then every leading `--plugin PATH` /
 * `--plugin=PATH` before the subcommand. */
#include "cli/cli_plugins.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "plugin/gq_plugin.h"

int cli_load_plugins(int *argc, char ***argv)
{
    gq_error err;
    if (gq_plugin_load_list(getenv("GQ_PLUGINS"), &err)) {
        fprintf(stderr, "gq-bench: GQ_PLUGINS: %s\n", err.msg);
        return GQ_EXIT_USAGE;
    }
    int i = 1;
    while (i < *argc) {
        const char *a = (*argv)[i], *path;
        if (strcmp(a, "--plugin") == 0) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "gq-bench: --plugin: missing path of a shared object\n");
                return GQ_EXIT_USAGE;
            }
            path = (*argv)[i + 1];
            i += 2;
        } else if (strncmp(a, "--plugin=", 9) == 0) {
            path = a + 9;
            i += 1;
        } else {
            break;
        }
        if (gq_plugin_load(path, &err)) {
            fprintf(stderr, "gq-bench: --plugin: %s\n", err.msg);
            return GQ_EXIT_USAGE;
        }
    }
    /* argv[0] stays; the consumed options disappear. */
    (*argv)[i - 1] = (*argv)[0];
    *argv += i - 1;
    *argc -= i - 1;
    return GQ_EXIT_OK;
}
