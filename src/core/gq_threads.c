#include "core/gq_threads.h"

#include <omp.h>
#include <stdio.h>

/* From OpenBLAS's cblas.h; declared here so core does not need the BLAS headers' path. */
void openblas_set_num_threads(int num_threads);
char *openblas_get_config(void);
int openblas_get_parallel(void);

static int g_threads = 0;

int gq_threads_set(int n)
{
    if (n <= 0)
        n = omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
    g_threads = n;
    return n;
}

int gq_threads_get(void) { return g_threads > 0 ? g_threads : omp_get_max_threads(); }

const char *gq_blas_description(void)
{
    static char buf[256];
    static const char *modes[] = {"sequential", "pthreads", "OpenMP"};
    int par = openblas_get_parallel();
    snprintf(buf, sizeof buf, "%s (%s)", openblas_get_config(),
             par >= 0 && par <= 2 ? modes[par] : "unknown threading");
    return buf;
}
