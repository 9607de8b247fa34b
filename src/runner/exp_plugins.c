/* $.plugins: shared objects an experiment needs (out-of-tree formats and methods), loaded
 * before its methods and formats are parsed. Relative paths are relative to the experiment
 * file's directory. Each loaded file's path and sha256 go into e->plugins (provenance and
 * resume key). */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_sha256.h"
#include "plugin/gq_plugin.h"
#include "runner/runner_internal.h"

/* `name` as given when absolute, else relative to the experiment file's directory (malloc'd). */
static char *plugin_path(const char *exp_file, const char *name)
{
    char *dir = strdup(exp_file);
    if (!dir)
        return NULL;
    const char *d = name[0] == '/' ? "" : dirname(dir);
    size_t n = strlen(d) + strlen(name) + 2;
    char *file = malloc(n);
    if (file)
        snprintf(file, n, "%s%s%s", d, d[0] ? "/" : "", name);
    free(dir);
    return file;
}

int gq_exp_load_plugins(gq_experiment *e, json_t *root, gq_error *err)
{
    json_t *arr = json_object_get(root, "plugins");
    if (!arr)
        return 0;
    if (!json_is_array(arr))
        return gq_fail(err, "$.plugins: expected an array of shared-object paths");
    e->plugins = json_array();
    if (!e->plugins)
        return gq_fail(err, "$.plugins: out of memory");
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        if (!json_is_string(v) || !json_string_length(v))
            return gq_fail(err, "$.plugins[%zu]: expected a non-empty path string", i);
        char *file = plugin_path(e->file, json_string_value(v));
        if (!file)
            return gq_fail(err, "$.plugins[%zu]: out of memory", i);
        char sha[65];
        int rc = gq_sha256_file(file, sha, err) || gq_plugin_load(file, err);
        if (rc == 0 && json_array_append_new(e->plugins, json_pack("{s:s, s:s}", "path", file,
                                                                   "sha256", sha))) {
            free(file);
            return gq_fail(err, "$.plugins[%zu]: out of memory", i);
        }
        free(file);
        if (rc)
            return gq_fail_prefix(err, "$.plugins[%zu]", i);
    }
    return 0;
}
