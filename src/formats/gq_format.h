#ifndef GQ_FORMAT_H
#define GQ_FORMAT_H
/* Format plugins: how a matrix of weights becomes codes and back, and what it costs to store.
 *
 * A format quantizes a row-major (rows, cols) matrix along its rows, i.e. along the input
 * dimension of a linear layer (groups and blocks are runs of consecutive columns). Methods
 * (RTN, GPTQ, AWQ, ...) decide what to hand a format; the format does the rounding.
 *
 * Each format is one `const gq_format` with a parameter table (core/gq_params.h). A configured
 * format is a gq_quantizer: the plugin plus its parsed parameters. In JSON a quantizer is an
 * object with a "name" and the format's parameters:
 *     {"name": "int", "bits": 4, "granularity": "group", "group_size": 128, "zero": "asym"}
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/gq_error.h"
#include "core/gq_params.h"
#include "formats/gq_packing.h"

typedef struct gq_format {
    const char *name;            /* registry key: "int", "fp", "mx", "q4_0", "q4_K", ... */
    const char *summary;         /* one line for `gq-bench list formats` */
    const gq_param_spec *params; /* parameter table ({0} when there are none) */
    size_t params_size;          /* sizeof the parameter struct */

    /* Optional: cross-field checks after parsing (impossible combinations). `path` is the JSON
     * path of the parameter object, as in gq_params_parse. */
    int (*validate)(const void *params, const char *path, gq_error *err);

    /* Short canonical label for tables and file names: "int4 g128 asym", "fp8_e4m3 channel",
     * "mxfp4", "q4_K". */
    void (*label)(const void *params, char *buf, size_t n);

    /* Optional: fails when a (rows, cols) matrix cannot be quantized with these parameters. */
    int (*check_shape)(const void *params, int rows, int cols, gq_error *err);

    /* Exact storage in bytes of a quantized (rows, cols) matrix: codes, scales, zeros,
     * super-block scales and padding included. Bits per weight = 8 * bytes / (rows * cols). */
    size_t (*storage_bytes)(const void *params, int rows, int cols);

    /* Quantizes w (rows, cols). imatrix: optional per-column importance (cols values, NULL for
     * none; formats that take none ignore it). codes: storage_bytes() bytes in the format's
     * storage layout (for llama.cpp formats exactly ggml's bytes), or NULL. deq: rows*cols
     * floats of reconstruction, or NULL. Must be deterministic and thread-count independent.
     * Storage contract: quantize writes every one of the storage_bytes() bytes of codes (and
     * nothing past them), so the bytes never depend on what the buffer held: callers need not
     * clear it (tests/formats/test_storage_contract.c holds every format to this). */
    int (*quantize)(const void *params, const float *w, int rows, int cols, const float *imatrix,
                    uint8_t *codes, float *deq, gq_error *err);

    /* Reconstructs rows*cols floats from the storage layout written by quantize. */
    int (*dequantize)(const void *params, const uint8_t *codes, int rows, int cols, float *out,
                      gq_error *err);

    /* Optional (NULL: no packed kernel): how src/packed runs products on this format's codes
     * (formats/gq_packing.h). */
    const gq_packing *packing;

    /* Group interface for methods that quantize one column at a time with parameters fitted on
     * a span of columns (GPTQ). All NULL/0 when unsupported.
     *   group_cols: columns sharing parameters within a row: group size, cols for per-channel,
     *               32 for MX blocks, 256 for K-quant super-blocks; 0 for per-tensor (one
     *               state fitted on the whole matrix, passed as n = rows*cols values).
     *   fit_group:  fits the state of one row segment x[0..n) (the last group of a row may be
     *               shorter), with optional importance weights imp[0..n) (may be NULL).
     *   quant_elem: the reconstruction of value x as element k of a fitted segment. */
    int (*group_cols)(const void *params, int cols);
    size_t group_state_bytes;
    void (*fit_group)(const void *params, const float *x, int n, const float *imp, void *state);
    float (*quant_elem)(const void *params, const void *state, int k, float x);
    /* Optional (NULL: a GPTQ-style method hands over reconstructions only): codes
     * (storage_bytes, every byte written, as by quantize) = the storage of a (rows, cols)
     * matrix q whose values quant_elem made from `states`: rows * ceil(cols / group_cols)
     * states of group_state_bytes, row-major (one state per row when group_cols >= cols, one
     * in all for per-tensor), each fitted on its run of consecutive columns. dequantize(codes)
     * then gives q bit for bit. */
    int (*store_groups)(const void *params, const void *states, const float *q, int rows,
                        int cols, uint8_t *codes, gq_error *err);
} gq_format;

/* Registry */
const gq_format *gq_format_find(const char *name);
/* The registered formats in listing order; *n receives the count. */
const gq_format *const *gq_format_all(int *n);
/* Adds a format at run time (plugins, plugin/gq_plugin.h): fails on NULL, an invalid name
 * (a-z, 0-9, _), a missing summary/params/storage_bytes/quantize/dequantize, an incomplete
 * group interface, or a name already taken. Not thread-safe: register before running work. */
int gq_format_register(const gq_format *fmt, gq_error *err);
/* Removes the formats registered after the first n (n from gq_format_all before): the plugin
 * loader's undo when a plugin's init fails part-way. */
void gq_format_truncate(int n);

/* A configured format. */
typedef struct gq_quantizer {
    const gq_format *fmt;
    void *params; /* fmt->params_size bytes, owned */
} gq_quantizer;

/* From a JSON object {"name": ..., params...}; `path` is its JSON path for messages. */
int gq_quantizer_from_json(const json_t *spec, const char *path, gq_quantizer *q, gq_error *err);
/* From a name and an optional parameter object (without "name"). */
int gq_quantizer_init(gq_quantizer *q, const char *name, const json_t *params, const char *path,
                      gq_error *err);
void gq_quantizer_free(gq_quantizer *q);
/* Canonical JSON {"name": ..., every parameter} (new reference). */
json_t *gq_quantizer_to_json(const gq_quantizer *q);
void gq_quantizer_label(const gq_quantizer *q, char *buf, size_t n);
/* Same format and the same value of every parameter. */
bool gq_quantizer_equal(const gq_quantizer *a, const gq_quantizer *b);

/* Convenience wrappers: check_shape, then quantize (or dequantize). */
int gq_quantizer_run(const gq_quantizer *q, const float *w, int rows, int cols,
                     const float *imatrix, uint8_t *codes, float *deq, gq_error *err);
size_t gq_quantizer_bytes(const gq_quantizer *q, int rows, int cols);
double gq_quantizer_bpw(const gq_quantizer *q, int rows, int cols);

#endif
