#include "runner/gq_journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/gq_fileio.h"
#include "core/gq_log.h"
#include "core/gq_sha256.h"
#include "core/gq_threads.h"
#include "gq_version.h"

/* The form a record's checksum is taken over: %.17g reals read back to the same doubles, so a
 * record read from its file dumps to the same bytes as when it was written. */
#define RECORD_DUMP (JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17))
#define FILE_DUMP (JSON_INDENT(1) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17))

static void key_path(const char *dir, char *out, size_t n) { snprintf(out, n, "%s/key", dir); }

static bool is_record_name(const char *n)
{
    return strncmp(n, "cell-", 5) == 0 && strstr(n, ".json") != NULL;
}

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
        bool ours = strcmp(n, "key") == 0 || strcmp(n, "baseline.logp") == 0 || is_record_name(n);
        if (tmp || (all && ours)) {
            snprintf(p, sizeof p, "%s/%s", dir, n);
            unlink(p);
        }
    }
    closedir(d);
}

static bool has_records(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    struct dirent *de;
    bool any = false;
    while (!any && (de = readdir(d)))
        any = is_record_name(de->d_name) && !strstr(de->d_name, ".tmp.");
    closedir(d);
    return any;
}

int gq_journal_lock(const char *results_dir, gq_error *err)
{
    if (gq_mkdir_p(results_dir, err))
        return -1;
    int fd = open(results_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return gq_fail(err, "%s: cannot open the results directory: %s", results_dir,
                       strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
        return fd;
    int e = errno;
    close(fd);
    if (e == EWOULDBLOCK)
        return gq_fail(err, "%s: another gq-bench run is writing into this results directory; "
                            "wait until it has finished, or give another --out-dir",
                       results_dir);
    return gq_fail(err, "%s: cannot lock the results directory: %s", results_dir, strerror(e));
}

/* The key file also names the revision of the binary that started the journal and the BLAS
 * build and kernel it ran on (numbers differ in their last digits between kernels): a resume by
 * another build or under another kernel is allowed (the key covers the experiment and its
 * inputs, and every row records its own revision and kernel) but warned about. */
static json_t *key_json(const gq_experiment *e)
{
    char sum[65];
    gq_sha256_hex(e->key, strlen(e->key), sum);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:O}", "key", e->key, "key_sha256", sum,
                     "file", e->file, "revision", GQ_VCS_REVISION, "blas", gq_blas_description(),
                     "blas_kernel", gq_blas_kernel(), "experiment", e->resolved);
}

typedef enum { KEY_ABSENT, KEY_SAME, KEY_OTHER, KEY_DAMAGED } key_state;

/* What the key file kp says about the experiment of `key`; why: the damage. */
static key_state read_key(const char *kp, const char *key, char why[256])
{
    struct stat st;
    if (lstat(kp, &st) != 0 && errno == ENOENT)
        return KEY_ABSENT;
    char *text = NULL;
    size_t len = 0;
    gq_error e = {{0}};
    if (gq_read_file(kp, &text, &len, &e)) {
        snprintf(why, 256, "%.240s", e.msg);
        return KEY_DAMAGED;
    }
    json_error_t je;
    json_t *k = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    const char *old = json_string_value(json_object_get(k, "key"));
    const char *sum = json_string_value(json_object_get(k, "key_sha256"));
    char hex[65] = "";
    if (old)
        gq_sha256_hex(old, strlen(old), hex);
    key_state ks = KEY_DAMAGED;
    if (!k)
        snprintf(why, 256, "not JSON: line %d: %.200s", je.line, je.text);
    else if (!old || !sum)
        snprintf(why, 256, "no key or key_sha256 string");
    else if (strcmp(hex, sum) != 0)
        snprintf(why, 256, "the key does not match its checksum key_sha256");
    else
        ks = strcmp(old, key) == 0 ? KEY_SAME : KEY_OTHER;
    json_decref(k);
    return ks;
}

