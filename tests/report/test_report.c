/* Results table: CSV round trip, HDF5 layout and values, gnuplot charts (when available), the
 * chart selection of a group-wise sweep and its markdown summary (scripts/groupwise-table.py). */
#include "test_support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <sys/wait.h>

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
    char path[4096];
    char *dir = test_tmpdir_file("csv", "t.csv", path, sizeof path);
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
    char path[4096];
    char *dir = test_tmpdir_file("csv-header", "r.csv", path, sizeof path);
    const char *texts[] = {",\nb,3\na,\n", "ppl,bits,ppl\n1,2,3\n"};
    const char *column[] = {"header column 2 (\"\")", "header column 3 (\"ppl\")"};
    for (int i = 0; i < 2; i++) {
        test_write_text(path, texts[i]);
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
    char path[4096];
    char *dir = test_tmpdir_file("h5", "r.h5", path, sizeof path);
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
    gnuplot_or_skip();
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

/* One 4-bit row of `method` (n_grid 20, propagate fp): int asym groups of `group` columns, or
 * per channel when `group` is 0; no decode_tok_s when `decode` is NaN. */
static void add_gw_row(gq_table *t, const char *cell, const char *series, const char *method,
                       int group, double ppl, double decode)
{
    char sweep[64], fmt[160], mp[96];
    snprintf(sweep, sizeof sweep, group ? "bits=4 group_size=%d" : "bits=4", group);
    if (group)
        snprintf(fmt, sizeof fmt, "{\"name\":\"int\",\"bits\":4,\"granularity\":\"group\","
                                  "\"group_size\":%d,\"zero\":\"asym\"}", group);
    else
        snprintf(fmt, sizeof fmt, "{\"zero\":\"asym\",\"granularity\":\"channel\",\"bits\":4,"
                                  "\"name\":\"int\"}"); /* key order does not matter */
    snprintf(mp, sizeof mp, "{\"name\":\"%s\",\"n_grid\":20}", method);
    json_t *row = json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:f, s:f, s:f, s:s, s:i}",
                            "cell", cell, "series", series, "method", method, "sweep", sweep,
                            "bits", 4, "format_params", fmt, "method_params", mp, "propagate",
                            "fp", "ppl", ppl, "ppl_stderr", 0.25, "bpw",
                            4.0 + (group ? 32.0 / group : 0.125), "protocol", "full", "ctx", 256);
    json_object_set_new(row, "kl_div", json_real((ppl - 9.5) / 8.0));
    if (group)
        json_object_set_new(row, "group_size", json_integer(group));
    if (isfinite(decode))
        json_object_set_new(row, "decode_tok_s", json_real(decode));
    gq_table_add_row(t, row);
}

/* A group-wise sweep at 4 bits: awq and praq at groups of 32 and 64, each with a per-channel
 * counterpart (same method parameters and propagation), gptq group-wise only (it pairs with
 * nothing), and the baseline. Decode rates only for the baseline and the g32 cells when
 * `with_decode`. `praq_label` names praq's series (a quote tests the quoting). */
static void groupwise_table(gq_table *t, const char *praq_label, bool with_decode)
{
    gq_table_init(t);
    static const char *const text[] = {"cell", "series", "method", "sweep", "format_params",
                                       "method_params", "propagate", "protocol"};
    for (size_t i = 0; i < sizeof text / sizeof text[0]; i++)
        gq_table_add_col(t, text[i], GQ_COL_TEXT);
    gq_table_add_col(t, "bits", GQ_COL_INT);
    gq_table_add_col(t, "group_size", GQ_COL_INT);
    static const char *const reals[] = {"ppl", "ppl_stderr", "kl_div", "bpw", "decode_tok_s"};
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++)
        gq_table_add_col(t, reals[i], GQ_COL_REAL);
    gq_table_add_col(t, "ctx", GQ_COL_INT);
    double d32 = with_decode ? 900.0 : NAN;
    json_t *base = json_pack("{s:s, s:s, s:s, s:f, s:f, s:f, s:s, s:i}", "cell", "baseline",
                             "series", "fp32 baseline", "method", "none", "ppl", 10.0,
                             "ppl_stderr", 0.25, "bpw", 32.0, "protocol", "full", "ctx", 256);
    if (with_decode)
        json_object_set_new(base, "decode_tok_s", json_real(300.0));
    gq_table_add_row(t, base);
    add_gw_row(t, "c001", "awq", "awq", 32, 10.5, d32);
    add_gw_row(t, "c002", "awq", "awq", 64, 10.75, NAN);
    add_gw_row(t, "c003", praq_label, "praq", 32, 10.4, d32);
    add_gw_row(t, "c004", praq_label, "praq", 64, 10.7, NAN);
    add_gw_row(t, "c005", "gptq", "gptq", 32, 10.6, d32);
    add_gw_row(t, "c006", "gptq", "gptq", 64, 10.8, NAN);
    add_gw_row(t, "c007", "awq per-channel", "awq", 0, 11.0, NAN);
    add_gw_row(t, "c008", "praq per-channel", "praq", 0, 10.0, NAN);
}

