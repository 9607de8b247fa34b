#include "core/gq_assets.h"
#include "core/gq_fileio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *gq_assets_dir(void)
{
    const char *d = getenv("GQ_ASSETS");
    return d && d[0] ? d : "assets";
}

int gq_asset_resolve(const char *path, char *out, size_t n, gq_error *err)
{
    const char *rel = path;
    struct stat st;
    if (strlen(path) + strlen(gq_assets_dir()) + 2 > n)
        return gq_fail(err, "%.64s...: path longer than %zu bytes", path, n - 1);
    if (strncmp(path, "assets:", 7) == 0)
        rel = path + 7;
    else if (path[0] == '/' || lstat(path, &st) == 0) {
        if (stat(path, &st) != 0) /* "no such file", or a symlink loop named as such */
            return gq_fail(err, "%s: %s", path, strerror(errno));
        snprintf(out, n, "%s", path);
        return 0;
    }
    snprintf(out, n, "%s/%s", gq_assets_dir(), rel);
    if (gq_file_exists(out))
        return 0;
    if (lstat(out, &st) == 0 && stat(out, &st) != 0) /* a dangling link or a loop */
        return gq_fail(err, "%s: %s: %s", path, out, strerror(errno));
    return gq_fail(err,
                   "%s: not found (looked in %s/). Fetch the assets with `make assets` "
                   "(or scripts/fetch-assets.sh; set GQ_ASSETS_MIRROR=DIR to copy from a local "
                   "mirror, GQ_ASSETS=DIR to use another assets directory)",
                   path, gq_assets_dir());
}
