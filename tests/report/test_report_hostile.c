/* Results files against hostile content and a full disk: a repeated CSV header column, text
 * that tries to reach gnuplot as code, charts and HDF5 files on a disk that fills up, and an
 * attribute too large for an HDF5 object header. */
#include "test_support.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "core/gq_fileio.h"
#include "report/gq_h5.h"
#include "report/gq_plot.h"
#include "report/gq_table.h"
#include "report_fixture.h"

static void test_csv_repeated_header_refused(void **state)
{
    (void)state;
    char path[4096];
    char *dir = test_tmpdir_file("csv_dup", "results.csv", path, sizeof path);
    gq_error err = {{0}};
    const char *csv = "cell,ppl,cell,bits\nc1,1.5,x,4\nc2,2.5,y,3\n";
    assert_int_equal(gq_write_file_atomic(path, csv, strlen(csv), &err), 0);
    gq_table t;
    assert_int_equal(gq_table_read_csv(path, &t, &err), -1);
    assert_non_null(strstr(err.msg, "header column 3 (\"cell\") repeats"));
    assert_non_null(strstr(err.msg, path));
    unlink(path);
    rmdir(dir);
    free(dir);
}

/* A test_dir_count visit: the file is a complete PNG (signature first, IEND chunk last). */
static int complete_png(const char *path)
{
    if (!test_png_complete(path))
        fail_msg("%s: not a complete PNG", path);
    return 1;
}

/* Text from a results file reaches gnuplot only as data: a newline in a series label, a cell
 * name or the title fields, backquotes, quotes, and a chart directory with a quote and a
 * newline in its name. None of the planted commands may run. */
static void test_plot_labels_cannot_run_commands(void **state)
{
    (void)state;
    gnuplot_or_skip();
    char *dir = test_tmpdir("plot_inject"), mark[8][4400], line[20000], out[9000];
    for (int i = 0; i < 8; i++)
        snprintf(mark[i], sizeof mark[i], "%s/pwned%d", dir, i);
    gq_table t;
    sample_table(&t);
    for (size_t r = 0; r < gq_table_n_rows(&t); r++) {
        json_t *row = gq_table_row(&t, r);
        snprintf(line, sizeof line, "rtn\nsystem \"touch %s\"\n", mark[0]);
        json_object_set_new(row, "series", json_string(line));
        snprintf(line, sizeof line, "c%zu\"\nEOD\nsystem 'touch %s'\n$t << EOD\n", r, mark[1]);
        json_object_set_new(row, "cell", json_string(line));
        snprintf(line, sizeof line, "m`touch %s`'\nsystem(\"touch %s\")\n#", mark[2], mark[3]);
        json_object_set_new(row, "model", json_string(line));
        snprintf(line, sizeof line, "t\"`touch %s`\"\\\"\r\nsystem \"touch %s\"", mark[4],
                 mark[5]);
        json_object_set_new(row, "eval_text", json_string(line));
        snprintf(line, sizeof line, "bits=3 x=\nsystem\"touch %s\"", mark[6]);
        json_object_set_new(row, "sweep", json_string(line));
    }
    snprintf(out, sizeof out, "%s/charts'\nsystem 'touch %s'\n", dir, mark[7]);
    gq_error err = {{0}};
    int n = 0;
    assert_int_equal(gq_plot_results(&t, out, &n, &err), 0);
    assert_true(n > 0);
    assert_int_equal(test_dir_count(out, complete_png), n);
    for (int i = 0; i < 8; i++)
        if (gq_file_exists(mark[i]))
            fail_msg("text from the table ran as a gnuplot command (%s exists)", mark[i]);
    gq_table_free(&t);
    free(dir);
}

/* A disk that fills up while the charts are drawn: an error naming the chart, and only
 * complete PNGs (the ones drawn before) in the directory, no empty or truncated file. */
static void test_plot_disk_full(void **state)
{
    (void)state;
    gnuplot_or_skip();
    char *dir = test_tmpfs_or_skip("plot_full", 72, false);
    gq_table t;
    sample_table(&t);
    gq_error err = {{0}};
    int n = 0;
    assert_int_equal(gq_plot_results(&t, dir, &n, &err), -1);
    assert_non_null(strstr(err.msg, dir));
    assert_non_null(strstr(err.msg, ".png"));
    assert_int_equal(test_dir_count(dir, complete_png), n);
    assert_true(n < 5);
    gq_table_free(&t);
    test_tmpfs_free(dir);
}

static void test_h5_disk_full(void **state)
{
    (void)state;
    char *dir = test_tmpfs_or_skip("h5_full", 8, false);
    gq_table t;
    sample_table(&t);
    char *filler = calloc(1, 40000);
    memset(filler, 'x', 39999);
    json_object_set_new(t.attrs, "filler", json_string(filler));
    free(filler);
    char path[4200];
    snprintf(path, sizeof path, "%s/results.h5", dir);
    gq_error err = {{0}};
    assert_int_equal(gq_h5_write(path, &t, NULL, 0, &err), -1);
    assert_non_null(strstr(err.msg, path));
    assert_int_equal(test_dir_count(dir, NULL), 0); /* no results.h5, no temporary */
    gq_table_free(&t);
    test_tmpfs_free(dir);
}

/* A value far beyond the 64 KiB object header (a large resolved experiment) is stored. */
static void test_h5_large_attribute(void **state)
{
    (void)state;
    gq_table t;
    sample_table(&t);
    size_t big = 300000;
    char *json = malloc(big + 1);
    for (size_t i = 0; i < big; i++)
        json[i] = (char)('a' + i % 26);
    json[big] = '\0';
    json_object_set_new(t.attrs, "experiment_json", json_string(json));
    json_object_set_new(t.attrs, "config_sha256", json_string("abc123"));
    char path[4200];
    char *dir = test_tmpdir_file("h5_big", "r.h5", path, sizeof path);
    gq_error err = {{0}};
    assert_int_equal(gq_h5_write(path, &t, NULL, 0, &err), 0);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_true(H5Aexists(f, "config_sha256") > 0);
    /* too large for an attribute: a scalar string dataset of the same name */
    hid_t ds = H5Dopen2(f, "experiment_json", H5P_DEFAULT);
    assert_true(ds >= 0);
    hid_t type = H5Dget_type(ds);
    assert_int_equal(H5Tget_size(type), big + 1);
    char *back = malloc(big + 1);
    assert_true(H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, back) >= 0);
    assert_string_equal(back, json);
    H5Tclose(type);
    H5Dclose(ds);
    H5Fclose(f);
    free(back);
    free(json);
    unlink(path);
    rmdir(dir);
    free(dir);
    gq_table_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_repeated_header_refused),
        cmocka_unit_test(test_plot_labels_cannot_run_commands),
        cmocka_unit_test(test_plot_disk_full),
        cmocka_unit_test(test_h5_disk_full),
        cmocka_unit_test(test_h5_large_attribute),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
