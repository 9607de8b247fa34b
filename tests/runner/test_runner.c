/* The experiment runner end to end through the gq-bench binary: smoke.json outputs (throughput
 * columns included), validation messages for bad experiment files, resume after kill -9, a
 * changed experiment, the stored and paired KL references, missing gnuplot, throughput notes. */
#include "test_support.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

#include "core/gq_fileio.h"
#include "core/gq_steady.h"
#include "core/gq_threads.h"
#include "report/gq_h5.h"
#include "report/gq_plot.h"
#include "report/gq_table.h"

static char g_smoke[4096];    /* experiments/smoke.json */
static char *g_ref_dir;       /* out-dir of the uninterrupted smoke run */
static char g_out[1 << 16], g_err[1 << 16];

/* GQ_ASSETS at the real assets (test_setup_assets) and the path of smoke.json. */
static bool setup_assets(void)
{
    if (!test_setup_assets())
        return false;
    const char *root = getenv("GQ_SOURCE_ROOT");
    snprintf(g_smoke, sizeof g_smoke, "%s/experiments/smoke.json", root ? root : ".");
    return true;
}

/* Runs gq-bench with printf-formatted arguments; output in g_out / g_err. */
#define run(...) test_run_clif(g_out, sizeof g_out, g_err, sizeof g_err, __VA_ARGS__)

static bool is_png(const char *path)
{
    if (!gq_file_exists(path))
        return false;
    size_t len;
    unsigned char *d = test_read_file(path, &len);
    bool ok = len > 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0;
    free(d);
    return ok;
}

/* Throughput columns of row r: the fp32 baseline and the formats with packed kernels (int4
 * g32/g64, q4_0) are measured, int3 has none and says so; never an estimate. */
static void check_throughput(const gq_table *t, size_t r)
{
    const char *fmt = gq_table_str(t, r, "format"), *note = gq_table_str(t, r, "throughput_note");
    double dec = gq_table_num(t, r, "decode_tok_s"), pre = gq_table_num(t, r, "prefill_tok_s");
    double pb = gq_table_num(t, r, "packed_bytes");
    if (strncmp(fmt, "int3", 4) == 0) {
        assert_true(isnan(dec) && isnan(pre) && isnan(pb));
        if (!note || !strstr(note, "not measured: int3: packed kernels exist for 4 and 8 bits"))
            fail_msg("row %zu (%s): throughput_note %s", r, fmt, note ? note : "(empty)");
        return;
    }
    if (note)
        fail_msg("row %zu (%s): not measured: %s", r, fmt, note);
    assert_true(dec > 0.0 && isfinite(dec) && pre > 0.0 && isfinite(pre));
    /* the best of steady rounds, their spread and the load beside them */
    const char *rate[] = {"decode", "prefill"};
    for (int i = 0; i < 2; i++) {
        char c[64];
        snprintf(c, sizeof c, "%s_tok_s_median", rate[i]);
        double med = gq_table_num(t, r, c);
        snprintf(c, sizeof c, "%s_tok_s_min", rate[i]);
        double lo = gq_table_num(t, r, c);
        snprintf(c, sizeof c, "%s_rounds", rate[i]);
        double rounds = gq_table_num(t, r, c);
        assert_true(lo > 0.0 && lo <= med && med <= (i ? pre : dec));
        assert_true(rounds >= GQ_STEADY_MIN_ROUNDS && rounds <= GQ_STEADY_MAX_ROUNDS);
    }
    double steady = gq_table_num(t, r, "throughput_steady");
    assert_true(steady == 0.0 || steady == 1.0);
    assert_true(gq_table_num(t, r, "load_avg") >= 0.0);
    double lb = gq_table_num(t, r, "linear_bytes");
    if (r == 0)
        assert_true(pb == lb); /* the baseline's fp32 block linears */
    else /* 4 bits + an fp16 scale (+ a zero point) per group, columns padded to 32 */
        assert_true(pb > 0.9 * lb && pb < 1.3 * lb);
}