static void warn_other_build(const char *kp)
{
    json_error_t je;
    json_t *k = json_load_file(kp, 0, &je);
    const char *rev = json_string_value(json_object_get(k, "revision"));
    if (rev && strcmp(rev, GQ_VCS_REVISION) != 0)
        gq_log_warn("resuming a sweep started by revision %s with revision %s: the finished "
                    "cells keep their results (column revision says which build made each row); "
                    "--fresh recomputes them all", rev, GQ_VCS_REVISION);
    const char *blas = json_string_value(json_object_get(k, "blas"));
    if (!blas)
        blas = "an unrecorded BLAS";
    if (strcmp(blas, gq_blas_description()) != 0)
        gq_log_warn("resuming a sweep started under %s with %s: numbers may differ in their last "
                    "digits between BLAS builds and kernels; the finished cells keep their results "
                    "(column blas_kernel says which kernel made each row); --fresh recomputes "
                    "them all", blas, gq_blas_description());
    json_decref(k);
}

int gq_journal_check(const char *results_dir, const gq_experiment *e, bool fresh, gq_error *err)
{
    char dir[4200], kp[4300], why[256];
    snprintf(dir, sizeof dir, "%s/.journal", results_dir);
    key_path(dir, kp, sizeof kp);
    if (fresh)
        return 0;
    key_state ks = read_key(kp, e->key, why);
    if (ks == KEY_ABSENT && has_records(dir)) {
        ks = KEY_DAMAGED;
        snprintf(why, sizeof why, "missing, though the journal holds records");
    }
    if (ks == KEY_DAMAGED)
        return gq_fail(err, "%s: damaged (%s); the results beside it cannot be attributed to an "
                            "experiment: rerun with --fresh to discard them, or give another "
                            "--out-dir", kp, why);
    if (ks == KEY_OTHER)
        return gq_fail(err, "%s holds results of a different experiment definition (the "
                            "experiment file, an included config or an input file changed); "
                            "rerun with --fresh to discard them, or give another --out-dir",
                       results_dir);
    return 0;
}

/* The journal is written and cleaned only inside a real directory, never through a link. */
static int check_journal_dir(const char *dir, gq_error *err)
{
    struct stat st;
    if (lstat(dir, &st) != 0)
        return gq_fail(err, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return gq_fail(err, "%s: not a directory (a symbolic link or a file): the journal is "
                            "kept only in a directory of its own", dir);
    return 0;
}

/* Whether the key file must be written: not when it holds this experiment's key (then a
 * resume by another build is warned about). Anything else is only left here with --fresh, as
 * gq_journal_check refused it otherwise. */
static bool key_needs_writing(const char *kp, const char *key)
{
    char why[256];
    if (read_key(kp, key, why) != KEY_SAME)
        return true;
    warn_other_build(kp);
    return false;
}

int gq_journal_open(const char *results_dir, const gq_experiment *e, bool fresh, gq_journal *j,
                    gq_error *err)
{
    if (gq_journal_check(results_dir, e, fresh, err))
        return -1;
    snprintf(j->dir, sizeof j->dir, "%s/.journal", results_dir);
    snprintf(j->key, sizeof j->key, "%s", e->key);
    if (gq_mkdir_p(j->dir, err) || check_journal_dir(j->dir, err))
        return -1;
    clean_dir(j->dir, fresh);
    char kp[4300];
    key_path(j->dir, kp, sizeof kp);
    if (!key_needs_writing(kp, e->key))
        return 0;
    return gq_write_json_atomic(kp, key_json(e), FILE_DUMP, err);
}

static void cell_path(const gq_journal *j, const char *id, char *out, size_t n)
{
    snprintf(out, n, "%s/cell-%s.json", j->dir, id);
}

/* sha256 hex of "<cell>\n<key>\n<record in RECORD_DUMP form>"; false when it cannot dump. */
static bool record_sha256(const char *cell, const char *key, const json_t *record, char hex[65])
{
    char *dump = json_dumps(record, RECORD_DUMP);
    if (!dump)
        return false;
    gq_sha256 s;
    gq_sha256_init(&s);
    gq_sha256_update(&s, cell, strlen(cell));
    gq_sha256_update(&s, "\n", 1);
    gq_sha256_update(&s, key, strlen(key));
    gq_sha256_update(&s, "\n", 1);
    gq_sha256_update(&s, dump, strlen(dump));
    gq_sha256_final_hex(&s, hex);
    free(dump);
    return true;
}

json_t *gq_journal_parse_record(const char *text, size_t len, const char *cell_id,
                                const char *key, char why[256])
{
    json_error_t je;
    json_t *w = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!w) {
        snprintf(why, 256, "not JSON: line %d: %.200s", je.line, je.text);
        return NULL;
    }
    const char *cell = json_string_value(json_object_get(w, "cell"));
    const char *k = json_string_value(json_object_get(w, "key"));
    const char *sum = json_string_value(json_object_get(w, "sha256"));
    json_t *rec = json_object_get(w, "record");
    char hex[65];
    json_t *out = NULL;
    if (!cell || !k || !sum || !json_is_object(rec))
        snprintf(why, 256, "not a checksummed record (strings cell, key, sha256 and an object "
                           "record)");
    else if (strcmp(cell, cell_id) != 0)
        snprintf(why, 256, "holds the record of cell %.32s", cell);
    else if (strcmp(k, key) != 0)
        snprintf(why, 256, "belongs to another experiment definition (key %.12s..., this "
                           "experiment's %.12s...)", k, key);
    else if (!record_sha256(cell, k, rec, hex) || strcmp(hex, sum) != 0)
        snprintf(why, 256, "checksum mismatch: the record changed after it was written");
    else
        out = json_incref(rec);
    json_decref(w);
    return out;
}

