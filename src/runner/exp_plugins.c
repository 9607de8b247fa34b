/* $.plugins: shared objects an experiment needs (out-of-tree formats and methods), loaded
 * before its methods and formats are parsed. Relative paths are relative to the experiment
 * file's directory. Each loaded file's path and sha256 go into e->plugins (provenance and
 * resume key). */
#include <libgen.h>
#include <string.h>

#include "core/gq_sha256.h"
#include "plugin/gq_plugin.h"
#include "runner/runner_internal.h"

int gq_exp_load_plugins(gq_experiment *e, json_t *root, gq_error *err)
{
    json_t *arr = json_object_get(root, "plugins");
    if (!arr)
        return 0;
    if (!json_is_array(arr))
        return gq_fail(err, "$.plugins: expected an array of shared-object paths");
    e->plugins = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        if (!json_is_string(v) || !json_string_length(v))
            return gq_fail(err, "$.plugins[%zu]: expected a non-empty path string", i);
        const char *name = json_string_value(v);
        char file[2048], dir[1024];
        snprintf(dir, sizeof dir, "%s", e->file);
        if (name[0] == '/')
            snprintf(file, sizeof file, "%s", name);
        else
            snprintf(file, sizeof file, "%s/%s", dirname(dir), name);
        char sha[65];
        if (gq_sha256_file(file, sha, err) || gq_plugin_load(file, err))
            return gq_fail_prefix(err, "$.plugins[%zu]", i);
        json_array_append_new(e->plugins, json_pack("{s:s, s:s}", "path", file, "sha256", sha));
    }
    return 0;
}