static void test_smoke_end_to_end(void **state)
{
    (void)state;
    if (!setup_assets())
        skip();
    g_ref_dir = test_tmpdir("run-ref");
    int rc = run("run %s --out-dir %s --threads 1", g_smoke, g_ref_dir);
    if (rc != 0)
        fail_msg("exit %d: %s", rc, g_err);
    /* the summary states its protocol */
    assert_non_null(strstr(g_out, "perplexity protocol full, ctx 64"));
    assert_non_null(strstr(g_out, "c009"));

    char p[4200];
    snprintf(p, sizeof p, "%s/results/smoke/results.csv", g_ref_dir);
    gq_table t;
    gq_error err = {{0}};
    assert_int_equal(gq_table_read_csv(p, &t, &err), 0);
    static const char *const cols[] = {
        "experiment", "cell", "series", "model", "method", "format", "sweep", "bits", "group_size",
        "ppl", "ppl_stderr", "delta_ppl", "kl_div", "top1_pct", "bpw", "model_bytes", "t_stats",
        "t_search", "t_quant", "t_eval", "eval_tok_s", "peak_rss_mb", "threads", "decode_tok_s",
        "prefill_tok_s", "packed_bytes", "throughput_note", "protocol", "ctx", "tokenizer",
        "eval_text",
        "eval_sha256", "calib_text", "n_calib", "calib_ctx", "seed", "config_sha256",
        "model_sha256", "version", "blas_kernel", "blas"};
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++)
        if (gq_table_col(&t, cols[i]) < 0)
            fail_msg("results.csv has no column %s", cols[i]);
    for (size_t r = 0; r < gq_table_n_rows(&t); r++) { /* the kernel that computed each row */
        assert_string_equal(gq_table_str(&t, r, "blas_kernel"), gq_blas_kernel());
        assert_string_equal(gq_table_str(&t, r, "blas"), gq_blas_description());
    }
    /* baseline + rtn x 4 + gptq x 4 + q4_0 (not swept: no bits or group_size parameter) */
    assert_int_equal(gq_table_n_rows(&t), 10);
    assert_string_equal(gq_table_str(&t, 0, "cell"), "baseline");
    assert_true(gq_table_num(&t, 0, "kl_div") == 0.0);
    double base = gq_table_num(&t, 0, "ppl");
    for (size_t r = 1; r < 10; r++) {
        double ppl = gq_table_num(&t, r, "ppl"), kl = gq_table_num(&t, r, "kl_div");
        assert_true(isfinite(ppl) && ppl > 1.0);
        assert_true(kl > 0.0 && isfinite(kl));
        assert_true(fabs(gq_table_num(&t, r, "delta_ppl") - (ppl - base)) < 1e-6 * ppl);
        double bpw = gq_table_num(&t, r, "bpw");
        assert_true(bpw > 3.0 && bpw < 5.0);
        check_throughput(&t, r);
        assert_string_equal(gq_table_str(&t, r, "protocol"), "full");
    }
    check_throughput(&t, 0);
    assert_string_equal(gq_table_str(&t, 9, "format"), "q4_0");
    assert_true(isnan(gq_table_num(&t, 9, "bits")));
    assert_true(gq_table_num(&t, 5, "n_calib") == 4);     /* gptq uses calibration */
    assert_true(isnan(gq_table_num(&t, 1, "n_calib")));   /* rtn does not */

    /* HDF5: the same numbers, per-cell groups with per-tensor metrics, protocol attribute */
    snprintf(p, sizeof p, "%s/results/smoke/results.h5", g_ref_dir);
    double *v;
    size_t n;
    assert_int_equal(gq_h5_read_column(p, "ppl", &v, &n, &err), 0);
    assert_int_equal(n, 10);
    for (size_t r = 0; r < n; r++)
        assert_true(v[r] == gq_table_num(&t, r, "ppl"));
    free(v);
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_true(H5Aexists(f, "protocol") > 0);
    assert_true(H5Aexists(f, "experiment_json") > 0);
    assert_true(H5Aexists(f, "empty_columns_reason") > 0);
    assert_true(H5Aexists(f, "throughput") > 0);
    assert_true(H5Aexists(f, "blas") > 0);
    assert_true(H5Aexists(f, "blas_kernel") > 0);
    assert_true(H5Lexists(f, "/cells/c005", H5P_DEFAULT) > 0);
    hid_t ds = H5Dopen2(f, "/cells/c005/tensors", H5P_DEFAULT);
    assert_true(ds >= 0);
    hid_t ty = H5Dget_type(ds);
    assert_true(H5Tget_member_index(ty, "recon_err") >= 0);
    H5Tclose(ty);
    H5Dclose(ds);
    H5Fclose(f);
    gq_table_free(&t);

    /* charts the sweep supports, and only those */
    const char *pngs[] = {"ppl_vs_group_size_3bit", "ppl_vs_group_size_4bit", "ppl_vs_bits",
                          "ppl_vs_bpw", "stage_times"};
    for (int i = 0; i < 5 && gq_gnuplot_path(); i++) {
        snprintf(p, sizeof p, "%s/plots/smoke/%s.png", g_ref_dir, pngs[i]);
        if (!is_png(p))
            fail_msg("%s is missing or not a PNG", p);
    }
    snprintf(p, sizeof p, "%s/plots/smoke/ppl_vs_n_calib.png", g_ref_dir);
    assert_false(gq_file_exists(p));
}

