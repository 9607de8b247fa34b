#ifndef GQ_PACKED_H
#define GQ_PACKED_H
/* Real quantized inference: linears stored in their format's packed layout and products that
 * read that layout directly (no fp32 copy of the weights).
 *
 * Packed formats (gq_packed_supported says which quantizers qualify, and why not):
 *   q4_0, q4_1, q8_0, mxfp4_ggml, q4_K, q6_K: ggml's block bytes, exactly the codes the format's
 *       quantize() writes; all but q8_0 reorder them into sets of rows, as llama.cpp's CPU
 *       backend repacks Q4_0 and Q4_K: the 4-bit ones in sets of 8 (per block, the 8 rows'
 *       headers, then their codes in 4-byte pieces: piece n of the 8 rows together), q6_K in
 *       sets of 4 whole blocks; a decode pass over a set is one sequential stream, and the
 *       4-bit kernels hold one row per 32-bit lane (packed_internal.h);
 *   int with bits 4 or 8, fp16 scales, zero sym / sym_gptq / asym, per tensor, per channel or
 *       groups of a multiple of 32 columns (per channel and per tensor: one group spanning the
 *       row), w = s * (code - z), the codes read back from the int format's own storage, so the
 *       values are its reconstruction. int4: rows in sets of 8 (padded to whole sets); per set
 *       and group, the 8 rows' fp16 scales and (asym) uint8 zero points, then the group's
 *       32-column blocks of 8 x 16 bytes in 4-byte pieces as above (a row's 16 bytes: byte j
 *       holds element j in the low nibble, element j+16 in the high one);
 *       int8: one byte per column, fp16 scales and zero points in arrays per row and group;
 *   any other format that declares gq_format.packing with its own rows (e.g. the nf4 plugin):
 *       the storage as is, each row decoded by the format's dequant_row (scalar).
 * Which kernel a format gets is its own declaration (formats/gq_packing.h).
 *
 * Products (fp32 activations unless act_q8 is set; with fp32 activations the packed forward
 * pass differs from the fake-quant one only by float summation order):
 *   decode (n = 1): one fused dot per output row that decodes the codes in registers (AVX2/FMA;
 *       a scalar reference beside it), rows in parallel under OpenMP; with act_q8 the
 *       activations are quantized to int8 per block of 32 and the dots are integer (maddubs),
 *       which moves the stories260K decode perplexity by < 1% (tests/packed prints it);
 *   prefill (n > GQ_PACKED_MATVEC_MAX_N): tiles of rows (about 1 MiB of floats, at least 64
 *       rows) are dequantized (bit-exactly) into a per-thread buffer and multiplied with
 *       cblas_sgemm, tiles in parallel under OpenMP (the BLAS call then runs single-threaded
 *       inside each thread). Chosen over integer dot products on quantized activations because
 *       it keeps fp32 accuracy and runs at sgemm speed once a window has a few dozen tokens
 *       (the dequantization is O(weights), the product O(tokens x weights)); `gq-bench bench
 *       prefill` compares it with fp32.
 *
 * A packed model is a view of an fp32 model whose block linears (and optionally the classifier)
 * carry gq_linear_op operators, so gq_forward_prefill and gq_decode_step run on packed weights
 * unchanged. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/gq_error.h"
#include "core/gq_steady.h"
#include "formats/gq_format.h"
#include "model/gq_model.h"

/* Up to this many tokens a product is done as repeated fused dots, above by tiles + sgemm. */
#define GQ_PACKED_MATVEC_MAX_N 4

typedef struct gq_packed_linear gq_packed_linear;

/* True when q has a packed kernel for (rows, cols) matrices (cols <= 0: any shape); otherwise
 * writes the reason to why (one line). */
bool gq_packed_supported(const gq_quantizer *q, int rows, int cols, char *why, size_t n);

/* Quantizes W (rows, cols) with q and keeps its codes packed. deq (optional, rows*cols) receives
 * the format's reconstruction, i.e. the fake-quant weights the packed kernels compute with. */
gq_packed_linear *gq_packed_linear_new(const gq_quantizer *q, const float *W, int rows, int cols,
                                       float *deq, gq_error *err);
/* Packs codes the format's quantize() already wrote (gq_quantizer_bytes(q, rows, cols) bytes,
 * e.g. a method's), so the packed weights are exactly those codes. */
gq_packed_linear *gq_packed_linear_from_codes(const gq_quantizer *q, const uint8_t *codes,
                                              int rows, int cols, gq_error *err);
/* Declares that P's codes hold the weights' columns in the order perm (cols entries, a
 * permutation of 0..cols-1, copied): column j of the codes is input column perm[j] (GPTQ's
 * dynamic groups under act_order, gq_quant_report.linear_perm). Products then gather x[perm[j]]
 * into place j before the kernels run on the codes as they are, and dequantize scatters
 * the columns back. Fails (P unchanged) when perm is not a permutation. */
