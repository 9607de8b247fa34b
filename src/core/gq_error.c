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
    char old[GQ_ERROR_LEN];
    memcpy(old, err->msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof err->msg - 2)
        return -1; /* the prefix alone fills the message */
    size_t used = (size_t)n;
    memcpy(err->msg + used, ": ", 2);
    used += 2;
    size_t left = sizeof err->msg - used - 1;
    size_t len = strnlen(old, sizeof old);
    if (len > left)
        len = left;
    memcpy(err->msg + used, old, len);
    err->msg[used + len] = '\0';
    return -1;
}

void gq_error_clear(gq_error *err)
{
    if (err)
        err->msg[0] = '\0';
}
