/* libFuzzer target: the CSV reader behind `gq-bench plot` (gq_table_read_csv), then the table
 * accessors the charts use (typed cells and distinct values, of the table's own columns and of
 * the columns the charts read), and the table written back as CSV and as text. gnuplot itself
 * is not run. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_util.h"
#include "report/gq_table.h"

static const char *const columns[] = {"series", "sweep", "bits", "group_size", "n_calib",
                                      "bpw",    "ppl",   "cell", "protocol"};

static void read_column(const gq_table *t, const char *col)
{
    json_decref(gq_table_distinct(t, col));
    for (size_t r = 0; r < gq_table_n_rows(t); r++) {
        (void)gq_table_num(t, r, col);
        (void)gq_table_str(t, r, col);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gq_table t;
    gq_error err = {{0}};
    if (gq_table_read_csv(fuzz_write_file("results.csv", data, size), &t, &err))
        return 0;
    size_t n = sizeof columns / sizeof columns[0];
    for (size_t k = 0; k < n; k++)
        read_column(&t, columns[k]);
    for (int k = 0; k < t.n_cols; k++)
        read_column(&t, t.cols[k].name);
    free(gq_table_csv(&t));
    free(gq_table_format(&t, columns, (int)n));
    gq_table_free(&t);
    return 0;
}
