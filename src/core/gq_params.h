#ifndef GQ_PARAMS_H
#define GQ_PARAMS_H
/* Declarative, strict parameter parsing for plugins (formats and methods).
 *
 * A plugin describes its parameters once, as a table of gq_param_spec pointing into its own
 * parameter struct; the same table gives defaults, JSON parsing with precise errors, a
 * canonical JSON form for result files, and the `gq-bench list` help text.
 *
 *   typedef struct { int bits; int group_size; bool clip; } my_params;
 *   static const char *const zero_names[] = {"sym", "asym", NULL};
 *   static const gq_param_spec my_specs[] = {
 *       {"bits", GQ_PARAM_INT, offsetof(my_params, bits), "4", 2, 8, NULL, "bits per weight"},
 *       ...
 *       {0}};
 *
 * Errors name the JSON path: "$.methods[2].format.bits: 9 is outside 2..8". */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "core/gq_error.h"

typedef enum {
    GQ_PARAM_INT,    /* field type: int    ; JSON integer within [min, max]            */
    GQ_PARAM_FLOAT,  /* field type: double ; JSON number (integer accepted) in [min, max] */
    GQ_PARAM_BOOL,   /* field type: bool   ; JSON true/false                            */
    GQ_PARAM_CHOICE, /* field type: int    ; JSON string, one of `choices`, stored as its index */
    GQ_PARAM_STRING, /* field type: char * ; JSON non-empty string of any length, owned by the
                        struct (gq_params_release frees it); default NULL when `def` is "" */
    GQ_PARAM_U64,    /* field type: uint64_t; JSON integer in [min, max] (JSON integers end at
                        INT64_MAX) */
} gq_param_type;

typedef struct gq_param_spec {
    const char *key;             /* NULL ends the table */
    gq_param_type type;
    size_t offset;               /* offsetof(struct, field) */
    const char *def;             /* default as written in JSON, choices without quotes: "4", "0.01", "true", "asym";
                                    NULL: the key is required */
    double min, max;             /* inclusive bounds for INT and FLOAT */
    const char *const *choices;  /* NULL-terminated names for CHOICE */
    const char *doc;             /* one line for `gq-bench list` */
} gq_param_spec;

/* Number of entries before the NULL key. */
int gq_params_count(const gq_param_spec *specs);

/* Writes every default into `out` (required keys: zero). Defaults are trusted (checked by the
 * unit tests). */
void gq_params_defaults(const gq_param_spec *specs, void *out);

/* Frees the strings of a parsed struct (GQ_PARAM_STRING fields) and sets them to NULL. */
void gq_params_release(const gq_param_spec *specs, void *p);

/* Defaults, then the values in `obj` (a JSON object, or NULL for defaults only). `path` is the
 * JSON path of obj used in messages (for example "$.methods[0].format"); NULL means "$". */
int gq_params_parse(const gq_param_spec *specs, const json_t *obj, const char *path, void *out,
                    gq_error *err);

/* Canonical JSON object of all parameters in table order (new reference). */
json_t *gq_params_to_json(const gq_param_spec *specs, const void *in);

/* One field as text ("4", "0.01", "true", "asym") for tables and file names. */
void gq_params_value_str(const gq_param_spec *spec, const void *in, char *buf, size_t n);

/* Looks up a spec by key; NULL if absent. */
const gq_param_spec *gq_params_find(const gq_param_spec *specs, const char *key);

/* Prints "  key  type  default  [range|choices]  doc" lines for the help text. */
void gq_params_print(FILE *f, const gq_param_spec *specs, const char *indent);

/* Whether `name` can be a registry key (a format, method or parameter name that appears in
 * JSON, tables and file names): 1 to 31 characters of a-z, 0-9 and '_'. */
bool gq_params_name_valid(const char *name);

/* A plugin's parameter struct: allocates `size` bytes, fills defaults and the values of `obj`
 * (gq_params_parse), then runs the plugin's optional cross-field `validate`. *out is freed and
 * NULL on failure. */
int gq_params_new(const gq_param_spec *specs, size_t size,
                  int (*validate)(const void *params, const char *path, gq_error *err),
                  const json_t *obj, const char *path, void **out, gq_error *err);

/* Splits a plugin reference into its name and parameters: "name" alone, or an object
 * {"name": ..., params...}. *params is a new object without "name" (NULL for a bare string).
 * `kind` ("format", "method") names the plugin kind in messages. */
int gq_params_split_named(const json_t *spec, const char *path, const char *kind,
                          const char **name, json_t **params, gq_error *err);

/* Applies command-line overrides "key=value" to a JSON object (created if *obj is NULL).
 * The value is read as JSON when it parses (3, 0.5, true, "x") and as a string otherwise. */
int gq_params_apply_set(json_t **obj, const char *assignment, gq_error *err);

/* A count from the environment variable `name`: *out = dflt when it is unset, else its value,
 * which must be a plain decimal integer >= min; otherwise an error naming the variable and
 * saying what it must be (`what`, e.g. "a byte count (a non-negative integer)"). */
int gq_params_env_count(const char *name, const char *what, unsigned long long dflt,
                        unsigned long long min, unsigned long long *out, gq_error *err);

#endif
