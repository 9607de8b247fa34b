/* Summed stage times of a quantization (cli_stages.h). */
#include "cli/cli_stages.h"

#include <string.h>

static void record(void *user, const char *stage, gq_stage_limit limit, double work,
                   double seconds)
{
    (void)limit, (void)work;
    cli_stages *t = user;
    int i = 0;
    while (i < t->n && strcmp(t->s[i].name, stage) != 0)
        i++;
    if (i == t->n) {
        if (t->n == CLI_STAGES_MAX) {
            i = CLI_STAGES_MAX - 1;
            snprintf(t->s[i].name, sizeof t->s[i].name, "other");
        } else {
            snprintf(t->s[i].name, sizeof t->s[i].name, "%s", stage);
            t->n++;
        }
    }
    t->s[i].seconds += seconds;
    t->s[i].count++;
}

void cli_stages_init(cli_stages *t)
{
    memset(t, 0, sizeof *t);
    t->sink.record = record;
    t->sink.user = t;
}

void cli_stages_print(const cli_stages *t, FILE *f)
{
    for (int i = 0; i < t->n; i++)
        fprintf(f, "%s%s %.2f s (%ld)", i ? ", " : "", t->s[i].name, t->s[i].seconds,
                t->s[i].count);
    fputc('\n', f);
}
