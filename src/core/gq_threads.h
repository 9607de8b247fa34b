#ifndef GQ_THREADS_H
#define GQ_THREADS_H
/* One place that sets the thread count for OpenMP and OpenBLAS, so the two never
 * oversubscribe the cores, and that describes the BLAS build for result provenance. */

/* n <= 0 means "all cores" (omp_get_num_procs). Returns the count in effect. */
int gq_threads_set(int n);
int gq_threads_get(void);
/* For example "OpenBLAS 0.3.21 ... (OpenMP)". Static storage. */
const char *gq_blas_description(void);

#endif
