/* Hostile or broken input through the gq-bench binary: labels and results files that try to
 * reach gnuplot as code, a repeated CSV column, a weight that overflows fp32, unusable output
 * paths (read-only, devices, links, a symlinked journal), inputs that are not regular files,
 * huge sweeps and a disk that fills up. Each must end in a clear error or a correct result:
 * never a crash, a hang, a command run or a half-written file left as a result. */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/gq_fileio.h"
#include "report/gq_plot.h"

static char g_out[1 << 16], g_err[1 << 16];
#define run(...) test_run_clif(g_out, sizeof g_out, g_err, sizeof g_err, __VA_ARGS__)

static void write_text(const char *path, const char *text)
{
    gq_error err = {{0}};
    if (gq_write_file_atomic(path, text, strlen(text), &err))
        fail_msg("%s", err.msg);
}

/* An experiment on the synthetic tiny model: `methods` and `extra` are JSON fragments. */
static void write_experiment(const char *path, const char *name, const char *eval_text,
                             const char *methods, const char *extra)
{
    char *buf;
    if (asprintf(&buf,
                 "{\"name\": \"%s\",%s\n"
                 " \"model\": {\"synthetic\": \"tiny\", "
                 "\"tokenizer\": \"models/stories260K/tok512.bin\"},\n"
                 " \"eval\": {\"text\": \"%s\", \"ctx\": 32, \"max_windows\": 1},\n"
                 " \"methods\": %s}\n",
                 name, extra, eval_text, methods) < 0)
        fail_msg("out of memory");
    write_text(path, buf);
    free(buf);
}

static const char *const q4 = "[{\"label\": \"q\", \"method\": \"rtn\", \"format\": \"q4_0\"}]";
static const char *const val_text = "text/tinystories/tinystories_val.txt";

/* A fresh directory for one test, with exp = <dir>/<file> (the experiment the test writes
 * there); the test skips when the assets are missing. Caller frees. */
static char *experiment_dir(const char *tag, const char *file, char *exp, size_t n)
{
    test_assets_or_skip();
    return test_tmpdir_file(tag, file, exp, n);
}

/* A test_dir_count visit: no temporary, no empty file, every PNG whole, and the same below
 * a subdirectory; returns the number of files. */
static int check_output(const char *path)
{
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    if (S_ISDIR(st.st_mode))
        return test_dir_count(path, check_output);
    const char *name = strrchr(path, '/') + 1;
    if (strstr(name, ".tmp."))
        fail_msg("temporary left behind: %s", path);
    if (st.st_size == 0)
        fail_msg("empty file left behind: %s", path);
    size_t len = strlen(name);
    if (len > 4 && !strcmp(name + len - 4, ".png") && !test_png_complete(path))
        fail_msg("truncated PNG left behind: %s", path);
    return 1;
}

/* A series label with a newline and a gnuplot `system` command: the charts are drawn with
 * the label as text, the command never runs. The same through `plot` on an edited CSV. */
static void test_labels_never_reach_gnuplot_as_code(void **state)
{
    (void)state;
    if (!gq_gnuplot_path())
        skip();
    char exp[4200], mark[4200], methods[9000];
    char *dir = experiment_dir("hostile_label", "inj.json", exp, sizeof exp);
    snprintf(mark, sizeof mark, "%s/PWNED", dir);
    snprintf(methods, sizeof methods,
             "[{\"label\": \"q\\nsystem \\\"touch %s\\\"\\n\", \"method\": \"rtn\", "
             "\"format\": {\"name\": \"int\"}}]", mark);
    write_experiment(exp, "inj", val_text, methods, " \"sweep\": {\"bits\": [3, 4]},");
    int rc = run("run %s --out-dir %s --threads 1", exp, dir);
    if (rc != 0)
        fail_msg("exit %d: %s", rc, g_err);
    assert_false(gq_file_exists(mark));
    char plots[4300];
    snprintf(plots, sizeof plots, "%s/plots/inj", dir);
    assert_int_equal(test_dir_count(plots, check_output), 4); /* bits, bpw, bpw and decode, stage times */

    /* plot: a results.csv whose cell names and model carry commands */
    char csv[4300], *text, *edited;
    size_t len;
    snprintf(csv, sizeof csv, "%s/results/inj/results.csv", dir);
    text = test_read_file(csv, &len);
    edited = malloc(len + 256);
    const char *comma = strchr(text, '\n') + 1; /* first data row */
    snprintf(edited, len + 256, "%.*sinj,\"c0\nsystem 'touch %s'\n\"%s", (int)(comma - text),
             text, mark, comma + strlen("inj,baseline"));
    write_text(csv, edited);
    assert_int_equal(run("plot %s/results/inj --out %s/replot", dir, dir), 0);
    assert_false(gq_file_exists(mark));
    free(text);
    free(edited);
    free(dir);
}

