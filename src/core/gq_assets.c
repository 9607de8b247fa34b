#include "core/gq_assets.h"
#include "core/gq_fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *gq_assets_dir(void)
{
    const char *d = getenv("GQ_ASSETS");
    return d && d[0] ? d : "assets";
}

int gq_asset_resolve(const char *path, char *out, size_t n, gq_error *err)
{
    const char *rel = path;
    if (strncmp(path, "assets:", 7) == 0)
        rel = path + 7;
    else if (path[0] == '/' || gq_file_exists(path)) {
        if (!gq_file_exists(path))
            return gq_fail(err, "%s: no such file", path);
        snprintf(out, n, "%s", path);
        return 0;
    }
    snprintf(out, n, "%s/%s", gq_assets_dir(), rel);
    if (gq_file_exists(out))
        return 0;
    return gq_fail(err,
                   "%s: not found (looked in %s/). Fetch the assets with `make assets` "
                   "(or scripts/fetch-assets.sh; set GQ_ASSETS_MIRROR=DIR to copy from a local "
                   "mirror, GQ_ASSETS=DIR to use another assets directory)",
                   path, gq_assets_dir());
}

bool gq_assets_required(void)
{
    const char *v = getenv("GQ_REQUIRE_ASSETS");
    return v && strcmp(v, "1") == 0;
}
