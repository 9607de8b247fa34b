#ifndef GQ_CLI_H
#define GQ_CLI_H
/* Shared helpers for the subcommands. Exit statuses: 0 success, 1 the work failed,
 * 2 the command line or an input file is invalid (nothing was done). */
#include "core/gq_error.h"

#define GQ_EXIT_OK 0
#define GQ_EXIT_FAIL 1
#define GQ_EXIT_USAGE 2

/* Prints "gq-bench CMD: message" and a hint to --help; returns GQ_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "gq-bench CMD: <err->msg>"; returns `status`. */
int cli_report(const char *cmd, const gq_error *err, int status);

/* Parses an integer option value in [min, max]; on failure prints a usage error and returns
 * -1. */
int cli_int(const char *cmd, const char *opt, const char *val, long min, long max, long *out);
int cli_double(const char *cmd, const char *opt, const char *val, double min, double max,
               double *out);

/* A cli_opts CLI_CALL parser for --set key=value: adds the assignment to the json_t * object
 * that `field` points to (gq_params_apply_set). */
int cli_set_param(void *field, const char *assignment, gq_error *err);

#endif
