#ifndef GQ_GRID_H
#define GQ_GRID_H
/* Shared machinery of the scaled-grid formats (int, fp, mx): groups of consecutive columns
 * share fitted parameters (a "state": scale, zero point, shared exponent), each element
 * becomes a fixed-width code.
 *
 * Storage layout, common to every grid format (all bit streams are LSB-first: bit i of the
 * stream is bit (i % 8) of byte i / 8, and a field of w bits occupies stream bits
 * [pos, pos + w) with its least significant bit first):
 *
 *   [meta stream]  one record of meta_bits per group, in row-major group order
 *                  (row 0 group 0, row 0 group 1, ..., row 1 group 0, ...); a per-tensor
 *                  format has exactly one record. Padded with zero bits to a whole byte.
 *   [code stream]  one elem_bits code per element, row-major. Formats with padded groups
 *                  (MX blocks) store every row as whole groups: a partial last group is
 *                  zero-padded, and the padding codes are stored (and counted).
 *
 * bytes = ceil(n_groups * meta_bits / 8) + ceil(rows * row_elems * elem_bits / 8).
 * What a record and a code mean is documented in each format's file. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/gq_error.h"
#include "core/gq_half.h"
#include "core/gq_params.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

/* Granularity shared by int and fp: the choice order of grid_granularity_names. */
typedef enum { GRID_TENSOR = 0, GRID_CHANNEL = 1, GRID_GROUP = 2 } grid_granularity;
extern const char *const grid_granularity_names[];
/* Columns per group for a granularity: 0 (tensor), cols (channel), min(group_size, cols). */
int grid_group_cols(int granularity, int group_size, int cols);
/* "tensor", "channel" or "g128" for labels. */
void grid_granularity_label(int granularity, int group_size, char *buf, size_t n);

/* Scale storage shared by int and fp. */
typedef enum { GRID_SCALE_FP16 = 0, GRID_SCALE_FP32 = 1 } grid_scale_dtype;
extern const char *const grid_scale_dtype_names[];
/* fp32 -> fp16 bits, to nearest even: gq_fp32_to_fp16 (one instruction with F16C,
 * bit-identical for every float: test_grid_fast). */
static inline uint16_t grid_fp16_bits(float f)
{
#if defined(__F16C__)
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
#else
    return gq_fp32_to_fp16(f);
#endif
}
/* The scale as it is stored and used: fp16-rounded for fp16 (gq_round_fp16, bit for bit for
 * every float; F16C's half -> float differs from gq_fp16_to_fp32 only on signalling NaN halves,
 * which fp32 -> fp16 never yields), unchanged for fp32. */
static inline float grid_scale_store(int dtype, float s)
{
    if (dtype != GRID_SCALE_FP16)
        return s;
#if defined(__F16C__)
    return _cvtsh_ss(grid_fp16_bits(s));
#else
    return gq_round_fp16(s);
#endif
}
int grid_scale_bits(int dtype);
/* Fails when a scale as large as max_scale does not fit the scale dtype (fp16 overflows
 * above 65504); `what` names the format in the message. */
int grid_scale_check(int dtype, double max_scale, const char *what, gq_error *err);

/* The operations a grid format supplies to the driver. `p` is the format's parameters. */
typedef struct grid_ops {
    const char *name;
    int (*group_cols)(const void *p, int cols); /* 0 = one state for the whole tensor */
    int (*elem_bits)(const void *p);
    int (*meta_bits)(const void *p);
    bool pad_groups;    /* codes of a partial last group are padded to group_cols */
    size_t state_bytes; /* at most GRID_STATE_MAX */
    /* Optional: rejects a tensor whose largest magnitude the format cannot represent. */
    int (*check_amax)(const void *p, float amax, gq_error *err);
    /* Fits the state of x[0..n) with optional importance imp[0..n). */
    void (*fit)(const void *p, const float *x, int n, const float *imp, void *state);
    /* Quantizes x[0..n) with a fitted state: codes[i] (may be NULL), reconstruction y[i]
     * (may be NULL). */
    void (*encode)(const void *p, const void *state, const float *x, int n, uint32_t *codes,
                   float *y);
    /* Reconstructs n values from codes. */
    void (*decode)(const void *p, const void *state, const uint32_t *codes, int n, float *y);
    /* State <-> meta_bits record at stream bit `pos`. */
    void (*meta_write)(const void *p, const void *state, uint8_t *buf, size_t pos);
    void (*meta_read)(const void *p, const uint8_t *buf, size_t pos, void *state);

    /* Optional fast path (grid_fast.c), taken by grid_quantize when fast_ok(p): the states,
     * codes and reconstructions of fit and encode, bit for bit (tests/formats/test_grid_fast.c).
     *   fit_fast:    fit of x[0..n) given amax = max |x| (finite); imp is never needed here.
     *   encode_fast: encode with one byte per code (elem_bits <= 8). */
    bool (*fast_ok)(const void *p);
    void (*fit_fast)(const void *p, const float *x, size_t n, float amax, void *state);
    void (*encode_fast)(const void *p, const void *state, const float *x, int n,
                        uint8_t *codes, float *y);
    /* Optional, with groups (group_cols > 0): a whole row in one call, as fit_fast, encode_fast
     * and meta_write per group would do it. x[0..cols) in groups of gc columns (the last may be
     * shorter); gbits room for one word per group; codes one byte each (may be NULL), y (may
     * be NULL); the records at stream bits (rec0 + g) * meta_bits of meta (NULL: none).
     * Returns the bits of the row's largest magnitude (grid_k_absmax_bits); when that is
     * >= 0x7f800000 (a non-finite weight) the row may be left part-done, and the driver redoes
     * it group by group. */
    uint32_t (*row_fast)(const void *p, const float *x, int cols, int gc, uint32_t *gbits,
                         uint8_t *codes, float *y, uint8_t *meta, size_t rec0);
    /* Optional: row_fast with 4-bit codes written packed, two a byte (low nibble first, as
     * grid_pack8 packs them), from byte 0 of codes, the row's own place in the code stream. The
     * driver takes it for rows whose codes start on a byte, when gc is even. */
    uint32_t (*row_fast_packed4)(const void *p, const float *x, int cols, int gc,
                                 uint32_t *gbits, uint8_t *codes, float *y, uint8_t *meta,
                                 size_t rec0);
} grid_ops;

