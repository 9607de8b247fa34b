#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/gq_params.h"
#include "dist/gq_dist.h"

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "gq-bench %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'gq-bench %s --help'.\n", cmd);
    /* Under mpirun every rank reads its own command line before any step the ranks take
     * together: a rank that stopped here would leave the others waiting for it in their first
     * one, so it ends the whole job. */
    if (gq_dist_size() > 1)
        gq_dist_abort(GQ_EXIT_USAGE);
    return GQ_EXIT_USAGE;
}

int cli_report(const char *cmd, const gq_error *err, int status)
{
    fprintf(stderr, "gq-bench %s: %s\n", cmd, err->msg[0] ? err->msg : "failed");
    return status;
}

int cli_int(const char *cmd, const char *opt, const char *val, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end != '\0') {
        cli_usage_error(cmd, "%s: '%s' is not an integer", opt, val);
        return -1;
    }
    if (v < min || v > max) {
        cli_usage_error(cmd, "%s: %ld is outside %ld..%ld", opt, v, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_double(const char *cmd, const char *opt, const char *val, double min, double max,
               double *out)
{
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end != '\0' || !isfinite(v)) {
        cli_usage_error(cmd, "%s: '%s' is not a number", opt, val);
        return -1;
    }
    if (v < min || v > max) {
        cli_usage_error(cmd, "%s: %g is outside %g..%g", opt, v, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_set_param(void *field, const char *assignment, gq_error *err)
{
    return gq_params_apply_set((json_t **)field, assignment, err);
}