int gq_packed_linear_set_in_perm(gq_packed_linear *P, const int32_t *perm, gq_error *err);
void gq_packed_linear_free(gq_packed_linear *P);

/* Bytes of the packed weights (codes, scales, zero points). */
size_t gq_packed_linear_bytes(const gq_packed_linear *P);
/* The operator for gq_layer.op / gq_model.cls_op. */
const gq_linear_op *gq_packed_linear_op(const gq_packed_linear *P);

/* Decode on int8 activations (off by default): products with n <= GQ_PACKED_MATVEC_MAX_N
 * quantize x per block of 32 (d = amax/127, round half to even; q4_K per block of 256 as
 * llama.cpp's Q8_K, so its super-blocks are all integer) and use integer dot products (AVX2
 * maddubs) for every packed format (q4_0, q4_1, q8_0, mxfp4_ggml, q4_K, q6_K, int4, int8;
 * without AVX2 none). Prefill (tiles + sgemm) always keeps fp32 activations. act_q8 reports whether
 * the linear's decode actually runs on int8 activations. */
void gq_packed_linear_set_act_q8(gq_packed_linear *P, bool on);
bool gq_packed_linear_act_q8(const gq_packed_linear *P);
/* The decode activations in effect: "q8" (int8 per 32), "q8_K" (int8 per 256) or "fp32". */
const char *gq_packed_linear_act(const gq_packed_linear *P);

/* y (n, rows) = x (n, cols) · W^T (the operator's product). */
void gq_packed_linear_apply(const gq_packed_linear *P, float *y, const float *x, int n);
/* out (rows, cols) = the packed weights, dequantized (bit-identical to the format's
 * dequantize()). ref: use the scalar reference kernels instead of the SIMD ones. */
void gq_packed_linear_dequantize(const gq_packed_linear *P, float *out, bool ref);
/* y (rows) = W · x (cols) by the scalar reference kernels (tests); with act_q8 on, on the
 * same int8-quantized activations. */
void gq_packed_linear_matvec_ref(const gq_packed_linear *P, float *y, const float *x);

/* A packed model: `model` is a view of the source model (sharing its fp32 embeddings, norms and,
 * for reference, its fp32 linears) whose layers carry packed operators. The source must outlive
 * it. The view's fp32 linears are the source's; fake-quant comparisons quantize a clone. */
typedef struct gq_packed_model {
    gq_model model;
    gq_packed_linear **lin;    /* n_layers * GQ_N_LINEAR */
    gq_packed_linear *cls;     /* NULL when the classifier stays fp32 */
    size_t packed_bytes;       /* bytes of all packed linears */
    size_t decode_bytes;       /* weight bytes one decode step reads: packed linears, norms,
                                  fp32 classifier if not packed, one embedding row */
    char label[64];
    struct pk_f32_op *f32_ops; /* fp32 views only (gq_packed_model_fp32) */
} gq_packed_model;

/* A method's codes for the block linears of a model: n_layers * GQ_N_LINEAR entries each,
 * index l * GQ_N_LINEAR + k (gq_quant_report.linear_codes and .linear_perm). */
typedef struct gq_packed_codes {
    const uint8_t *const *codes;  /* the storage q's quantize() writes, or NULL entries */
    const int32_t *const *perm;   /* NULL, or per linear NULL (columns in order) or the order
                                     of its columns in the storage (set_in_perm) */
} gq_packed_codes;

/* Packs every block linear of src with q (and the classifier too when pack_classifier).
 * codes (optional): a method's storage of a linear, packed as is (with its column order);
 * linears without (NULL codes or entry) are quantized from src's weights.
 * deq_model (optional): a clone of src whose packed linears are overwritten with the format's
 * reconstruction (the fake-quant model that matches the packed one). */
int gq_packed_model_build(const gq_model *src, const gq_quantizer *q,
                          const gq_packed_codes *codes, bool pack_classifier,
                          gq_model *deq_model, gq_packed_model *pm, gq_error *err);
/* The same with a format per block linear (quant[l * GQ_N_LINEAR + k]; e.g. a loaded Q4_K_M
 * GGUF's types, gq_gguf_weights.quant), each packed from codes->codes[i] where given (the
 * file's own bytes) or quantized from src's weights; the classifier stays fp32. A linear whose
 * format has no packed kernel fails naming the tensor (check gq_packed_supported first);
 * label "mixed". */
int gq_packed_model_build_mixed(const gq_model *src, const gq_quantizer *const *quant,
                                const gq_packed_codes *codes, gq_model *deq_model,
                                gq_packed_model *pm, gq_error *err);
/* The fp32 baseline for throughput: a view of src whose linears (and classifier) run through
 * BLAS (cblas_sgemv for one token, cblas_sgemm otherwise) instead of the per-token reference
 * loops of gq_decode_step, so packed and fp32 decode are compared on equally tuned products. */
