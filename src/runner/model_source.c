/* The model an experiment names: a model file or directory (llama2.c, GGUF, HF, GPTQ/AWQ,
 * native) or a synthetic preset. */
#include <stdio.h>
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
    /* $.model.stream "auto": a llama2.c checkpoint is streamed (its fp32 blocks stay in the
     * file's mapping and acquiring them is free), an HF directory when its fp32 weights exceed
     * GQ_STREAM_AUTO_BYTES (acquiring a block converts it). Every cell is quantized from the
     * streamed source. GGUF, GPTQ/AWQ and native checkpoints load in memory. */
    gq_stream_mode mode = e->stream;
    if (mode == GQ_STREAM_AUTO && !gq_hf_is_dir(e->model_path))
        mode = GQ_STREAM_ON;
    if (gq_model_open_mode(e->model_path, mode, m, q, err))
        return gq_fail_prefix(err, "$.model.path");
    return 0;
}

/* e->base_*: what the baseline row evaluates, the model's block linears as loaded. */
static void describe_baseline(gq_experiment *e, const gq_qcodes *q)
{
    const gq_config *c = &e->cfg;
    size_t bytes = 0, weights = gq_runner_fp32_linear_bytes(c) / sizeof(float);
    char first[96] = "", label[96];
    bool mixed = false;
    for (int i = 0; i < q->n_linear; i++) {
        int rows, cols;
        gq_linear_shape(c, (gq_linear_kind)(i % GQ_N_LINEAR), &rows, &cols);
        if (!q->codes[i]) {
            bytes += (size_t)rows * (size_t)cols * sizeof(float);
            continue;
        }
        bytes += gq_quantizer_bytes(&q->quant[i], rows, cols);
        gq_quantizer_label(&q->quant[i], label, sizeof label);
        if (!first[0])
            snprintf(first, sizeof first, "%s", label);
        mixed |= strcmp(first, label) != 0;
    }
    if (!first[0]) { /* an fp32 model, or a checkpoint whose linears are all floats */
        snprintf(e->base_series, sizeof e->base_series, "fp32 baseline");
        snprintf(e->base_format, sizeof e->base_format, "fp32");
        e->base_linear_bytes = weights * sizeof(float);
        e->base_bpw = 32.0;
        return;
    }
    snprintf(e->base_series, sizeof e->base_series, "%s checkpoint baseline", q->source);
    snprintf(e->base_format, sizeof e->base_format, "%s", mixed ? "mixed" : first);
    e->base_linear_bytes = bytes;
    e->base_bpw = 8.0 * (double)bytes / (double)weights;
}

int gq_runner_model_describe(gq_experiment *e, gq_error *err)
{
    gq_qcodes q = {0};
    if (e->synthetic) {
        if (gq_synth_preset(e->synthetic, &e->cfg, err))
            return gq_fail_prefix(err, "$.model.synthetic");
    } else {
        gq_model m;
        if (gq_runner_model_open_codes(e, &m, &q, err))
            return -1;
        e->cfg = m.cfg;
        gq_model_free(&m);
    }
    describe_baseline(e, &q);
    gq_qcodes_free(&q);
    return 0;
}
