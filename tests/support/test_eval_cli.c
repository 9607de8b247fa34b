#include "test_eval_cli.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "test_support.h"

#define EVAL_TEXT "assets:text/tinystories/tinystories_val.txt"

static char g_out[65536], g_err[16384];

int test_eval_cli(const char *model, const char *args, char *out, size_t out_n, char *err,
                  size_t err_n)
{
    return test_run_clif(out, out_n, err, err_n, "eval --model '%s' %s --data " EVAL_TEXT, model,
                         args);
}

void test_eval_numbers(const char *model, const char *args, char *buf, size_t n)
{
    char json_args[4096];
    snprintf(json_args, sizeof json_args, "%s --json", args);
    if (test_eval_cli(model, json_args, g_out, sizeof g_out, g_err, sizeof g_err) != 0)
        fail_msg("eval %s: %s", model, g_err);
    const char *p = strstr(g_out, "\"ppl\":"), *q = strstr(g_out, "\"mean_nll\":");
    assert_non_null(p);
    assert_non_null(q);
    snprintf(buf, n, "%.28s %.32s", p, q);
}

void test_eval_refused(const char *model, const char *args, const char *want)
{
    int rc = test_eval_cli(model, args, g_out, sizeof g_out, g_err, sizeof g_err);
    if (rc != 2 || !strstr(g_err, want))
        fail_msg("%s: exit %d, stderr %s (want '%s')", model, rc, g_err, want);
}
