#include "core/gq_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int gq_fail(gq_error *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int gq_fail_prefix(gq_error *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    char prefix[GQ_ERROR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[GQ_ERROR_LEN];
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
    return -1;
}

void gq_error_clear(gq_error *err)
{
    if (err)
        err->msg[0] = '\0';
}
