#include "core/gq_params.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int gq_params_count(const gq_param_spec *specs)
{
    int n = 0;
    while (specs && specs[n].key)
        n++;
    return n;
}

static int choice_index(const gq_param_spec *s, const char *name)
{
    for (int i = 0; s->choices && s->choices[i]; i++)
        if (strcmp(s->choices[i], name) == 0)
            return i;
    return -1;
}

static void choices_list(const gq_param_spec *s, char *buf, size_t n)
{
    buf[0] = '\0';
    for (int i = 0; s->choices && s->choices[i]; i++) {
        size_t len = strlen(buf);
        snprintf(buf + len, n - len, "%s\"%s\"", i ? ", " : "", s->choices[i]);
    }
}

static void set_default(const gq_param_spec *s, void *out)
{
    char *field = (char *)out + s->offset;
    if (!s->def) { /* required: zero until parsed */
        if (s->type == GQ_PARAM_STRING)
            *(char **)field = NULL;
        else if (s->type == GQ_PARAM_FLOAT)
            *(double *)field = 0;
        else if (s->type == GQ_PARAM_BOOL)
            *(bool *)field = false;
        else if (s->type == GQ_PARAM_U64)
            *(uint64_t *)field = 0;
        else
            *(int *)field = 0;
        return;
    }
    switch (s->type) {
    case GQ_PARAM_INT:
        *(int *)field = atoi(s->def);
        break;
    case GQ_PARAM_FLOAT:
        *(double *)field = strtod(s->def, NULL);
        break;
    case GQ_PARAM_BOOL:
        *(bool *)field = strcmp(s->def, "true") == 0;
        break;
    case GQ_PARAM_CHOICE:
        *(int *)field = choice_index(s, s->def);
        break;
    case GQ_PARAM_STRING:
        *(char **)field = s->def[0] ? strdup(s->def) : NULL;
        break;
    case GQ_PARAM_U64:
        *(uint64_t *)field = strtoull(s->def, NULL, 10);
        break;
    }
}

void gq_params_release(const gq_param_spec *specs, void *p)
{
    for (const gq_param_spec *s = specs; p && s && s->key; s++)
        if (s->type == GQ_PARAM_STRING) {
            char **field = (char **)((char *)p + s->offset);
            free(*field);
            *field = NULL;
        }
}

void gq_params_defaults(const gq_param_spec *specs, void *out)
{
    for (const gq_param_spec *s = specs; s && s->key; s++)
        set_default(s, out);
}

const gq_param_spec *gq_params_find(const gq_param_spec *specs, const char *key)
{
    for (const gq_param_spec *s = specs; s && s->key; s++)
        if (strcmp(s->key, key) == 0)
            return s;
    return NULL;
}

static void fmt_num(double v, char *buf, size_t n)
{
    if (v >= (double)INT64_MAX) /* the JSON integers' limit, not its rounded double */
        snprintf(buf, n, "%lld", (long long)INT64_MAX);
    else if (v == floor(v) && fabs(v) < 1e15)
        snprintf(buf, n, "%.0f", v);
    else
        snprintf(buf, n, "%g", v);
}

