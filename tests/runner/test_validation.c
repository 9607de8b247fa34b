/* Validation catches what a run would fail on, through the gq-bench binary:
 *   - the corpus tests/data/experiments: refuse_*.json are refused by --dry-run (exit 2, the
 *     message their description quotes after "refused: ") and by run before anything is
 *     written; every experiment that --dry-run accepts runs to exit 0;
 *   - every shipped experiment and configs/ file passes --dry-run;
 *   - a cell that fails at run time (the flaky method plugin, argv[1]) does not stop the others;
 *   - messages: a symlink loop, a non-JSON included file (its content is not quoted), seeds up
 *     to UINT64_MAX. */
#include "test_support.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "core/gq_fileio.h"
#include "report/gq_table.h"

static const char *g_flaky; /* path of the flaky method plugin */
static char g_out[1 << 16], g_err[1 << 16];

#define run(...) test_run_clif(g_out, sizeof g_out, g_err, sizeof g_err, __VA_ARGS__)

static const char *source_root(void)
{
    const char *root = getenv("GQ_SOURCE_ROOT");
    return root ? root : ".";
}

/* The JSON files of `dir`, sorted (caller frees each and the array). */
static char **json_files(const char *dir, int *n)
{
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("cannot open %s", dir);
    char **v = NULL;
    *n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len > 5 && strcmp(de->d_name + len - 5, ".json") == 0) {
            v = realloc(v, (size_t)(*n + 1) * sizeof *v);
            v[(*n)++] = strdup(de->d_name);
        }
    }
    closedir(d);
    for (int i = 1; i < *n; i++)
        for (int j = i; j > 0 && strcmp(v[j - 1], v[j]) > 0; j--) {
            char *t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return v;
}

/* One corpus experiment (the working directory is the corpus directory). */
static void check_corpus_file(const char *name, const char *out_root)
{
    char out[4200];
    snprintf(out, sizeof out, "%s/%s", out_root, name);
    json_t *j = json_load_file(name, 0, NULL);
    assert_non_null(j);
    const char *desc = json_string_value(json_object_get(j, "description"));
    assert_non_null(desc);
    int dry = run("run %s --dry-run --out-dir %s", name, out);
    bool refuse = strncmp(name, "refuse_", 7) == 0;
    if (refuse) {
        const char *expect = strstr(desc, "refused: ");
        assert_non_null(expect);
        expect += strlen("refused: ");
        if (dry != 2 || !strstr(g_err, expect))
            fail_msg("%s: --dry-run exit %d, stderr: %s(expected 2 and \"%s\")", name, dry,
                     g_err, expect);
        /* the run refuses it the same way, before anything is written */
        assert_int_equal(run("run %s --out-dir %s --threads 1", name, out), 2);
        assert_false(gq_file_exists(out));
    } else if (dry != 0) {
        fail_msg("%s: --dry-run exit %d: %s", name, dry, g_err);
    }
    /* whatever --dry-run accepts runs: a content error would have been refused above */
    if (dry == 0) {
        int rc = run("run %s --out-dir %s --threads 1 --no-plots", name, out);
        if (rc != 0)
            fail_msg("%s passed --dry-run but the run failed (exit %d): %s", name, rc, g_err);
    }
    json_decref(j);
}

static void test_corpus(void **state)
{
    (void)state;
    test_assets_or_skip();
    char corpus[4096], cwd[4096];
    snprintf(corpus, sizeof corpus, "%s/experiments", getenv("GQ_TESTDATA"));
    assert_non_null(getcwd(cwd, sizeof cwd));
    char *out_root = test_tmpdir("corpus");
    int n;
    char **files = json_files(corpus, &n);
    assert_true(n >= 10);
    assert_int_equal(chdir(corpus), 0); /* the corpus names its own short text relatively */
    for (int i = 0; i < n; i++) {
        check_corpus_file(files[i], out_root);
        free(files[i]);
    }
    assert_int_equal(chdir(cwd), 0);
    free(files);
    free(out_root);
}