int gq_packed_model_fp32(const gq_model *src, gq_packed_model *pm, gq_error *err);
void gq_packed_model_free(gq_packed_model *pm);
/* gq_packed_linear_set_act_q8 on every packed linear of the model. */
void gq_packed_model_set_act_q8(gq_packed_model *pm, bool on);

/* ---- throughput, for the runner and `gq-bench bench decode|prefill` ----
 * Protocols (wall clock, the process's thread count):
 *   decode:  gq_decode_step for positions warmup..warmup+decode_tokens-1 after `warmup` steps
 *            (fresh KV cache); tokens/s = 1 / the fastest of those steps (robust to other
 *            load on the machine); bytes/token = decode_bytes.
 *            fp32 (q NULL) runs on the BLAS view of gq_packed_model_fp32.
 *   prefill: gq_forward_prefill of one window of prefill_tokens tokens (after one warm-up),
 *            best of `reps`; tokens/s = prefill_tokens / time. */
typedef struct gq_packed_bench_opts {
    int decode_tokens;   /* default 16 */
    int warmup;          /* default 2 */
    int prefill_tokens;  /* default 128 (capped at seq_len) */
    int reps;            /* default 3 */
    bool pack_classifier; /* default false: the classifier stays fp32 as the fake-quant path */
    bool act_q8;          /* default true: decode on int8 activations where the format can
                             (gq_packed_linear_set_act_q8); prefill always fp32 */
} gq_packed_bench_opts;
gq_packed_bench_opts gq_packed_bench_defaults(void);

typedef struct gq_packed_throughput {
    bool packed;           /* false when the format has no packed kernel: see reason */
    char reason[256];
    double decode_tok_s;   /* = decode.best */
    double prefill_tok_s;  /* = prefill.best */
    gq_rate_spread decode, prefill; /* rounds of gq_packed_time_* until steady (core/gq_steady.h) */
    double load_avg;       /* 1-minute load average right after the measurement, -1 unknown */
    size_t packed_bytes;   /* packed linears */
    size_t decode_bytes;   /* weight bytes read per decode token */
} gq_packed_throughput;

/* Decode and prefill tokens/s of model m in fp32 (q NULL) or packed with q: from codes (as in
 * gq_packed_model_build: a method's own codes, so the packed weights are the evaluated ones)
 * where given, else the model's current weights quantized with q. Each of decode and prefill
 * is timed in rounds (one gq_packed_time_* call each) until the rounds agree
 * (gq_measure_steady); the figure is the best round, the spread and the load average are kept
 * beside it. A format without a packed kernel is not an error: out->packed = false with the
 * reason, tokens/s 0. Errors: out of memory, bad shapes. */
int gq_packed_measure(const gq_model *m, const gq_quantizer *q, const gq_packed_codes *codes,
                      const gq_packed_bench_opts *o, gq_packed_throughput *out, gq_error *err);

/* Timed runs of an already built model (fp32 or a packed view). */
int gq_packed_time_decode(const gq_model *m, const gq_packed_bench_opts *o, double *tok_s,
                          gq_error *err);
int gq_packed_time_prefill(const gq_model *m, const gq_packed_bench_opts *o, double *tok_s,
                           gq_error *err);
/* Weight bytes one fp32 decode step reads (linears, norms, classifier, one embedding row). */
size_t gq_packed_fp32_decode_bytes(const gq_config *c);

/* Memory bandwidth measured now, on arrays allocated (and first touched by all threads) once:
 * gq_bandwidth_probe_run gives the best of `reps` passes of
 *   triad: a[i] = b[i] + s*c[i] over three arrays of `mib` MiB, GB/s counting 3 arrays x bytes
 *          per pass (the write-allocate read is not counted, as in STREAM): the conventional
 *          ceiling;
 *   read:  one `mib` MiB array read (an XOR reduction): the ceiling of a decode step's access
 *          pattern, which only reads.
 * All threads. Bandwidth on a shared machine moves from second to second, so callers sample it
 * often and keep the best. */
typedef struct gq_bandwidth_probe gq_bandwidth_probe;
/* MiB per triad array for a ceiling of memory rather than of the caches: the last-level cache's
 * size as the system reports it (sysconf), at least 128, so the three arrays are three times
 * the cache and a pass finds little of its data left there by the pass before. llc_mib gets
 * the cache's size, 0 when the system does not report it. */
size_t gq_bandwidth_mib_beyond_cache(size_t *llc_mib);
gq_bandwidth_probe *gq_bandwidth_probe_new(size_t mib, gq_error *err);
void gq_bandwidth_probe_run(gq_bandwidth_probe *p, int reps, double *triad, double *read);
void gq_bandwidth_probe_free(gq_bandwidth_probe *p);

#endif
