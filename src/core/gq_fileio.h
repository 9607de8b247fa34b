#ifndef GQ_FILEIO_H
#define GQ_FILEIO_H
/* Whole-file reads, atomic writes (temporary file, fsync, rename) and directories. */
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "core/gq_error.h"

/* Every input file goes through gq_open_input: it opens `path` read-only and refuses anything
 * but a regular file (a directory, a FIFO, a device such as /dev/zero), without blocking on a
 * FIFO. Returns the descriptor, or -1 with err naming the path. */
int gq_open_input(const char *path, gq_error *err);

/* Reads exactly n bytes from fd (EINTR retried); a short read is an error naming path. */
int gq_read_fd(int fd, const char *path, void *buf, size_t n, gq_error *err);

/* Reads a whole file into a NUL-terminated malloc'd buffer; *len excludes the NUL. */
int gq_read_file(const char *path, char **data, size_t *len, gq_error *err);

/* Writes `len` bytes to `path` atomically: readers see the old file or the new one, never a
 * partial one, even if the process is killed mid-write. Every write, the fsync and the close
 * are checked; on failure the temporary is removed and `path` is left as it was. */
int gq_write_file_atomic(const char *path, const void *data, size_t len, gq_error *err);

/* Serialises `o` with the jansson dump `flags` and writes the text with gq_write_file_atomic.
 * Takes the caller's reference to o (it is released here), so the result of a json_pack may be
 * passed directly: a NULL o, like a failed dump, is reported as "<path>: out of memory". */
int gq_write_json_atomic(const char *path, json_t *o, size_t flags, gq_error *err);

/* An output path must be absent or a regular file: a directory, a symbolic link, a device
 * (/dev/null, /dev/full) or a FIFO is refused (lstat: links are not followed). */
int gq_check_output(const char *path, gq_error *err);

/* The temporary of an atomic write: creates "<path>.tmp.XXXXXX" exclusively (mkstemp:
 * O_CREAT|O_EXCL, so an existing file or planted link is never opened), mode 0666 & ~umask.
 * Returns the descriptor and the name in tmp (n bytes), or -1 with err set and errno kept. */
int gq_tmp_create(const char *path, char *tmp, size_t n, gq_error *err);

/* Renames a finished temporary onto path (which must pass gq_check_output) and syncs the
 * directory; on failure the temporary is removed. */
int gq_tmp_commit(const char *tmp, const char *path, gq_error *err);

/* Checks before any work that an output file can be written later with gq_write_file_atomic:
 * `path` passes gq_check_output and its directory exists and is writable (tested by creating
 * and removing a temporary file there, which also holds for root and read-only mounts).
 * `opt` names the option in the message ("--out"). */
int gq_check_writable(const char *opt, const char *path, gq_error *err);

/* The same for an output directory that may not exist yet: the deepest existing part of the
 * path must be a directory in which a file can be created. */
int gq_check_dir_writable(const char *opt, const char *dir, gq_error *err);

/* A directory that files are written into and deleted from (the journal) must be absent or a
 * directory of its own: one that is a symbolic link is refused (lstat), so --fresh cannot
 * delete or overwrite files wherever a planted link points. */
int gq_check_real_dir(const char *path, gq_error *err);

/* mkdir -p. */
int gq_mkdir_p(const char *path, gq_error *err);

bool gq_file_exists(const char *path);
/* Size in bytes, or -1 (with err set) when the file cannot be stat'ed. */
long long gq_file_size(const char *path, gq_error *err);

#endif
