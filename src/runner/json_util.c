#include "runner/json_util.h"

#include <errno.h>
#include <libgen.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_assets.h"
#include "core/gq_fileio.h"
#include "qmodel/gq_qmodel.h"

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

int ju_strdup(const json_t *obj, const char *key, const char *path, const char *def, char **out,
              gq_error *err)
{
    *out = NULL;
    json_t *v = json_object_get(obj, key);
    if (!v && !def)
        return gq_fail(err, "%s: missing \"%s\"", path, key);
    if (v && !json_is_string(v))
        return gq_fail(err, "%s.%s: expected a string", path, key);
    if (v && json_string_length(v) == 0)
        return gq_fail(err, "%s.%s: must not be empty", path, key);
    *out = strdup(v ? json_string_value(v) : def);
    if (!*out)
        return gq_fail(err, "%s.%s: out of memory", path, key);
    return 0;
}

int ju_resolve(const char *name, const char *path, char *out, size_t n, gq_error *err)
{
    if (gq_asset_resolve(name, out, n, err))
        return gq_fail_prefix(err, "%s", path);
    struct stat st; /* validation reads inputs whole: a device or FIFO would never end */
    if (stat(out, &st) != 0 || !S_ISREG(st.st_mode))
        return gq_fail(err, "%s: %s: not a regular file", path, out);
    return 0;
}

int ju_resolve_model(const char *name, const char *path, char *out, size_t n, gq_error *err)
{
    if (gq_asset_resolve(name, out, n, err))
        return gq_fail_prefix(err, "%s", path);
    struct stat st;
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) {
        char dir[4200]; /* a directory of a native file stands for the file */
        snprintf(dir, sizeof dir, "%s", out);
        return gq_model_path_resolve(dir, out, n, err) ? gq_fail_prefix(err, "%s", path) : 0;
    }
    return ju_resolve(name, path, out, n, err);
}

int ju_find_config(const char *name, const char *exp_file, const char *path, char *out, size_t n,
                   gq_error *err)
{
    if (gq_file_exists(name)) {
        snprintf(out, n, "%s", name);
        return 0;
    }
    char *dir = strdup(exp_file);
    if (!dir)
        return gq_fail(err, "%s: out of memory", path);
    const char *d = dirname(dir);
    int rc = 0;
    snprintf(out, n, "%s/%s", d, name);
    if (name[0] != '/' && gq_file_exists(out))
        goto done;
    snprintf(out, n, "%s/../%s", d, name);
    if (name[0] != '/' && gq_file_exists(out))
        goto done;
    rc = gq_fail(err, "%s: file \"%s\" not found (looked in the working directory, %s and %s/..)",
                 path, name, d, d);
done:
    free(dir);
    return rc;
}

/* jansson's message without the quoted input: "... near 'xyz'" -> "...". */
static void unquoted(const char *text, char *out, size_t n)
{
    snprintf(out, n, "%s", text);
    char *near = strstr(out, " near '");
    if (near)
        *near = '\0';
}

json_t *ju_load(const char *file, bool quote, gq_error *err)
{
    json_error_t je;
    struct stat st;
    if (stat(file, &st) != 0) { /* says "no such file" or names a symlink loop as such */
        gq_fail(err, "%s: %s", file, strerror(errno));
        return NULL;
    }
    char *text;
    size_t len;
    if (gq_read_file(file, &text, &len, err))
        return NULL;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root) {
        char msg[sizeof je.text];
        if (quote)
            snprintf(msg, sizeof msg, "%s", je.text);
        else
            unquoted(je.text, msg, sizeof msg);
        gq_fail(err, "%s: line %d, column %d: %s", file, je.line, je.column, msg);
    }
    return root;
}
