#ifndef GQ_QMODEL_H
#define GQ_QMODEL_H
/* Quantized models on disk: gq-bench's lossless native save, and loading it, GPTQ and AWQ
 * checkpoints back as a model plus the codes its linears hold.
 *
 * Native format (one safetensors file; the layout is documented in the README, section
 * "Using the quantized model elsewhere"):
 *   tensors, gq-bench names:
 *     "<t>.weight"   F32   a float tensor as the quantized model holds it (embeddings,
 *                          norms, biases, q/k norms, a linear whose method handed over no
 *                          codes), rows in the model's order (llama2.c's RoPE layout);
 *     "<t>.codes"    U8    (bytes) the storage a format's quantize() wrote for tensor <t>
 *                          (block linears, quantized embeddings / classifier): exactly the
 *                          bytes whose dequantize() the evaluated model holds;
 *     "<t>.perm"     I32   (cols) the column order of those codes (GPTQ act_order:
 *                          storage column i is weight column perm[i]);
 *     "layers.L.att_in_transform" / "layers.L.ffn_in_transform"  F32 (dim, dim) explicit
 *                          input transforms (AffineQuant);
 *   "__metadata__": {"format": "gq-bench-native", "gq_bench": "<JSON text>"}, the JSON holding
 *     "version" 1, "config" (every gq_config field), "formats" (tensor -> the quantizer JSON of
 *     its codes), and what the saver adds: method, format, rules, calibration, provenance.
 * Loading dequantizes every codes tensor with its format, so the model is bit for bit the one
 * that was saved; the codes stay available for the packed kernels (gq_qcodes). */
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "core/gq_error.h"
#include "formats/gq_format.h"
#include "model/gq_model.h"
#include "model/gq_stream.h"
#include "packed/gq_packed.h"

/* What a quantized model's block linears hold, index l * GQ_N_LINEAR + k. */
typedef struct gq_qcodes {
    char source[16];        /* "native", "gptq", "awq" */
    int n_linear;           /* n_layers * GQ_N_LINEAR */
    gq_quantizer *quant;    /* each linear's format (fmt NULL: stored as floats) */
    uint8_t **codes;        /* its storage (gq_quantizer_bytes), NULL for float linears */
    int32_t **perm;         /* NULL, or (cols) the column order of its codes */
} gq_qcodes;

int gq_qcodes_alloc(gq_qcodes *q, int n_layers, const char *source, gq_error *err);
void gq_qcodes_free(gq_qcodes *q);
/* Whether linear i holds codes. */
static inline bool gq_qcodes_has(const gq_qcodes *q, int i)
{
    return q && i < q->n_linear && q->codes[i] != NULL;
}
/* w (rows, cols) = dequantize(codes) with the columns put back in order (perm); perm, when
 * given, must be a permutation of 0..cols-1 (checked; `what` names the tensor). */
int gq_qcodes_dequantize(const gq_quantizer *q, const uint8_t *codes, const int32_t *perm,
                         int rows, int cols, float *w, const char *what, gq_error *err);
/* The one quantizer, with a packed kernel, of every block linear's codes; NULL with the
 * one-line reason in why otherwise. */
const gq_quantizer *gq_qcodes_packed_quantizer(const gq_model *m, const gq_qcodes *q,
                                              char *why, size_t n);
/* Packs a loaded model's linears from their codes (the kernels run on exactly the loaded
 * bytes): every block linear must hold codes of one quantizer with a packed kernel, else the
 * one-line reason is returned in why and nothing is built (returns 0). */
int gq_qcodes_packed_build(const gq_model *m, const gq_qcodes *q, gq_packed_model *pm,
                           char *why, size_t why_n, gq_error *err);

/* ---- native format ---- */

/* True when path is a native file, or a directory whose model.safetensors is one. */
bool gq_native_is(const char *path);

/* A native file written tensor by tensor (block by block: a streamed quantization adds a
 * block when it is done), the data kept in a temporary beside `path` until finish writes the
 * whole file atomically. */
