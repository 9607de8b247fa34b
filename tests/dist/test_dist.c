/* Runs and evaluations spread over processes, through the gq-bench binary: `mpirun -np 2` and
 * `-np 3` on experiments/smoke.json (and -np 2 with --split-eval), a worker killed with SIGKILL followed by a rerun, and
 * `--shard 1/3..3/3` + `merge` all give the single-process results.csv (identity, quality and
 * size columns, bit for bit); `mpirun eval` prints the numbers of `eval` and saves the same
 * baseline file; the results-directory lock holds under mpirun; one rank with a bad command
 * line ends the whole job. Skipped (with the reason)
 * only when the build has no MPI (meson option mpi). */
#include "test_support.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/gq_error.h"
#include "core/gq_fileio.h"
#include "report/gq_table.h"

static char g_out[1 << 16], g_err[1 << 16];
#define run(...) test_run_clif(g_out, sizeof g_out, g_err, sizeof g_err, __VA_ARGS__)

static char g_smoke[4096]; /* experiments/smoke.json */
static char *g_ref;        /* out-dir of the single-process run */

/* mpirun in a container and as root (CI): oversubscribed cores, shared memory only, no core
 * binding (each rank runs --threads threads). */
#define MPIRUN "mpirun --oversubscribe --bind-to none --mca btl self,vader"

static bool build_has_mpi(void) { return GQ_BUILD_MPI; }

#define MPI_OR_SKIP()                                                                      \
    do {                                                                                   \
        if (!build_has_mpi()) {                                                            \
            print_message("skipped: this build has no MPI (meson option mpi disabled or "  \
                          "Open MPI not found)\n");                                        \
            skip();                                                                        \
        }                                                                                  \
    } while (0)

