#include "core/gq_time.h"

#include <sys/resource.h>
#include <time.h>

double gq_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double g_t0;

__attribute__((constructor)) static void init_t0(void) { g_t0 = gq_now(); }

double gq_elapsed(void) { return gq_now() - g_t0; }

long gq_peak_rss_bytes(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return -1;
    return ru.ru_maxrss * 1024L; /* Linux reports kilobytes */
}
