/* gq-bench merge: the shards of a job array (--shard I/N, gq_run.h) into the results of one
 * run. Everything is checked before anything is written: every shard directory
 * results/<name>/shard-<i>of<N> must exist for one N and hold a journal of the same
 * experiment definition, and every cell must have a valid record in some shard (or already in
 * the main journal). The records are then copied into results/<name>/.journal (so a later
 * `gq-bench run` of the experiment finds every cell done) and the CSV, HDF5 file and charts
 * are written from it exactly as a single run writes them. */
#include <dirent.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gq_fileio.h"
#include "core/gq_log.h"
#include "runner/gq_journal.h"
#include "runner/gq_results.h"
#include "runner/gq_run.h"

typedef struct shard_set {
    int n;            /* N of the shard directories */
    gq_journal *j;    /* j[i - 1]: the journal of shard i */
    char first[4400]; /* a shard directory, for the experiment file named in its key */
} shard_set;

/* The N of the shard-<i>of<N> directories under dir; they must agree and all be present. */
static int find_shards(const char *dir, shard_set *s, gq_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return gq_fail(err, "%s: cannot read the results directory", dir);
    struct dirent *de;
    int n = 0, found = 0, other = 0;
    unsigned long long seen = 0; /* bit i-1: shard i of n found (n <= 64 tracked exactly) */
    while ((de = readdir(d))) {
        int i, k, end = 0;
        if (sscanf(de->d_name, "shard-%dof%d%n", &i, &k, &end) != 2 || de->d_name[end] ||
            i < 1 || i > k)
            continue;
        if (n && k != n)
            other = k;
        if (!n) {
            n = k;
            snprintf(s->first, sizeof s->first, "%s/%s", dir, de->d_name);
        }
        if (k == n && i <= 64 && !(seen >> (i - 1) & 1)) {
            seen |= 1ull << (i - 1);
            found++;
        } else if (k == n && i > 64)
            found++;
    }
    closedir(d);
    if (!n)
        return gq_fail(err, "%s: no shard journals (shard-<i>of<N> directories written by "
                            "`gq-bench run EXP.json --shard i/N`)", dir);
    if (other)
        return gq_fail(err, "%s: shards of different splits (shard-*of%d and shard-*of%d): "
                            "remove the directories of the split that is not wanted", dir, n,
                       other);
    if (found != n)
        return gq_fail(err, "%s: %d of the %d shards (shard-<i>of%d) are present: run the "
                            "missing ones first", dir, found, n, n);
    s->n = n;
    return 0;
}

/* The experiment file recorded in a shard journal's key ("file"). */
static int recorded_file(const char *shard_dir, char *out, size_t n, gq_error *err)
{
    char kp[4500];
    snprintf(kp, sizeof kp, "%s/.journal/key", shard_dir);
    json_error_t je;
    json_t *k = json_load_file(kp, JSON_REJECT_DUPLICATES, &je);
    const char *f = json_string_value(json_object_get(k, "file"));
    if (f)
        snprintf(out, n, "%s", f);
    json_decref(k);
    return f ? 0 : gq_fail(err, "%s: no experiment file recorded (give --experiment)", kp);
}

/* Each shard's journal, checked to be of experiment e. */
static int open_shards(const char *dir, const gq_experiment *e, shard_set *s, gq_error *err)
{
    s->j = calloc((size_t)s->n, sizeof *s->j);
    if (!s->j)
        return gq_fail(err, "out of memory for %d shards", s->n);
    for (int i = 1; i <= s->n; i++) {
        char sd[4400];
        snprintf(sd, sizeof sd, "%s/" GQ_SHARD_DIR_FMT, dir, i, s->n);
        if (gq_journal_check(sd, e, false, err))
            return gq_fail_prefix(err, "shard %d of %d", i, s->n);
        snprintf(s->j[i - 1].dir, sizeof s->j[i - 1].dir, "%.4080s/.journal", sd);
        snprintf(s->j[i - 1].key, sizeof s->j[i - 1].key, "%s", e->key);
    }
    return 0;
}

/* Per cell, the journal its record comes from: the main one (already merged) or a shard's.
 * Fails naming the cells no journal holds. */