/* plot on a CSV with a repeated header column: an error naming the file (it overflowed the
 * column array). */
static void test_plot_repeated_column(void **state)
{
    (void)state;
    char csv[4200];
    char *dir = test_tmpdir_file("hostile_dupcol", "results/x/results.csv", csv, sizeof csv);
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/results/x", dir);
    gq_error err = {{0}};
    assert_int_equal(gq_mkdir_p(sub, &err), 0);
    write_text(csv, "cell,ppl,ppl,series\nbaseline,1,2,a\nc001,3,4,b\n");
    assert_int_equal(run("plot %s --out %s/p", sub, dir), 1);
    assert_non_null(strstr(g_err, "header column 3 (\"ppl\") repeats"));
    free(dir);
}

/* One RMSNorm weight of stories260K set to 3e38: the activations overflow fp32. run and
 * quantize fail naming where (never ppl 0 / top-1 100%), and no results table is written. */
static void test_non_finite_result_is_an_error(void **state)
{
    (void)state;
    char model[4096];
    test_assets_or_skip();
    TEST_ASSET_OR_SKIP("models/stories260K/stories260K.bin", model);
    char huge[4200], exp[4200], csv[4300];
    char *dir = test_tmpdir_file("hostile_huge", "huge.bin", huge, sizeof huge);
    size_t len;
    unsigned char *bytes = test_read_file(model, &len);
    int32_t hdr[7];
    memcpy(hdr, bytes, sizeof hdr);
    const float big = 3e38f; /* legacy layout: header, token embeddings, then rms_att */
    memcpy(bytes + 28 + (size_t)abs(hdr[5]) * (size_t)hdr[0] * 4, &big, sizeof big);
    FILE *f = fopen(huge, "wb");
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    fclose(f);
    free(bytes);
    snprintf(exp, sizeof exp, "%s/huge.json", dir);
    char body[9000];
    snprintf(body, sizeof body,
             "{\"name\": \"huge\", \"model\": {\"path\": \"%s\", \"tokenizer\": "
             "\"models/stories260K/tok512.bin\"}, \"eval\": {\"text\": \"%s\", \"ctx\": 64, "
             "\"max_windows\": 2}, \"methods\": %s}", huge, val_text, q4);
    write_text(exp, body);
    assert_int_equal(run("run %s --out-dir %s --threads 1 --no-plots", exp, dir), 1);
    assert_non_null(strstr(g_err, "baseline: the model's log-probabilities are not finite"));
    snprintf(csv, sizeof csv, "%s/results/huge/results.csv", dir);
    assert_false(gq_file_exists(csv));
    assert_null(strstr(g_out, "100.00"));

    assert_int_equal(run("quantize --model %s --tokenizer models/stories260K/tok512.bin "
                         "--method rtn --format q4_0 --eval-windows 2 --out %s/q.bin", huge, dir), 1);
    assert_non_null(strstr(g_err, "the reconstruction error is not finite"));
    free(dir);
}

/* Output paths that cannot be used are refused before any work, with exit 2: a read-only
 * --out-dir, a results.csv that is a link, a device as --out. */
