/* Windows of an evaluation split over MPI ranks (eval_share.h). */
#include "eval/eval_share.h"

#include <stdlib.h>

#include "dist/gq_dist.h"

/* First batch of rank r of n over nb batches. */
static size_t first_batch(size_t nb, int r, int n) { return nb * (size_t)r / (size_t)n; }

void gq_eval_share_windows(size_t n_windows, int batch, bool split, size_t *w_begin,
                           size_t *w_end)
{
    *w_begin = 0;
    *w_end = n_windows;
    int n = gq_dist_size(), r = gq_dist_rank();
    if (!split || n < 2)
        return;
    size_t nb = (n_windows + (size_t)batch - 1) / (size_t)batch;
    size_t b0 = first_batch(nb, r, n), b1 = first_batch(nb, r + 1, n);
    *w_begin = b0 * (size_t)batch;
    *w_end = b1 * (size_t)batch < n_windows ? b1 * (size_t)batch : n_windows;
}

int gq_eval_share_gather(size_t n_windows, int batch, int per_window, void *const *arrays,
                         const size_t *elem, int n, gq_error *err)
{
    int ranks = gq_dist_size();
    if (ranks < 2)
        return 0;
    size_t *first = malloc(((size_t)ranks + 1) * sizeof *first);
    if (!first)
        return gq_fail(err, "out of memory for the shares of %d ranks", ranks);
    size_t nb = (n_windows + (size_t)batch - 1) / (size_t)batch;
    for (int r = 0; r <= ranks; r++) {
        size_t w = first_batch(nb, r, ranks) * (size_t)batch;
        first[r] = (w < n_windows ? w : n_windows) * (size_t)per_window;
    }
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++)
        if (arrays[i])
            rc = gq_dist_allgather(arrays[i], elem[i], first, err);
    free(first);
    return rc ? gq_fail_prefix(err, "gathering the evaluation over %d ranks", ranks) : 0;
}

int gq_eval_share_slowest(double *seconds, gq_error *err)
{
    int ranks = gq_dist_size();
    if (ranks < 2)
        return 0;
    double *all = calloc((size_t)ranks, sizeof *all);
    size_t *first = malloc(((size_t)ranks + 1) * sizeof *first);
    int rc = -1;
    if (!all || !first)
        gq_fail(err, "out of memory for the times of %d ranks", ranks);
    else {
        for (int r = 0; r <= ranks; r++)
            first[r] = (size_t)r;
        all[gq_dist_rank()] = *seconds;
        rc = gq_dist_allgather(all, sizeof *all, first, err);
        for (int r = 0; rc == 0 && r < ranks; r++)
            *seconds = all[r] > *seconds ? all[r] : *seconds;
    }
    free(all);
    free(first);
    return rc;
}
