/* Helpers of the packed-kernel entry (gq_packing.h). */
#include "formats/gq_packing.h"

#include <stdlib.h>
#include <string.h>

void gq_pack_codes_free(gq_pack_codes *c)
{
    free(c->codes);
    free(c->scales);
    free(c->zeros);
    c->codes = NULL;
    c->scales = NULL;
    c->zeros = NULL;
}

void gq_pack_ggml(gq_pack_codes *out, gq_pack_kernel kernel, const uint8_t *storage, int cols,
                  int block_cols, size_t block_bytes, size_t header_bytes)
{
    memset(out, 0, sizeof *out);
    out->kernel = kernel;
    out->storage = storage;
    out->block_bytes = block_bytes;
    out->header_bytes = header_bytes;
    out->row_bytes = (size_t)((cols + block_cols - 1) / block_cols) * block_bytes;
}