static void test_unusable_outputs_refused_up_front(void **state)
{
    (void)state;
    char exp[4200], victim[4200], link[4400];
    char *dir = experiment_dir("hostile_out", "e.json", exp, sizeof exp);
    write_experiment(exp, "e", val_text, q4, "");
    char *ro = test_tmpfs("hostile_ro", 64, true);
    if (ro) {
        assert_int_equal(run("run %s --out-dir %s --threads 1", exp, ro), 2);
        assert_non_null(strstr(g_err, "--out-dir"));
        assert_non_null(strstr(g_err, "not writable"));
        assert_null(strstr(g_err, "baseline:")); /* no work started */
        test_tmpfs_free(ro);
    }
    snprintf(victim, sizeof victim, "%s/victim.txt", dir);
    write_text(victim, "keep");
    char rdir[4300];
    snprintf(rdir, sizeof rdir, "%s/results/e", dir);
    gq_error err = {{0}};
    assert_int_equal(gq_mkdir_p(rdir, &err), 0);
    snprintf(link, sizeof link, "%s/results.csv", rdir);
    assert_int_equal(symlink(victim, link), 0);
    assert_int_equal(run("run %s --out-dir %s --threads 1", exp, dir), 2);
    assert_non_null(strstr(g_err, "symbolic link"));
    size_t n;
    char *kept = test_read_file(victim, &n);
    assert_memory_equal(kept, "keep", 4);
    free(kept);

    struct stat st;
    for (int i = 0; i < 2; i++) {
        const char *dev = i ? "/dev/full" : "/dev/null";
        assert_int_equal(run("synth --preset tiny --out %s", dev), 2);
        assert_non_null(strstr(g_err, dev));
        assert_int_equal(stat(dev, &st), 0);
        assert_true(S_ISCHR(st.st_mode)); /* still the device, not replaced by a file */
    }
    free(dir);
}

/* A .journal that is a link to another directory: --fresh refuses it instead of deleting
 * cell records and overwriting the key where the link points. */
static void test_symlinked_journal_untouched(void **state)
{
    (void)state;
    char exp[4200], other[4200], p[4400], rdir[4300];
    char *dir = experiment_dir("hostile_journal", "e.json", exp, sizeof exp);
    write_experiment(exp, "e", val_text, q4, "");
    snprintf(other, sizeof other, "%s/elsewhere", dir);
    gq_error err = {{0}};
    assert_int_equal(gq_mkdir_p(other, &err), 0);
    snprintf(p, sizeof p, "%s/cell-c001.json", other);
    write_text(p, "{\"precious\": 1}");
    snprintf(p, sizeof p, "%s/key", other);
    write_text(p, "precious key");
    snprintf(rdir, sizeof rdir, "%s/results/e", dir);
    assert_int_equal(gq_mkdir_p(rdir, &err), 0);
    snprintf(p, sizeof p, "%s/.journal", rdir);
    assert_int_equal(symlink(other, p), 0);
    assert_int_equal(run("run %s --out-dir %s --threads 1 --fresh", exp, dir), 2);
    assert_non_null(strstr(g_err, ".journal is a symbolic link"));
    snprintf(p, sizeof p, "%s/cell-c001.json", other);
    assert_true(gq_file_exists(p));
    size_t n;
    snprintf(p, sizeof p, "%s/key", other);
    char *key = test_read_file(p, &n);
    assert_string_equal(key, "precious key");
    free(key);
    free(dir);
}

/* eval.text that is a FIFO (no writer) or /dev/zero: --dry-run refuses it at once instead of
 * hashing an endless stream (a hang fails this test by meson's timeout). */
