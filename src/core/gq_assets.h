#ifndef GQ_ASSETS_H
#define GQ_ASSETS_H
/* Where downloaded models, tokenizers and texts live: $GQ_ASSETS, default "assets" (relative to
 * the working directory; the Makefile and the test harness set it to the project's assets/).
 * The layout mirrors ../shared/data: models/stories260K/stories260K.bin, text/..., etc. */
#include <stdbool.h>
#include <stddef.h>

#include "core/gq_error.h"

const char *gq_assets_dir(void);

/* Resolves a path: absolute paths and paths that exist as given are returned unchanged;
 * otherwise "assets:REL" or a bare relative path is looked up under the assets directory.
 * Fails with a message saying how to fetch the assets when the file is missing. */
int gq_asset_resolve(const char *path, char *out, size_t n, gq_error *err);

#endif
