/* The reference-vector loop shared by the legacy and K-quant tests (ggml_cases.h). */
#include "ggml_cases.h"

#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gq_format.h"

/* tests/data/ggml/<name>, which must hold exactly `want` bytes. */
static void *load(const char *name, size_t want)
{
    char rel[256];
    snprintf(rel, sizeof rel, "ggml/%s", name);
    size_t len = 0;
    void *p = test_read_file(test_data_path(rel), &len);
    if (len != want)
        fail_msg("%s: %zu bytes, expected %zu", rel, len, want);
    return p;
}

void ggml_expect_floats(const char *what, const float *got, const float *want, size_t n,
                          int cols)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
            fail_msg("%s: first difference at element %zu (row %zu, col %zu): got %.9g, "
                     "ggml %.9g",
                     what, i, i / (size_t)cols, i % (size_t)cols, (double)got[i],
                     (double)want[i]);
}

static void check_case(const ggml_case *c, const gq_format *f, ggml_bytes_check check_bytes)
{
    const size_t n = (size_t)c->rows * c->cols, nbytes = (size_t)c->rows * c->row_bytes;
    assert_int_equal(f->storage_bytes(NULL, c->rows, c->cols), nbytes);
    const char *tag = c->imatrix ? ".imatrix" : "";
    char fn[160], what[200];
    snprintf(fn, sizeof fn, "%s.input.f32", c->name);
    float *x = load(fn, n * sizeof(float)), *imatrix = NULL;
    if (c->imatrix) {
        snprintf(fn, sizeof fn, "%s.imatrix.f32", c->name);
        imatrix = load(fn, (size_t)c->cols * sizeof(float));
    }
    snprintf(fn, sizeof fn, "%s.%s%s.q", c->name, c->type, tag);
    uint8_t *want_q = load(fn, nbytes);
    snprintf(fn, sizeof fn, "%s.%s%s.deq.f32", c->name, c->type, tag);
    float *want_deq = load(fn, n * sizeof(float));

    uint8_t *q = malloc(nbytes);
    float *deq = malloc(n * sizeof(float)), *deq2 = malloc(n * sizeof(float));
    assert_true(q && deq && deq2);
    gq_error err = {{0}};
    if (f->quantize(NULL, x, c->rows, c->cols, imatrix, q, deq, &err))
        fail_msg("%s %s%s: %s", c->name, c->type, tag, err.msg);
    snprintf(what, sizeof what, "%s %s%s quantize bytes", c->name, c->type, tag);
    check_bytes(what, c, q, want_q, nbytes);
    snprintf(what, sizeof what, "%s %s%s quantize reconstruction", c->name, c->type, tag);
    ggml_expect_floats(what, deq, want_deq, n, c->cols);
    /* the dequantizer on ggml's own bytes */
    if (f->dequantize(NULL, want_q, c->rows, c->cols, deq2, &err))
        fail_msg("%s %s%s: %s", c->name, c->type, tag, err.msg);
    snprintf(what, sizeof what, "%s %s%s dequantize", c->name, c->type, tag);
    ggml_expect_floats(what, deq2, want_deq, n, c->cols);
    free(q), free(deq), free(deq2), free(x), free(imatrix), free(want_q), free(want_deq);
}

void ggml_check_cases(const char *(*format_of)(const char *type), ggml_bytes_check check_bytes,
                      void (*counted)(const ggml_case *c, void *ctx), void *ctx)
{
    size_t len;
    char *tsv = test_read_file(test_data_path("ggml/cases.tsv"), &len);
    char *text = realloc(tsv, len + 1);
    assert_non_null(text);
    text[len] = '\0';
    char *save = NULL;
    int line_no = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line_no++ == 0)
            continue; /* header */
        ggml_case c;
        if (sscanf(line, "%63s %d %d %31s %d %d", c.name, &c.rows, &c.cols, c.type, &c.row_bytes,
                   &c.imatrix) != 6)
            fail_msg("ggml/cases.tsv line %d: expected name rows cols type bytes_per_row "
                     "imatrix", line_no);
        const char *fname = format_of(c.type);
        if (!fname)
            continue;
        const gq_format *f = gq_format_find(fname);
        if (!f)
            fail_msg("format %s is not registered", fname);
        check_case(&c, f, check_bytes);
        if (counted)
            counted(&c, ctx);
    }
    free(text);
}
