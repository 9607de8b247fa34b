#ifndef GQ_REPORT_FIXTURE_H
#define GQ_REPORT_FIXTURE_H
/* A results table with two series (rtn, gptq) over group sizes 32/64 at bits 3 and 4, stage
 * times, a text column with quotes, a comma and a newline, and the fp32 baseline row. */
#include "report/gq_table.h"

void sample_table(gq_table *t);

/* Skips the test (cmocka's skip() leaves it) when gnuplot is not installed. */
void gnuplot_or_skip(void);

#endif
