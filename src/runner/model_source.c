/* The model an experiment names: a model file or directory (llama2.c, GGUF, HF, GPTQ/AWQ,
 * native) or a synthetic preset. */
#include <string.h>

#include "gguf/gq_gguf_model.h"
#include "model/gq_hf.h"
#include "model/gq_stream.h"
#include "model/gq_synth.h"
#include "qmodel/gq_qmodel.h"
#include "runner/runner_internal.h"

int gq_runner_model_open(const gq_experiment *e, gq_model *m, gq_error *err)
{
    return gq_runner_model_open_codes(e, m, NULL, err);
}

int gq_runner_model_open_codes(const gq_experiment *e, gq_model *m, gq_qcodes *q,
                               gq_error *err)
{
    if (q)
        memset(q, 0, sizeof *q);
    if (e->synthetic) {
        if (gq_model_synth(e->synthetic, e->synthetic_seed, m, err))
            return gq_fail_prefix(err, "$.model.synthetic");
        return 0;
    }
    /* A llama2.c checkpoint is streamed: its fp32 blocks stay in the file's mapping, every
     * cell is quantized from it and its pages leave the resident set after each use. GGUF,
     * HF, checkpoint and native models load in memory (the throughput's decode reads every
     * block unacquired). */
    gq_stream_mode mode = gq_hf_is_dir(e->model_path) ? GQ_STREAM_OFF : GQ_STREAM_ON;
    if (gq_model_open_mode(e->model_path, mode, m, q, err))
        return gq_fail_prefix(err, "$.model.path");
    return 0;
}

int gq_runner_model_config(const gq_experiment *e, gq_config *cfg, gq_error *err)
{
    if (e->synthetic) {
        if (gq_synth_preset(e->synthetic, cfg, err))
            return gq_fail_prefix(err, "$.model.synthetic");
        return 0;
    }
    gq_model m;
    if (gq_runner_model_open(e, &m, err))
        return -1;
    *cfg = m.cfg;
    gq_model_free(&m);
    return 0;
}