/* Writes an experiment that includes `model` and `method` (configs/ files or JSON text). */
static void write_including(const char *file, const char *model, const char *method)
{
    test_write_textf(file,
        "{\"model\": %s,\n"
        " \"eval\": {\"text\": \"text/tinystories/tinystories_val.txt\", \"ctx\": 64, "
        "\"max_windows\": 2},\n"
        " \"calib\": {\"text\": \"text/tinystories/tinystories_val.txt\", \"n_calib\": 2, "
        "\"calib_ctx\": 64},\n"
        " \"methods\": [%s]}\n", model, method);
}

static void test_shipped_files_validate(void **state)
{
    (void)state;
    test_assets_or_skip();
    char dir[4200], file[4400], inc[4400];
    int n;
    snprintf(dir, sizeof dir, "%s/experiments", source_root());
    char **files = json_files(dir, &n);
    assert_true(n >= 1);
    for (int i = 0; i < n; i++) {
        snprintf(file, sizeof file, "%s/%s", dir, files[i]);
        if (run("run %s --dry-run", file) != 0)
            fail_msg("shipped %s fails validation: %s", files[i], g_err);
        free(files[i]);
    }
    free(files);
    char *tmp = test_tmpdir("configs");
    snprintf(file, sizeof file, "%s/x.json", tmp);
    const char *kinds[] = {"models", "methods"};
    for (int k = 0; k < 2; k++) {
        snprintf(dir, sizeof dir, "%s/configs/%s", source_root(), kinds[k]);
        files = json_files(dir, &n);
        assert_true(n >= 1);
        for (int i = 0; i < n; i++) {
            snprintf(inc, sizeof inc, "\"%s/%s\"", dir, files[i]);
            if (k == 0) /* a model file with RTN q4_0 */
                write_including(file, inc, "{\"method\": \"rtn\", \"format\": \"q4_0\"}");
            else /* a method file with the shipped stories260K model */
                write_including(file, "{\"path\": \"models/stories260K/stories260K.bin\", "
                                      "\"tokenizer\": \"models/stories260K/tok512.bin\"}", inc);
            if (run("run %s --dry-run", file) != 0)
                fail_msg("shipped configs/%s/%s fails validation: %s", kinds[k], files[i], g_err);
            free(files[i]);
        }
        free(files);
    }
    free(tmp);
}

/* The flaky method fails in one cell of three: the others are computed and written, the run
 * names the failed cell and exits 1; a second run retries only that cell. */
