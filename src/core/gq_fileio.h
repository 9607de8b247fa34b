#ifndef GQ_FILEIO_H
#define GQ_FILEIO_H
/* Whole-file reads, atomic writes (temporary file, fsync, rename) and directories. */
#include <stdbool.h>
#include <stddef.h>

#include "core/gq_error.h"

/* Reads a whole file into a NUL-terminated malloc'd buffer; *len excludes the NUL. */
int gq_read_file(const char *path, char **data, size_t *len, gq_error *err);

/* Writes `len` bytes to `path` atomically: readers see the old file or the new one, never a
 * partial one, even if the process is killed mid-write. */
int gq_write_file_atomic(const char *path, const void *data, size_t len, gq_error *err);

/* Checks before any work that an output file can be written later with gq_write_file_atomic:
 * `path` is not a directory and its directory exists and is writable. `opt` names the option
 * in the message ("--out"). */
int gq_check_writable(const char *opt, const char *path, gq_error *err);

/* mkdir -p. */
int gq_mkdir_p(const char *path, gq_error *err);

bool gq_file_exists(const char *path);
/* Size in bytes, or -1 (with err set) when the file cannot be stat'ed. */
long long gq_file_size(const char *path, gq_error *err);

/* Aligned allocation for SIMD (64-byte), zero-filled; free with free(). Returns NULL and
 * sets err when out of memory, naming `what`. */
void *gq_alloc_zero(size_t bytes, const char *what, gq_error *err);

#endif