/* A stand-in for gnuplot ($GQ_GNUPLOT) that keeps each script as <dir>/scripts/<chart>.png.gp
 * and writes the smallest whole PNG (signature and IEND chunk) at the output it names. */
static char *fake_gnuplot(void)
{
    char path[4200];
    char *dir = test_tmpdir_file("fake-gnuplot", "gnuplot", path, sizeof path);
    test_write_text(path,
        "#!/bin/sh\n"
        "d=$(dirname \"$0\")/scripts\n"
        "mkdir -p \"$d\"\n"
        "s=$(mktemp \"$d/script.XXXXXX\")\n"
        "cat >\"$s\"\n"
        "out=$(sed -n \"s/^set output ['\\\"]\\(.*\\)['\\\"]\\$/\\1/p\" \"$s\" | head -n 1)\n"
        "[ -n \"$out\" ] || exit 1\n"
        "printf '\\211PNG\\r\\n\\032\\n\\000\\000\\000\\000IEND\\256B`\\202' >\"$out\"\n"
        "mv \"$s\" \"$d/$(basename \"${out%.tmp.*}\").gp\"\n");
    assert_int_equal(chmod(path, 0755), 0);
    setenv("GQ_GNUPLOT", path, 1);
    return dir;
}

/* The script the fake gnuplot received for `chart` (NULL when that chart was not drawn). */
static char *chart_script(const char *fake_dir, const char *chart)
{
    char p[4400];
    snprintf(p, sizeof p, "%s/scripts/%s.gp", fake_dir, chart);
    if (!gq_file_exists(p))
        return NULL;
    size_t len;
    char *s = test_read_file(p, &len);
    s = realloc(s, len + 1);
    s[len] = '\0';
    return s;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle))
        fail_msg("script lacks \"%s\":\n%s", needle, hay ? hay : "(no script)");
}

/* Which charts a group-wise sweep yields: the group-size chart with each per-channel value as
 * a dashed line in its method's colour, the group-wise vs per-channel chart (only the methods
 * with a per-channel counterpart), the size and decode-speed panels. */