/* The valid record of cell_id (new reference), or NULL with the reason in why. */
static json_t *read_record(const gq_journal *j, const char *cell_id, char why[256])
{
    char p[4300], *text = NULL;
    size_t len = 0;
    gq_error e = {{0}};
    cell_path(j, cell_id, p, sizeof p);
    if (gq_read_file(p, &text, &len, &e)) {
        snprintf(why, 256, "%.240s", e.msg);
        return NULL;
    }
    json_t *r = gq_journal_parse_record(text, len, cell_id, j->key, why);
    free(text);
    return r;
}

bool gq_journal_has(const gq_journal *j, const char *cell_id)
{
    char p[4300], why[256];
    cell_path(j, cell_id, p, sizeof p);
    if (!gq_file_exists(p))
        return false;
    json_t *r = read_record(j, cell_id, why);
    if (r) {
        json_decref(r);
        return true;
    }
    gq_log_warn("%s: %s; cell %s is computed again", p, why, cell_id);
    unlink(p);
    return false;
}

int gq_journal_put(const gq_journal *j, const char *cell_id, json_t *record, gq_error *err)
{
    char p[4300], sum[65];
    cell_path(j, cell_id, p, sizeof p);
    json_t *w = NULL;
    char *s = NULL;
    if (record_sha256(cell_id, j->key, record, sum))
        w = json_pack("{s:s, s:s, s:s, s:O}", "cell", cell_id, "key", j->key, "sha256", sum,
                      "record", record);
    if (w)
        s = json_dumps(w, FILE_DUMP);
    json_decref(w);
    if (!s)
        return gq_fail(err, "%s: cannot serialise the cell record", p);
    int rc = gq_write_file_atomic(p, s, strlen(s), err);
    free(s);
    return rc;
}

json_t *gq_journal_get(const gq_journal *j, const char *cell_id, gq_error *err)
{
    char p[4300], why[256];
    json_t *r = read_record(j, cell_id, why);
    if (!r) {
        cell_path(j, cell_id, p, sizeof p);
        gq_fail(err, "%s: %s; run the experiment again to compute the cell again", p, why);
    }
    return r;
}

void gq_journal_baseline_path(const gq_journal *j, char *out, size_t n)
{
    snprintf(out, n, "%s/baseline.logp", j->dir);
}
