/* cli_opts: every value kind, every error message, defaults and the generated help. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "test_support.h"

typedef struct fields {
    bool flag;
    long n, req;
    double x;
    const char *s, *choice, *out, *pos;
    char in[CLI_PATH_MAX];
    cli_list list;
    int calls;
} fields;

static fields F;
static char g_out[8192], g_err[8192];
static char g_dir[4096];

/* Counts its calls; refuses "bad". */
static int count_call(void *field, const char *v, gq_error *err)
{
    if (strcmp(v, "bad") == 0)
        return gq_fail(err, "'%s' is bad", v);
    ++*(int *)field;
    return 0;
}

/* Reads the file behind `fd` (a redirected stream) into buf. */
static void slurp(FILE *f, char *buf, size_t n)
{
    fflush(f);
    rewind(f);
    size_t got = fread(buf, 1, n - 1, f);
    buf[got] = '\0';
}

/* Runs cli_parse on the words of `args` (space-separated) with the test table; stdout and
 * stderr land in g_out and g_err. `in_def` is the default of --in (NULL: none). */
static int parse(const char *in_def, const char *fmt, ...)
{
    char line[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    char *argv[64] = {"cmd"};
    int argc = 1;
    for (char *t = strtok(line, " "); t && argc < 63; t = strtok(NULL, " "))
        argv[argc++] = t;
    memset(&F, 0, sizeof F);
    const cli_opt opts[] = {
        CLI_OPT("flag", NULL, CLI_FLAG, &F.flag, "a flag"),
        CLI_OPT("n", "N", CLI_INT, &F.n, "an integer", .def = "16", .min = -3, .max = 100),
        CLI_OPT("req", "R", CLI_INT, &F.req, "a required integer", .required = true, .min = 1,
                .max = 9),
        CLI_OPT("x", "X", CLI_NUM, &F.x, "a number\nsecond line", .def = "0.5", .max = 1),
        CLI_OPT("s", "S", CLI_STR, &F.s, "a string", .required = true),
        CLI_OPT("choice", "C", CLI_CHOICE, &F.choice, "a choice", .def = "a", .choices = "a|bb|c"),
        CLI_OPT("in", "FILE", CLI_IN, F.in, "an input file", .def = in_def),
        CLI_OPT("out", "FILE", CLI_OUT, &F.out, "an output file"),
        CLI_OPT("list", "L", CLI_LIST, &F.list, "a list", .max = 2),
        CLI_OPT("call", "V", CLI_CALL, &F.calls, "a callback", .parse = count_call,
                .repeat = true),
    };
    const cli_spec spec = {.cmd = "test cmd", .about = "About.\n", CLI_OPTS(opts),
                           .pos_meta = "POS", .pos_what = "thing", .pos = &F.pos,
                           .epilog = "Epilog.\n"};
    FILE *o = tmpfile(), *e = tmpfile();
    assert_non_null(o);
    assert_non_null(e);
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    dup2(fileno(o), 1);
    dup2(fileno(e), 2);
    int rc = cli_parse(&spec, argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    slurp(o, g_out, sizeof g_out);
    slurp(e, g_err, sizeof g_err);
    fclose(o);
    fclose(e);
    return rc;
}

static void expect_error(const char *needle, const char *args)
{
    int rc = parse(NULL, "%s", args);
    if (rc != GQ_EXIT_USAGE || !strstr(g_err, needle) || !strstr(g_err, "gq-bench test cmd: ") ||
        !strstr(g_err, "Try 'gq-bench test cmd --help'."))
        fail_msg("'%s': status %d, stderr '%s' (expected 2 and '%s')", args, rc, g_err, needle);
}

static void test_values(void **state)
{
    (void)state;
    assert_int_equal(parse(NULL, "--req 3 --s hello"), 0);
    assert_false(F.flag);
    assert_int_equal(F.n, 16); /* defaults */
    assert_true(F.x == 0.5);
    assert_string_equal(F.choice, "a");
    assert_null(F.pos);
    assert_string_equal(F.in, "");
    char args[16384];
    snprintf(args, sizeof args, "pos --flag --n=-3 --req 9 --x 1e-1 --s=a=b --choice bb --list u "
             "--call 1 --list v --call 2 --out %s/o.bin --in %s/f.txt", g_dir, g_dir);
    assert_int_equal(parse(NULL, "%s", args), 0);
    assert_true(F.flag);
    assert_int_equal(F.n, -3);
    assert_int_equal(F.req, 9);
    assert_true(F.x == 0.1);
    assert_string_equal(F.s, "a=b");
    assert_string_equal(F.choice, "bb");
    assert_string_equal(F.pos, "pos");
    assert_int_equal(F.list.n, 2);
    assert_string_equal(F.list.v[1], "v");
    assert_int_equal(F.calls, 2);
    assert_non_null(strstr(F.out, "/o.bin"));
    assert_non_null(strstr(F.in, "/f.txt"));
    /* a default file is checked only when it is used */
    assert_int_equal(parse("/nonexistent/default.txt", "--req 1 --s s --in %s/f.txt", g_dir), 0);
    assert_int_equal(parse("/nonexistent/default.txt", "--req 1 --s s"), GQ_EXIT_USAGE);
    assert_non_null(strstr(g_err, "--in /nonexistent/default.txt: cannot open"));
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("unknown option '--bogus'", "--req 1 --s s --bogus");
    expect_error("unknown option '-q'", "--req 1 --s s -q");
    expect_error("--n needs a value", "--req 1 --s s --n");
    expect_error("--n: 'x' is not an integer", "--req 1 --s s --n x");
    expect_error("--n: 101 is outside -3..100", "--req 1 --s s --n 101");
    expect_error("--x: 'nan' is not a number", "--req 1 --s s --x nan");
    expect_error("--x: 2 is outside 0..1", "--req 1 --s s --x 2");
    expect_error("--choice: expected a, bb or c, got 'b'", "--req 1 --s s --choice b");
    expect_error("--flag takes no value", "--req 1 --s s --flag=1");
    expect_error("--list: at most 2 values", "--req 1 --s s --list a --list b --list c");
    expect_error("--call: 'bad' is bad", "--req 1 --s s --call bad");
    expect_error("more than one thing ('p', 'q')", "--req 1 --s s p q");
    expect_error("--req and --s are required", "");
    expect_error("--s is required", "--req 2");
    expect_error("--in /nonexistent/f: cannot open", "--req 1 --s s --in /nonexistent/f");
    char args[16384];
    snprintf(args, sizeof args, "--req 1 --s s --in %s", g_dir);
    expect_error("not a regular file (it is a directory)", args);
    snprintf(args, sizeof args, "--req 1 --s s --out %s", g_dir);
    expect_error("--out", args);
    expect_error("--out /nonexistent/o.bin", "--req 1 --s s --out /nonexistent/o.bin");
}

static void test_help(void **state)
{
    (void)state;
    /* --help wins over missing required options and never checks default files */
    assert_int_equal(parse("/nonexistent/default.txt", "--n 1 --help"), 1);
    assert_string_equal(g_err, "");
    const char *want[] = {
        "usage: gq-bench test cmd [POS] [--flag] [--n N] --req R [--x X] --s S [--choice C]",
        "\nAbout.\n",
        "  --flag      a flag\n",
        "  --n N       an integer (default 16)\n",
        "  --x X       a number\n              second line (default 0.5)\n",
        "  --list L    a list (repeatable)\n",
        "  --call V    a callback (repeatable)\n",
        "[--list L ...] [--call V ...]",
        "(default /nonexistent/default.txt)",
        "\nEpilog.\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(g_out, want[i]))
            fail_msg("help lacks '%s':\n%s", want[i], g_out);
    assert_int_equal(parse(NULL, "-h"), 1);
}

int main(void)
{
    char *dir = test_tmpdir("cli_opts");
    snprintf(g_dir, sizeof g_dir, "%s", dir);
    free(dir);
    char f[4200];
    snprintf(f, sizeof f, "%s/f.txt", g_dir);
    FILE *fp = fopen(f, "w");
    if (!fp || fputs("x", fp) < 0 || fclose(fp) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
