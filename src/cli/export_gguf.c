/* gq-bench export --format gguf: the quantize pipeline, then the model written as a llama GGUF
 * whose quantized tensors hold the codes the method chose (src/gguf/gguf_export.c). */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_export.h"
#include "cli/cli_quantize.h"
#include "gguf/gq_gguf_model.h"

/* The format of every tensor under the plan, NULL when it stays in floats. */
static const gq_quantizer *tensor_quant(const gq_quant_plan *p, const gq_config *c,
                                        const char *name)
{
    return gq_tensor_quantizer(&p->quantizer, p->rules, p->n_rules, c->shared_classifier, name);
}

static int check_plan(const gq_quant_plan *p, const gq_config *c, gq_error *err)
{
    const gq_quantizer *q;
    char name[96];
    if ((q = tensor_quant(p, c, "tok_embeddings")) &&
        gq_gguf_check_quantizer(q, "tok_embeddings", c->vocab_size, c->dim, err))
        return -1;
    if (!c->shared_classifier && (q = tensor_quant(p, c, "classifier")) &&
        gq_gguf_check_quantizer(q, "classifier", c->vocab_size, c->dim, err))
        return -1;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            int rows, cols;
            gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
            gq_tensor_name(l, (gq_linear_kind)k, name, sizeof name);
            if ((q = tensor_quant(p, c, name)) &&
                gq_gguf_check_quantizer(q, name, rows, cols, err))
                return -1;
        }
    return 0;
}

static uint32_t float_type(const char *s)
{
    return strcmp(s, "f16") == 0 ? GQ_GGML_F16 : strcmp(s, "bf16") == 0 ? GQ_GGML_BF16
                                                                        : GQ_GGML_F32;
}

static int write_gguf(const cli_quantized *q, gq_error *err)
{
    const gq_config *c = &q->out->cfg;
    int n = c->n_layers * GQ_N_LINEAR;
    const gq_quantizer **lq = calloc((size_t)n, sizeof *lq);
    if (!lq)
        return gq_fail(err, "out of memory");
    char name[96], base[4096];
    for (int i = 0; i < n; i++) {
        gq_tensor_name(i / GQ_N_LINEAR, (gq_linear_kind)(i % GQ_N_LINEAR), name, sizeof name);
        lq[i] = tensor_quant(q->plan, c, name);
    }
    snprintf(base, sizeof base, "%s", q->model_path);
    char *dot = strrchr(basename(base), '.');
    if (dot)
        *dot = '\0';
    gq_gguf_export x = {
        .model = q->out, .tok = q->tok, .name = basename(base), .linear_quant = lq,
        .linear_codes = (const uint8_t *const *)q->rep->linear_codes,
        .embd_quant = tensor_quant(q->plan, c, "tok_embeddings"), .embd_codes = q->rep->embd_codes,
        .cls_quant = c->shared_classifier ? NULL : tensor_quant(q->plan, c, "classifier"),
        .cls_codes = q->rep->cls_codes, .float_type = float_type(q->float_type)};
    int rc = gq_gguf_write_model(q->out_path, &x, err);
    free(lq);
    return rc;
}

static const cli_quantize_writer gguf_writer = {
    .cmd = "export --format gguf",
    .about = "Output: a GGUF v3 file for llama.cpp (llama architecture): the quantized tensors\n"
             "hold the codes the method chose (ggml types q4_0, q4_1, q5_0, q5_1, q8_0,\n"
             "q2_K..q6_K, mxfp4_ggml), the others --float-type, norms f32; the vocabulary as\n"
             "tokenizer.ggml.* keys. A plan with another format, explicit transforms, or a method\n"
             "that hands over reconstructions only is refused before anything is written.\n",
    .out_meta = "M.gguf",
    .check_plan = check_plan,
    .write = write_gguf,
};

int export_gguf(int argc, char **argv)
{
    return cli_quantize_export(argc, argv, &gguf_writer);
}
