/* The build without MPI: one process. */
#include "dist/gq_dist.h"

#include <stdlib.h>

int gq_dist_init(int *argc, char ***argv, gq_error *err)
{
    (void)argc;
    (void)argv;
    (void)err;
    return 0;
}

void gq_dist_finalize(void) {}

void gq_dist_abort(int status) { exit(status); }

int gq_dist_rank(void) { return 0; }

int gq_dist_size(void) { return 1; }

const char *gq_dist_library(void) { return "no MPI (built with -Dmpi=disabled or without Open MPI)"; }

static int single(gq_error *err)
{
    return gq_fail(err, "internal: an MPI transfer in a build without MPI");
}

int gq_dist_bcast(void *buf, size_t n, gq_error *err)
{
    (void)buf;
    (void)n;
    return single(err);
}

int gq_dist_send(int to, int tag, const void *buf, size_t n, gq_error *err)
{
    (void)to;
    (void)tag;
    (void)buf;
    (void)n;
    return single(err);
}

int gq_dist_recv(gq_dist_msg *m, gq_error *err)
{
    (void)m;
    return single(err);
}

int gq_dist_allgather(void *data, size_t elem, const size_t *first, gq_error *err)
{
    (void)data;
    (void)elem;
    (void)first;
    return single(err);
}
