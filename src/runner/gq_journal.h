#ifndef GQ_JOURNAL_H
#define GQ_JOURNAL_H
/* The resume journal: results/<experiment>/.journal/
 *   key               the experiment's resume key (sha256 of the canonical experiment and the
 *                     hashes of its input files) and the canonical experiment, as JSON
 *   cell-<id>.json    one record per finished cell
 *   baseline.logp     the baseline's saved log-probabilities (eval/gq_eval.h format)
 * Every file is written atomically (temporary file + rename), so a process killed at any
 * moment leaves only complete files (and stray temporaries, removed on the next open). */
#include <stdbool.h>

#include <jansson.h>

#include "core/gq_error.h"
#include "runner/gq_experiment.h"

typedef struct gq_journal {
    char dir[4096];
} gq_journal;

/* Opens (creating) the journal under results_dir. When it holds a different key: with
 * `fresh` the old journal is discarded, otherwise fails (status 2 territory: nothing done). */
int gq_journal_open(const char *results_dir, const gq_experiment *e, bool fresh, gq_journal *j,
                    gq_error *err);
/* Whether the journal under results_dir belongs to another key (used before creating it). */
int gq_journal_check(const char *results_dir, const gq_experiment *e, bool fresh, gq_error *err);
bool gq_journal_has(const gq_journal *j, const char *cell_id);
int gq_journal_put(const gq_journal *j, const char *cell_id, json_t *record, gq_error *err);
/* New reference or NULL (err set). */
json_t *gq_journal_get(const gq_journal *j, const char *cell_id, gq_error *err);
void gq_journal_baseline_path(const gq_journal *j, char *out, size_t n);

#endif