static void test_groupwise_chart_selection(void **state)
{
    (void)state;
    char *fake = fake_gnuplot(), *out = test_tmpdir("gw-charts");
    gq_table t;
    groupwise_table(&t, "pr'aq", true);
    gq_error err = {{0}};
    int n = 0;
    if (gq_plot_results(&t, out, &n, &err))
        fail_msg("%s", err.msg);
    /* group size (4-bit), ratio (4-bit), bpw frontier, bpw + decode, stage times */
    assert_int_equal(n, 5);
    char *gs = chart_script(fake, "ppl_vs_group_size_4bit.png");
    /* series order awq, pr'aq, gptq: the per-channel lines take colours 1 and 2 */
    assert_contains(gs, "$d0 using 1:2:3 with yerrorlines lt 1 title 'awq'");
    assert_contains(gs, "$d1 using 1:2:3 with yerrorlines lt 2 title 'pr''aq'");
    assert_contains(gs, "11 with lines lt 1 dashtype 2 title 'awq per-channel'");
    assert_contains(gs, "10 with lines lt 2 dashtype 2 title 'praq per-channel'");
    assert_null(strstr(gs, "lt 3 dashtype")); /* gptq has no per-channel value */

    char *ratio = chart_script(fake, "groupwise_vs_perchannel_4bit.png");
    char expect[128];
    snprintf(expect, sizeof expect, "32 %.17g 0", 100.0 * (10.5 / 11.0 - 1.0));
    assert_contains(ratio, expect); /* awq g32 against awq per channel, percent */
    snprintf(expect, sizeof expect, "64 %.17g 0", 100.0 * (10.7 / 10.0 - 1.0));
    assert_contains(ratio, expect);
    assert_contains(ratio, "title 'pr''aq'");
    assert_null(strstr(ratio, "'gptq'"));

    char *trade = chart_script(fake, "ppl_vs_bpw_and_decode.png");
    assert_contains(trade, "set multiplot layout 1,2");
    assert_contains(trade, "900 10.5 0.25"); /* awq g32: decode_tok_s, ppl, stderr */
    /* the per-channel series: open circles in their method's colour */
    assert_contains(trade, "with yerrorbars lt 1 pt 6 ps 1.3 title 'awq per-channel'");
    assert_contains(trade, "$base using 1:2 with points");
    free(gs);
    free(ratio);
    free(trade);
    gq_table_free(&t);

    /* no decode rates: no speed panel; no per-channel rows: no ratio chart, no dashed lines */
    groupwise_table(&t, "praq", false);
    json_array_remove(t.rows, 8);
    json_array_remove(t.rows, 7);
    char *out2 = test_tmpdir("gw-charts-2");
    free(fake);
    fake = fake_gnuplot(); /* a new directory: none of the first draw's scripts */
    if (gq_plot_results(&t, out2, &n, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(n, 3); /* group size, bpw frontier, stage times */
    assert_null(chart_script(fake, "groupwise_vs_perchannel_4bit.png"));
    assert_null(chart_script(fake, "ppl_vs_bpw_and_decode.png"));
    gs = chart_script(fake, "ppl_vs_group_size_4bit.png");
    assert_null(strstr(gs, "lt 1 dashtype"));
    free(gs);
    unsetenv("GQ_GNUPLOT");
    gq_table_free(&t);
    free(fake);
    free(out);
    free(out2);
}

/* The same charts through the real gnuplot: valid PNGs (the multiplot script included). */
static void test_groupwise_plots(void **state)
{
    (void)state;
    gnuplot_or_skip();
    gq_table t;
    groupwise_table(&t, "pr'aq \"x\" `y` $z", true);
    char *dir = test_tmpdir("gw-plots"), p[4200];
    gq_error err = {{0}};
    int n = 0;
    if (gq_plot_results(&t, dir, &n, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(n, 5);
    const char *files[] = {"ppl_vs_group_size_4bit.png", "groupwise_vs_perchannel_4bit.png",
                           "ppl_vs_bpw_and_decode.png"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        assert_true(is_png(p));
    }
    gq_table_free(&t);
    free(dir);
}

/* scripts/groupwise-table.py on a results.csv written by the table writer: the markdown
 * numbers are the CSV's (per-channel changes in %, PRAQ against AWQ), a file that is not such a
 * table is one line and exit status 2. */
static void test_groupwise_summary_script(void **state)
{
    (void)state;
    const char *root = getenv("GQ_SOURCE_ROOT");
    gq_table t;
    groupwise_table(&t, "praq", true);
    static const char *const extra[] = {"model", "eval_text", "eval_sha256", "seed", "threads",
                                        "eval_windows", "scored"};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
        gq_table_add_col(&t, extra[i], GQ_COL_TEXT);
    json_t *protocol = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:i}", "model", "m", "eval_text",
                                 "val.txt", "eval_sha256", "0123456789abcdef", "seed", 0,
                                 "threads", 2, "eval_windows", 4, "scored", 1020);
    for (size_t r = 0; r < gq_table_n_rows(&t); r++)
        json_object_update(gq_table_row(&t, r), protocol);
    json_decref(protocol);
    char csv[4200], cmd[12000];
    char *dir = test_tmpdir_file("gw-table", "results.csv", csv, sizeof csv);
    gq_error err = {{0}};
    assert_int_equal(gq_table_write_csv(&t, csv, &err), 0);
    snprintf(cmd, sizeof cmd, "python3 '%s/scripts/groupwise-table.py' '%s' 2>&1", root ? root : ".", csv);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    static char md[1 << 14];
    size_t len = fread(md, 1, sizeof md - 1, p);
    md[len] = '\0';
    assert_int_equal(pclose(p), 0);
    assert_contains(md, "perplexity protocol `full`, ctx 256, 4 windows (1020 scored tokens)");
    assert_contains(md, "FP32 baseline: PPL 10.0000 ± 0.2500, decode 300 tok/s");
    /* awq: 10.5 / 11 - 1 = -4.5%, 10.75 / 11 - 1 = -2.3%; praq: 10.4 / 10 - 1 = +4.0% */
    assert_contains(md, "| awq | 10.5000 (-4.5%) | 10.7500 (-2.3%) | 11.0000 |");
    assert_contains(md, "| praq | **10.4000** (+4.0%) | **10.7000** (+7.0%) | **10.0000** |");
    assert_contains(md, "| gptq | 10.6000 | 10.8000 |  |");
    /* kl_div = (ppl - 9.5) / 8: awq 0.125 and 0.15625 against 0.1875 per channel */
    assert_contains(md, "| awq | 0.125 (-33.3%) | 0.156 (-16.7%) | 0.188 |");
    assert_contains(md, "| int4 g32 asym | 5.000 | 900 | 3 |");
    assert_contains(md, "| int4 g64 asym | 4.500 |  | 3 |");
    assert_contains(md, "- INT4 g32 vs per channel: -4.5% to +4.0% over 2 methods");
    /* praq vs awq: g32 -0.95%, g64 -0.47%, per channel -9.09% */
    assert_contains(md, "- PRAQ vs AWQ (same format): -9.09% to -0.47%; PRAQ lower in 3 of 3");

    FILE *bad = fopen(csv, "w");
    fputs("a,b\n1,2\n", bad);
    fclose(bad);
    p = popen(cmd, "r");
    len = fread(md, 1, sizeof md - 1, p);
    md[len] = '\0';
    int st = pclose(p);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    assert_contains(md, "results.csv: no column series (not a gq-bench results.csv)\n");
    assert_null(strchr(strchr(md, '\n') + 1, '\n')); /* one line */
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
        cmocka_unit_test(test_groupwise_chart_selection),
        cmocka_unit_test(test_groupwise_plots),
        cmocka_unit_test(test_groupwise_summary_script),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
