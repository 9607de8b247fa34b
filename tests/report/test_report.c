/* Results table: CSV round trip, HDF5 layout and values, gnuplot charts (when available). */
#include "test_support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "core/gq_fileio.h"
#include "report/gq_h5.h"
#include "report/gq_plot.h"
#include "report/gq_table.h"
#include "report_fixture.h"

static void test_csv_round_trip(void **state)
{
    (void)state;
    gq_table t, back;
    sample_table(&t);
    char *dir = test_tmpdir("csv"), path[4096];
    snprintf(path, sizeof path, "%s/t.csv", dir);
    gq_error err = {{0}};
    assert_int_equal(gq_table_write_csv(&t, path, &err), 0);
    assert_int_equal(gq_table_read_csv(path, &back, &err), 0);
    assert_int_equal(back.n_cols, t.n_cols);
    assert_int_equal(gq_table_n_rows(&back), gq_table_n_rows(&t));
    assert_int_equal(back.cols[gq_table_col(&back, "bits")].type, GQ_COL_INT);
    assert_int_equal(back.cols[gq_table_col(&back, "ppl")].type, GQ_COL_REAL);
    assert_int_equal(back.cols[gq_table_col(&back, "note")].type, GQ_COL_TEXT);
    for (size_t r = 0; r < gq_table_n_rows(&t); r++) {
        double a = gq_table_num(&t, r, "ppl"), b = gq_table_num(&back, r, "ppl");
        assert_true(a == b); /* %.17g: exact */
        assert_true(isnan(gq_table_num(&t, r, "bits")) == isnan(gq_table_num(&back, r, "bits")));
    }
    assert_string_equal(gq_table_str(&back, 0, "note"), "a \"quoted\", comma\nline");
    json_t *d = gq_table_distinct(&back, "group_size");
    assert_int_equal(json_array_size(d), 2);
    json_decref(d);
    gq_table_free(&t);
    gq_table_free(&back);
    free(dir);
}

/* Found by tests/fuzz/fuzz_csv: a header whose names repeat (",\n" has two empty names) read
 * past the columns. Refused, naming the column. */
static void test_csv_repeated_header(void **state)
{
    (void)state;
    char *dir = test_tmpdir("csv-header"), path[4096];
    snprintf(path, sizeof path, "%s/r.csv", dir);
    const char *texts[] = {",\nb,3\na,\n", "ppl,bits,ppl\n1,2,3\n"};
    const char *column[] = {"header column 2 (\"\")", "header column 3 (\"ppl\")"};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(texts[i], f);
        fclose(f);
        gq_table t;
        gq_error err = {{0}};
        assert_int_equal(gq_table_read_csv(path, &t, &err), -1);
        if (!strstr(err.msg, column[i]) || !strstr(err.msg, "repeats an earlier column"))
            fail_msg("%s: %s", texts[i], err.msg);
    }
    free(dir);
}

static void test_h5(void **state)
{
    (void)state;
    gq_table t, cell;
    sample_table(&t);
    gq_table_init(&cell);
    gq_table_add_col(&cell, "name", GQ_COL_TEXT);
    gq_table_add_col(&cell, "recon_err", GQ_COL_REAL);
    gq_table_add_row(&cell, json_pack("{s:s, s:f}", "name", "layers.0.attn.q_proj", "recon_err", 0.01));
    gq_table_add_row(&cell, json_pack("{s:s}", "name", "tok_embeddings"));
    json_object_set_new(cell.attrs, "notes", json_string("[]"));
    char *dir = test_tmpdir("h5"), path[4096];
    snprintf(path, sizeof path, "%s/r.h5", dir);
    gq_error err = {{0}};
    gq_h5_group g = {"c001", &cell};
    assert_int_equal(gq_h5_write(path, &t, &g, 1, &err), 0);

    double *v;
    size_t n;
    assert_int_equal(gq_h5_read_column(path, "ppl", &v, &n, &err), 0);
    assert_int_equal(n, gq_table_n_rows(&t));
    for (size_t r = 0; r < n; r++)
        assert_true(v[r] == gq_table_num(&t, r, "ppl"));
    free(v);
    /* bits is INT with an empty baseline cell: stored as float64 with NaN there */
    assert_int_equal(gq_h5_read_column(path, "bits", &v, &n, &err), 0);
    assert_true(isnan(v[0]));
    assert_true(v[1] == 3.0);
    free(v);
    assert_int_equal(gq_h5_read_column(path, "nope", &v, &n, &err), -1);
    assert_non_null(strstr(err.msg, "no column nope"));

    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_true(H5Aexists(f, "protocol") > 0);
    assert_true(H5Lexists(f, "/cells/c001/tensors", H5P_DEFAULT) > 0);
    hid_t ds = H5Dopen2(f, "/cells/c001/tensors", H5P_DEFAULT);
    hid_t sp = H5Dget_space(ds);
    assert_int_equal(H5Sget_simple_extent_npoints(sp), 2);
    H5Sclose(sp);
    H5Dclose(ds);
    H5Fclose(f);
    gq_table_free(&t);
    gq_table_free(&cell);
    free(dir);
}

static bool is_png(const char *path)
{
    size_t len;
    unsigned char *d = test_read_file(path, &len);
    bool ok = len > 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0;
    free(d);
    return ok;
}

static void test_plots(void **state)
{
    (void)state;
    if (!gq_gnuplot_path()) {
        fprintf(stderr, "skipping: gnuplot not installed\n");
        skip();
    }
    gq_table t;
    sample_table(&t);
    char *dir = test_tmpdir("plots"), p[4200];
    gq_error err = {{0}};
    int n = 0;
    assert_int_equal(gq_plot_results(&t, dir, &n, &err), 0);
    /* group size charts for 3 and 4 bits, bits, bpw, stage times; no n_calib chart */
    assert_int_equal(n, 5);
    const char *files[] = {"ppl_vs_group_size_3bit.png", "ppl_vs_group_size_4bit.png",
                           "ppl_vs_bits.png", "ppl_vs_bpw.png", "stage_times.png"};
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        assert_true(is_png(p));
    }
    snprintf(p, sizeof p, "%s/ppl_vs_n_calib.png", dir);
    assert_false(gq_file_exists(p));

    /* group widths that differ between formats but were not swept: no group-size chart */
    char *dir2 = test_tmpdir("plots-unswept");
    for (size_t r = 1; r < gq_table_n_rows(&t); r++) {
        char sweep[64];
        snprintf(sweep, sizeof sweep, "bits=%.0f", gq_table_num(&t, r, "bits"));
        json_object_set_new(gq_table_row(&t, r), "sweep", json_string(sweep));
    }
    assert_int_equal(gq_plot_results(&t, dir2, &n, &err), 0);
    assert_int_equal(n, 3); /* bits, bpw, stage times */
    snprintf(p, sizeof p, "%s/ppl_vs_group_size_3bit.png", dir2);
    assert_false(gq_file_exists(p));
    free(dir2);

    /* a missing gnuplot is an error naming gnuplot, not a crash or an empty PNG */
    setenv("GQ_GNUPLOT", "/nonexistent/gnuplot", 1);
    assert_int_equal(gq_plot_results(&t, dir, &n, &err), -1);
    assert_non_null(strstr(err.msg, "gnuplot"));
    unsetenv("GQ_GNUPLOT");
    gq_table_free(&t);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_round_trip),
        cmocka_unit_test(test_csv_repeated_header),
        cmocka_unit_test(test_h5),
        cmocka_unit_test(test_plots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
