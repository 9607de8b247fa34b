#ifndef GQ_EVAL_SHARE_H
#define GQ_EVAL_SHARE_H
/* An evaluation split over the ranks of an MPI job (gq_eval_opts.split, dist/gq_dist.h).
 * The windows are cut into the same batches as in one process (batch b is windows
 * [b*B, (b+1)*B)); rank r of n evaluates batches [r*nb/n, (r+1)*nb/n), so its scored
 * positions are one contiguous run and every batch is exactly the one a single process runs.
 * The per-position arrays (NLL, KL, top-1 hits, ...) are then gathered in rank order and every
 * rank sums all positions in position order, as one process does: the totals are bit-identical
 * to a single-process evaluation. */
#include <stdbool.h>
#include <stddef.h>

#include "core/gq_error.h"

/* The windows [*w_begin, *w_end) this process evaluates (all of them unless split). */
void gq_eval_share_windows(size_t n_windows, int batch, bool split, size_t *w_begin,
                           size_t *w_end);

/* Gathers n arrays of per-position values (elem[i] bytes per scored position; NULL arrays are
 * skipped) from the ranks that computed them, per_window positions per window. */
int gq_eval_share_gather(size_t n_windows, int batch, int per_window, void *const *arrays,
                         const size_t *elem, int n, gq_error *err);

/* The longest of the ranks' times (their seconds in, the slowest out), so that tokens per
 * second of a split evaluation are those of the whole job. */
int gq_eval_share_slowest(double *seconds, gq_error *err);

#endif
