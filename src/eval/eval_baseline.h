#ifndef GQ_EVAL_BASELINE_H
#define GQ_EVAL_BASELINE_H
/* Layout of a baseline, shared by the evaluator and the file code. The whole baseline is one
 * block that is also the file image: header, then nll (scored doubles), argmax (scored int32),
 * logp (scored x vocab floats, row per scored position, in window then position order).
 * The header ends with the sha256 of the whole block (taken with that field zeroed), stamped
 * on save and checked on load, so a damaged file is refused rather than read. */
#include <stddef.h>
#include <stdint.h>

#include "eval/gq_eval.h"

#define GQ_BASELINE_MAGIC "GQBASE2"
#define GQ_BASELINE_MAGIC_V1 "GQBASE1" /* the same without the checksum: refused */

typedef struct gq_baseline_header {
    char magic[8];
    int32_t protocol;
    int32_t ctx;
    int32_t vocab;
    int32_t reserved;
    uint64_t windows;
    uint64_t scored;
    char dataset_sha256[72];
    double mean_nll;
    char content_sha256[72]; /* hex, NUL-terminated */
} gq_baseline_header;

_Static_assert(sizeof(gq_baseline_header) == 192, "baseline header layout");

struct gq_eval_baseline {
    gq_baseline_header *hdr; /* start of the block */
    size_t bytes;            /* size of the block */
    double *nll;
    int32_t *argmax;
    float *logp;
};

/* Bytes of a block for `scored` positions of `vocab` entries, or 0 on overflow. */
size_t gq_baseline_block_bytes(uint64_t scored, int vocab);
/* Allocates a zeroed block with the header filled in. */
int gq_baseline_new(gq_ppl_protocol protocol, int ctx, int vocab, uint64_t windows,
                    uint64_t scored, const char *sha256, gq_eval_baseline **out, gq_error *err);

#endif
