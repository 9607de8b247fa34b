#include "core/gq_fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int gq_open_input(const char *path, gq_error *err)
{
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return gq_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return gq_fail(err, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return gq_fail(err, "%s: not a regular file%s", path,
                       S_ISDIR(st.st_mode)    ? " (it is a directory)"
                       : S_ISFIFO(st.st_mode) ? " (it is a pipe)"
                       : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? " (it is a device)"
                                                                    : "");
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        return gq_fail(err, "%s: cannot open: %s", path, strerror(e));
    }
    return fd;
}

int gq_read_fd(int fd, const char *path, void *buf, size_t n, gq_error *err)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return gq_fail(err, "%s: read error: %s", path, strerror(errno));
        if (r == 0)
            return gq_fail(err, "%s: short read (%zu of %zu bytes)", path, got, n);
        got += (size_t)r;
    }
    return 0;
}

int gq_read_file(const char *path, char **data, size_t *len, gq_error *err)
{
    int fd = gq_open_input(path, err);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return gq_fail(err, "%s: cannot stat: %s", path, strerror(e));
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        return gq_fail(err, "%s: out of memory reading %zu bytes", path, size);
    }
    int rc = gq_read_fd(fd, path, buf, size, err);
    close(fd);
    if (rc) {
        free(buf);
        return -1;
    }
    buf[size] = '\0';
    *data = buf;
    if (len)
        *len = size;
    return 0;
}

int gq_check_output(const char *path, gq_error *err)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : gq_fail(err, "%s: %s", path, strerror(errno));
    if (S_ISREG(st.st_mode))
        return 0;
    return gq_fail(err, "%s: cannot write: it is %s, not a regular file", path,
                   S_ISDIR(st.st_mode)   ? "a directory"
                   : S_ISLNK(st.st_mode) ? "a symbolic link"
                   : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                   : S_ISFIFO(st.st_mode)                       ? "a pipe"
                                                                : "a special file");
}

/* The process umask, read once (reading it means setting it, which must not race with
 * files created by other threads later on). */
static mode_t process_umask;
static pthread_once_t umask_once = PTHREAD_ONCE_INIT;
static void read_umask(void)
{
    process_umask = umask(0);
    umask(process_umask);
}

int gq_tmp_create(const char *path, char *tmp, size_t n, gq_error *err)
{
    if (snprintf(tmp, n, "%s.tmp.XXXXXX", path) >= (int)n)
        return gq_fail(err, "%s: path too long", path);
    /* mkstemp opens with O_CREAT|O_EXCL: a planted file or link makes it pick another name,
     * it never opens an existing one. */
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        gq_fail(err, "%s: cannot create a temporary file beside it: %s", path, strerror(e));
        errno = e;
        return -1;
    }
    pthread_once(&umask_once, read_umask);
    if (fchmod(fd, 0666 & ~process_umask) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return gq_fail(err, "%s: cannot set the mode of %s: %s", path, tmp, strerror(e));
    }
    return fd;
}

/* Makes a rename in path's directory durable. */
static void sync_parent(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
}

int gq_tmp_commit(const char *tmp, const char *path, gq_error *err)
{
    if (gq_check_output(path, err)) {
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return gq_fail(err, "%s: cannot rename into place: %s", path, strerror(e));
    }
    sync_parent(path);
    return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int gq_write_file_atomic(const char *path, const void *data, size_t len, gq_error *err)
{
    if (gq_check_output(path, err))
        return -1;
    char tmp[4200];
    int fd = gq_tmp_create(path, tmp, sizeof tmp, err);
    if (fd < 0)
        return -1;
    if (write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return gq_fail(err, "%s: write failed: %s", path, strerror(e));
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return gq_fail(err, "%s: write failed: %s", path, strerror(e));
    }
    return gq_tmp_commit(tmp, path, err);
}

int gq_write_json_atomic(const char *path, json_t *o, size_t flags, gq_error *err)
{
    char *text = o ? json_dumps(o, flags) : NULL;
    json_decref(o);
    if (!text)
        return gq_fail(err, "%s: out of memory", path);
    int rc = gq_write_file_atomic(path, text, strlen(text), err);
    free(text);
    return rc;
}

/* Creates and removes a temporary file in dir: the one test of writability that holds for
 * root (who passes access(W_OK) on a read-only directory) and on read-only file systems. */
static int probe_dir(const char *opt, const char *path, const char *dir, gq_error *err)
{
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/.gq-probe", dir);
    char tmp[4300];
    int fd = gq_tmp_create(probe, tmp, sizeof tmp, err);
    if (fd < 0) {
        int e = errno;
        gq_error_clear(err);
        return gq_fail(err, "%s %s: directory %s is not writable: %s", opt, path, dir,
                       strerror(e));
    }
    close(fd);
    unlink(tmp);
    return 0;
}

int gq_check_writable(const char *opt, const char *path, gq_error *err)
{
    struct stat st;
    if (!path[0])
        return gq_fail(err, "%s: empty path", opt);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return gq_fail(err, "%s %s: is a directory (expected a file name)", opt, path);
    if (gq_check_output(path, err))
        return gq_fail_prefix(err, "%s", opt);
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return gq_fail(err, "%s %s: path too long", opt, path);
    const char *d = dirname(dir);
    if (stat(d, &st) != 0)
        return gq_fail(err, "%s %s: directory %s: %s", opt, path, d, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return gq_fail(err, "%s %s: %s is not a directory", opt, path, d);
    return probe_dir(opt, path, d, err);
}

int gq_check_dir_writable(const char *opt, const char *dir, gq_error *err)
{
    char buf[4096];
    if (!dir[0])
        return gq_fail(err, "%s: empty path", opt);
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return gq_fail(err, "%s %s: path too long", opt, dir);
    /* the deepest part of the path that exists must be a directory we can create in */
    struct stat st;
    while (stat(buf, &st) != 0) {
        if (errno != ENOENT)
            return gq_fail(err, "%s %s: %s: %s", opt, dir, buf, strerror(errno));
        char *slash = strrchr(buf, '/');
        if (!slash)
            snprintf(buf, sizeof buf, ".");
        else if (slash == buf)
            buf[1] = '\0';
        else
            *slash = '\0';
    }
    if (!S_ISDIR(st.st_mode))
        return gq_fail(err, "%s %s: %s is not a directory", opt, dir, buf);
    return probe_dir(opt, dir, buf, err);
}
int gq_check_real_dir(const char *path, gq_error *err)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : gq_fail(err, "%s: %s", path, strerror(errno));
    if (S_ISLNK(st.st_mode))
        return gq_fail(err, "%s is a symbolic link: it must be a directory of its own (remove "
                            "the link, or give another --out-dir)", path);
    if (!S_ISDIR(st.st_mode))
        return gq_fail(err, "%s is not a directory", path);
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
