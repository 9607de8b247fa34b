/* The results table the report tests draw and store. */
#include "report_fixture.h"

#include <stdio.h>

#include "report/gq_plot.h"
#include "test_support.h"

/* Two series over group sizes 32/64 at bits 3/4, plus a baseline row. */
void sample_table(gq_table *t)
{
    gq_table_init(t);
    gq_table_add_col(t, "cell", GQ_COL_TEXT);
    gq_table_add_col(t, "series", GQ_COL_TEXT);
    gq_table_add_col(t, "method", GQ_COL_TEXT);
    gq_table_add_col(t, "sweep", GQ_COL_TEXT);
    gq_table_add_col(t, "bits", GQ_COL_INT);
    gq_table_add_col(t, "group_size", GQ_COL_INT);
    gq_table_add_col(t, "ppl", GQ_COL_REAL);
    gq_table_add_col(t, "ppl_stderr", GQ_COL_REAL);
    gq_table_add_col(t, "bpw", GQ_COL_REAL);
    gq_table_add_col(t, "t_quant", GQ_COL_REAL);
    gq_table_add_col(t, "note", GQ_COL_TEXT);
    gq_table_add_row(t, json_pack("{s:s, s:s, s:s, s:f, s:f, s:f, s:s}", "cell", "baseline",
                                  "series", "fp32 baseline", "method", "none", "ppl", 10.0,
                                  "ppl_stderr", 0.5, "bpw", 32.0, "note", "a \"quoted\", comma\nline"));
    int id = 1;
    const char *series[] = {"rtn", "gptq"};
    for (int s = 0; s < 2; s++)
        for (int b = 3; b <= 4; b++)
            for (int g = 32; g <= 64; g *= 2) {
                char cell[16], sweep[64];
                snprintf(cell, sizeof cell, "c%03d", id++);
                snprintf(sweep, sizeof sweep, "bits=%d group_size=%d", b, g);
                double ppl = 10.0 + (5 - b) * 3.0 + g / 64.0 - s;
                gq_table_add_row(t, json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:f, s:f, s:f, s:f}",
                                              "cell", cell, "series", series[s], "method",
                                              series[s], "sweep", sweep, "bits", b, "group_size",
                                              g, "ppl", ppl, "ppl_stderr", 0.25, "bpw",
                                              b + 16.0 / g, "t_quant", 0.125 * id));
            }
    json_object_set_new(t->attrs, "protocol", json_string("full, ctx 64"));
    json_object_set_new(t->attrs, "threads", json_integer(2));
}

void gnuplot_or_skip(void)
{
    if (!gq_gnuplot_path()) {
        fprintf(stderr, "skipping: gnuplot not installed\n");
        skip();
    }
}