/* Writes smoke.json with one Python-free edit: `from` replaced by `to` (must occur). */
static void write_variant(const char *dir, const char *name, const char *from, const char *to,
                          char *out, size_t n)
{
    size_t len;
    char *src = test_read_file(g_smoke, &len);
    char *at = strstr(src, from);
    if (!at)
        fail_msg("smoke.json no longer contains %s", from);
    snprintf(out, n, "%s/%s", dir, name);
    test_write_textf(out, "%.*s%s%s", (int)(at - src), src, to, at + strlen(from));
    free(src);
}

static void test_validation_messages(void **state)
{
    (void)state;
    if (!setup_assets())
        skip();
    char *dir = test_tmpdir("run-bad");
    static const struct {
        const char *from, *to, *expect;
    } cases[] = {
        {"\"description\"", "\"descripton\"", "$.descripton: unknown key (known: name, description"},
        {"\"bits\": [3, 4]", "\"bits\": [3, 9]",
         "$.methods[0].format.bits: 9 is outside 2..8 (in the sweep cell bits=9 group_size=32)"},
        {"\"bits\": 4, \"group_size\": 32}}", "\"bits\": 1, \"group_size\": 32}}",
         "$.methods[0].format.bits: 1 is outside 2..8"},
        {"\"group_size\": [32, 64]", "\"group_size\": []", "$.sweep.group_size: expected a non-empty array"},
        {"\"method\": \"rtn\"", "\"method\": \"rnt\"", "$.methods[0].method.name: unknown method \"rnt\""},
        {"\"format\": \"q4_0\"", "\"format\": \"q4_9\"", "$.methods[2].format.name: unknown format \"q4_9\""},
        {"tinystories_val.txt\", \"protocol\"", "missing.txt\", \"protocol\"", "$.eval.text: text/tinystories/missing.txt: not found"},
        {"\"ctx\": 64", "\"ctx\": \"64\"", "$.eval.ctx: expected an integer"},
        {"\"max_windows\": 4", "\"max_windows\": 4, \"kl_baseline\": \"pair\"",
         "$.eval.kl_baseline: \"pair\" is not one of \"auto\", \"stored\", \"paired\""},
        {"\"ctx\": 64", "\"ctx\": 4096", "$.eval.ctx: 4096 is longer than the model's context (128)"},
        {"\"protocol\": \"full\"", "\"protocol\": \"wiki\"", "$.eval.protocol"},
        {"\"sweep\": {", "\"zip\": [[\"bits\", \"n_calib\"]], \"sweep\": {", "$.zip[0][1]: \"n_calib\" is not an axis of $.sweep"},
        {"\"sweep\": {", "\"sweep\": {\"damp\": [0.1], ", "$.sweep.damp: no method in $.methods has this parameter"},
        {"\"label\": \"gptq\"", "\"label\": \"rtn\"", "$.methods[1].label: \"rtn\" is already the label of $.methods[0]"},
        {"\"seed\": 1,", "\"seed\": -1,", "$.model.seed: -1 is outside 0.."},
        {"\"sweep\": {", "\"throughput\": {\"tokens\": 4}, \"sweep\": {",
         "$.throughput.tokens: unknown key (known: enabled, decode_tokens, prefill_tokens, reps)"},
        {"\"sweep\": {", "\"throughput\": {\"enabled\": 1}, \"sweep\": {",
         "$.throughput.enabled: expected true or false"},
        {"\"sweep\": {", "\"throughput\": {\"reps\": 0}, \"sweep\": {",
         "$.throughput.reps: 0 is outside 1..1000"},
        {"\"sweep\": {", "\"throughput\": {\"decode_tokens\": 127}, \"sweep\": {",
         "$.throughput.decode_tokens: 127 + 2 warm-up steps exceed the model's context (128)"},
        {"\"sweep\": {", "\"throughput\": {\"prefill_tokens\": 129}, \"sweep\": {",
         "$.throughput.prefill_tokens: 129 is longer than the model's context (128)"},
        {"\"sweep\": {", "\"throughput\": [], \"sweep\": {", "$.throughput: expected an object"},
        {"\"methods\": [", "\"overrides\": [{\"pattern\": \"layers.*\", \"keep_fp\": true, \"format\": \"q4_0\"}], \"methods\": [",
         "$.overrides[0]: give either \"keep_fp\": true or a \"format\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char file[4200], name[32], out[4200];
        snprintf(name, sizeof name, "bad%zu.json", i);
        write_variant(dir, name, cases[i].from, cases[i].to, file, sizeof file);
        snprintf(out, sizeof out, "%s/out%zu", dir, i);
        int rc = run("run %s --out-dir %s", file, out);
        if (rc != 2 || !strstr(g_err, cases[i].expect) || strncmp(g_err, "gq-bench run: ", 14) ||
            strncmp(g_err + 14, file, strlen(file)))
            fail_msg("case %zu: exit %d, stderr: %s(expected \"%s: ... %s\")", i, rc, g_err, file,
                     cases[i].expect);
        /* one line, nothing created */
        assert_int_equal(strchr(g_err, '\n') - g_err + 1, (long)strlen(g_err));
        assert_false(gq_file_exists(out));
    }
    /* a syntax error names the line */
    char file[4200];
    snprintf(file, sizeof file, "%s/syntax.json", dir);
    FILE *f = fopen(file, "w");
    fputs("{\"name\": \"x\",\n \"model\": }\n", f);
    fclose(f);
    assert_int_equal(run("run %s", file), 2);
    assert_non_null(strstr(g_err, "line 2"));
    /* --dry-run lists the cells and writes nothing */
    char out[4200];
    snprintf(out, sizeof out, "%s/dry", dir);
    assert_int_equal(run("run %s --dry-run --out-dir %s", g_smoke, out), 0);
    assert_non_null(strstr(g_out, "10 cells"));
    assert_non_null(strstr(g_out, "bits=4 group_size=64"));
    assert_false(gq_file_exists(out));
    free(dir);
}

/* Zipped axes, per-entry applicability (channel granularity has no groups, RTN does not
 * calibrate), exclusions and the cell order, through --dry-run. */
static void test_sweep_expansion(void **state)
{
    (void)state;
    if (!setup_assets())
        skip();
    char file[4200];
    char *dir = test_tmpdir_file("run-sweep", "sweep.json", file, sizeof file);
    test_write_text(file,
        "{\"name\": \"sweep\",\n"
        " \"model\": {\"synthetic\": \"tiny\", \"tokenizer\": \"models/stories260K/tok512.bin\"},\n"
        " \"eval\": {\"text\": \"text/tinystories/tinystories_val.txt\", \"ctx\": 32, \"max_windows\": 8},\n"
        " \"calib\": {\"text\": \"text/tinystories/tinystories_val.txt\", \"n_calib\": 2, \"calib_ctx\": 32},\n"
        " \"methods\": [\n"
        "  {\"label\": \"g\", \"method\": \"rtn\", \"format\": {\"name\": \"int\"}},\n"
        "  {\"label\": \"ch\", \"method\": \"rtn\", \"format\": {\"name\": \"int\", \"granularity\": \"channel\"}},\n"
        "  {\"label\": \"gq\", \"method\": \"gptq\", \"format\": {\"name\": \"int\"}},\n"
        "  {\"label\": \"gx\", \"method\": \"gptq\", \"format\": {\"name\": \"int\"}, \"exclude\": [\"n_calib\", \"bits\"]}],\n"
        " \"sweep\": {\"bits\": [3, 4], \"group_size\": [32, 64], \"n_calib\": [2, 4], \"method.percdamp\": [0.01]},\n"
        " \"zip\": [[\"bits\", \"group_size\"]]}\n");
    int rc = run("run %s --dry-run", file);
    if (rc != 0)
        fail_msg("exit %d: %s", rc, g_err);
    /* baseline; g: 2 (zipped); ch: 2 (bits only); gq: 2 x 2 n_calib; gx: 2 group sizes */
    assert_non_null(strstr(g_out, "11 cells"));
    static const char *const lines[] = {
        "c001      g ", "bits=3 group_size=32\n", "c003      ch", "int4 channel", "bits=4\n",
        "c005      gq", "bits=3 group_size=32 n_calib=2 method.percdamp=0.01\n",
        "bits=4 group_size=64 n_calib=4 method.percdamp=0.01\n", "c010      gx",
        "group_size=64 method.percdamp=0.01\n"};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        if (!strstr(g_out, lines[i]))
            fail_msg("dry run lacks \"%s\":\n%s", lines[i], g_out);
    assert_null(strstr(g_out, "c011"));
    free(dir);
}

static int count_cells(const char *journal)
{
    DIR *d = opendir(journal);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strncmp(de->d_name, "cell-", 5) == 0 && !strstr(de->d_name, ".tmp.");
    closedir(d);
    return n;
}

/* results.csv without the columns that measure time or memory (and, with `threads`, the
 * thread-count column: the baseline runs alone with every thread, cells with their share;
 * with `kl_reference`, the column naming how KL was measured). */
static char *csv_without2(const char *path, bool threads, bool kl_reference)
{
    gq_table t;
    gq_error err = {{0}};
    if (gq_table_read_csv(path, &t, &err))
        fail_msg("%s", err.msg);
    static const char *const timing[] = {"t_stats",     "t_search",    "t_quant",
                                         "t_eval",      "eval_tok_s",  "peak_rss_mb",
                                         "decode_tok_s", "prefill_tok_s",
                                         "decode_tok_s_median", "decode_tok_s_min",
                                         "decode_rounds", "prefill_tok_s_median",
                                         "prefill_tok_s_min", "prefill_rounds",
                                         "throughput_steady", "load_avg"};
    for (size_t r = 0; r < gq_table_n_rows(&t); r++)
        for (size_t k = 0; k < sizeof timing / sizeof timing[0]; k++)
            json_object_del(gq_table_row(&t, r), timing[k]);
    for (size_t r = 0; r < gq_table_n_rows(&t); r++) {
        if (threads)
            json_object_del(gq_table_row(&t, r), "threads");
        if (kl_reference)
            json_object_del(gq_table_row(&t, r), "kl_reference");
    }
    char *s = gq_table_csv(&t);
    gq_table_free(&t);
    return s;
}

static char *csv_without(const char *path, bool threads)
{
    return csv_without2(path, threads, false);
}

/* Every row's kl_reference: "self" for the baseline, `want` for the cells. */
static void expect_kl_reference(const char *csv, const char *want)
{
    gq_table t;
    gq_error err = {{0}};
    if (gq_table_read_csv(csv, &t, &err))
        fail_msg("%s", err.msg);
    for (size_t r = 0; r < gq_table_n_rows(&t); r++) {
        const char *k = gq_table_str(&t, r, "kl_reference");
        if (!k || strcmp(k, r == 0 ? "self" : want) != 0)
            fail_msg("%s row %zu: kl_reference %s, expected %s", csv, r, k ? k : "(empty)",
                     r == 0 ? "self" : want);
    }
    gq_table_free(&t);
}

/* Starts smoke.json in a new out-dir, kills it with SIGKILL once the journal holds the baseline
 * and one cell, reruns the same command and checks the results equal the uninterrupted run's
 * (apart from kl_reference when `paired`: the reference run stored its baseline). Returns the
 * out-dir (caller frees). */
static char *kill_and_resume(const char *tag, bool paired)
{
    char journal[4096];
    char *dir = test_tmpdir_file(tag, "results/smoke/.journal", journal, sizeof journal);
    /* start the run, kill -9 it once the journal holds the baseline and one cell */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execl(getenv("GQ_BENCH"), "gq-bench", "run", g_smoke, "--out-dir", dir, "--threads",
              "1", "--no-plots", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    bool exited = false;
    for (int i = 0; i < 60000 && !exited; i++) {
        if (count_cells(journal) >= 2)
            break;
        exited = waitpid(pid, &status, WNOHANG) == pid;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    int done_before = count_cells(journal);
    if (exited)
        fail_msg("the run finished (status %d) before it could be killed", status);
    assert_true(done_before >= 2 && done_before < 10);
    char csv[8400];
    snprintf(csv, sizeof csv, "%s/results/smoke/results.csv", dir);
    assert_false(gq_file_exists(csv)); /* final files only come from a complete journal */

    /* the same command finishes the remaining cells */
    int rc = run("run %s --out-dir %s --threads 1 --no-plots", g_smoke, dir);
    if (rc != 0)
        fail_msg("resume: exit %d: %s", rc, g_err);
    assert_non_null(strstr(g_err, "resuming"));
    char ref[4200];
    snprintf(ref, sizeof ref, "%s/results/smoke/results.csv", g_ref_dir);
    char *a = csv_without2(ref, false, paired), *b = csv_without2(csv, false, paired);
    assert_string_equal(a, b); /* same cells, same numbers */
    free(a);
    free(b);
    expect_kl_reference(csv, paired ? "paired" : "stored");
    snprintf(csv, sizeof csv, "%s/baseline.logp", journal);
    assert_true(gq_file_exists(csv) == !paired); /* paired mode journals no log-probs */
    return dir;
}

/* Sets `field` of the journal key under dir to `value`, resumes smoke.json there and expects
 * success with `warning` in the log. */
static void resume_with_key_field(const char *dir, const char *field, const char *value,
                                  const char *warning)
{
    char key[4200];
    snprintf(key, sizeof key, "%s/results/smoke/.journal/key", dir);
    json_t *k = json_load_file(key, 0, NULL);
    assert_non_null(k);
    assert_non_null(json_string_value(json_object_get(k, field)));
    json_object_set_new(k, field, json_string(value));
    assert_int_equal(json_dump_file(k, key, JSON_INDENT(1)), 0);
    json_decref(k);
    int rc = run("run %s --out-dir %s --threads 1 --no-plots", g_smoke, dir);
    if (rc != 0)
        fail_msg("resume with %s %s in the key: exit %d: %s", field, value, rc, g_err);
    if (!strstr(g_err, warning))
        fail_msg("resume with %s %s in the key: no '%s' in: %s", field, value, warning, g_err);
}

static void test_resume_after_kill(void **state)
{
    (void)state;
    if (!setup_assets() || !g_ref_dir)
        skip();
    char *dir = kill_and_resume("run-resume", false);
    int rc;

    /* a journal started by another build, or under another BLAS kernel, resumes with a warning
     * naming both */
    char key[4200];
    snprintf(key, sizeof key, "%s/results/smoke/.journal/key", dir);
    json_t *k = json_load_file(key, 0, NULL);
    assert_non_null(k);
    assert_string_equal(json_string_value(json_object_get(k, "blas_kernel")), gq_blas_kernel());
    json_decref(k);
    resume_with_key_field(dir, "revision", "r-other", "started by revision r-other");
    resume_with_key_field(dir, "blas", "OpenBLAS 0.3.21 (OpenMP; kernel Other)",
                          "started under OpenBLAS 0.3.21 (OpenMP; kernel Other) with ");

    /* a changed experiment does not resume into these results */
    char file[4200];
    write_variant(dir, "smoke.json", "\"max_windows\": 4", "\"max_windows\": 3", file, sizeof file);
    rc = run("run %s --out-dir %s --threads 1 --no-plots", file, dir);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(g_err, "--fresh"));
    free(dir);
}

/* Later tests run with the default budget even when test_kl_paired fails midway. */
static int unset_kl_budget(void **state)
{
    (void)state;
    unsetenv("GQ_KL_BUDGET_BYTES");
    return 0;
}

/* The KL reference modes: with a budget below the stored baseline's size, auto pairs (the
 * same numbers as the stored reference run, no log-probs in the journal) and resume after
 * kill -9 works; an explicit "stored" ignores the budget; a bad budget is refused up front. */
static void test_kl_paired(void **state)
{
    (void)state;
    if (!setup_assets() || !g_ref_dir)
        skip();
    char ref[4200];
    snprintf(ref, sizeof ref, "%s/results/smoke/results.csv", g_ref_dir);
    expect_kl_reference(ref, "stored"); /* 4 windows x 63 x 512 vocab: far below 1 GiB */
    setenv("GQ_KL_BUDGET_BYTES", "1000", 1);
    char *dir = test_tmpdir("run-paired"), csv[4200];
    int rc = run("run %s --out-dir %s --threads 1 --no-plots", g_smoke, dir);
    if (rc != 0)
        fail_msg("exit %d: %s", rc, g_err);
    assert_non_null(strstr(g_err, "KL reference: paired"));
    assert_non_null(strstr(g_err, "would take 519312 bytes")); /* 192 + 252 x (512 x 4 + 12) */
    assert_non_null(strstr(g_out, "the baseline model rerun on the same batches"));
    snprintf(csv, sizeof csv, "%s/results/smoke/results.csv", dir);
    char *a = csv_without2(ref, false, true), *b = csv_without2(csv, false, true);
    assert_string_equal(a, b);
    free(a);
    free(b);
    expect_kl_reference(csv, "paired");
    free(dir);

    dir = kill_and_resume("run-paired-resume", true);
    free(dir);

    /* "stored" is obeyed whatever the budget */
    dir = test_tmpdir("run-stored");
    char file[4200];
    write_variant(dir, "smoke.json", "\"max_windows\": 4", "\"max_windows\": 4, \"kl_baseline\": \"stored\"",
                  file, sizeof file);
    rc = run("run %s --out-dir %s --threads 1 --no-plots", file, dir);
    if (rc != 0)
        fail_msg("exit %d: %s", rc, g_err);
    snprintf(csv, sizeof csv, "%s/results/smoke/results.csv", dir);
    expect_kl_reference(csv, "stored");

    setenv("GQ_KL_BUDGET_BYTES", "1GiB", 1);
    rc = run("run %s --out-dir %s/bad --threads 1 --no-plots", g_smoke, dir);
    unsetenv("GQ_KL_BUDGET_BYTES");
    assert_int_equal(rc, 2);
    assert_non_null(strstr(g_err, "GQ_KL_BUDGET_BYTES: '1GiB' is not a byte count"));
    snprintf(csv, sizeof csv, "%s/bad", dir);
    assert_false(gq_file_exists(csv));
    free(dir);
}

/* Two cells side by side with one thread each give the numbers of a sequential 1-thread run. */
/* The smoke results of --threads 1 (the reference run), of two jobs of one thread and of one job
 * of 2 and of 3 threads are the same bit for bit, apart from timings and the thread count. */
static void test_jobs_same_numbers(void **state)
{
    (void)state;
    if (!setup_assets() || !g_ref_dir)
        skip();
    static const char *const splits[] = {"--threads 2 --jobs 2", "--threads 2 --jobs 1",
                                         "--threads 3 --jobs 1"};
    char ref[4200], csv[4200];
    snprintf(ref, sizeof ref, "%s/results/smoke/results.csv", g_ref_dir);
    char *a = csv_without(ref, true);
    for (size_t i = 0; i < sizeof splits / sizeof splits[0]; i++) {
        char *dir = test_tmpdir("run-jobs");
        int rc = run("run %s --out-dir %s %s --no-plots", g_smoke, dir, splits[i]);
        if (rc != 0)
            fail_msg("%s: exit %d: %s", splits[i], rc, g_err);
        snprintf(csv, sizeof csv, "%s/results/smoke/results.csv", dir);
        char *b = csv_without(csv, true);
        if (strcmp(a, b) != 0)
            fail_msg("%s gives other numbers than --threads 1:\n%s\nvs\n%s", splits[i], b, a);
        free(b);
        free(dir);
    }
    free(a);
}

static void test_without_gnuplot(void **state)
{
    (void)state;
    if (!setup_assets())
        skip();
    char *dir = test_tmpdir("run-nognuplot"), file[4200];
    /* gptq not swept over bits: baseline + rtn x 4 + gptq x 2 + q4_0 */
    write_variant(dir, "smoke.json", "{\"label\": \"gptq\"", "{\"label\": \"gptq\", \"exclude\": [\"bits\"]",
                  file, sizeof file);
    setenv("GQ_GNUPLOT", "/nonexistent/gnuplot", 1);
    int rc = run("run %s --out-dir %s --threads 1", file, dir);
    unsetenv("GQ_GNUPLOT");
    if (rc != 0)
        fail_msg("exit %d: %s", rc, g_err);
    assert_non_null(strstr(g_err, "charts skipped: gnuplot not found"));
    char p[4200];
    snprintf(p, sizeof p, "%s/results/smoke/results.csv", dir);
    assert_true(gq_file_exists(p));
    snprintf(p, sizeof p, "%s/results/smoke/results.h5", dir);
    assert_true(gq_file_exists(p));
    snprintf(p, sizeof p, "%s/plots/smoke/stage_times.png", dir);
    assert_false(gq_file_exists(p));
    /* gptq excluded from the bits axis: 2 group sizes only */
    assert_non_null(strstr(g_out, "c007"));
    assert_null(strstr(g_out, "c008"));
    free(dir);
}

/* A baseline + one q4_0 cell experiment on the synthetic tiny model with `extra` keys added. */
static void run_tiny(const char *dir, const char *name, const char *extra, gq_table *t)
{
    char file[4200], csv[4300];
    snprintf(file, sizeof file, "%s/%s.json", dir, name);
    test_write_textf(file,
        "{\"name\": \"%s\", %s\n"
        " \"model\": {\"synthetic\": \"tiny\",\n"
        "            \"tokenizer\": \"models/stories260K/tok512.bin\"},\n"
        " \"eval\": {\"text\": \"text/tinystories/tinystories_val.txt\", \"ctx\": 32,\n"
        "          \"max_windows\": 1},\n"
        " \"methods\": [{\"label\": \"q\", \"method\": \"rtn\", \"format\": \"q4_0\"}]}\n",
        name, extra);
    int rc = run("run %s --out-dir %s --threads 1 --no-plots", file, dir);
    if (rc != 0)
        fail_msg("exit %d: %s", rc, g_err);
    snprintf(csv, sizeof csv, "%s/results/%s/results.csv", dir, name);
    gq_error err = {{0}};
    if (gq_table_read_csv(csv, t, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(gq_table_n_rows(t), 2);
}

/* Rows the packed kernels cannot represent keep their throughput columns empty with the reason:
 * an override keeping one linear fp32; $.throughput.enabled false. Options reach the protocol. */
static void test_throughput_notes(void **state)
{
    (void)state;
    if (!setup_assets())
        skip();
    char *dir = test_tmpdir("run-tp");
    gq_table t;
    run_tiny(dir, "keepfp",
             "\"overrides\": [{\"pattern\": \"layers.0.mlp.down_proj\", \"keep_fp\": true}],"
             " \"throughput\": {\"decode_tokens\": 4, \"prefill_tokens\": 16, \"reps\": 1},",
             &t);
    assert_true(gq_table_num(&t, 0, "decode_tok_s") > 0.0); /* the baseline is one format */
    const char *note = gq_table_str(&t, 1, "throughput_note");
    if (!note || !strstr(note, "not measured: the overrides make 1 tensor(s) differ from one "
                               "packed quantizer (q4_0 on every block linear") ||
        !strstr(note, "layers.0.mlp.down_proj is fp32"))
        fail_msg("throughput_note: %s", note ? note : "(empty)");
    assert_true(isnan(gq_table_num(&t, 1, "decode_tok_s")));
    assert_true(isnan(gq_table_num(&t, 1, "packed_bytes")));
    assert_non_null(strstr(g_out, "the fastest of 4 decode steps (positions 2..5"));
    assert_non_null(strstr(g_out, "16 tokens / the fastest of 1 prefill passes"));
    gq_table_free(&t);

    run_tiny(dir, "off", "\"throughput\": {\"enabled\": false},", &t);
    for (size_t r = 0; r < 2; r++) {
        assert_string_equal(gq_table_str(&t, r, "throughput_note"),
                            "not measured: $.throughput.enabled is false");
        assert_true(isnan(gq_table_num(&t, r, "prefill_tok_s")));
    }
    assert_non_null(strstr(g_out, "throughput not measured ($.throughput.enabled false)"));
    gq_table_free(&t);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smoke_end_to_end),
        cmocka_unit_test(test_validation_messages),
        cmocka_unit_test(test_sweep_expansion),
        cmocka_unit_test(test_resume_after_kill),
        cmocka_unit_test_teardown(test_kl_paired, unset_kl_budget),
        cmocka_unit_test(test_jobs_same_numbers),
        cmocka_unit_test(test_without_gnuplot),
        cmocka_unit_test(test_throughput_notes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
