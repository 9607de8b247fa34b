#include "core/gq_fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int gq_read_file(const char *path, char **data, size_t *len, gq_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return gq_fail(err, "%s: cannot open: %s", path, strerror(errno));
    /* fopen succeeds on a directory; its "size" from fseek/ftell is meaningless. */
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        int e = errno;
        fclose(f);
        return gq_fail(err, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        fclose(f);
        return gq_fail(err, "%s: not a regular file%s", path,
                       S_ISDIR(st.st_mode) ? " (it is a directory)" : "");
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    if (!buf) {
        fclose(f);
        return gq_fail(err, "%s: out of memory reading %zu bytes", path, size);
    }
    size_t got = fread(buf, 1, size, f);
    fclose(f);
    if (got != size) {
        free(buf);
        return gq_fail(err, "%s: short read (%zu of %zu bytes)", path, got, size);
    }
    buf[size] = '\0';
    *data = buf;
    if (len)
        *len = size;
    return 0;
}

int gq_write_file_atomic(const char *path, const void *data, size_t len, gq_error *err)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return gq_fail(err, "%s: cannot write: it is a directory", path);
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
        return gq_fail(err, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return gq_fail(err, "%s: cannot create (temporary %s): %s", path, tmp, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return gq_fail(err, "%s: write failed: %s", path, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        unlink(tmp);
        return gq_fail(err, "%s: cannot flush to disk: %s", path, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return gq_fail(err, "%s: cannot rename into place: %s", path, strerror(e));
    }
    /* Make the rename itself durable. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

int gq_check_writable(const char *opt, const char *path, gq_error *err)
{
    struct stat st;
    if (!path[0])
        return gq_fail(err, "%s: empty path", opt);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return gq_fail(err, "%s %s: is a directory (expected a file name)", opt, path);
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return gq_fail(err, "%s %s: path too long", opt, path);
    const char *d = dirname(dir);
    if (stat(d, &st) != 0)
        return gq_fail(err, "%s %s: directory %s: %s", opt, path, d, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return gq_fail(err, "%s %s: %s is not a directory", opt, path, d);
    if (access(d, W_OK) != 0)
        return gq_fail(err, "%s %s: directory %s is not writable: %s", opt, path, d,
                       strerror(errno));
    return 0;
}

int gq_mkdir_p(const char *path, gq_error *err)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return gq_fail(err, "%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return gq_fail(err, "%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return gq_fail(err, "%s: cannot create directory: %s", buf, strerror(errno));
    return 0;
}

bool gq_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

long long gq_file_size(const char *path, gq_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        gq_fail(err, "%s: %s", path, strerror(errno));
        return -1;
    }
    return (long long)st.st_size;
}

void *gq_alloc_zero(size_t bytes, const char *what, gq_error *err)
{
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded == 0)
        rounded = 64;
    void *p = aligned_alloc(64, rounded);
    if (!p) {
        gq_fail(err, "out of memory allocating %zu bytes for %s", bytes, what);
        return NULL;
    }
    memset(p, 0, rounded);
    return p;
}
