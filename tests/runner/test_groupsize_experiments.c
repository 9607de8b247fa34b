/* The shipped group-size experiments: groupsize_sweep.json (stories260K, `make run`) and
 * groupsize_sweep_3M.json (tinystories-3M, asset mirror only) validate with --dry-run and list
 * their per-channel series, activations_sweep.json (tinystories-3M) and
 * activations_sweep_260K.json (stories260K) their activation, rotation and KV cells; without
 * tinystories-3M the 3M experiments stop before any work with one line naming the missing
 * file, exit status 2, nothing written. */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/gq_fileio.h"

static char g_out[1 << 16], g_err[1 << 16];
#define run(...) test_run_clif(g_out, sizeof g_out, g_err, sizeof g_err, __VA_ARGS__)

static void experiment_path(const char *name, char *out, size_t n)
{
    const char *root = getenv("GQ_SOURCE_ROOT");
    snprintf(out, n, "%s/experiments/%s", root ? root : ".", name);
}

/* The assets directory holding `rel` (GQ_ASSETS is pointed at it); false when missing. */
static bool assets_with(const char *rel, char *dir, size_t n)
{
    if (!test_asset(rel, dir, n))
        return false;
    dir[strlen(dir) - strlen(rel)] = '\0';
    setenv("GQ_ASSETS", dir, 1);
    return true;
}

/* `gq-bench run experiments/<name> --dry-run` with the assets holding `model` lists every line
 * of `expect` (NULL-terminated); skips the test when the model is missing. */
static void check_dry_run(const char *model, const char *name, const char *const *expect)
{
    char assets[4096], exp[4200];
    if (!assets_with(model, assets, sizeof assets))
        skip();
    experiment_path(name, exp, sizeof exp);
    int rc = run("run %s --dry-run", exp);
    if (rc != 0)
        fail_msg("exit %d: %s", rc, g_err);
    for (const char *const *e = expect; *e; e++)
        if (!strstr(g_out, *e))
            fail_msg("no \"%s\" in the listing:\n%s", *e, g_out);
}

static void test_groupsize_sweep_dry_run(void **state)
{
    (void)state;
    /* baseline + 4 methods x (2 bits x 3 group sizes + 2 bits per channel) */
    static const char *const expect[] = {
        ": 33 cells, model stories260K", "praq per-channel       praq     int3 channel asym",
        "int4 g16 asym", "int4 g64 asym", NULL};
    check_dry_run("models/stories260K/stories260K.bin", "groupsize_sweep.json", expect);
}

static void test_groupsize_3M_dry_run(void **state)
{
    (void)state;
    /* baseline + 4 methods x (4 group sizes + per channel) at INT4 */
    static const char *const expect[] = {
        ": 21 cells, model tinystories-3M", "int4 g256 asym",
        "awq per-channel        awq      int4 channel asym", NULL};
    check_dry_run("models/tinystories-3M/tinystories-3M.bin", "groupsize_sweep_3M.json", expect);
}

/* experiments/activations_sweep.json (tinystories-3M): baseline + 6 weight-only cells +
 * 10 entries x (2 activation widths x 2 scale modes) + 2 KV-cache widths. */
static void test_activations_sweep_dry_run(void **state)
{
    (void)state;
    static const char *const expect[] = {
        ": 49 cells, model tinystories-3M", "[A: int4 sym tensor static max]",
        "smoothquant+rtn w4 act", "rotate+gptq w4 act", "rotate resid+gptq w4 act",
        "affinequant w4 act",
        "[A: int8 sym token dynamic] [KV: int4 sym head]", NULL};
    check_dry_run("models/tinystories-3M/tinystories-3M.bin", "activations_sweep.json", expect);
}

/* experiments/activations_sweep_260K.json: baseline + 4 weight-only cells + 6 entries x
 * (2 activation widths x 2 scale modes). */
static void test_activations_sweep_260K_dry_run(void **state)
{
    (void)state;
    static const char *const expect[] = {
        ": 29 cells, model stories260K", "rotate resid+rtn w4 act", "rotate+gptq w4 ",
        "[A: int4 sym tensor static max]", NULL};
    check_dry_run("models/stories260K/stories260K.bin", "activations_sweep_260K.json", expect);
}

/* experiments/<name> with an assets directory holding stories260K and the texts but no
 * tinystories-3M. */
static void check_without_3M(const char *name)
{
    char assets[4096], exp[4200], p[4400], q[4400];
    if (!assets_with("models/stories260K/stories260K.bin", assets, sizeof assets))
        skip();
    char *partial = test_tmpdir("assets-no3M"), *out = test_tmpdir("run-no3M");
    snprintf(p, sizeof p, "%s/models", partial);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/models/stories260K", partial);
    snprintf(q, sizeof q, "%s/models/stories260K", assets);
    assert_int_equal(symlink(q, p), 0);
    snprintf(p, sizeof p, "%s/text", partial);
    snprintf(q, sizeof q, "%s/text", assets);
    assert_int_equal(symlink(q, p), 0);
    setenv("GQ_ASSETS", partial, 1);
    experiment_path(name, exp, sizeof exp);
    int rc = run("run %s --out-dir %s --threads 1", exp, out);
    setenv("GQ_ASSETS", assets, 1);
    assert_int_equal(rc, 2);
    if (!strstr(g_err, "models/tinystories-3M/") || !strstr(g_err, "not found"))
        fail_msg("stderr: %s", g_err);
    assert_non_null(strchr(g_err, '\n'));
    assert_string_equal(strchr(g_err, '\n'), "\n"); /* one line */
    snprintf(p, sizeof p, "%s/results", out);
    assert_false(gq_file_exists(p));
    snprintf(p, sizeof p, "%s/plots", out);
    assert_false(gq_file_exists(p));
    free(partial);
    free(out);
}

static void test_3M_experiments_without_model(void **state)
{
    (void)state;
    check_without_3M("groupsize_sweep_3M.json");
    check_without_3M("activations_sweep.json");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_groupsize_sweep_dry_run),
        cmocka_unit_test(test_groupsize_3M_dry_run),
        cmocka_unit_test(test_activations_sweep_dry_run),
        cmocka_unit_test(test_activations_sweep_260K_dry_run),
        cmocka_unit_test(test_3M_experiments_without_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
