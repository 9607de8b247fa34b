/* The resume journal through the gq-bench binary: nothing read back is trusted. A record with
 * a changed digit, copied to another cell's name or belonging to another experiment
 * definition is named in a warning and that cell alone is computed again; a damaged
 * baseline.logp (a flipped bit, a zeroed mean_nll) makes the baseline be evaluated again; a
 * damaged key, or one deleted while records remain, is called damaged and stops the run. Two
 * runs into one results directory: the second stops (exit 2), --fresh or not, and the first
 * finishes with its own numbers. */
#include "test_support.h"

#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/gq_fileio.h"
#include "eval/eval_baseline.h"
#include "report/gq_table.h"

static char g_out[1 << 16], g_err[1 << 16];
#define run(...) test_run_clif(g_out, sizeof g_out, g_err, sizeof g_err, __VA_ARGS__)

/* One experiment ("tiny": the synthetic tiny model, q4_0 and q8_0 cells) run undisturbed with
 * 2 and with 1 evaluation windows, the references the damaged journals must reproduce. */
typedef struct fixture {
    char *dir;          /* holds tiny2.json, tiny1.json and their clean results */
    char exp[2][4200];  /* [0] 2 windows, [1] 1 window: the same name, another definition */
    char ref[2][4300];  /* out-dirs of their undisturbed runs */
} fixture;
static fixture g;

/* The quality columns of results.csv that a resumed run must reproduce exactly. */
static const char *const quality[] = {"ppl", "ppl_stderr", "kl_div", "kl_stderr", "top1_pct",
                                      "delta_ppl", "bpw"};

static void write_tiny(const char *path, int windows)
{
    char tok[4096], text[4096];
    assert_true(test_asset("models/stories260K/tok512.bin", tok, sizeof tok));
    assert_true(test_asset("text/tinystories/tinystories_val.txt", text, sizeof text));
    test_write_textf(path,
        "{\"name\": \"tiny\", \"throughput\": {\"enabled\": false},\n"
        " \"model\": {\"synthetic\": \"tiny\", \"tokenizer\": \"%s\"},\n"
        " \"eval\": {\"text\": \"%s\", \"ctx\": 32, \"max_windows\": %d,\n"
        "          \"kl_baseline\": \"stored\"},\n"
        " \"methods\": [{\"label\": \"a\", \"method\": \"rtn\", \"format\": \"q4_0\"},\n"
        "             {\"label\": \"b\", \"method\": \"rtn\", \"format\": \"q8_0\"}]}\n",
        tok, text, windows);
}

static void run_ok(const char *exp, const char *out_dir)
{
    int rc = run("run %s --out-dir %s --threads 1 --no-plots", exp, out_dir);
    if (rc != 0)
        fail_msg("run %s: exit %d: %s", exp, rc, g_err);
}

static int setup(void **state)
{
    (void)state;
    char probe[4096];
    if (!test_asset("models/stories260K/tok512.bin", probe, sizeof probe))
        return 0; /* each test skips (or fails when assets are required) */
    g.dir = test_tmpdir("journal");
    for (int v = 0; v < 2; v++) {
        snprintf(g.exp[v], sizeof g.exp[v], "%s/tiny%d.json", g.dir, 2 - v);
        write_tiny(g.exp[v], 2 - v);
        snprintf(g.ref[v], sizeof g.ref[v], "%s/ref%d", g.dir, v);
        run_ok(g.exp[v], g.ref[v]);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(g.dir);
    return 0;
}

/* A fresh out-dir holding a copy of the undisturbed run of experiment v (its journal only);
 * skips the test when the reference runs are missing (no assets). */
static char *copy_of_ref(const char *tag, int v)
{
    if (!g.dir)
        skip();
    char *dir = test_tmpdir(tag);
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/results/tiny' && cp -a '%s/results/tiny/.journal' "
             "'%s/results/tiny/'", dir, g.ref[v], dir);
    assert_int_equal(system(cmd), 0);
    return dir;
}

static void journal_file(const char *dir, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/results/tiny/.journal/%s", dir, name);
}