static int parse_one(const gq_param_spec *s, const json_t *v, const char *path, void *out,
                     gq_error *err)
{
    char *field = (char *)out + s->offset;
    char lo[32], hi[32];
    fmt_num(s->min, lo, sizeof lo);
    fmt_num(s->max, hi, sizeof hi);
    switch (s->type) {
    case GQ_PARAM_INT: {
        if (!json_is_integer(v))
            return gq_fail(err, "%s.%s: expected an integer", path, s->key);
        json_int_t x = json_integer_value(v);
        if ((double)x < s->min || (double)x > s->max)
            return gq_fail(err, "%s.%s: %lld is outside %s..%s", path, s->key, (long long)x, lo, hi);
        *(int *)field = (int)x;
        return 0;
    }
    case GQ_PARAM_FLOAT: {
        if (!json_is_number(v))
            return gq_fail(err, "%s.%s: expected a number", path, s->key);
        double x = json_number_value(v);
        if (!isfinite(x) || x < s->min || x > s->max)
            return gq_fail(err, "%s.%s: %g is outside %s..%s", path, s->key, x, lo, hi);
        *(double *)field = x;
        return 0;
    }
    case GQ_PARAM_BOOL:
        if (!json_is_boolean(v))
            return gq_fail(err, "%s.%s: expected true or false", path, s->key);
        *(bool *)field = json_is_true(v);
        return 0;
    case GQ_PARAM_CHOICE: {
        char list[512];
        choices_list(s, list, sizeof list);
        if (!json_is_string(v))
            return gq_fail(err, "%s.%s: expected a string, one of %s", path, s->key, list);
        int idx = choice_index(s, json_string_value(v));
        if (idx < 0)
            return gq_fail(err, "%s.%s: \"%s\" is not one of %s", path, s->key,
                           json_string_value(v), list);
        *(int *)field = idx;
        return 0;
    }
    case GQ_PARAM_STRING: {
        if (!json_is_string(v))
            return gq_fail(err, "%s.%s: expected a string", path, s->key);
        if (json_string_length(v) == 0)
            return gq_fail(err, "%s.%s: must not be empty", path, s->key);
        char *copy = strdup(json_string_value(v));
        if (!copy)
            return gq_fail(err, "%s.%s: out of memory", path, s->key);
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    case GQ_PARAM_U64: {
        if (!json_is_integer(v))
            return gq_fail(err, "%s.%s: expected an integer", path, s->key);
        json_int_t x = json_integer_value(v);
        if (x < 0 || (double)x < s->min || (double)x > s->max)
            return gq_fail(err, "%s.%s: %lld is outside %s..%s", path, s->key, (long long)x, lo, hi);
        *(uint64_t *)field = (uint64_t)x;
        return 0;
    }
    }
    return gq_fail(err, "%s.%s: internal error: unknown parameter type", path, s->key);
}

static int check_required(const gq_param_spec *specs, const json_t *obj, const char *path,
                          gq_error *err)
{
    for (const gq_param_spec *s = specs; s && s->key; s++)
        if (!s->def && (!obj || !json_object_get(obj, s->key)))
            return gq_fail(err, "%s: missing \"%s\"", path, s->key);
    return 0;
}

int gq_params_parse(const gq_param_spec *specs, const json_t *obj, const char *path, void *out,
                    gq_error *err)
{
    if (!path)
        path = "$";
    gq_params_defaults(specs, out);
    if (!obj || json_is_null(obj))
        return check_required(specs, NULL, path, err);
    if (!json_is_object(obj))
        return gq_fail(err, "%s: expected an object of parameters", path);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        const gq_param_spec *s = gq_params_find(specs, key);
        if (!s) {
            char known[768] = "";
            for (const gq_param_spec *k = specs; k && k->key; k++) {
                size_t len = strlen(known);
                snprintf(known + len, sizeof known - len, "%s%s", len ? ", " : "", k->key);
            }
            return gq_fail(err, "%s.%s: unknown key (known: %s)", path, key,
                           known[0] ? known : "none");
        }
        if (parse_one(s, v, path, out, err))
            return -1;
    }
    return check_required(specs, obj, path, err);
}

json_t *gq_params_to_json(const gq_param_spec *specs, const void *in)
{
    json_t *o = json_object();
    for (const gq_param_spec *s = specs; s && s->key; s++) {
        const char *field = (const char *)in + s->offset;
        json_t *v = NULL;
        switch (s->type) {
        case GQ_PARAM_INT:
            v = json_integer(*(const int *)field);
            break;
        case GQ_PARAM_FLOAT:
            v = json_real(*(const double *)field);
            break;
        case GQ_PARAM_BOOL:
            v = json_boolean(*(const bool *)field);
            break;
        case GQ_PARAM_CHOICE:
            v = json_string(s->choices[*(const int *)field]);
            break;
        case GQ_PARAM_STRING:
            v = *(char *const *)field ? json_string(*(char *const *)field) : json_null();
            break;
        case GQ_PARAM_U64:
            v = json_integer((json_int_t)*(const uint64_t *)field);
            break;
        }
        json_object_set_new(o, s->key, v);
    }
    return o;
}

