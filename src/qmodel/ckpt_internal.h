#ifndef GQ_CKPT_INTERNAL_H
#define GQ_CKPT_INTERNAL_H
/* Shared by the GPTQ and AWQ readers: one block linear's codes unpacked from a checkpoint, and
 * their conversion to the int format's storage (formats/fmt_int.c). */
#include <stdbool.h>
#include <stdint.h>

#include "core/gq_error.h"
#include "formats/gq_format.h"
#include "model/gq_hf_packed.h"
#include "model/gq_safetensors.h"

/* What a quantization_config says. */
typedef struct ckpt_spec {
    bool awq;          /* else GPTQ */
    int bits;
    int group_size;    /* -1: one group per output row */
    bool sym;          /* GPTQ sym */
    bool v2;           /* GPTQ checkpoint_format gptq_v2: zeros stored as they are */
} ckpt_spec;

/* One linear of (rows, cols) = (out, in), outputs in the checkpoint's (transformers') order. */
typedef struct ckpt_linear {
    int rows, cols, groups, group_cols; /* group_cols: columns per group (cols per channel) */
    uint8_t *codes;    /* (rows, cols) in storage column order */
    uint16_t *scales;  /* (rows, groups) fp16 bits */
    int32_t *zeros;    /* (rows, groups) zero points */
    int32_t *perm;     /* NULL, or (cols): storage column i is input column perm[i] */
} ckpt_linear;

int ckpt_linear_alloc(ckpt_linear *l, int rows, int cols, int group_size, gq_error *err);
void ckpt_linear_free(ckpt_linear *l);

/* Bits [pos, pos + b) of a stream of int32 words of tensor t (LSB first; word i is element
 * first + i * stride), as AutoGPTQ packs 2/3/4/8-bit codes (3-bit codes straddle words). */
uint32_t ckpt_stream_get(const gq_st_tensor *t, size_t first, size_t stride, size_t pos, int b);
/* Tensor "<prefix>.<part>" of dtype and shape (d1 0: one dimension), or a one-line error
 * naming the file and tensor. */
const gq_st_tensor *ckpt_tensor(const gq_hf_files *f, const char *prefix, const char *part,
                                gq_st_dtype dtype, int64_t d0, int64_t d1, gq_error *err);

/* The linear as the int format's storage: q receives {"name": "int", bits, granularity,
 * group_size, zero sym_gptq (sym and every zero 2^(b-1)) or asym, scale_dtype fp16}, *storage
 * its bytes with rows in the model's order (head_size: see gq_hf_model_row), w (rows, cols)
 * their dequantization with the columns back in order. `what` names the tensor. */
int ckpt_to_int(const ckpt_linear *l, const ckpt_spec *s, int head_size, const char *what,
                gq_quantizer *q, uint8_t **storage, float *w, gq_error *err);

/* Unpackers of one linear (GPTQ: gptq_read.c, AWQ: awq_read.c). */
int ckpt_gptq_unpack(const gq_hf_files *f, const gq_hf_linear_site *s, const ckpt_spec *spec,
                     ckpt_linear *l, gq_error *err);
int ckpt_awq_unpack(const gq_hf_files *f, const gq_hf_linear_site *s, const ckpt_spec *spec,
                    ckpt_linear *l, gq_error *err);

#endif