/* Runs `mpirun -np N gq-bench ARGS` (stdout/stderr into g_out/g_err); its exit status. */
static int mpirun(int np, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int mpirun(int np, const char *fmt, ...)
{
    char args[8192], cmd[12000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *dir = test_tmpdir("mpirun");
    snprintf(cmd, sizeof cmd, MPIRUN " -np %d %s %s >%s/out 2>%s/err </dev/null", np,
             getenv("GQ_BENCH"), args, dir, dir);
    int st = system(cmd);
    char path[4200];
    snprintf(path, sizeof path, "%s/out", dir);
    size_t n = 0;
    char *t = test_read_file(path, &n);
    snprintf(g_out, sizeof g_out, "%.*s", (int)n, t);
    free(t);
    unlink(path);
    snprintf(path, sizeof path, "%s/err", dir);
    t = test_read_file(path, &n);
    snprintf(g_err, sizeof g_err, "%.*s", (int)n, t);
    free(t);
    unlink(path);
    rmdir(dir);
    free(dir);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Columns that must be equal bit for bit: identity, quality and sizes (timings differ). */
static const char *const same_cols[] = {
    "cell", "series", "method", "format", "sweep", "ppl", "ppl_stderr", "delta_ppl", "kl_div",
    "kl_stderr", "top1_pct", "top1_stderr_pct", "base_ppl", "mean_nll", "nll_stderr", "bpw",
    "linear_bytes", "model_bytes", "quantized_tensors", "fp_tensors", "packed_bytes", "scored"};

/* results.csv under out_dir equals the single-process run's in same_cols, row by row. */
static void expect_reference_csv(const char *out_dir)
{
    char a[4300], b[4300];
    snprintf(a, sizeof a, "%s/results/smoke/results.csv", g_ref);
    snprintf(b, sizeof b, "%s/results/smoke/results.csv", out_dir);
    gq_table ta, tb;
    gq_error err = {{0}};
    if (gq_table_read_csv(a, &ta, &err) || gq_table_read_csv(b, &tb, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(gq_table_n_rows(&tb), gq_table_n_rows(&ta));
    assert_int_equal(gq_table_n_rows(&ta), 10);
    for (size_t r = 0; r < gq_table_n_rows(&ta); r++)
        for (size_t k = 0; k < sizeof same_cols / sizeof same_cols[0]; k++) {
            const char *c = same_cols[k];
            json_t *x = json_object_get(gq_table_row(&ta, r), c);
            json_t *y = json_object_get(gq_table_row(&tb, r), c);
            if (!json_equal(x, y) && !(!x && !y))
                fail_msg("%s row %zu: %s is %.17g / %s, the single process's %.17g / %s", b, r,
                         c, gq_table_num(&tb, r, c), gq_table_str(&tb, r, c) ? "" : "-",
                         gq_table_num(&ta, r, c), gq_table_str(&ta, r, c) ? "" : "-");
        }
    gq_table_free(&ta);
    gq_table_free(&tb);
}

/* dir/smoke.json: experiments/smoke.json without the throughput measurement (timings are not
 * compared, and their steady rounds would take most of the time on a loaded machine). */
static void write_smoke(const char *dir)
{
    const char *root = getenv("GQ_SOURCE_ROOT");
    char shipped[4096];
    snprintf(shipped, sizeof shipped, "%s/experiments/smoke.json", root ? root : ".");
    size_t len = 0;
    char *text = test_read_file(shipped, &len);
    char *brace = memchr(text, '{', len);
    assert_non_null(brace);
    snprintf(g_smoke, sizeof g_smoke, "%s/smoke.json", dir);
    test_write_textf(g_smoke, "{\"throughput\": {\"enabled\": false},%.*s",
                     (int)(len - (size_t)(brace + 1 - text)), brace + 1);
    free(text);
}

static int setup(void **state)
{
    (void)state;
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1); /* CI runs the tests as root */
    setenv("OMPI_MCA_mca_base_component_disable_dlclose", "1", 1);
    setenv("LSAN_OPTIONS", "suppressions=" GQ_LSAN_SUPP ":fast_unwind_on_malloc=0", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    if (!test_setup_assets())
        return 0;
    g_ref = test_tmpdir("dist-ref");
    write_smoke(g_ref);
    int rc = run("run %s --out-dir %s --threads 1 --no-plots", g_smoke, g_ref);
    if (rc != 0)
        fprintf(stderr, "single-process run: exit %d: %s\n", rc, g_err);
    return rc;
}

static int teardown(void **state)
{
    (void)state;
    free(g_ref);
    return 0;
}

static void ready_or_skip(void)
{
    MPI_OR_SKIP();
    test_assets_or_skip();
}

/* mpirun -np np run (with `extra` options) gives the single-process results; its stderr holds
 * `says`. */
static void expect_mpirun_equals_single(int np, const char *extra, const char *says)
{
    ready_or_skip();
    char *dir = test_tmpdir("dist-np");
    int rc = mpirun(np, "run %s --out-dir %s --threads 1 --no-plots %s", g_smoke, dir, extra);
    if (rc != 0)
        fail_msg("mpirun -np %d: exit %d: %s", np, rc, g_err);
    test_contains_all(g_err, says, "baseline: its windows are split among the", NULL);
    expect_reference_csv(dir);
    free(dir);
}

static void test_mpirun_np2(void **state)
{
    (void)state;
    expect_mpirun_equals_single(2, "", "rank utilisation");
}

static void test_mpirun_np3(void **state)
{
    (void)state;
    expect_mpirun_equals_single(3, "", "the largest expected cost first");
}

/* --split-eval: every cell on both ranks, its windows split. */
static void test_mpirun_split_eval(void **state)
{
    (void)state;
    expect_mpirun_equals_single(2, "--split-eval", "with its evaluation windows split");
}

/* Cell records (cell-c*.json, not the baseline's) in a journal directory. */
static int cell_records(const char *journal)
{
    DIR *d = opendir(journal);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        n += strncmp(de->d_name, "cell-c", 6) == 0 && !strstr(de->d_name, ".tmp.");
    if (d)
        closedir(d);
    return n;
}

/* The child of mpirun `parent` that is MPI rank `rank`, or -1. */
static pid_t rank_pid(pid_t parent, int rank)
{
    char want[64];
    snprintf(want, sizeof want, "OMPI_COMM_WORLD_RANK=%d", rank);
    DIR *d = opendir("/proc");
    struct dirent *de;
    pid_t found = -1;
    while (found < 0 && (de = readdir(d))) {
        pid_t pid = (pid_t)atoi(de->d_name);
        char path[300], stat[512], env[1 << 15];
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        FILE *f = pid > 0 ? fopen(path, "r") : NULL;
        int ppid = 0;
        if (f) {
            if (fgets(stat, sizeof stat, f) && strrchr(stat, ')'))
                sscanf(strrchr(stat, ')') + 2, "%*c %d", &ppid);
            fclose(f);
        }
        if (ppid != parent)
            continue;
        snprintf(path, sizeof path, "/proc/%d/environ", pid);
        int fd = open(path, O_RDONLY);
        ssize_t n = fd >= 0 ? read(fd, env, sizeof env - 1) : -1;
        if (fd >= 0)
            close(fd);
        for (ssize_t i = 0; i < n; i += (ssize_t)strlen(env + i) + 1) {
            env[n] = '\0';
            if (strcmp(env + i, want) == 0)
                found = pid;
        }
    }
    closedir(d);
    return found;
}

/* mpirun -np 3 started in dir; rank 1 is killed with SIGKILL once the journal holds a cell. */
static int run_and_kill_rank1(const char *dir, int *records_at_end)
{
    char journal[4300], errp[4300];
    snprintf(journal, sizeof journal, "%s/results/smoke/.journal", dir);
    snprintf(errp, sizeof errp, "%s/stderr", dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        dup2(fd, 1);
        execlp("mpirun", "mpirun", "--oversubscribe", "--bind-to", "none", "--mca", "btl",
               "self,vader", "-np", "3", getenv("GQ_BENCH"), "run", g_smoke, "--out-dir", dir,
               "--threads", "1", "--no-plots", (char *)NULL);
        _exit(127);
    }
    struct timespec ts = {0, 10 * 1000 * 1000};
    for (int i = 0; i < 30000 && cell_records(journal) == 0; i++)
        nanosleep(&ts, NULL);
    pid_t worker = rank_pid(pid, 1);
    if (worker > 0)
        kill(worker, SIGKILL);
    int st = 0;
    waitpid(pid, &st, 0);
    *records_at_end = cell_records(journal);
    size_t n = 0;
    char *t = test_read_file(errp, &n);
    snprintf(g_err, sizeof g_err, "%.*s", (int)n, t);
    free(t);
    unlink(errp);
    if (worker <= 0)
        fail_msg("no rank 1 under mpirun (pid %d): %s", (int)pid, g_err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A worker killed mid-run ends the job naming the lost cells; the finished cells stay in the
 * journal and a rerun with another number of ranks completes only the missing ones. */
static void test_killed_worker_then_rerun(void **state)
{
    (void)state;
    ready_or_skip();
    char *dir = test_tmpdir("dist-kill");
    int left = 0, rc = run_and_kill_rank1(dir, &left);
    assert_int_not_equal(rc, 0);
    test_contains_all(g_err, "the MPI job ended while these cells were running",
                      "they are lost", NULL);
    if (left < 1 || left >= 9)
        fail_msg("%d of 9 cell records after the kill: not mid-run", left);
    rc = mpirun(2, "run %s --out-dir %s --threads 1 --no-plots", g_smoke, dir);
    if (rc != 0)
        fail_msg("rerun: exit %d: %s", rc, g_err);
    char want[64];
    snprintf(want, sizeof want, "resuming: %d of 9 cells already in the journal", left);
    test_contains_all(g_err, want, NULL);
    expect_reference_csv(dir);
    free(dir);
}

/* The lock on the results directory holds for an MPI job: exit 2, nothing run. */
static void test_lock_under_mpirun(void **state)
{
    (void)state;
    ready_or_skip();
    char *dir = test_tmpdir("dist-lock");
    char results[4300];
    snprintf(results, sizeof results, "%s/results", dir);
    assert_int_equal(mkdir(results, 0755), 0);
    snprintf(results, sizeof results, "%s/results/smoke", dir);
    assert_int_equal(mkdir(results, 0755), 0);
    int fd = open(results, O_RDONLY | O_DIRECTORY);
    assert_true(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0);
    int rc = mpirun(2, "run %s --out-dir %s --threads 1 --no-plots", g_smoke, dir);
    close(fd);
    assert_int_equal(rc, 2);
    test_contains_all(g_err, "another gq-bench run is writing into this results directory",
                      NULL);
    free(dir);
}


/* Writes dir/smoke.json: smoke.json with another number of evaluation windows (the same name,
 * another definition). */
static void write_other_smoke(const char *dir, char *path, size_t n)
{
    size_t len = 0;
    char *text = test_read_file(g_smoke, &len);
    char *at = strstr(text, "\"max_windows\": 4");
    if (!at)
        fail_msg("smoke.json no longer holds \"max_windows\": 4");
    at[strlen("\"max_windows\": ")] = '3';
    snprintf(path, n, "%s/smoke.json", dir);
    test_write_file(path, text, len);
    free(text);
}

static void shard_ok(const char *exp, const char *dir, int i, const char *extra)
{
    int rc = run("run %s --out-dir %s --threads 1 --no-plots --shard %d/3 %s", exp, dir, i,
                 extra);
    if (rc != 0)
        fail_msg("shard %d/3: exit %d: %s", i, rc, g_err);
}

static void merge_refused(const char *dir, const char *why)
{
    int rc = run("merge %s/results/smoke --no-plots", dir);
    if (rc != 2)
        fail_msg("merge: exit %d (expected 2): %s", rc, g_err);
    test_contains_all(g_err, why, NULL);
    char csv[4300];
    snprintf(csv, sizeof csv, "%s/results/smoke/results.csv", dir);
    assert_false(gq_file_exists(csv));
}

/* --shard 1/3..3/3 + merge (no MPI needed): the single-process results. Merging is refused
 * with nothing written while a shard is missing, belongs to another definition or lacks a
 * cell. */
static void test_shards_merge(void **state)
{
    (void)state;
    test_assets_or_skip();
    char *dir = test_tmpdir("dist-shards"), *other = test_tmpdir("dist-other");
    char other_exp[4300], rec[4400];
    shard_ok(g_smoke, dir, 1, "");
    shard_ok(g_smoke, dir, 2, "");
    merge_refused(dir, "2 of the 3 shards");
    write_other_smoke(other, other_exp, sizeof other_exp);
    shard_ok(other_exp, dir, 3, "--fresh");
    merge_refused(dir, "different experiment definition");
    shard_ok(g_smoke, dir, 3, "--fresh");
    snprintf(rec, sizeof rec, "%s/results/smoke/shard-2of3/.journal/cell-c005.json", dir);
    assert_int_equal(unlink(rec), 0);
    merge_refused(dir, "have no record in any shard (c005)");
    shard_ok(g_smoke, dir, 2, "");
    test_contains_all(g_err, "resuming: 2 of 3 cells already in the journal", NULL);
    int rc = run("merge %s/results/smoke --no-plots", dir);
    if (rc != 0)
        fail_msg("merge: exit %d: %s", rc, g_err);
    expect_reference_csv(dir);
    free(dir);
    free(other);
}

/* `eval` output fields that must be equal bit for bit under mpirun. */
static const char *const eval_fields[] = {"ppl", "ppl_stderr", "mean_nll", "nll_stderr",
                                          "kl_div", "kl_stderr", "top1_pct", "top1_stderr_pct",
                                          "delta_ppl", "base_ppl", "scored", "eval_windows"};

static json_t *eval_json(int np, const char *args)
{
    int rc = np ? mpirun(np, "eval %s --json", args) : run("eval %s --json", args);
    if (rc != 0)
        fail_msg("eval (np %d): exit %d: %s", np, rc, g_err);
    json_error_t je;
    json_t *o = json_loads(g_out, 0, &je);
    if (!o)
        fail_msg("eval (np %d): not JSON: %s", np, g_out);
    return o;
}

static void expect_same_eval(json_t *a, json_t *b, int np)
{
    for (size_t k = 0; k < sizeof eval_fields / sizeof eval_fields[0]; k++) {
        json_t *x = json_object_get(a, eval_fields[k]), *y = json_object_get(b, eval_fields[k]);
        if ((x || y) && !json_equal(x, y))
            fail_msg("eval -np %d: %s %.17g, one process %.17g", np, eval_fields[k],
                     json_number_value(y), json_number_value(x));
    }
    assert_int_equal(json_integer_value(json_object_get(b, "ranks")), np);
}

/* mpirun eval: the numbers of one process, and the same saved baseline file. */
static void test_mpirun_eval(void **state)
{
    (void)state;
    MPI_OR_SKIP();
    char model[4096], tok[4096], text[4096];
    test_stories_files_or_skip(model, tok, text, sizeof model);
    char *dir = test_tmpdir("dist-eval"), args[20000], tiny[4300], b1[4300], b3[4300];
    snprintf(tiny, sizeof tiny, "%s/tiny.bin", dir);
    assert_int_equal(run("synth --preset tiny --seed 1 --out %s", tiny), 0);
    const char *common = "--ctx 32 --max-windows 9 --batch 2 --threads 1";
    snprintf(b1, sizeof b1, "%s/b1.logp", dir);
    snprintf(b3, sizeof b3, "%s/b3.logp", dir);
    snprintf(args, sizeof args, "--model %s --tokenizer %s --data %s %s --save-baseline %s",
             model, tok, text, common, b1);
    json_t *one = eval_json(0, args);
    snprintf(args, sizeof args, "--model %s --tokenizer %s --data %s %s --save-baseline %s",
             model, tok, text, common, b3);
    json_t *three = eval_json(3, args);
    expect_same_eval(one, three, 3);
    size_t n1 = 0, n3 = 0;
    char *d1 = test_read_file(b1, &n1), *d3 = test_read_file(b3, &n3);
    assert_true(n1 == n3 && memcmp(d1, d3, n1) == 0);
    free(d1);
    free(d3);
    json_decref(one);
    json_decref(three);
    snprintf(args, sizeof args, "--model %s --tokenizer %s --data %s %s --baseline %s", tiny,
             tok, text, common, b1);
    one = eval_json(0, args);
    json_t *two = eval_json(2, args);
    expect_same_eval(one, two, 2);
    assert_true(json_number_value(json_object_get(two, "kl_div")) > 0);
    json_decref(one);
    json_decref(two);
    unlink(b1);
    unlink(b3);
    unlink(tiny);
    test_remove_dir(dir);
}

/* One rank with a bad command line (mpirun's MPMD form gives each rank its own) ends the whole
 * job with its usage status and message, for `eval` and for `run`, instead of leaving the other
 * ranks waiting for it in their first joint step (a hang, which the suite's timeout fails). */
static void test_rank_with_bad_options_ends_job(void **state)
{
    (void)state;
    MPI_OR_SKIP();
    char model[4096], tok[4096], text[4096];
    test_stories_files_or_skip(model, tok, text, sizeof model);
    const char *bench = getenv("GQ_BENCH");
    char good[13000], bad[13000];
    snprintf(good, sizeof good, "--model %s --tokenizer %s --data %s --ctx 32 --max-windows 4 "
             "--threads 1 --json", model, tok, text);
    snprintf(bad, sizeof bad, "--model %s.missing --tokenizer %s --data %s --ctx 32 "
             "--max-windows 4 --threads 1 --json", model, tok, text);
    int rc = mpirun(1, "eval %s : -np 1 %s eval %s", good, bench, bad);
    if (rc != 2 || !strstr(g_err, ".missing"))
        fail_msg("eval, rank 1 with a missing model: exit %d: %s", rc, g_err);
    char *dir = test_tmpdir("dist-bad-option");
    rc = mpirun(1, "run %s --out-dir %s --threads 1 --no-plots : -np 1 %s run %s --out-dir %s "
                   "--threads 1 --no-plots --no-such-option", g_smoke, dir, bench, g_smoke, dir);
    if (rc != 2 || !strstr(g_err, "--no-such-option"))
        fail_msg("run, rank 1 with an unknown option: exit %d: %s", rc, g_err);
    free(dir); /* rank 0 may have begun its results directory when the job ended */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mpirun_np2),
        cmocka_unit_test(test_mpirun_np3),
        cmocka_unit_test(test_mpirun_split_eval),
        cmocka_unit_test(test_killed_worker_then_rerun),
        cmocka_unit_test(test_lock_under_mpirun),
        cmocka_unit_test(test_shards_merge),
        cmocka_unit_test(test_mpirun_eval),
        cmocka_unit_test(test_rank_with_bad_options_ends_job),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