void gq_params_value_str(const gq_param_spec *s, const void *in, char *buf, size_t n)
{
    const char *field = (const char *)in + s->offset;
    switch (s->type) {
    case GQ_PARAM_INT:
        snprintf(buf, n, "%d", *(const int *)field);
        break;
    case GQ_PARAM_FLOAT:
        snprintf(buf, n, "%g", *(const double *)field);
        break;
    case GQ_PARAM_BOOL:
        snprintf(buf, n, "%s", *(const bool *)field ? "true" : "false");
        break;
    case GQ_PARAM_CHOICE:
        snprintf(buf, n, "%s", s->choices[*(const int *)field]);
        break;
    case GQ_PARAM_STRING:
        snprintf(buf, n, "%s", *(char *const *)field ? *(char *const *)field : "");
        break;
    case GQ_PARAM_U64:
        snprintf(buf, n, "%llu", (unsigned long long)*(const uint64_t *)field);
        break;
    }
}

void gq_params_print(FILE *f, const gq_param_spec *specs, const char *indent)
{
    static const char *type_names[] = {"int", "number", "bool", "choice", "string", "int"};
    for (const gq_param_spec *s = specs; s && s->key; s++) {
        char range[512] = "";
        if (s->type == GQ_PARAM_INT || s->type == GQ_PARAM_FLOAT || s->type == GQ_PARAM_U64) {
            char lo[32], hi[32];
            fmt_num(s->min, lo, sizeof lo);
            fmt_num(s->max, hi, sizeof hi);
            snprintf(range, sizeof range, "%s..%s", lo, hi);
        } else if (s->type == GQ_PARAM_CHOICE) {
            choices_list(s, range, sizeof range);
        }
        fprintf(f, "%s%-16s %-6s default %-8s %s%s%s\n", indent, s->key, type_names[s->type],
                !s->def ? "(required)" : s->def[0] ? s->def : "none", range[0] ? "[" : "",
                range, range[0] ? "]" : "");
        if (s->doc && s->doc[0])
            fprintf(f, "%s%18s%s\n", indent, "", s->doc);
    }
}

bool gq_params_name_valid(const char *s)
{
    if (!s || !*s || strlen(s) > 31)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

int gq_params_new(const gq_param_spec *specs, size_t size,
                  int (*validate)(const void *params, const char *path, gq_error *err),
                  const json_t *obj, const char *path, void **out, gq_error *err)
{
    *out = NULL;
    void *p = calloc(1, size ? size : 1);
    if (!p)
        return gq_fail(err, "%s: out of memory", path ? path : "$");
    if (gq_params_parse(specs, obj, path, p, err) || (validate && validate(p, path, err))) {
        gq_params_release(specs, p);
        free(p);
        return -1;
    }
    *out = p;
    return 0;
}

int gq_params_split_named(const json_t *spec, const char *path, const char *kind,
                          const char **name, json_t **params, gq_error *err)
{
    *name = NULL;
    *params = NULL;
    if (json_is_string(spec)) {
        *name = json_string_value(spec);
        return 0;
    }
    if (!json_is_object(spec))
        return gq_fail(err, "%s: expected a %s object {\"name\": ..., parameters}", path, kind);
    json_t *n = json_object_get(spec, "name");
    if (!n)
        return gq_fail(err, "%s: missing \"name\" of the %s", path, kind);
    if (!json_is_string(n))
        return gq_fail(err, "%s.name: expected a string", path);
    *name = json_string_value(n);
    *params = json_deep_copy(spec);
    json_object_del(*params, "name");
    return 0;
}

int gq_params_apply_set(json_t **obj, const char *assignment, gq_error *err)
{
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return gq_fail(err, "'%s': expected key=value", assignment);
    char key[128];
    size_t klen = (size_t)(eq - assignment);
    if (klen >= sizeof key)
        return gq_fail(err, "'%s': key too long", assignment);
    memcpy(key, assignment, klen);
    key[klen] = '\0';
    json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
    if (!v)
        v = json_string(eq + 1);
    if (!*obj)
        *obj = json_object();
    json_object_set_new(*obj, key, v);
    return 0;
}

int gq_params_env_count(const char *name, const char *what, unsigned long long dflt,
                        unsigned long long min, unsigned long long *out, gq_error *err)
{
    const char *s = getenv(name);
    *out = dflt;
    if (!s)
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!isdigit((unsigned char)s[0]) || *end || errno || v < min)
        return gq_fail(err, "%s: '%s' is not %s", name, s, what);
    *out = v;
    return 0;
}
