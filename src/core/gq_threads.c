#include "core/gq_threads.h"

#include <omp.h>
#include <pthread.h>
#include <stdio.h>

/* From OpenBLAS's cblas.h; declared here so core does not need the BLAS headers' path. */
void openblas_set_num_threads(int num_threads);
char *openblas_get_config(void);
char *openblas_get_corename(void);
int openblas_get_parallel(void);

enum { BLAS_SEQUENTIAL, BLAS_PTHREADS, BLAS_OPENMP }; /* openblas_get_parallel() */

static int g_threads = 0;

int gq_threads_set(int n)
{
    if (n <= 0)
        n = omp_get_num_procs();
    /* Every BLAS call runs on one thread (our tiles are the parallelism, see gq_gemm.h). An
     * OpenMP OpenBLAS follows the calling task's OpenMP thread count, which gq_gemm sets to 1
     * inside its tiles; its openblas_set_num_threads also sets OpenMP's count, so it gets n.
     * A pthreads OpenBLAS keeps its own pool, held at one thread. */
    omp_set_num_threads(n);
    openblas_set_num_threads(openblas_get_parallel() == BLAS_OPENMP ? n : 1);
    g_threads = n;
    return n;
}

int gq_threads_get(void) { return g_threads > 0 ? g_threads : omp_get_max_threads(); }

const char *gq_blas_kernel(void) { return openblas_get_corename(); }

/* openblas_get_config appends to a static buffer on every call (not thread-safe, and the text
 * grows), so the description is composed once and shared. */
static char g_blas_description[320];

static void describe_blas(void)
{
    static const char *modes[] = {"sequential", "pthreads", "OpenMP"};
    int par = openblas_get_parallel();
    snprintf(g_blas_description, sizeof g_blas_description, "%s (%s; kernel %s)",
             openblas_get_config(), par >= 0 && par <= 2 ? modes[par] : "unknown threading",
             gq_blas_kernel());
}

const char *gq_blas_description(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, describe_blas);
    return g_blas_description;
}