#define GRID_STATE_MAX 32

/* min/max/clamp of non-NaN floats as compare-and-select (fminf/fmaxf are libm calls here). */
static inline float grid_minf(float a, float b) { return a < b ? a : b; }
static inline float grid_maxf(float a, float b) { return a > b ? a : b; }
static inline float grid_clampf(float v, float lo, float hi) { return grid_minf(grid_maxf(v, lo), hi); }

/* encode_fast's remainder: a format's encode of x[from..n), with one byte per code. */
typedef void grid_encode_fn(const void *p, const void *state, const float *x, int n,
                            uint32_t *codes, float *y);
void grid_encode_tail(grid_encode_fn *encode, const void *p, const void *state, const float *x,
                      int from, int n, uint8_t *codes, float *y);
/* Tests: every grid_quantize through fit and encode (the reference) when on. Not thread-safe:
 * set it before running work. */
void grid_force_reference(bool on);

size_t grid_storage_bytes(const grid_ops *ops, const void *p, int rows, int cols);
int grid_quantize(const grid_ops *ops, const void *p, const float *w, int rows, int cols,
                  const float *imatrix, uint8_t *codes, float *deq, gq_error *err);
int grid_dequantize(const grid_ops *ops, const void *p, const uint8_t *codes, int rows, int cols,
                    float *out, gq_error *err);
/* store_groups of the group interface (gq_format.h): meta records from the states, codes by
 * encoding the reconstructions with them. */
int grid_store_groups(const grid_ops *ops, const void *p, const void *states, const float *q,
                      int rows, int cols, uint8_t *codes, gq_error *err);
/* quant_elem of the group interface: one value through encode. */
float grid_quant_elem(const grid_ops *ops, const void *p, const void *state, float x);

/* One meta record v of w <= 56 bits at stream bit pos, touching only the record's bytes: stored
 * as whole bytes when pos and w are multiples of 8 (then the stream needs no clearing), else
 * ORed into a zeroed stream as grid_put_bits does. */
static inline void grid_put_record(uint8_t *buf, size_t pos, uint64_t v, int w)
{
    uint8_t *b = buf + pos / 8;
    const unsigned sh = (unsigned)(pos % 8);
    if (sh == 0 && w % 8 == 0) {
        for (int i = 0; i < w / 8; i++)
            b[i] = (uint8_t)(v >> (8 * i));
        return;
    }
    v <<= sh;
    for (unsigned i = 0; i < (sh + (unsigned)w + 7) / 8; i++)
        b[i] |= (uint8_t)(v >> (8 * i));
}

/* n records v[0..n) of w <= 56 bits each, back to back from stream bit pos, as n calls of
 * grid_put_record would write them: the bytes the run covers whole are stored, its first and
 * last byte (shared with the records around it) ORed in. */
void grid_put_records(uint8_t *buf, size_t pos, const uint64_t *v, int n, int w);

/* Bit streams (LSB-first; the buffer must be zeroed before writing). w <= 32. */
void grid_put_bits(uint8_t *buf, size_t pos, uint32_t v, int w);
uint32_t grid_get_bits(const uint8_t *buf, size_t pos, int w);
void grid_pack(uint8_t *buf, size_t pos, const uint32_t *codes, size_t n, int w);
void grid_unpack(const uint8_t *buf, size_t pos, uint32_t *codes, size_t n, int w);

/* Rounding to an integer: half to even (rintf in the default mode) or half away from zero
 * (roundf). */
typedef enum { GRID_ROUND_EVEN = 0, GRID_ROUND_AWAY = 1 } grid_rounding;
extern const char *const grid_rounding_names[];

#endif
