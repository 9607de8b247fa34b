#include "runner/gq_journal.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gq_fileio.h"
#include "core/gq_log.h"
#include "gq_version.h"

static void key_path(const char *dir, char *out, size_t n) { snprintf(out, n, "%s/key", dir); }

/* Removes the journal's own files: key, cell-*.json, baseline.logp and temporaries. */
static void clean_dir(const char *dir, bool all)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    char p[8192];
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        bool tmp = strstr(n, ".tmp.") != NULL;
        bool ours = strcmp(n, "key") == 0 || strcmp(n, "baseline.logp") == 0 ||
                    (strncmp(n, "cell-", 5) == 0 && strstr(n, ".json"));
        if (tmp || (all && ours)) {
            snprintf(p, sizeof p, "%s/%s", dir, n);
            unlink(p);
        }
    }
    closedir(d);
}

/* The key file also names the revision of the binary that started the journal: a resume by
 * another build is allowed (the key covers the experiment and its inputs, and every row records
 * its own revision) but warned about. */
static json_t *key_json(const gq_experiment *e)
{
    return json_pack("{s:s, s:s, s:s, s:O}", "key", e->key, "file", e->file, "revision",
                     GQ_VCS_REVISION, "experiment", e->resolved);
}

static void warn_other_revision(const char *kp)
{
    json_error_t je;
    json_t *k = json_load_file(kp, 0, &je);
    const char *rev = json_string_value(json_object_get(k, "revision"));
    if (rev && strcmp(rev, GQ_VCS_REVISION) != 0)
        gq_log_warn("resuming a sweep started by revision %s with revision %s: the finished "
                    "cells keep their results (column revision says which build made each row); "
                    "--fresh recomputes them all", rev, GQ_VCS_REVISION);
    json_decref(k);
}

int gq_journal_check(const char *results_dir, const gq_experiment *e, bool fresh, gq_error *err)
{
    char dir[4200], kp[4300];
    snprintf(dir, sizeof dir, "%s/.journal", results_dir);
    key_path(dir, kp, sizeof kp);
    if (fresh || !gq_file_exists(kp))
        return 0;
    json_error_t je;
    json_t *k = json_load_file(kp, 0, &je);
    const char *old = json_string_value(json_object_get(k, "key"));
    int rc = 0;
    if (!old || strlen(old) != 64 || strspn(old, "0123456789abcdef") != 64)
        rc = gq_fail(err, "%s: damaged (%s); the results beside it cannot be attributed to an "
                          "experiment: rerun with --fresh to discard them, or give another "
                          "--out-dir", kp, !k ? je.text : "no valid \"key\"");
    else if (strcmp(old, e->key) != 0)
        rc = gq_fail(err, "%s holds results of a different experiment definition (the experiment "
                          "file, an included config or an input file changed); rerun with --fresh "
                          "to discard them, or give another --out-dir",
                     results_dir);
    json_decref(k);
    return rc;
}

int gq_journal_open(const char *results_dir, const gq_experiment *e, bool fresh, gq_journal *j,
                    gq_error *err)
{
    if (gq_journal_check(results_dir, e, fresh, err))
        return -1;
    snprintf(j->dir, sizeof j->dir, "%s/.journal", results_dir);
    if (gq_mkdir_p(j->dir, err))
        return -1;
    clean_dir(j->dir, fresh);
    char kp[4300];
    key_path(j->dir, kp, sizeof kp);
    if (gq_file_exists(kp)) {
        warn_other_revision(kp);
        return 0;
    }
    json_t *k = key_json(e);
    char *s = json_dumps(k, JSON_INDENT(1) | JSON_SORT_KEYS);
    int rc = gq_write_file_atomic(kp, s, strlen(s), err);
    free(s);
    json_decref(k);
    return rc;
}

static void cell_path(const gq_journal *j, const char *id, char *out, size_t n)
{
    snprintf(out, n, "%s/cell-%s.json", j->dir, id);
}

bool gq_journal_has(const gq_journal *j, const char *cell_id)
{
    char p[4300];
    cell_path(j, cell_id, p, sizeof p);
    return gq_file_exists(p);
}

int gq_journal_put(const gq_journal *j, const char *cell_id, json_t *record, gq_error *err)
{
    char p[4300];
    cell_path(j, cell_id, p, sizeof p);
    /* %.17g reals: the record reads back to the same doubles */
    char *s = json_dumps(record, JSON_INDENT(1) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    if (!s)
        return gq_fail(err, "%s: cannot serialise the cell record", p);
    int rc = gq_write_file_atomic(p, s, strlen(s), err);
    free(s);
    return rc;
}

json_t *gq_journal_get(const gq_journal *j, const char *cell_id, gq_error *err)
{
    char p[4300];
    cell_path(j, cell_id, p, sizeof p);
    json_error_t je;
    json_t *r = json_load_file(p, 0, &je);
    if (!r)
        gq_fail(err, "%s: unreadable journal record (line %d: %s); rerun with --fresh", p, je.line,
                je.text);
    return r;
}

void gq_journal_baseline_path(const gq_journal *j, char *out, size_t n)
{
    snprintf(out, n, "%s/baseline.logp", j->dir);
}