/* results.csv of out_dir has the quality numbers of the undisturbed run of experiment v. */
static void expect_reference_numbers(const char *dir, int v)
{
    char a[4400], b[4400];
    snprintf(a, sizeof a, "%s/results/tiny/results.csv", g.ref[v]);
    snprintf(b, sizeof b, "%s/results/tiny/results.csv", dir);
    gq_table ta, tb;
    gq_error err = {{0}};
    if (gq_table_read_csv(a, &ta, &err) || gq_table_read_csv(b, &tb, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(gq_table_n_rows(&ta), 3);
    assert_int_equal(gq_table_n_rows(&tb), 3);
    for (size_t r = 0; r < 3; r++)
        for (size_t k = 0; k < sizeof quality / sizeof quality[0]; k++) {
            double x = gq_table_num(&ta, r, quality[k]), y = gq_table_num(&tb, r, quality[k]);
            if (r > 0 && strncmp(quality[k], "kl", 2) == 0 && isnan(y))
                fail_msg("%s row %zu: %s is empty", b, r, quality[k]);
            if (!(x == y || (isnan(x) && isnan(y))))
                fail_msg("%s row %zu: %s %.17g, the undisturbed run's %.17g", b, r, quality[k],
                         y, x);
        }
    gq_table_free(&ta);
    gq_table_free(&tb);
}

/* Resumes experiment v into dir: exit 0, stderr holds every string of `want`, the numbers are
 * the undisturbed run's. */
static void resume_expect(const char *dir, int v, const char *const *want, int n_want)
{
    int rc = run("run %s --out-dir %s --threads 1 --no-plots", g.exp[v], dir);
    if (rc != 0)
        fail_msg("resume: exit %d: %s", rc, g_err);
    for (int i = 0; i < n_want; i++)
        if (!strstr(g_err, want[i]))
            fail_msg("resume: stderr lacks \"%s\":\n%s", want[i], g_err);
    expect_reference_numbers(dir, v);
}

/* Changes the first digit after `after` in the file at path to another digit. */
static void change_digit(const char *path, const char *after)
{
    size_t len;
    char *s = test_read_file(path, &len);
    char *p = strstr(s, after);
    assert_non_null(p);
    p += strlen(after);
    while (*p && (*p < '0' || *p > '9'))
        p++;
    assert_true(*p != '\0');
    *p = *p == '9' ? '1' : (char)(*p + 1);
    test_write_file(path, s, len);
    free(s);
}

static void copy_file(const char *from, const char *to)
{
    size_t len;
    char *s = test_read_file(from, &len);
    test_write_file(to, s, len);
    free(s);
}

static void test_bad_records(void **state)
{
    (void)state;
    char *dir = copy_of_ref("journal-records", 0);
    char c1[4400], c2[4400], other[4400];
    journal_file(dir, "cell-c001.json", c1, sizeof c1);
    journal_file(dir, "cell-c002.json", c2, sizeof c2);

    /* one changed digit of a ppl */
    change_digit(c1, "\"ppl\":");
    const char *digit[] = {"cell-c001.json: checksum mismatch", "cell c001 is computed again",
                           "resuming: 1 of 2 cells"};
    resume_expect(dir, 0, digit, 3);

    /* a record copied to another cell's name */
    copy_file(c1, c2);
    const char *copied[] = {"cell-c002.json: holds the record of cell c001",
                            "cell c002 is computed again", "resuming: 1 of 2 cells"};
    resume_expect(dir, 0, copied, 3);

    /* the record of the same cell of another experiment definition */
    snprintf(other, sizeof other, "%s/results/tiny/.journal/cell-c001.json", g.ref[1]);
    copy_file(other, c1);
    const char *foreign[] = {"cell-c001.json: belongs to another experiment definition",
                             "resuming: 1 of 2 cells"};
    resume_expect(dir, 0, foreign, 2);

    /* a record without the checksummed envelope */
    const char bare_record[] = "{\"row\": {\"ppl\": 1.5}}";
    test_write_file(c2, bare_record, strlen(bare_record));
    const char *bare[] = {"cell-c002.json: not a checksummed record", "resuming: 1 of 2 cells"};
    resume_expect(dir, 0, bare, 2);
    free(dir);
}

/* Writes n bytes at offset of path (which must be larger). */
static void patch_file(const char *path, long offset, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, offset, SEEK_SET), 0);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    fclose(f);
}

