/* gq_dist.h on Open MPI. Waits are MPI_Test loops with sleeps growing from 50 us to 2 ms:
 * Open MPI's blocking calls spin, which would take a core from the ranks that compute. Large
 * transfers go in pieces of at most GQ_DIST_PIECE bytes (MPI counts are ints). */
#include "dist/gq_dist.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GQ_DIST_PIECE (1u << 28)

static bool joined;
static int my_rank, n_ranks = 1;

/* mpirun (ORTE) and PMIx launchers set these in every process they start. */
static bool launched_by_mpirun(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

static int mpi_fail(gq_error *err, int code, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, msg, &len);
    return gq_fail(err, "MPI %s: %.*s", what, len, msg);
}

int gq_dist_init(int *argc, char ***argv, gq_error *err)
{
    if (!launched_by_mpirun())
        return 0;
    int provided = 0;
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS)
        return mpi_fail(err, rc, "initialisation");
    joined = true;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &my_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n_ranks);
    if (provided < MPI_THREAD_FUNNELED) {
        MPI_Finalize();
        joined = false;
        return gq_fail(err, "MPI: the library does not support MPI_THREAD_FUNNELED");
    }
    return 0;
}

/* Sleeps us microseconds and returns the next, longer pause (up to 2 ms). */
static unsigned pause_us(unsigned us)
{
    struct timespec ts = {0, (long)us * 1000};
    nanosleep(&ts, NULL);
    return us < 2000 ? us * 2 : 2000;
}

static int wait_request(MPI_Request *rq, MPI_Status *st, const char *what, gq_error *err)
{
    unsigned us = 50;
    for (;;) {
        int done = 0, rc = MPI_Test(rq, &done, st ? st : MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS)
            return mpi_fail(err, rc, what);
        if (done)
            return 0;
        us = pause_us(us);
    }
}

void gq_dist_finalize(void)
{
    if (!joined)
        return;
    MPI_Request rq;
    gq_error err = {{0}};
    if (MPI_Ibarrier(MPI_COMM_WORLD, &rq) == MPI_SUCCESS)
        wait_request(&rq, NULL, "barrier", &err);
    MPI_Finalize();
    joined = false;
}

void gq_dist_abort(int status)
{
    fflush(stdout);
    fflush(stderr);
    if (joined)
        MPI_Abort(MPI_COMM_WORLD, status);
    exit(status);
}

int gq_dist_rank(void) { return my_rank; }

int gq_dist_size(void) { return n_ranks; }

const char *gq_dist_library(void)
{
    static char name[MPI_MAX_LIBRARY_VERSION_STRING];
    if (!name[0]) {
        int len = 0;
        MPI_Get_library_version(name, &len);
        name[strcspn(name, ",\n")] = '\0';
    }
    return name;
}

int gq_dist_bcast(void *buf, size_t n, gq_error *err)
{
    for (size_t off = 0; off < n; off += GQ_DIST_PIECE) {
        int len = (int)(n - off < GQ_DIST_PIECE ? n - off : GQ_DIST_PIECE);
        MPI_Request rq;
        int rc = MPI_Ibcast((char *)buf + off, len, MPI_BYTE, 0, MPI_COMM_WORLD, &rq);
        if (rc != MPI_SUCCESS)
            return mpi_fail(err, rc, "broadcast");
        if (wait_request(&rq, NULL, "broadcast", err))
            return -1;
    }
    return 0;
}

int gq_dist_send(int to, int tag, const void *buf, size_t n, gq_error *err)
{
    if (n > INT_MAX)
        return gq_fail(err, "MPI send: a message of %zu bytes is too long", n);
    MPI_Request rq;
    int rc = MPI_Isend(buf, (int)n, MPI_BYTE, to, tag, MPI_COMM_WORLD, &rq);
    if (rc != MPI_SUCCESS)
        return mpi_fail(err, rc, "send");
    return wait_request(&rq, NULL, "send", err);
}

int gq_dist_recv(gq_dist_msg *m, gq_error *err)
{
    memset(m, 0, sizeof *m);
    MPI_Status st;
    unsigned us = 50;
    for (;;) {
        int got = 0, rc = MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &got, &st);
        if (rc != MPI_SUCCESS)
            return mpi_fail(err, rc, "probe");
        if (got)
            break;
        us = pause_us(us);
    }
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    m->data = malloc((size_t)count + 1);
    if (!m->data)
        return gq_fail(err, "MPI receive: out of memory for %d bytes", count);
    int rc = MPI_Recv(m->data, count, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, MPI_COMM_WORLD,
                      MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
        free(m->data);
        m->data = NULL;
        return mpi_fail(err, rc, "receive");
    }
    m->data[count] = '\0';
    m->n = (size_t)count;
    m->from = st.MPI_SOURCE;
    m->tag = st.MPI_TAG;
    return 0;
}

/* Each rank's share goes to all in turn (a broadcast per rank, in rank order), in pieces. */
int gq_dist_allgather(void *data, size_t elem, const size_t *first, gq_error *err)
{
    for (int r = 0; r < n_ranks; r++) {
        size_t off = first[r] * elem, n = (first[r + 1] - first[r]) * elem;
        for (size_t done = 0; done < n; done += GQ_DIST_PIECE) {
            int len = (int)(n - done < GQ_DIST_PIECE ? n - done : GQ_DIST_PIECE);
            MPI_Request rq;
            int rc = MPI_Ibcast((char *)data + off + done, len, MPI_BYTE, r, MPI_COMM_WORLD, &rq);
            if (rc != MPI_SUCCESS)
                return mpi_fail(err, rc, "gather");
            if (wait_request(&rq, NULL, "gather", err))
                return -1;
        }
    }
    return 0;
}
