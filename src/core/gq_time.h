#ifndef GQ_TIME_H
#define GQ_TIME_H
/* Monotonic wall-clock time in seconds, and the time since the process started. */
double gq_now(void);
double gq_elapsed(void);
/* Peak resident set size of this process in bytes (from getrusage). */
long gq_peak_rss_bytes(void);
#endif
