#ifndef GQ_ERROR_H
#define GQ_ERROR_H
/* Error reporting for the library.
 *
 * Library functions never print and never exit: they return 0 on success or -1 on failure
 * and fill a gq_error with one line that names what caused it (file, JSON path, tensor,
 * parameter). The CLI prints that line and exits non-zero. */
#include <stddef.h>

#define GQ_ERROR_LEN 1024

typedef struct gq_error {
    char msg[GQ_ERROR_LEN];
} gq_error;

/* Sets the message (printf-style) and returns -1, so that `return gq_fail(err, ...)` works.
 * err may be NULL (the message is dropped). */
int gq_fail(gq_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends context to an existing message: "<prefix>: <old message>". Returns -1. */
int gq_fail_prefix(gq_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clears the message. */
void gq_error_clear(gq_error *err);

#endif
