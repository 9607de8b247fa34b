#ifndef GQ_THREADS_H
#define GQ_THREADS_H
/* One place that sets the thread count for OpenMP and OpenBLAS, so the two never
 * oversubscribe the cores, and that describes the BLAS build for result provenance. */

/* n <= 0 means "all cores" (omp_get_num_procs). Returns the count in effect. */
int gq_threads_set(int n);
int gq_threads_get(void);
/* The kernel set OpenBLAS selected for this CPU (or OPENBLAS_CORETYPE), e.g. "Haswell":
 * results are bit-identical across thread counts for one kernel and build, and may differ in
 * the last digits between kernels. Static storage. */
const char *gq_blas_kernel(void);
/* For example "OpenBLAS 0.3.21 ... (OpenMP; kernel Haswell)": the build, its threading and the
 * selected kernel. Static storage. */
const char *gq_blas_description(void);

#endif