static void test_inputs_not_regular_files(void **state)
{
    (void)state;
    char exp[4200], fifo[4200];
    char *dir = experiment_dir("hostile_fifo", "e.json", exp, sizeof exp);
    snprintf(fifo, sizeof fifo, "%s/text.fifo", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    const char *texts[] = {fifo, "/dev/zero"};
    for (int i = 0; i < 2; i++) {
        write_experiment(exp, "e", texts[i], q4, "");
        assert_int_equal(run("run %s --dry-run", exp), 2);
        assert_non_null(strstr(g_err, texts[i]));
        assert_non_null(strstr(g_err, "not a regular file"));
    }
    unlink(fifo);
    free(dir);
}

/* A sweep axis of 4000 values expands (linear time: the cells are hashed, not compared
 * pairwise); more cells than the limit are refused before any is built, and
 * GQ_SWEEP_MAX_CELLS moves the limit. */
static void test_sweep_size(void **state)
{
    (void)state;
    char exp[4200];
    char *dir = experiment_dir("hostile_sweep", "s.json", exp, sizeof exp);
    size_t cap = 4000 * 24 + 256;
    char *axis = malloc(cap), *extra = malloc(cap + 64);
    size_t len = 0;
    for (int i = 0; i < 4000; i++)
        len += (size_t)snprintf(axis + len, cap - len, "%s%.6f", i ? ", " : "", 0.1 + i * 0.003);
    snprintf(extra, cap + 64, " \"sweep\": {\"norm\": [%s]},", axis);
    const char *m = "[{\"label\": \"r\", \"method\": \"rtn\", "
                    "\"format\": {\"name\": \"int\", \"clip_search\": \"mse\"}}]";
    write_experiment(exp, "s", val_text, m, extra);
    assert_int_equal(run("run %s --dry-run", exp), 0);
    assert_non_null(strstr(g_out, ": 4001 cells,"));
    setenv("GQ_SWEEP_MAX_CELLS", "4000", 1); /* 4000 cells and the baseline */
    assert_int_equal(run("run %s --dry-run", exp), 2);
    assert_non_null(strstr(g_err, "$.sweep: 4001 cells, more than the limit of 4000"));
    setenv("GQ_SWEEP_MAX_CELLS", "4001", 1);
    assert_int_equal(run("run %s --dry-run", exp), 0);
    unsetenv("GQ_SWEEP_MAX_CELLS");
    free(axis);
    free(extra);
    free(dir);
}

/* A disk that fills up during the run, at several points (journal, tables, charts): exit 1
 * naming the file, never 0 or a crash (HDF5's exit handler crashed after a failed close), and
 * no empty, truncated or temporary file left in results/ or plots/. */
static void test_disk_full_during_run(void **state)
{
    (void)state;
    char exp[4200];
    char *dir = experiment_dir("hostile_full", "e.json", exp, sizeof exp);
    write_experiment(exp, "e", val_text, q4, " \"sweep\": {},");
    static const int sizes_kib[] = {48, 96, 128, 160, 240};
    int failed = 0;
    for (size_t i = 0; i < sizeof sizes_kib / sizeof sizes_kib[0]; i++) {
        char *fs = test_tmpfs("hostile_fs", sizes_kib[i], false);
        if (!fs) {
            skip();
            break;
        }
        int rc = run("run %s --out-dir %s --threads 1", exp, fs);
        if (rc != 0 && (rc != 1 || !strstr(g_err, fs)))
            fail_msg("%d KiB: exit %d (expected 1 with the path, or 0)\n%s", sizes_kib[i], rc,
                     g_err);
        failed += rc == 1;
        test_dir_count(fs, check_output);
        test_tmpfs_free(fs);
    }
    assert_true(failed > 0); /* 48 KiB cannot hold the baseline's log-probabilities */
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_labels_never_reach_gnuplot_as_code),
        cmocka_unit_test(test_plot_repeated_column),
        cmocka_unit_test(test_non_finite_result_is_an_error),
        cmocka_unit_test(test_unusable_outputs_refused_up_front),
        cmocka_unit_test(test_symlinked_journal_untouched),
        cmocka_unit_test(test_inputs_not_regular_files),
        cmocka_unit_test(test_sweep_size),
        cmocka_unit_test(test_disk_full_during_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
