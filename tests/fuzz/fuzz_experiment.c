/* libFuzzer target: experiment files: JSON load, validation of every key, file resolution,
 * sweep expansion and per-cell validation (gq_experiment_load), then the --dry-run listing.
 * Relative input paths resolve under FUZZ_ASSETS (small files in tests/fuzz/assets). Inputs
 * naming $.plugins are skipped: loading a shared object runs its code, which is trusted by
 * design and not the experiment reader's business. */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include "fuzz_util.h"
#include "runner/gq_experiment.h"

static FILE *g_null;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("GQ_ASSETS", FUZZ_ASSETS, 1);
    g_null = fopen("/dev/null", "w");
    return g_null ? 0 : 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *root = json_loadb((const char *)data, size, 0, NULL);
    bool plugins = json_object_get(root, "plugins") != NULL;
    json_decref(root);
    if (plugins)
        return -1;
    gq_experiment e;
    gq_error err = {{0}};
    if (gq_experiment_load(fuzz_write_file("experiment.json", data, size), &e, &err))
        return 0;
    gq_experiment_print_cells(&e, g_null);
    gq_experiment_free(&e);
    return 0;
}
