#include "test_support.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/gq_fileio.h"

const char *test_data_path(const char *rel)
{
    static char buf[4096];
    const char *d = getenv("GQ_TESTDATA");
    snprintf(buf, sizeof buf, "%s/%s", d ? d : "tests/data", rel);
    return buf;
}

bool test_asset(const char *rel, char *out, size_t n)
{
    const char *dir = getenv("GQ_ASSETS");
    const char *root = getenv("GQ_SOURCE_ROOT");
    if (dir && dir[0])
        snprintf(out, n, "%s/%s", dir, rel);
    else
        snprintf(out, n, "%s/assets/%s", root ? root : ".", rel);
    if (gq_file_exists(out))
        return true;
    const char *req = getenv("GQ_REQUIRE_ASSETS");
    if (req && strcmp(req, "1") == 0)
        fail_msg("required asset missing: %s (run `make assets`)", out);
    fprintf(stderr, "skipping: asset %s not found (run `make assets`)\n", out);
    return false;
}

char *test_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/gq-test-%s-XXXXXX", base && base[0] ? base : "/tmp", tag);
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

char *test_tmpfs(const char *tag, int kib, bool ro)
{
    char *dir = test_tmpdir(tag);
    char opts[64];
    snprintf(opts, sizeof opts, "size=%dk", kib);
    if (mount("gq-test", dir, "tmpfs", ro ? MS_RDONLY : 0, opts) != 0) {
        fprintf(stderr, "skipping: cannot mount a tmpfs on %s (%s)\n", dir, strerror(errno));
        rmdir(dir);
        free(dir);
        return NULL;
    }
    return dir;
}

char *test_tmpfs_or_skip(const char *tag, int kib, bool ro)
{
    char *dir = test_tmpfs(tag, kib, ro);
    if (!dir)
        skip();
    return dir;
}

void test_tmpfs_free(char *dir)
{
    if (!dir)
        return;
    umount2(dir, MNT_DETACH);
    rmdir(dir);
    free(dir);
}

bool test_png_complete(const char *path)
{
    size_t len;
    unsigned char *b = test_read_file(path, &len);
    bool ok = len >= 20 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0 &&
              memcmp(b + len - 8, "IEND\xae\x42\x60\x82", 8) == 0;
    free(b);
    return ok;
}

void *test_read_file(const char *path, size_t *len)
{
    char *data = NULL;
    gq_error err = {{0}};
    if (gq_read_file(path, &data, len, &err) != 0)
        fail_msg("%s", err.msg);
    return data;
}

static void slurp(const char *path, char *buf, size_t n)
{
    if (!buf || n == 0)
        return;
    buf[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    size_t got = fread(buf, 1, n - 1, f);
    buf[got] = '\0';
    fclose(f);
}

int test_run_cli(const char *args, char *out, size_t out_n, char *err, size_t err_n)
{
    const char *bin = getenv("GQ_BENCH");
    if (!bin)
        fail_msg("GQ_BENCH is not set (run the tests through meson test)");
    if (!getenv("GQ_ASSETS")) /* asset names in args resolve as the test's own lookups do */
        test_setup_assets();
    char *dir = test_tmpdir("cli");
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "%s %s >%s/out 2>%s/err </dev/null", bin, args, dir, dir);
    int st = system(cmd);
    char path[4200];
    snprintf(path, sizeof path, "%s/out", dir);
    slurp(path, out, out_n);
    unlink(path);
    snprintf(path, sizeof path, "%s/err", dir);
    slurp(path, err, err_n);
    unlink(path);
    rmdir(dir);
    free(dir);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

int test_run_clif(char *out, size_t out_n, char *err, size_t err_n, const char *fmt, ...)
{
    char args[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof args)
        fail_msg("test_run_clif: arguments longer than %zu bytes", sizeof args - 1);
    return test_run_cli(args, out, out_n, err, err_n);
}

bool test_setup_assets(void)
{
    char p[4096];
    const char *rel = "models/stories260K/tok512.bin";
    if (!test_asset(rel, p, sizeof p))
        return false;
    p[strlen(p) - strlen(rel)] = '\0';
    setenv("GQ_ASSETS", p, 1);
    return true;
}

void test_assets_or_skip(void)
{
    if (!test_setup_assets())
        skip();
}

static FILE *open_for_writing(const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        fail_msg("cannot create %s: %s", path, strerror(errno));
    return f;
}

static void close_written(FILE *f, const char *path)
{
    bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed)
        fail_msg("cannot write %s", path);
}

void test_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = open_for_writing(path);
    if (len)
        fwrite(data, 1, len, f);
    close_written(f, path);
}

void test_write_text(const char *path, const char *text)
{
    test_write_file(path, text, strlen(text));
}

void test_write_textf(const char *path, const char *fmt, ...)
{
    FILE *f = open_for_writing(path);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    close_written(f, path);
}

int test_dir_count(const char *dir, int (*visit)(const char *path))
{
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("cannot read directory %s: %s", dir, strerror(errno));
    int n = 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char p[8400];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        n += visit ? visit(p) : 1;
    }
    closedir(d);
    return n;
}

static int remove_entry(const char *path)
{
    if (unlink(path) != 0)
        fail_msg("cannot remove %s: %s", path, strerror(errno));
    return 1;
}

void test_remove_dir(char *dir)
{
    test_dir_count(dir, remove_entry);
    if (rmdir(dir) != 0)
        fail_msg("cannot remove %s: %s", dir, strerror(errno));
    free(dir);
}

char *test_tmpdir_file(const char *tag, const char *file, char *path, size_t n)
{
    char *dir = test_tmpdir(tag);
    snprintf(path, n, "%s/%s", dir, file);
    return dir;
}

void test_stories_files_or_skip(char *model, char *tok, char *text, size_t n)
{
    if (!test_asset("models/stories260K/stories260K.bin", model, n) ||
        !test_asset("models/stories260K/tok512.bin", tok, n) ||
        !test_asset("text/tinystories/tinystories_val.txt", text, n))
        skip();
}

void test_contains_all(const char *text, ...)
{
    va_list ap;
    va_start(ap, text);
    for (const char *needle; (needle = va_arg(ap, const char *));)
        if (!strstr(text, needle))
            fail_msg("no \"%s\" in:\n%s", needle, text);
    va_end(ap);
}
