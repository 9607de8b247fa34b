#ifndef GQ_CLI_FORMATS_H
#define GQ_CLI_FORMATS_H
/* Formats named on the command line, shared by the benchmarks of packed kernels. */
#include "core/gq_error.h"
#include "formats/gq_format.h"

/* A quantizer from a registry name ("q4_0") or a JSON object ("{\"name\": \"int\", ...}");
 * `opt` names the option in messages. */
int cli_quantizer_from_spec(const char *spec, const char *opt, gq_quantizer *q, gq_error *err);

/* The formats that `--format all` of the packed benchmarks runs, in table order. */
extern const char *const cli_packed_specs[];
extern const int cli_n_packed_specs;

#endif
