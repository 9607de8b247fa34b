#ifndef GQ_RUNNER_JSON_UTIL_H
#define GQ_RUNNER_JSON_UTIL_H
/* Strict readers for experiment JSON: every message names the JSON path of the bad value. */
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "core/gq_error.h"

/* Fails on any key of obj that is not in `allowed` (NULL-terminated). */
int ju_check_keys(const json_t *obj, const char *path, const char *const *allowed, gq_error *err);
/* Object member `key` as a string; absent: `def` (NULL def = required). */
int ju_string(const json_t *obj, const char *key, const char *path, const char *def, char *out,
              size_t n, gq_error *err);
/* Integer member within [min, max]; absent: def (required when `required`). */
int ju_int(const json_t *obj, const char *key, const char *path, bool required, long long def,
           long long min, long long max, long long *out, gq_error *err);
/* A file named by string member `key`, resolved through the assets directory. */
int ju_file(const json_t *obj, const char *key, const char *path, char *out, size_t n,
            gq_error *err);
/* A configs/ file named relative to the working directory, the experiment's directory or its
 * parent; fails naming `path`. */
int ju_find_config(const char *name, const char *exp_file, const char *path, char *out, size_t n,
                   gq_error *err);
/* Loads a JSON file; the message names the file, line and column of a syntax error. */
json_t *ju_load(const char *file, gq_error *err);

#endif
