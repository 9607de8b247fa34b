#ifndef GQ_TEST_GGML_CASES_H
#define GQ_TEST_GGML_CASES_H
/* The llama.cpp reference vectors of tests/data/ggml (README.md there): every line of
 * cases.tsv checked against a registered format. */
#include <stddef.h>
#include <stdint.h>

/* One case: `type` is the vector file's type name; imatrix 1 when it used importance weights. */
typedef struct ggml_case {
    char name[64], type[32];
    int rows, cols, row_bytes, imatrix;
} ggml_case;

/* Fails with the first differing byte of got vs want (n bytes, rows of row_bytes), saying
 * where in the format's block it lies. */
typedef void (*ggml_bytes_check)(const char *what, const ggml_case *c, const uint8_t *got,
                                 const uint8_t *want, size_t n);

/* Fails unless got and want (n floats, rows of cols) have the same bit patterns (-0.0 vs 0.0
 * and NaN payloads count), naming the first difference's row and column. */
void ggml_expect_floats(const char *what, const float *got, const float *want, size_t n, int cols);

/* For every case whose type format_of maps to a format name (NULL: not this test's): the
 * format's storage size is the case's, quantize(input [, imatrix]) gives exactly the .q bytes
 * (checked by check_bytes) and the .deq floats bit for bit, and dequantize(.q) the same floats.
 * Calls counted(c, ctx) after each case passes (may be NULL). */
void ggml_check_cases(const char *(*format_of)(const char *type), ggml_bytes_check check_bytes,
                      void (*counted)(const ggml_case *c, void *ctx), void *ctx);

#endif
