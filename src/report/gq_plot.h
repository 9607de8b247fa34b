#ifndef GQ_PLOT_H
#define GQ_PLOT_H
/* PNG charts of a results table through a gnuplot pipe (pngcairo).
 *
 * The table is the one written to results.csv (see runner/gq_results.h for its columns); the
 * charts read the columns series, sweep ("bits=4 group_size=128": the swept axes of the row),
 * bits, group_size, n_calib, bpw, ppl, ppl_stderr, cell, t_stats, t_search, t_quant, t_eval,
 * decode_tok_s, method_params, format_params, propagate and the protocol columns for the
 * titles. Only the charts the sweep supports are drawn:
 *   ppl_vs_group_size[_<b>bit].png  when group_size takes >= 2 values (one file per bit width);
 *                                   per-channel cells (format granularity "channel") are dashed
 *                                   horizontal lines in the colour of the group-wise series they
 *                                   pair with (same method_params, propagate, format_params but
 *                                   granularity and group_size, other swept axes)
 *   groupwise_vs_perchannel[_<b>bit].png  when a group-wise cell has such a per-channel
 *                                   counterpart: 100 (PPL_group / PPL_channel - 1) per group size
 *   ppl_vs_bits.png                 when bits takes >= 2 values
 *   ppl_vs_bpw.png                  when quantized cells have at least two sizes (bpw)
 *   ppl_vs_bpw_and_decode.png       as ppl_vs_bpw, when some quantized cell has a decode_tok_s:
 *                                   perplexity against bpw and against decode tokens/s side by side
 *   ppl_vs_n_calib.png              when n_calib takes >= 2 values
 *   ppl_vs_a_bits.png, ppl_vs_kv_bits.png  when the sweep axis activations.bits / kv_cache.bits
 *                                   takes >= 2 values (a series per method entry and the other
 *                                   swept axes)
 *   stage_times.png                 always (stacked seconds per stage and cell)
 * Perplexity axes switch to a log scale when the plotted values span more than 10x. Each PNG is
 * written under a temporary name and renamed into place. */
#include <stdbool.h>

#include "core/gq_error.h"
#include "report/gq_table.h"

/* The gnuplot executable: $GQ_GNUPLOT if set, else "gnuplot" searched in PATH. NULL if absent. */
const char *gq_gnuplot_path(void);

/* Draws into `dir` (created if needed). *n_charts receives the count of PNGs written. Fails
 * (naming the chart) when gnuplot is missing or reports an error. */
int gq_plot_results(const gq_table *t, const char *dir, int *n_charts, gq_error *err);

#endif
