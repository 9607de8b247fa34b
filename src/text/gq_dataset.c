/* Datasets: a text file tokenized once with one BOS at the start, fingerprinted by SHA-256. */
#include "text/gq_dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_fileio.h"
#include "core/gq_rng.h"
#include "core/gq_sha256.h"

int gq_dataset_load(const char *path, const gq_tokenizer *tok, gq_dataset *ds, gq_error *err)
{
    memset(ds, 0, sizeof *ds);
    if (strlen(path) >= sizeof ds->path)
        return gq_fail(err, "%s: path longer than %zu characters", path, sizeof ds->path - 1);
    char *text = NULL;
    size_t len = 0;
    if (gq_read_file(path, &text, &len, err) != 0)
        return -1;
    if (len == 0) {
        free(text);
        return gq_fail(err, "%s: empty text file", path);
    }
    gq_sha256_hex(text, len, ds->sha256);
    snprintf(ds->path, sizeof ds->path, "%s", path);
    ds->text_bytes = len;
    ds->bos_id = gq_tokenizer_bos_id(tok);
    int rc = gq_tokenizer_encode(tok, text, len, true, false, &ds->tokens, &ds->n_tokens, err);
    free(text);
    if (rc != 0)
        return gq_fail_prefix(err, "%s", path);
    return 0;
}

void gq_dataset_free(gq_dataset *ds)
{
    free(ds->tokens);
    memset(ds, 0, sizeof *ds);
}

size_t gq_dataset_n_windows(const gq_dataset *ds, int ctx)
{
    return ctx > 0 ? ds->n_tokens / (size_t)ctx : 0;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

int gq_dataset_calib_offsets(const gq_dataset *ds, size_t first, int n, int ctx, uint64_t seed,
                             size_t **offsets, gq_error *err)
{
    *offsets = NULL;
    if (n <= 0 || ctx <= 0)
        return gq_fail(err, "%s: calibration needs n > 0 and ctx > 0 (got n=%d, ctx=%d)",
                       ds->path, n, ctx);
    if (first > ds->n_tokens || ds->n_tokens - first < (size_t)ctx) {
        if (first == 0)
            return gq_fail(err, "%s: %zu tokens, fewer than one calibration window of %d",
                           ds->path, ds->n_tokens, ctx);
        return gq_fail(err,
                       "%s: %zu tokens after the %zu held out for evaluation, fewer than one "
                       "calibration window of %d (use another calibration text or fewer "
                       "evaluation windows)",
                       ds->path, first < ds->n_tokens ? ds->n_tokens - first : 0, first, ctx);
    }
    size_t *o = malloc((size_t)n * sizeof *o);
    if (!o)
        return gq_fail(err, "%s: out of memory for %d calibration offsets", ds->path, n);
    gq_rng r;
    gq_rng_seed(&r, seed);
    uint64_t range = (uint64_t)(ds->n_tokens - first - (size_t)ctx) + 1; /* first..n_tokens-ctx */
    for (int i = 0; i < n; i++)
        o[i] = first + (size_t)gq_rng_below(&r, range);
    qsort(o, (size_t)n, sizeof *o, cmp_size);
    *offsets = o;
    return 0;
}
