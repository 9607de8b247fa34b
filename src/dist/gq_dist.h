#ifndef GQ_DIST_H
#define GQ_DIST_H
/* The processes of an MPI job (Open MPI), for `gq-bench run` and `gq-bench eval` under
 * `mpirun`. A build without MPI (meson option mpi), or a gq-bench not started by mpirun, is one
 * process: rank 0 of 1, and the transfers below are never needed (they fail if called).
 *
 * Every wait polls with short sleeps instead of spinning, so a rank waiting for others (for
 * the baseline, for its next cell, at the end) leaves its cores to the ranks that compute.
 * Only the thread that called gq_dist_init calls the transfers (MPI_THREAD_FUNNELED). */
#include <stdbool.h>
#include <stddef.h>

#include "core/gq_error.h"

/* Joins the MPI job when the environment says mpirun started this process (the Open MPI or
 * PMIx rank variables); otherwise, or without MPI in the build, does nothing. */
int gq_dist_init(int *argc, char ***argv, gq_error *err);
/* Waits for every rank (polled), then leaves the job. Harmless when not in one. */
void gq_dist_finalize(void);

/* Ends every process of the job with `status` (after a failure that leaves other ranks
 * waiting for this one); exits when not in a job. Does not return. */
_Noreturn void gq_dist_abort(int status);

int gq_dist_rank(void);
int gq_dist_size(void);
/* "Open MPI 4.1.4" style description of the library, or "no MPI (built without it)". */
const char *gq_dist_library(void);

/* n bytes of buf from rank 0 to every rank. */
int gq_dist_bcast(void *buf, size_t n, gq_error *err);

/* One message: tag (>= 0) and n bytes to rank `to`. */
int gq_dist_send(int to, int tag, const void *buf, size_t n, gq_error *err);

typedef struct gq_dist_msg {
    int from, tag;
    char *data; /* n bytes and a terminating NUL byte (caller frees) */
    size_t n;
} gq_dist_msg;

/* Waits for the next message of any tag from any rank. */
int gq_dist_recv(gq_dist_msg *m, gq_error *err);

/* Rank r holds elements [first[r], first[r+1]) of data (elem bytes each, first[size] in all);
 * afterwards every rank holds all first[size] elements. */
int gq_dist_allgather(void *data, size_t elem, const size_t *first, gq_error *err);

#endif
