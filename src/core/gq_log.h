#ifndef GQ_LOG_H
#define GQ_LOG_H
/* Logging to stderr and a progress line for long work.
 *
 * Log lines go to stderr prefixed with the elapsed time. The progress line redraws in place
 * (with "\r") only when stderr is a terminal; otherwise it prints a plain line at most every
 * few seconds and at the end, so logs in CI stay readable. */
#include <stdbool.h>

typedef enum { GQ_LOG_QUIET = 0, GQ_LOG_WARN = 1, GQ_LOG_INFO = 2, GQ_LOG_DEBUG = 3 } gq_log_level;

void gq_log_set_level(gq_log_level level);
gq_log_level gq_log_get_level(void);

void gq_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void gq_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void gq_log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Progress over `total` units of work. Thread-safe to update from inside OpenMP loops. */
typedef struct gq_progress {
    char label[96];
    long total;
    long done;
    double t_start;
    double t_last_print;
    bool tty;
    bool active;
} gq_progress;

void gq_progress_start(gq_progress *p, const char *label, long total);
/* Adds `n` finished units and redraws if due. */
void gq_progress_add(gq_progress *p, long n);
/* Changes the label (for example the current stage) without changing the counts. */
void gq_progress_stage(gq_progress *p, const char *label);
/* Prints the final line (elapsed time) and ends the progress display. */
void gq_progress_finish(gq_progress *p);

#endif
