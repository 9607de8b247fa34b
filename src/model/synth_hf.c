/* The synthetic generator written straight to an HF directory (gq_synth.h). */
#include <stdlib.h>

#include "core/gq_alloc.h"
#include "core/gq_log.h"
#include "model/gq_hf_stream.h"
#include "model/gq_stream.h"
#include "model/gq_synth.h"
#include "model/model_internal.h"

/* Every block generated into one buffer and written, in order. */
static int write_blocks(const gq_config *c, uint64_t seed, gq_hf_writer *w, gq_error *err)
{
    float *buf = gq_alloc_big(gq_layer_floats(c) * sizeof(float));
    if (!buf)
        return gq_fail(err, "synthetic model: out of memory for one block");
    gq_progress prog;
    gq_progress_start(&prog, "synth", c->n_layers);
    int rc = 0;
    for (int l = 0; l < c->n_layers && !rc; l++) {
        gq_layer L = {0};
        gq_layer_point(c, &L, l, buf);
        rc = gq_synth_layer(c, seed, l, &L) ? gq_fail(err, "synthetic model: out of memory")
                                            : gq_hf_writer_block(w, l, &L, err);
        gq_progress_add(&prog, 1);
    }
    gq_progress_finish(&prog);
    free(buf);
    return rc;
}

int gq_synth_write_hf(const gq_config *c, uint64_t seed, const char *dir, gq_st_dtype dtype,
                      size_t shard_bytes, gq_error *err)
{
    if (gq_config_check(c, "synthetic model", err))
        return -1;
    gq_model outer;
    if (gq_model_outer_alloc(&outer, c, err))
        return gq_fail_prefix(err, "synthetic model");
    gq_hf_writer *w = gq_hf_writer_open(dir, c, dtype, NULL, shard_bytes, err);
    int rc = !w ? -1
             : gq_synth_outer(c, seed, &outer) ? gq_fail(err, "synthetic model: out of memory")
             : gq_hf_writer_outer(w, &outer, err);
    gq_model_free(&outer);
    if (!rc)
        rc = write_blocks(c, seed, w, err);
    if (rc) {
        gq_hf_writer_abort(w);
        return -1;
    }
    return gq_hf_writer_finish(w, err);
}
