#include "runner/json_util.h"

#include <libgen.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "core/gq_assets.h"
#include "core/gq_fileio.h"

int ju_check_keys(const json_t *obj, const char *path, const char *const *allowed, gq_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        bool ok = false;
        for (int i = 0; allowed[i] && !ok; i++)
            ok = strcmp(allowed[i], key) == 0;
        if (!ok) {
            char known[512] = "";
            for (int i = 0; allowed[i]; i++) {
                size_t len = strlen(known);
                snprintf(known + len, sizeof known - len, "%s%s", i ? ", " : "", allowed[i]);
            }
            return gq_fail(err, "%s.%s: unknown key (known: %s)", path, key, known);
        }
    }
    return 0;
}

int ju_string(const json_t *obj, const char *key, const char *path, const char *def, char *out,
              size_t n, gq_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (!def)
            return gq_fail(err, "%s: missing \"%s\"", path, key);
        snprintf(out, n, "%s", def);
        return 0;
    }
    if (!json_is_string(v))
        return gq_fail(err, "%s.%s: expected a string", path, key);
    if (json_string_length(v) == 0)
        return gq_fail(err, "%s.%s: must not be empty", path, key);
    if (json_string_length(v) >= n)
        return gq_fail(err, "%s.%s: longer than %zu characters", path, key, n - 1);
    snprintf(out, n, "%s", json_string_value(v));
    return 0;
}

int ju_int(const json_t *obj, const char *key, const char *path, bool required, long long def,
           long long min, long long max, long long *out, gq_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required)
            return gq_fail(err, "%s: missing \"%s\"", path, key);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v))
        return gq_fail(err, "%s.%s: expected an integer", path, key);
    long long x = json_integer_value(v);
    if (x < min || x > max)
        return gq_fail(err, "%s.%s: %lld is outside %lld..%lld", path, key, x, min, max);
    *out = x;
    return 0;
}

int ju_file(const json_t *obj, const char *key, const char *path, char *out, size_t n,
            gq_error *err)
{
    char name[1024];
    if (ju_string(obj, key, path, NULL, name, sizeof name, err))
        return -1;
    if (gq_asset_resolve(name, out, n, err))
        return gq_fail_prefix(err, "%s.%s", path, key);
    return 0;
}

int ju_find_config(const char *name, const char *exp_file, const char *path, char *out, size_t n,
                   gq_error *err)
{
    if (gq_file_exists(name)) {
        snprintf(out, n, "%s", name);
        return 0;
    }
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", exp_file);
    char *d = dirname(dir);
    snprintf(out, n, "%s/%s", d, name);
    if (name[0] != '/' && gq_file_exists(out))
        return 0;
    snprintf(out, n, "%s/../%s", d, name);
    if (name[0] != '/' && gq_file_exists(out))
        return 0;
    return gq_fail(err, "%s: file \"%s\" not found (looked in the working directory, %s and %s/..)",
                   path, name, d, d);
}

json_t *ju_load(const char *file, gq_error *err)
{
    json_error_t je;
    if (!gq_file_exists(file)) {
        gq_fail(err, "%s: file not found", file);
        return NULL;
    }
    char *text;
    size_t len;
    if (gq_read_file(file, &text, &len, err))
        return NULL;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root)
        gq_fail(err, "%s: line %d, column %d: %s", file, je.line, je.column, je.text);
    return root;
}
