#ifndef GQ_TEST_SUPPORT_H
#define GQ_TEST_SUPPORT_H
/* Helpers shared by the cmocka tests. Include after <cmocka.h>'s prerequisites. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

/* Path of a file under tests/data (GQ_TESTDATA). Static buffer, valid until the next call. */
const char *test_data_path(const char *rel);

/* Resolves a real asset (for example "models/stories260K/stories260K.bin") under $GQ_ASSETS or
 * <source root>/assets. Returns true when present. When missing: fails the test if
 * GQ_REQUIRE_ASSETS=1, otherwise returns false so the caller can skip(). */
bool test_asset(const char *rel, char *out, size_t n);

/* Convenience: resolves or skips (or fails when assets are required). */
#define TEST_ASSET_OR_SKIP(rel, buf)              \
    do {                                          \
        if (!test_asset((rel), (buf), sizeof(buf))) { \
            skip();                               \
            return;                               \
        }                                         \
    } while (0)

/* The stories260K model, its tokenizer and the TinyStories validation text into buffers of n
 * bytes each, or the test skips (fails when GQ_REQUIRE_ASSETS=1) when one is missing. */
void test_stories_files_or_skip(char *model, char *tok, char *text, size_t n);

/* A fresh empty directory under the build's temporary area; caller frees the string. */
char *test_tmpdir(const char *tag);

/* Points GQ_ASSETS at the directory that holds the real assets (for gq-bench runs); false when
 * they are missing. */
bool test_setup_assets(void);

/* test_setup_assets, or skips the test (cmocka's skip() leaves it) when the assets are missing. */
void test_assets_or_skip(void);

/* Reads a whole binary file; caller frees. Fails the test if missing. */
void *test_read_file(const char *path, size_t *len);

/* Runs the gq-bench binary ($GQ_BENCH) with a shell argument string; captures stdout and
 * stderr (each truncated to its buffer) and returns the exit status (-1 if it did not exit). */
int test_run_cli(const char *args, char *out, size_t out_n, char *err, size_t err_n);

/* The same with the argument string built from a printf format. */
int test_run_clif(char *out, size_t out_n, char *err, size_t err_n, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Writes len bytes as the whole file at path (created or truncated); fails the test on error. */
void test_write_file(const char *path, const void *data, size_t len);

/* The same for a text, and for the text a printf format makes. */
void test_write_text(const char *path, const char *text);
void test_write_textf(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A fresh directory as test_tmpdir, with path = <dir>/<file> (n bytes); caller frees the
 * directory string. */
char *test_tmpdir_file(const char *tag, const char *file, char *path, size_t n);

/* Mounts a fresh tmpfs of `kib` KiB (read-only when `ro`) on a new temporary directory, for
 * disk-full and read-only tests. Returns the directory (caller passes it to test_tmpfs_free), or
 * NULL when this process may not mount (not root, no CAP_SYS_ADMIN): the caller then skips. */
char *test_tmpfs(const char *tag, int kib, bool ro);
void test_tmpfs_free(char *dir);

/* test_tmpfs, or skips the test (cmocka's skip() leaves it) when this process may not mount. */
char *test_tmpfs_or_skip(const char *tag, int kib, bool ro);

/* Counts the entries of dir other than "." and "..": each adds visit(its path) when visit is
 * given (so a visit may check a file, or count a subdirectory's files), else 1. Fails the test
 * when dir cannot be read. */
int test_dir_count(const char *dir, int (*visit)(const char *path));

/* Removes dir with the files and links in it (not subdirectories), and frees the string. */
void test_remove_dir(char *dir);

/* Fails the test, naming the first missing one, unless text contains every string given
 * (NULL ends the list). */
void test_contains_all(const char *text, ...) __attribute__((sentinel));

/* True when path holds a whole PNG: the signature first and the IEND chunk last. */
bool test_png_complete(const char *path);

#endif