typedef struct gq_native_writer gq_native_writer;
gq_native_writer *gq_native_writer_open(const char *path, gq_error *err);
/* Appends one tensor (ndim 1 or 2). */
int gq_native_add(gq_native_writer *w, const char *name, int dtype, int ndim, int64_t d0,
                  int64_t d1, const void *data, gq_error *err);
/* A tensor's codes and their format (recorded in "formats"), and its column order (NULL:
 * in order). */
int gq_native_add_codes(gq_native_writer *w, const char *tensor, const gq_quantizer *q,
                        const uint8_t *codes, size_t bytes, const int32_t *perm, int cols,
                        gq_error *err);
/* Writes the file: meta (taken over; "version", "config" and "formats" are set here). On
 * failure nothing is left at path. Frees w either way. */
int gq_native_finish(gq_native_writer *w, const gq_config *c, json_t *meta, gq_error *err);
/* Drops a writer without writing (temporary removed). */
void gq_native_abort(gq_native_writer *w);

/* One block l of model m: norms, biases, q/k norms, transforms, and each linear's codes
 * (codes[k] with format quant[k] and column order perm[k]) or, without codes, its weights.
 * The codes are checked to dequantize to exactly m's weights (the save is lossless). */
int gq_native_add_block(gq_native_writer *w, const gq_model *m, int l,
                        const gq_quantizer *const quant[GQ_N_LINEAR],
                        const uint8_t *const codes[GQ_N_LINEAR],
                        const int32_t *const perm[GQ_N_LINEAR], gq_error *err);
/* The tensors outside the blocks: embeddings (codes with embd_q, or floats), final norm,
 * separate classifier (codes with cls_q, or floats). */
int gq_native_add_outer(gq_native_writer *w, const gq_model *m, const gq_quantizer *embd_q,
                        const uint8_t *embd_codes, const gq_quantizer *cls_q,
                        const uint8_t *cls_codes, gq_error *err);

/* A model path as the loaders and the provenance hashes take it. A directory holding a native
 * model.safetensors and no config.json stands for that file: out gets "<path>/model.safetensors".
 * A directory with config.json and no native model.safetensors is a Hugging Face (or GPTQ/AWQ)
 * directory, and any other path a file: out gets path. Refused, with err naming the directory:
 * one holding both (ambiguous: a native file carries its own configuration, so config.json
 * would be ignored or contradicted), and one holding neither. */
int gq_model_path_resolve(const char *path, char *out, size_t n, gq_error *err);

/* Loads a native file (or directory holding model.safetensors); q (optional) receives the
 * codes. *meta (optional) receives the metadata JSON (new reference). */
int gq_native_load(const char *path, gq_model *m, gq_qcodes *q, json_t **meta, gq_error *err);

/* ---- GPTQ / AWQ checkpoints ---- */

/* The quant_method of an HF directory's config.json quantization_config ("" when none or not
 * a directory); a directory with one gq-bench cannot load names it in the load error. */
void gq_hf_quant_method(const char *dir, char *out, size_t n);
/* Loads a GPTQ (quant_method "gptq") or AWQ ("awq") directory: the weights are the int
 * format's dequantization of the checkpoint's codes, q (optional) receives those codes as int
 * storage. */
int gq_packed_ckpt_load(const char *dir, gq_model *m, gq_qcodes *q, gq_error *err);

/* Any model path: a native file, a GPTQ/AWQ directory, or what gq_model_open reads (llama2.c,
 * GGUF, HF directory). q (optional) receives the codes when the file holds them (zeroed
 * otherwise). */
int gq_model_open_any(const char *path, gq_model *m, gq_qcodes *q, gq_error *err);
/* The same, with a llama2.c checkpoint or HF directory streamed under `mode`
 * (model/gq_stream.h); native files, quantized checkpoints and GGUF files load in memory. */
int gq_model_open_mode(const char *path, gq_stream_mode mode, gq_model *m, gq_qcodes *q,
                       gq_error *err);

#endif