static void test_failed_cell_goes_on(void **state)
{
    (void)state;
    if (!test_setup_assets() || !g_flaky)
        skip();
    char file[4200], csv[4300];
    char *dir = test_tmpdir_file("flaky", "flaky.json", file, sizeof file);
    test_write_textf(file,
        "{\"name\": \"flaky\", \"plugins\": [\"%s\"],\n"
        " \"model\": {\"synthetic\": \"tiny\", \"tokenizer\": "
        "\"models/stories260K/tok512.bin\"},\n"
        " \"eval\": {\"text\": \"text/tinystories/tinystories_val.txt\", \"ctx\": 32, "
        "\"max_windows\": 1},\n"
        " \"methods\": [{\"label\": \"flaky\", \"method\": \"flaky\", \"format\": \"q4_0\"},\n"
        "             {\"label\": \"rtn\", \"method\": \"rtn\", \"format\": \"q8_0\"}],\n"
        " \"sweep\": {\"method.fail\": [true, false]},\n"
        " \"throughput\": {\"enabled\": false}}\n", g_flaky);
    int rc = run("run %s --out-dir %s --threads 1 --no-plots", file, dir);
    if (rc != 1 || !strstr(g_err, "1 of 3 cells failed (c001") ||
        !strstr(g_err, "flaky: simulated run-time failure"))
        fail_msg("exit %d, stderr: %s", rc, g_err);
    snprintf(csv, sizeof csv, "%s/results/flaky/results.csv", dir);
    gq_table t;
    gq_error err = {{0}};
    if (gq_table_read_csv(csv, &t, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(gq_table_n_rows(&t), 3); /* baseline, c002, c003 */
    assert_string_equal(gq_table_str(&t, 1, "cell"), "c002");
    assert_string_equal(gq_table_str(&t, 2, "cell"), "c003");
    gq_table_free(&t);
    rc = run("run %s --out-dir %s --threads 1 --no-plots", file, dir);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(g_err, "resuming: 2 of 3 cells already in the journal"));
    /* a damaged key is called damaged, not "a different experiment definition" */
    char key[4300];
    snprintf(key, sizeof key, "%s/results/flaky/.journal/key", dir);
    test_write_text(key, "{\"key\": \"0123");
    assert_int_equal(run("run %s --out-dir %s --threads 1 --no-plots", file, dir), 2);
    if (!strstr(g_err, ".journal/key: damaged"))
        fail_msg("damaged key: %s", g_err);
    free(dir);
}

static void test_messages(void **state)
{
    (void)state;
    test_assets_or_skip();
    char *dir = test_tmpdir("messages"), file[4200], link[4200], inc[4200];
    /* a symlink loop is named as such, not "no such file" */
    snprintf(link, sizeof link, "%s/loop.txt", dir);
    assert_int_equal(symlink(link, link), 0);
    snprintf(file, sizeof file, "%s/loop.json", dir);
    FILE *f = fopen(file, "w");
    fprintf(f, "{\"model\": {\"synthetic\": \"tiny\", \"tokenizer\": "
               "\"models/stories260K/tok512.bin\"},\n"
               " \"eval\": {\"text\": \"%s\"}, \"methods\": [{\"method\": \"rtn\", "
               "\"format\": \"q4_0\"}]}\n", link);
    fclose(f);
    assert_int_equal(run("run %s --dry-run", file), 2);
    if (!strstr(g_err, "$.eval.text") || !strstr(g_err, "symbolic links"))
        fail_msg("symlink loop: %s", g_err);
    /* a device is not a text: refused at once, not read for ever */
    f = fopen(file, "w");
    fprintf(f, "{\"model\": {\"synthetic\": \"tiny\", \"tokenizer\": "
               "\"models/stories260K/tok512.bin\"},\n"
               " \"eval\": {\"text\": \"/dev/zero\"}, \"methods\": [{\"method\": \"rtn\", "
               "\"format\": \"q4_0\"}]}\n");
    fclose(f);
    assert_int_equal(run("run %s --dry-run", file), 2);
    if (!strstr(g_err, "$.eval.text: /dev/zero: not a regular file"))
        fail_msg("/dev/zero: %s", g_err);
    /* an included file that is not JSON: line and column, not its content */
    snprintf(inc, sizeof inc, "%s/passwd", dir);
    f = fopen(inc, "w");
    fprintf(f, "root:x:0:0:root:/root:/bin/bash\n");
    fclose(f);
    snprintf(file, sizeof file, "%s/inc.json", dir);
    f = fopen(file, "w");
    fprintf(f, "{\"model\": \"%s\", \"eval\": {\"text\": \"x\"}, \"methods\": []}\n", inc);
    fclose(f);
    assert_int_equal(run("run %s --dry-run", file), 2);
    if (!strstr(g_err, "line 1, column") || strstr(g_err, "root"))
        fail_msg("included non-JSON file: %s", g_err);
    /* the experiment's sections are listed like plugin parameters */
    assert_int_equal(run("list experiment"), 0);
    assert_non_null(strstr(g_out, "$.calib"));
    assert_non_null(strstr(g_out, "n_calib          int    default 32"));
    /* seeds are 64-bit unsigned */
    char model[4300];
    snprintf(model, sizeof model, "%s/s.bin", dir);
    assert_int_equal(run("synth --preset tiny --seed 18446744073709551615 --out %s", model), 0);
    assert_int_equal(run("synth --preset tiny --seed 18446744073709551616 --out %s", model), 2);
    assert_non_null(strstr(g_err, "--seed"));
    assert_int_equal(run("synth --preset tiny --seed -1 --out %s", model), 2);
    free(dir);
}

int main(int argc, char **argv)
{
    g_flaky = argc > 1 ? argv[1] : NULL;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus),
        cmocka_unit_test(test_shipped_files_validate),
        cmocka_unit_test(test_failed_cell_goes_on),
        cmocka_unit_test(test_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
