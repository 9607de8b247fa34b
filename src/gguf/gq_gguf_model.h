#ifndef GQ_GGUF_MODEL_H
#define GQ_GGUF_MODEL_H
/* Llama-architecture models in GGUF files: reading (config, weights, vocabulary) and writing.
 *
 * Tensor names and layouts are llama.cpp's: token_embd.weight (vocab rows of dim),
 * output_norm.weight, output.weight (absent: tied to token_embd), blk.L.attn_norm.weight,
 * blk.L.attn_q/attn_k/attn_v/attn_output.weight, blk.L.ffn_norm.weight,
 * blk.L.ffn_gate/ffn_up/ffn_down.weight; a 2-D tensor's ne = (cols, rows), i.e. gq-bench's
 * row-major (out, in) matrix with ne[0] = in. q and k rows are in the llama architecture's
 * (Meta's interleaved RoPE pairs) order, which is llama2.c's and gq-bench's, so no permutation. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/gq_error.h"
#include "formats/gq_format.h"
#include "gguf/gq_gguf.h"
#include "model/gq_model.h"
#include "text/gq_tokenizer.h"

/* llama.cpp's tensor name of block linear k ("attn_q") and the whole name of layer l's. */
const char *gq_gguf_linear_name(gq_linear_kind k);
void gq_gguf_tensor_name(int layer, gq_linear_kind k, char *buf, size_t n);

/* The quantized storage of a loaded GGUF's block linears, kept for the packed kernels. */
typedef struct gq_gguf_weights {
    int n_linear;                  /* n_layers * GQ_N_LINEAR, index l * GQ_N_LINEAR + k */
    const gq_gguf_dtype **type;     /* each linear's ggml type */
    gq_quantizer *quant;           /* its gq-bench format (fmt NULL for f32/f16/bf16) */
    uint8_t **codes;               /* its bytes as stored (owned), NULL for the float types */
    const gq_gguf_dtype *embd_type, *output_type; /* output_type NULL when tied */
} gq_gguf_weights;
void gq_gguf_weights_free(gq_gguf_weights *w);

/* Loads a llama-architecture GGUF into m (fp32: quantized tensors dequantized exactly by the
 * format of their type). w (optional) receives the linears' stored bytes. A config the forward
 * pass cannot run (another architecture, RMS epsilon other than 1e-5, rope base other than
 * 10000, rope scaling, partial rotary dimensions), a tensor of an unimplemented type, a missing,
 * extra or misshapen tensor are refused naming the key or tensor. */
int gq_gguf_load_model(const char *path, gq_model *m, gq_gguf_weights *w, gq_error *err);
/* The same from a parsed file (which must outlive nothing: m and w own their data). On
 * failure m and w may hold partial data: free them with gq_model_free / gq_gguf_weights_free. */
int gq_gguf_model_from(const gq_gguf *g, gq_model *m, gq_gguf_weights *w, gq_error *err);

/* The vocabulary of a GGUF's `llama` (SentencePiece) tokenizer as a gq_tokenizer: tokens with
 * U+2581 read as spaces, scores (0 when absent); a `gpt2` one as gq_gguf_bpe_tokenizer_from.
 * expected_vocab: the model's vocab_size, or 0. */
int gq_gguf_load_tokenizer(const char *path, int expected_vocab, gq_tokenizer **tok,
                           gq_error *err);
int gq_gguf_tokenizer_from(const gq_gguf *g, int expected_vocab, gq_tokenizer **tok,
                           gq_error *err);

/* A `gpt2` vocabulary (byte-level BPE): tokenizer.ggml.tokens, token_type (control and
 * user-defined tokens are tokenizer.json's special and other added tokens), merges, pre (llama.cpp's
 * pre-tokenizer name: llama-bpe = Llama 3's Split pattern without a normalizer and with
 * ignore_merges, qwen2 = Qwen2/3's with NFC; any other name is refused, named), bos_token_id
 * and add_bos_token, read as the tokenizer.json they stand for (gguf_vocab_bpe.c). */
int gq_gguf_bpe_tokenizer_from(const gq_gguf *g, int expected_vocab, gq_tokenizer **tok,
                               gq_error *err);
/* Writes tok's vocabulary as those keys when tok is a byte-level tokenizer.json (*written
 * true); a byte-level one whose steps match no known pre-tokenizer is refused; any other
 * tokenizer is left to the caller (*written false). */
struct gq_gguf_writer;
int gq_gguf_put_bpe_vocab(struct gq_gguf_writer *w, const gq_tokenizer *tok, bool *written,
                          gq_error *err);

/* What an export writes: the model's fp32 tensors, and for each quantized tensor its format
 * (one with a ggml type: gq_gguf_dtype_by_format) and the codes that format's quantize() or
 * a method wrote, written as they are. */
typedef struct gq_gguf_export {
    const gq_model *model;
    const gq_tokenizer *tok;
    const char *name;                        /* general.name */
    /* The format of gq-bench tensor `tensor` ("tok_embeddings", "classifier",
     * "layers.L.attn.q_proj", ...), NULL when it stays in floats (e.g. a quantization plan's
     * gq_plan_tensor_quantizer); quant_ctx is its first argument. */
    const gq_quantizer *(*quant_of)(const void *quant_ctx, const gq_config *c,
                                    const char *tensor);
    const void *quant_ctx;
    const uint8_t *const *linear_codes;      /* n_layers * GQ_N_LINEAR (l * GQ_N_LINEAR + k),
                                                NULL array or entry: none handed over */
    const uint8_t *embd_codes;               /* codes of quantized embeddings / classifier */
    const uint8_t *cls_codes;
    uint32_t float_type;                     /* GQ_GGML_F32, F16 or BF16: unquantized matrices
                                                (norms are always F32) */
} gq_gguf_export;

/* Whether every tensor of a model of config c quantized as x->quant_of says can be written
 * as a ggml type (formats with ggml blocks, rows of whole blocks), before any work; the
 * reason names the tensor and format. Only config, quant_of and quant_ctx of x are read. */
int gq_gguf_check_plan(const gq_gguf_export *x, const gq_config *c, gq_error *err);
/* Writes a llama GGUF v3 (llama.cpp's keys, names and layouts). Refused before anything is
 * written: explicit input transforms, a quantized tensor without a ggml type or without codes. */
int gq_gguf_write_model(const char *path, const gq_gguf_export *x, gq_error *err);

/* Model files by content: a GGUF file, else a llama2.c checkpoint; tokenizers likewise (a
 * GGUF file's vocabulary, else tokenizer.bin). */
int gq_model_open(const char *path, gq_model *m, gq_error *err);
int gq_tokenizer_open(const char *path, int expected_vocab, gq_tokenizer **tok, gq_error *err);

#endif
