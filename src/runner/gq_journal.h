#ifndef GQ_JOURNAL_H
#define GQ_JOURNAL_H
/* The resume journal: results/<experiment>/.journal/
 *   key               the experiment's resume key (sha256 of the canonical experiment and the
 *                     hashes of its input files), key_sha256 (sha256 of the key string, so a
 *                     damaged key is told from another experiment's), the revision that
 *                     started the journal and the canonical experiment, as JSON
 *   cell-<id>.json    one record per finished cell: {"cell": id, "key": the experiment's key,
 *                     "sha256": checksum, "record": the cell's record}; the checksum is the
 *                     sha256 of "<cell>\n<key>\n" followed by the record dumped compact with
 *                     sorted keys and %.17g reals (the form it is read back into)
 *   baseline.logp     the baseline's saved log-probabilities (eval/gq_eval.h format, with its
 *                     own checksum)
 * Every file is written atomically (temporary file + rename), so a process killed at any
 * moment leaves only complete files (and stray temporaries, removed on the next open).
 *
 * Nothing read back is trusted: a record that is damaged, written for another cell or for
 * another key is reported (a warning naming the file and the reason), removed and computed
 * again. A key file that is not JSON, fails key_sha256 or is missing while records remain is
 * damaged: the run stops (--fresh discards the journal). Since every record carries its own
 * key, records of another experiment definition are never reused.
 * These checks catch accidents (disk errors, hand edits, copied files), not forgery.
 *
 * One run at a time writes into a results directory: gq_journal_lock takes an exclusive lock
 * on the directory itself (flock), held until the process exits. */
#include <stdbool.h>

#include <jansson.h>

#include "core/gq_error.h"
#include "runner/gq_experiment.h"

typedef struct gq_journal {
    char dir[4096];
    char key[65]; /* the experiment's key: records carrying another one are not reused */
} gq_journal;

/* Creates results_dir when missing and locks it against other runs. Returns the descriptor
 * that holds the lock (closing it, or exiting, releases the lock), or -1 with err set when
 * another process holds it. */
int gq_journal_lock(const char *results_dir, gq_error *err);

/* Opens (creating) the journal under results_dir. When it holds a different key: with
 * `fresh` the old journal is discarded, otherwise fails (status 2 territory: nothing done). */
int gq_journal_open(const char *results_dir, const gq_experiment *e, bool fresh, gq_journal *j,
                    gq_error *err);
/* Fails (without `fresh`) when the journal under results_dir belongs to another key or its key
 * is damaged (used before creating it). */
int gq_journal_check(const char *results_dir, const gq_experiment *e, bool fresh, gq_error *err);
/* Whether a valid record of cell_id is present; an invalid one is reported and removed. */
bool gq_journal_has(const gq_journal *j, const char *cell_id);
int gq_journal_put(const gq_journal *j, const char *cell_id, json_t *record, gq_error *err);
/* The cell's record (new reference), or NULL (err set) when absent or invalid. */
json_t *gq_journal_get(const gq_journal *j, const char *cell_id, gq_error *err);
/* The record held in `text` (len bytes), the content of the file of cell_id in a journal of
 * `key`: a new reference, or NULL with the reason it is rejected in why. */
json_t *gq_journal_parse_record(const char *text, size_t len, const char *cell_id,
                                const char *key, char why[256]);
void gq_journal_baseline_path(const gq_journal *j, char *out, size_t n);

#endif
