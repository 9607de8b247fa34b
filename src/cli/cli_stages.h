#ifndef GQ_CLI_STAGES_H
#define GQ_CLI_STAGES_H
/* Wall time per quantization stage summed over the blocks (a gq_stage_sink for quantize's
 * report): forward passes, Hessians, factorisations, searches, rounding, errors. */
#include <stdio.h>

#include "methods/gq_method.h"

#define CLI_STAGES_MAX 24

typedef struct cli_stages {
    struct {
        char name[32];
        double seconds;
        long count;
    } s[CLI_STAGES_MAX];
    int n;
    gq_stage_sink sink; /* record sums into s (stages beyond CLI_STAGES_MAX under "other") */
} cli_stages;

void cli_stages_init(cli_stages *t);
/* One line: "name seconds (count), ..." in first-seen order. */
void cli_stages_print(const cli_stages *t, FILE *f);

#endif
