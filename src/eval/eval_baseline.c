/* Baselines for KL / top-1 comparisons: allocation, file save and load. */
#include "eval/eval_baseline.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_alloc.h"
#include "core/gq_fileio.h"
#include "core/gq_sha256.h"

size_t gq_baseline_block_bytes(uint64_t scored, int vocab)
{
    if (vocab <= 0 || scored > SIZE_MAX / 16 / (size_t)vocab)
        return 0;
    return sizeof(gq_baseline_header) + scored * (sizeof(double) + sizeof(int32_t)) +
           scored * (size_t)vocab * sizeof(float);
}

static void bind(gq_eval_baseline *b)
{
    char *p = (char *)b->hdr + sizeof(gq_baseline_header);
    b->nll = (double *)p;
    p += b->hdr->scored * sizeof(double);
    b->argmax = (int32_t *)p;
    p += b->hdr->scored * sizeof(int32_t);
    b->logp = (float *)p;
}

int gq_baseline_new(gq_ppl_protocol protocol, int ctx, int vocab, uint64_t windows,
                    uint64_t scored, const char *sha256, gq_eval_baseline **out, gq_error *err)
{
    *out = NULL;
    size_t bytes = gq_baseline_block_bytes(scored, vocab);
    if (bytes == 0)
        return gq_fail(err, "baseline: %llu positions x %d vocab is too large",
                       (unsigned long long)scored, vocab);
    gq_eval_baseline *b = calloc(1, sizeof *b);
    if (!b)
        return gq_fail(err, "baseline: out of memory");
    b->hdr = gq_alloc_zero(bytes, "baseline log-probabilities", err);
    if (!b->hdr) {
        free(b);
        return gq_fail_prefix(err, "baseline of %llu positions x %d vocab (%.1f MiB)",
                              (unsigned long long)scored, vocab, bytes / 1048576.0);
    }
    b->bytes = bytes;
    memcpy(b->hdr->magic, GQ_BASELINE_MAGIC, 8);
    b->hdr->protocol = (int32_t)protocol;
    b->hdr->ctx = ctx;
    b->hdr->vocab = vocab;
    b->hdr->windows = windows;
    b->hdr->scored = scored;
    snprintf(b->hdr->dataset_sha256, sizeof b->hdr->dataset_sha256, "%s", sha256);
    bind(b);
    *out = b;
    return 0;
}

void gq_eval_baseline_free(gq_eval_baseline *b)
{
    if (!b)
        return;
    free(b->hdr);
    free(b);
}

double gq_eval_baseline_ppl(const gq_eval_baseline *b) { return exp(b->hdr->mean_nll); }

/* sha256 hex of the block with the header's content_sha256 zeroed. */
static void content_sha256(const gq_eval_baseline *b, char hex[65])
{
    gq_baseline_header h = *b->hdr;
    memset(h.content_sha256, 0, sizeof h.content_sha256);
    gq_sha256 s;
    gq_sha256_init(&s);
    gq_sha256_update(&s, &h, sizeof h);
    gq_sha256_update(&s, (const char *)b->hdr + sizeof h, b->bytes - sizeof h);
    gq_sha256_final_hex(&s, hex);
}

/* Stamps the block's checksum into its header, then writes the block. */
int gq_eval_baseline_save(const gq_eval_baseline *b, const char *path, gq_error *err)
{
    char hex[65];
    content_sha256(b, hex);
    memset(b->hdr->content_sha256, 0, sizeof b->hdr->content_sha256);
    memcpy(b->hdr->content_sha256, hex, sizeof hex);
    return gq_write_file_atomic(path, b->hdr, b->bytes, err);
}

/* The stored checksum against the content's; 0 when they agree. */
static int check_content(const gq_eval_baseline *b, const char *path, gq_error *err)
{
    char hex[65];
    content_sha256(b, hex);
    if (memchr(b->hdr->content_sha256, 0, sizeof b->hdr->content_sha256) &&
        strcmp(b->hdr->content_sha256, hex) == 0)
        return 0;
    return gq_fail(err, "%s: checksum mismatch: the file is damaged (its content does not "
                        "match the sha256 in its header)", path);
}

int gq_eval_baseline_load(const char *path, gq_eval_baseline **out, gq_error *err)
{
    *out = NULL;
    char *data = NULL;
    size_t size = 0;
    if (gq_read_file(path, &data, &size, err) != 0)
        return -1;
    return gq_eval_baseline_adopt(data, size, path, out, err);
}

int gq_eval_baseline_adopt(char *data, size_t size, const char *path, gq_eval_baseline **out,
                           gq_error *err)
{
    *out = NULL;
    gq_baseline_header h;
    if (size < sizeof h) {
        free(data);
        return gq_fail(err, "%s: %zu bytes, too short for a baseline header", path, size);
    }
    memcpy(&h, data, sizeof h);
    const char *why = NULL;
    if (memcmp(h.magic, GQ_BASELINE_MAGIC_V1, 8) == 0)
        why = "written by an older gq-bench, without a checksum: save the baseline again";
    else if (memcmp(h.magic, GQ_BASELINE_MAGIC, 8) != 0)
        why = "bad magic (not a gq-bench baseline file)";
    else if (h.protocol != GQ_PPL_FULL && h.protocol != GQ_PPL_LLAMACPP)
        why = "unknown protocol";
    else if (h.ctx < 2 || h.vocab <= 0 || h.windows == 0 || h.scored == 0)
        why = "invalid ctx, vocab, windows or scored count";
    else if (memchr(h.dataset_sha256, 0, sizeof h.dataset_sha256) == NULL)
        why = "unterminated dataset hash";
    if (why) {
        free(data);
        return gq_fail(err, "%s: %s", path, why);
    }
    size_t want = gq_baseline_block_bytes(h.scored, h.vocab);
    if (want != size) {
        free(data);
        return gq_fail(err, "%s: size %zu bytes, but the header (%llu positions x %d vocab) "
                       "implies %zu", path, size, (unsigned long long)h.scored, h.vocab, want);
    }
    gq_eval_baseline *b = calloc(1, sizeof *b);
    if (!b) {
        free(data);
        return gq_fail(err, "%s: out of memory", path);
    }
    b->hdr = (gq_baseline_header *)data; /* malloc'd: aligned for double */
    b->bytes = size;
    bind(b);
    if (check_content(b, path, err)) {
        gq_eval_baseline_free(b);
        return -1;
    }
    *out = b;
    return 0;
}