static void test_bad_baseline_file(void **state)
{
    (void)state;
    char *dir = copy_of_ref("journal-baseline", 0);
    char logp[4400];
    journal_file(dir, "baseline.logp", logp, sizeof logp);
    const char *want[] = {"baseline.logp: checksum mismatch",
                          "the baseline is evaluated again",
                          "baseline: evaluating the unquantized model",
                          "resuming: 2 of 2 cells"};

    /* one flipped bit among the log-probabilities */
    long size = (long)gq_file_size(logp, NULL);
    size_t len;
    unsigned char *s = test_read_file(logp, &len);
    unsigned char b = s[size / 2] ^ 0x10;
    free(s);
    patch_file(logp, size / 2, &b, 1);
    resume_expect(dir, 0, want, 4);

    /* a zeroed mean_nll */
    const double zero = 0.0;
    patch_file(logp, (long)offsetof(gq_baseline_header, mean_nll), &zero, sizeof zero);
    resume_expect(dir, 0, want, 4);
    free(dir);
}

/* Runs experiment v into dir: exit 2 naming the key file as damaged (why), and nothing else
 * said about it. */
static void expect_damaged_key(const char *dir, int v, const char *why)
{
    int rc = run("run %s --out-dir %s --threads 1 --no-plots", g.exp[v], dir);
    if (rc != 2 || !strstr(g_err, ".journal/key: damaged (") || !strstr(g_err, why) ||
        strstr(g_err, "different experiment definition"))
        fail_msg("exit %d (expected 2, \"key: damaged (%s\"): %s", rc, why, g_err);
}

static void test_bad_key(void **state)
{
    (void)state;
    char *dir = copy_of_ref("journal-key", 0);
    char key[4400];
    journal_file(dir, "key", key, sizeof key);

    /* a changed digit of the key: damaged, not another experiment definition */
    change_digit(key, "\"key\":");
    expect_damaged_key(dir, 0, "the key does not match its checksum");
    /* not JSON at all */
    test_write_file(key, "\x01garbage", 8);
    expect_damaged_key(dir, 0, "not JSON");
    /* deleted while records remain, and the experiment edited */
    assert_int_equal(unlink(key), 0);
    expect_damaged_key(dir, 1, "missing, though the journal holds records");

    /* --fresh discards the journal: the edited experiment's own numbers */
    int rc = run("run %s --out-dir %s --threads 1 --no-plots --fresh", g.exp[1], dir);
    if (rc != 0)
        fail_msg("--fresh: exit %d: %s", rc, g_err);
    assert_null(strstr(g_err, "resuming:"));
    expect_reference_numbers(dir, 1);
    free(dir);
}

/* Waits until the process pid has written path; false when it exited first. */
static bool wait_for_file(pid_t pid, const char *path, int *status)
{
    for (int i = 0; i < 120000; i++) {
        if (gq_file_exists(path))
            return true;
        if (waitpid(pid, status, WNOHANG) == pid)
            return false;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return false;
}

static void test_one_run_at_a_time(void **state)
{
    (void)state;
    if (!g.dir)
        skip();
    char *dir = test_tmpdir("journal-lock");
    char key[4400];
    journal_file(dir, "key", key, sizeof key);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execl(getenv("GQ_BENCH"), "gq-bench", "run", g.exp[0], "--out-dir", dir, "--threads",
              "1", "--no-plots", (char *)NULL);
        _exit(127);
    }
    /* the first run holds the lock once it has written its key: freeze it there */
    int status = 0;
    if (!wait_for_file(pid, key, &status))
        fail_msg("the first run exited (status %d) before writing its journal key", status);
    assert_int_equal(kill(pid, SIGSTOP), 0);
    assert_int_equal(waitpid(pid, &status, WNOHANG), 0);

    int rc = run("run %s --out-dir %s --threads 1 --no-plots", g.exp[0], dir);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(g_err, "another gq-bench run is writing into this results directory"));
    /* --fresh with another definition (fewer windows) touches nothing either */
    rc = run("run %s --out-dir %s --threads 1 --no-plots --fresh", g.exp[1], dir);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(g_err, "another gq-bench run is writing into this results directory"));
    assert_true(gq_file_exists(key));

    assert_int_equal(kill(pid, SIGCONT), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    expect_reference_numbers(dir, 0);
    /* the lock went with the first run */
    run_ok(g.exp[0], dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_records),
        cmocka_unit_test(test_bad_baseline_file),
        cmocka_unit_test(test_bad_key),
        cmocka_unit_test(test_one_run_at_a_time),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
