#ifndef GQ_CODED_MODEL_H
#define GQ_CODED_MODEL_H
/* A cell's quantized model held as codes: built block by block from the pipeline's sink
 * (methods/gq_pipeline.h) and read as a streamed model (model/gq_stream.h) whose block linears
 * are fp32 only while their block is acquired.
 *
 * Resident all along: the embeddings, final norm and classifier in fp32 (a quantized one as
 * its reconstruction, as the pipeline's output model holds it; borrowed from the source model
 * when all three equal its own), every block's norms, biases
 * and q/k norms, the explicit input transforms (AffineQuant, dim x dim each) and the online
 * rotation of down_proj's input (rotate), and each block linear as either
 *   - its codes in its format's storage (gq_quantizer_bytes) with the act_order column order:
 *     acquiring the block dequantizes them (columns put back), releasing frees the floats;
 *   - or an fp32 copy: linears kept in full precision, and linears whose method handed over
 *     reconstructions only (GPTQ on a format without store_groups).
 * The pipeline guarantees a linear's reconstruction is exactly dequantize() of its codes, so
 * the acquired block, and every logit, equals the fp32 output model's bit for bit. */
#include <stddef.h>

#include "core/gq_error.h"
#include "methods/gq_pipeline.h"
#include "model/gq_model.h"

typedef struct coded_store coded_store;

typedef struct gq_coded_model {
    gq_model model;     /* valid after gq_coded_finish */
    gq_quant_sink sink; /* for plan->sink while quantizing */
    coded_store *store; /* owned here until gq_coded_finish hands it to the model */
} gq_coded_model;

/* Resident bytes of a coded model, by kind. */
typedef struct gq_coded_bytes {
    size_t outer;      /* embeddings, final norm, classifier (fp32; 0 when borrowed) */
    size_t codes;      /* block linears held as codes (storage and column orders) */
    size_t fp32_lin;   /* block linears held in fp32 (kept, or without codes) */
    size_t small;      /* norms, biases, q/k norms */
    size_t transforms; /* explicit input transforms and the online rotation */
    int n_coded, n_fp32; /* linears of each kind */
} gq_coded_bytes;

/* An empty coded model for `plan` (borrowed: its quantizers dequantize the codes for the
 * model's whole life); set plan->sink = &cm->sink before gq_quantize_model(fp, plan, NULL, ..).
 * share (NULL: none): the model being quantized, outliving cm, whose embeddings, final norm
 * and classifier cm borrows when the output's equal them. */
int gq_coded_init(gq_coded_model *cm, const gq_quant_plan *plan, const gq_model *share,
                  gq_error *err);
/* After gq_quantize_model succeeded: cm->model becomes the streamed coded model, and rep's
 * linear_codes / linear_perm (empty after a sink run) receive the codes, owned by rep from
 * then on (the model reads them: free the model before the report). */
int gq_coded_finish(gq_coded_model *cm, gq_quant_report *rep, gq_error *err);
void gq_coded_free(gq_coded_model *cm);
void gq_coded_model_bytes(const gq_coded_model *cm, gq_coded_bytes *out);

#endif