static int locate_cells(const gq_experiment *e, const gq_journal *main_j, const shard_set *s,
                        const gq_journal **src, gq_error *err)
{
    char missing[512] = "";
    int n_missing = 0;
    for (int c = 0; c < e->n_cells; c++) {
        const char *id = e->cells[c].id;
        src[c] = gq_journal_has(main_j, id) ? main_j : NULL;
        for (int i = 0; i < s->n && !src[c]; i++)
            if (gq_journal_has(&s->j[i], id))
                src[c] = &s->j[i];
        if (!src[c] && n_missing++ < 16) {
            size_t len = strlen(missing);
            snprintf(missing + len, sizeof missing - len, "%s%s", len ? ", " : "", id);
        }
    }
    if (n_missing)
        return gq_fail(err, "%d of %d cells have no record in any shard (%s%s): rerun their "
                            "shards (the same command completes only the missing cells)",
                       n_missing, e->n_cells, missing, n_missing > 16 ? ", ..." : "");
    return 0;
}

static int copy_records(const gq_experiment *e, const gq_journal *main_j,
                        const gq_journal **src, gq_error *err)
{
    for (int c = 0; c < e->n_cells; c++) {
        if (src[c] == main_j)
            continue;
        json_t *rec = gq_journal_get(src[c], e->cells[c].id, err);
        int rc = rec ? gq_journal_put(main_j, e->cells[c].id, rec, err) : -1;
        json_decref(rec);
        if (rc)
            return -1;
    }
    return 0;
}

/* The out-dir of results_dir (<out>/results/<name>), refusing a directory of another name. */
static int out_dir_of(const char *results_dir, const gq_experiment *e, char *out, size_t n,
                      gq_error *err)
{
    char last[4096], path[4096], parent[4096];
    snprintf(last, sizeof last, "%s", results_dir);
    snprintf(path, sizeof path, "%s", results_dir);
    const char *name = basename(last);  /* <name> */
    char *up = dirname(path);           /* <out>/results */
    snprintf(parent, sizeof parent, "%s", up);
    if (strcmp(name, e->name) != 0 || strcmp(basename(parent), "results") != 0)
        return gq_fail(err, "%s: not the results directory of experiment %s (expected "
                            "<dir>/results/%s)", results_dir, e->name, e->name);
    snprintf(out, n, "%s", dirname(up)); /* <out> */
    return 0;
}

/* Validation before anything is written; *usage_error tells exit status 2 from 1. */
static int merge_checked(const char *dir, gq_experiment *e, shard_set *s, bool plots,
                         FILE *summary, int *usage_error, gq_error *err)
{
    char out[4096];
    gq_run_opts o = {.out_dir = out, .plots = plots};
    if (out_dir_of(dir, e, out, sizeof out, err) || open_shards(dir, e, s, err) ||
        gq_run_check(e, &o, err))
        return -1;
    int lock = gq_run_lock(e, &o, err);
    if (lock < 0)
        return -1;
    gq_journal main_j;
    const gq_journal **src = calloc((size_t)e->n_cells, sizeof *src);
    int rc = -1;
    if (!src)
        gq_fail(err, "out of memory for %d cells", e->n_cells);
    else if (gq_journal_open(dir, e, false, &main_j, err) == 0 &&
             locate_cells(e, &main_j, s, src, err) == 0) {
        *usage_error = 0; /* from here on a failure is the disk's */
        char results[4096], plot_dir[4096];
        gq_run_dirs(e, out, results, plot_dir, sizeof results);
        if (copy_records(e, &main_j, src, err) == 0)
            rc = gq_results_write(e, &main_j, NULL, dir, plots ? plot_dir : NULL, summary, err);
    }
    free(src);
    close(lock);
    return rc;
}

int gq_run_merge(const char *results_dir, const char *experiment_file, bool plots, FILE *summary,
                 int *usage_error, gq_error *err)
{
    *usage_error = 1;
    shard_set s = {0};
    char file[4096];
    if (find_shards(results_dir, &s, err))
        return -1;
    if (experiment_file)
        snprintf(file, sizeof file, "%s", experiment_file);
    else if (recorded_file(s.first, file, sizeof file, err))
        return -1;
    gq_experiment e;
    if (gq_experiment_load(file, &e, err))
        return gq_fail_prefix(err, "merge %s", results_dir);
    gq_log_info("merging %d shards of %s (%s) in %s", s.n, e.name, file, results_dir);
    int rc = merge_checked(results_dir, &e, &s, plots, summary, usage_error, err);
    free(s.j);
    gq_experiment_free(&e);
    return rc;
}
