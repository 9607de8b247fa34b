#ifndef GQ_TEST_EVAL_CLI_H
#define GQ_TEST_EVAL_CLI_H
/* `gq-bench eval` of a model on the TinyStories validation text (assets:text/tinystories/
 * tinystories_val.txt), for the tests that compare or refuse models through the binary. */
#include <stddef.h>

/* Runs `eval --model 'MODEL' ARGS --data <the text>` (ARGS: tokenizer, context, windows, ...)
 * with test_run_cli's capture of stdout and stderr; returns the exit status. */
int test_eval_cli(const char *model, const char *args, char *out, size_t out_n, char *err,
                  size_t err_n);

/* The same with --json, which must succeed (else the test fails with eval's stderr); buf gets
 * the "ppl" and "mean_nll" members as printed (17 significant digits), so two evaluations can
 * be compared bit for bit as text. */
void test_eval_numbers(const char *model, const char *args, char *buf, size_t n);

/* The same, which must exit 2 with `want` in its one-line error. */
void test_eval_refused(const char *model, const char *args, const char *want);

#endif
