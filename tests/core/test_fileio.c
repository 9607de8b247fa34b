/* File I/O against hostile paths: inputs that are not regular files (a FIFO must not hang),
 * outputs that are devices or links, planted temporaries, a full disk, a read-only directory. */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/gq_fileio.h"
#include "core/gq_sha256.h"

static void test_inputs_are_regular_files(void **state)
{
    (void)state;
    char *dir = test_tmpdir("fileio_in");
    char fifo[4200], hex[65], *data = NULL;
    size_t len;
    gq_error err = {{0}};
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    /* no writer ever opens the FIFO: a blocking open or read would hang the test */
    assert_int_equal(gq_read_file(fifo, &data, &len, &err), -1);
    assert_non_null(strstr(err.msg, "not a regular file (it is a pipe)"));
    assert_int_equal(gq_sha256_file(fifo, hex, &err), -1);
    assert_non_null(strstr(err.msg, fifo));
    assert_int_equal(gq_sha256_file("/dev/zero", hex, &err), -1);
    assert_non_null(strstr(err.msg, "/dev/zero: not a regular file (it is a device)"));
    assert_int_equal(gq_read_file(dir, &data, &len, &err), -1);
    assert_non_null(strstr(err.msg, "directory"));
    assert_true(gq_open_input("/dev/zero", &err) < 0);
    test_remove_dir(dir);
}

static void test_outputs_must_be_regular_or_absent(void **state)
{
    (void)state;
    gq_error err = {{0}};
    struct stat st;
    assert_int_equal(gq_write_file_atomic("/dev/null", "x", 1, &err), -1);
    assert_non_null(strstr(err.msg, "a device"));
    assert_int_equal(stat("/dev/null", &st), 0);
    assert_true(S_ISCHR(st.st_mode)); /* not replaced by a regular file */
    assert_int_equal(gq_check_writable("--out", "/dev/full", &err), -1);
    assert_non_null(strstr(err.msg, "--out"));
    assert_non_null(strstr(err.msg, "/dev/full"));

    char *dir = test_tmpdir("fileio_out");
    char victim[4200], link[4200];
    snprintf(victim, sizeof victim, "%s/victim", dir);
    snprintf(link, sizeof link, "%s/out.csv", dir);
    assert_int_equal(gq_write_file_atomic(victim, "keep", 4, &err), 0);
    assert_int_equal(symlink(victim, link), 0);
    assert_int_equal(gq_write_file_atomic(link, "new", 3, &err), -1);
    assert_non_null(strstr(err.msg, "symbolic link"));
    assert_int_equal(gq_check_writable("--out", link, &err), -1);
    size_t n;
    char *got = test_read_file(victim, &n);
    assert_int_equal(n, 4);
    assert_memory_equal(got, "keep", 4);
    free(got);
    test_remove_dir(dir);
}

/* A link planted at every temporary name an earlier version used ("<path>.tmp.<pid>") and a
 * few more: the write must create its own temporary and leave the link's target alone. */
static void test_planted_temporary_is_not_followed(void **state)
{
    (void)state;
    gq_error err = {{0}};
    char *dir = test_tmpdir("fileio_tmp");
    char victim[4200], out[4200], plant[4300];
    snprintf(victim, sizeof victim, "%s/victim", dir);
    snprintf(out, sizeof out, "%s/results.csv", dir);
    assert_int_equal(gq_write_file_atomic(victim, "keep", 4, &err), 0);
    snprintf(plant, sizeof plant, "%s.tmp.%d", out, (int)getpid());
    assert_int_equal(symlink(victim, plant), 0);
    assert_int_equal(gq_write_file_atomic(out, "a,b\n", 4, &err), 0);
    size_t n;
    char *got = test_read_file(victim, &n);
    assert_memory_equal(got, "keep", 4);
    free(got);
    struct stat st;
    assert_int_equal(lstat(out, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(test_dir_count(dir, NULL), 3); /* victim, results.csv, the untouched plant */
    test_remove_dir(dir);
}

static void test_disk_full_leaves_no_file(void **state)
{
    (void)state;
    char *dir = test_tmpfs_or_skip("fileio_full", 64, false);
    gq_error err = {{0}};
    char path[4200];
    snprintf(path, sizeof path, "%s/big.bin", dir);
    size_t n = 1 << 20;
    char *big = calloc(1, n);
    assert_int_equal(gq_write_file_atomic(path, big, n, &err), -1);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "write failed"));
    assert_int_equal(test_dir_count(dir, NULL), 0); /* neither the file nor its temporary */
    free(big);
    test_tmpfs_free(dir);
}

/* The JSON helper writes exactly the dump of its object with the given flags, releases the
 * object on every path (ASan sees a leak otherwise) and names the path when it has nothing. */
static void test_json_written_atomically(void **state)
{
    (void)state;
    gq_error err = {{0}};
    char *dir = test_tmpdir("fileio_json");
    char path[4200];
    snprintf(path, sizeof path, "%s/out.json", dir);
    json_t *o = json_pack("{s:i,s:[s,f]}", "b", 1, "a", "x", 0.5);
    char *want = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    assert_int_equal(gq_write_json_atomic(path, o, JSON_INDENT(2) | JSON_PRESERVE_ORDER, &err), 0);
    size_t n;
    char *got = test_read_file(path, &n);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(got, want, n);
    free(got);
    free(want);
    assert_int_equal(gq_write_json_atomic(path, NULL, JSON_COMPACT, &err), -1);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "out of memory"));
    assert_int_equal(gq_write_json_atomic("/dev/null", json_pack("{s:i}", "k", 1), 0, &err), -1);
    assert_non_null(strstr(err.msg, "a device"));
    assert_int_equal(test_dir_count(dir, NULL), 1); /* out.json only, no temporary */
    test_remove_dir(dir);
}

static void test_read_only_directory(void **state)
{
    (void)state;
    char *dir = test_tmpfs_or_skip("fileio_ro", 64, true);
    gq_error err = {{0}};
    char sub[4200], file[4200];
    snprintf(sub, sizeof sub, "%s/results/exp", dir);
    snprintf(file, sizeof file, "%s/out.bin", dir);
    assert_int_equal(gq_check_dir_writable("--out-dir", sub, &err), -1);
    assert_non_null(strstr(err.msg, "not writable"));
    assert_int_equal(gq_check_writable("--out", file, &err), -1);
    assert_non_null(strstr(err.msg, "not writable"));
    test_tmpfs_free(dir);
    char *ok = test_tmpdir("fileio_rw");
    snprintf(sub, sizeof sub, "%s/results/exp", ok);
    assert_int_equal(gq_check_dir_writable("--out-dir", sub, &err), 0);
    assert_int_equal(test_dir_count(ok, NULL), 0); /* the probe is gone, nothing was created */
    rmdir(ok);
    free(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inputs_are_regular_files),
        cmocka_unit_test(test_outputs_must_be_regular_or_absent),
        cmocka_unit_test(test_planted_temporary_is_not_followed),
        cmocka_unit_test(test_disk_full_leaves_no_file),
        cmocka_unit_test(test_read_only_directory),
        cmocka_unit_test(test_json_written_atomically),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
