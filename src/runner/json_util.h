#ifndef GQ_RUNNER_JSON_UTIL_H
#define GQ_RUNNER_JSON_UTIL_H
/* Strict readers for experiment JSON: every message names the JSON path of the bad value.
 * Sections with scalar parameters are parsed with gq_params tables (core/gq_params.h); these
 * helpers serve the parts that hold JSON objects (methods, overrides, sweeps). */
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "core/gq_error.h"

/* Fails on any key of obj that is not in `allowed` (NULL-terminated). */
int ju_check_keys(const json_t *obj, const char *path, const char *const *allowed, gq_error *err);
/* Object member `key` as a new non-empty string of any length (free it); absent: a copy of
 * `def` (NULL def = required). */
int ju_strdup(const json_t *obj, const char *key, const char *path, const char *def, char **out,
              gq_error *err);
/* The file `name` (given at JSON path `path`) resolved through the assets directory; it must
 * be a regular file. */
int ju_resolve(const char *name, const char *path, char *out, size_t n, gq_error *err);
/* The same for a model: a regular file or a Hugging Face model directory (with config.json). */
int ju_resolve_model(const char *name, const char *path, char *out, size_t n, gq_error *err);
/* A configs/ file named relative to the working directory, the experiment's directory or its
 * parent; fails naming `path`. */
int ju_find_config(const char *name, const char *exp_file, const char *path, char *out, size_t n,
                   gq_error *err);
/* Loads a JSON file; the message names the file, line and column of a syntax error, and
 * quotes the text near it only when `quote` (an included file may be any file on the system,
 * whose content does not belong in a message). */
json_t *ju_load(const char *file, bool quote, gq_error *err);

#endif
