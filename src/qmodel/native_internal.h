#ifndef GQ_NATIVE_INTERNAL_H
#define GQ_NATIVE_INTERNAL_H
/* Shared by the native writer and reader: the metadata's marker and version, and the model
 * configuration as JSON. */
#include <jansson.h>

#include "core/gq_error.h"
#include "model/gq_model.h"

#define NATIVE_MAGIC "gq-bench-native"
#define NATIVE_VERSION 1

/* Every gq_config field as a JSON object (floats exactly: doubles of float values). */
json_t *native_config_to_json(const gq_config *c);
/* The inverse; unknown or missing keys and values out of range are errors naming `what` and
 * the key; the result is checked with gq_config_check. */
int native_config_from_json(const json_t *o, const char *what, gq_config *c, gq_error *err);

#endif
