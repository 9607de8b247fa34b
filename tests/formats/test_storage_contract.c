/* The storage contract of gq_format.h: quantize and store_groups write every byte of their
 * storage, so callers hand over buffers with any content. Every registered format (with its
 * defaults, plus the grid formats' reference and fast paths over their parameters) writes the
 * same bytes into a buffer filled with a poison pattern as into a zeroed one, and nothing past
 * storage_bytes, on shapes with partial groups and blocks, with and without importance. */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_rng.h"
#include "formats/gq_format.h"
#include "formats/grid.h"

static const uint8_t poisons[] = {0xa5, 0xff};

/* The grid formats' configurations beyond their defaults: every path through grid.c and
 * grid_fast.c (per tensor, channel, partial groups, clip search, every element). */
static const char *const grid_configs[] = {
    "{\"name\": \"int\", \"bits\": 3, \"group_size\": 7, \"zero\": \"asym\"}",
    "{\"name\": \"int\", \"bits\": 2, \"granularity\": \"tensor\", \"zero\": \"sym\"}",
    "{\"name\": \"int\", \"bits\": 5, \"granularity\": \"channel\", \"zero\": \"sym_gptq\"}",
    "{\"name\": \"int\", \"bits\": 8, \"group_size\": 32, \"scale_dtype\": \"fp32\"}",
    "{\"name\": \"int\", \"bits\": 4, \"group_size\": 32, \"clip_search\": \"mse\", \"grid\": 10}",
    "{\"name\": \"fp\", \"element\": \"e2m1\", \"granularity\": \"group\", \"group_size\": 5}",
    "{\"name\": \"fp\", \"element\": \"e5m2\", \"granularity\": \"tensor\"}",
    "{\"name\": \"fp\", \"element\": \"e4m3\", \"granularity\": \"group\", \"group_size\": 32, "
    "\"scale_dtype\": \"fp32\"}",
    "{\"name\": \"mx\", \"element\": \"fp6_e3m2\"}",
    "{\"name\": \"mx\", \"element\": \"fp6_e2m3\", \"scale_rule\": \"even\"}",
    "{\"name\": \"mx\", \"element\": \"int8\"}",
};

static const int shapes[][2] = {{3, 300}, {5, 37}, {4, 13}, {2, 512}, {1, 1}};

typedef struct matrix {
    int rows, cols;
    float *w, *imp;
} matrix;

static matrix make_matrix(int rows, int cols, uint64_t seed)
{
    matrix m = {rows, cols, malloc((size_t)rows * cols * sizeof(float)),
                malloc((size_t)cols * sizeof(float))};
    gq_rng r;
    gq_rng_seed(&r, seed);
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        m.w[i] = (i / 41) % 4 == 1 ? 0.0f : (float)(0.02 * gq_rng_student_t(&r, 4.0));
    for (int c = 0; c < cols; c++)
        m.imp[c] = (float)(0.1 + gq_rng_uniform(&r));
    return m;
}

/* codes filled with `fill` (one byte past the storage too), then quantize; rc of quantize. */
static int quantize_into(const gq_quantizer *q, const matrix *m, const float *imp, uint8_t fill,
                         uint8_t *codes, size_t bytes)
{
    memset(codes, fill, bytes + 1);
    gq_error err = {{0}};
    return gq_quantizer_run(q, m->w, m->rows, m->cols, imp, codes, NULL, &err);
}

/* store_groups of states fitted on each group and the values quant_elem makes from them. */
static int store_into(const gq_quantizer *q, const matrix *m, uint8_t fill, uint8_t *codes,
                      size_t bytes)
{
    const gq_format *f = q->fmt;
    const int gc = f->group_cols(q->params, m->cols);
    const int ngr = gc ? (m->cols + gc - 1) / gc : 1, nst = gc ? m->rows * ngr : 1;
    unsigned char *st = calloc((size_t)nst, f->group_state_bytes);
    float *qv = malloc((size_t)m->rows * m->cols * sizeof *qv);
    if (!gc)
        f->fit_group(q->params, m->w, m->rows * m->cols, NULL, st);
    for (int r = 0; r < m->rows; r++)
        for (int c0 = 0; c0 < m->cols; c0 += gc ? gc : m->cols) {
            const int n = gc && m->cols - c0 > gc ? gc : m->cols - c0;
            const float *x = m->w + (size_t)r * m->cols + c0;
            unsigned char *s = st + (gc ? (size_t)r * ngr + (size_t)(c0 / gc) : 0) *
                                        f->group_state_bytes;
            if (gc)
                f->fit_group(q->params, x, n, NULL, s);
            for (int k = 0; k < n; k++)
                qv[(size_t)r * m->cols + c0 + k] = f->quant_elem(q->params, s, k, x[k]);
        }
    memset(codes, fill, bytes + 1);
    gq_error err = {{0}};
    const int rc = f->store_groups(q->params, st, qv, m->rows, m->cols, codes, &err);
    free(st);
    free(qv);
    return rc;
}

static void expect_same_bytes(const char *what, const uint8_t *zeroed, const uint8_t *poisoned,
                              size_t bytes, uint8_t fill)
{
    for (size_t i = 0; i < bytes; i++)
        if (zeroed[i] != poisoned[i])
            fail_msg("%s: byte %zu of %zu is 0x%02x in a buffer filled with 0x%02x, 0x%02x in a "
                     "zeroed one", what, i, bytes, poisoned[i], fill, zeroed[i]);
    if (poisoned[bytes] != fill || zeroed[bytes] != 0)
        fail_msg("%s: wrote past the %zu bytes of its storage", what, bytes);
}

/* quantize (without and with importance) and store_groups, each against the zeroed run. */
static void check_quantizer(const gq_quantizer *q, const matrix *m)
{
    char label[128], what[300];
    gq_quantizer_label(q, label, sizeof label);
    const size_t bytes = gq_quantizer_bytes(q, m->rows, m->cols);
    uint8_t *zeroed = malloc(bytes + 1), *poisoned = malloc(bytes + 1);
    for (int with_imp = 0; with_imp < 2; with_imp++) {
        const float *imp = with_imp ? m->imp : NULL;
        const int rc0 = quantize_into(q, m, imp, 0x00, zeroed, bytes);
        for (size_t p = 0; p < sizeof poisons; p++) {
            snprintf(what, sizeof what, "%s quantize, %d x %d%s", label, m->rows, m->cols,
                     with_imp ? ", importance" : "");
            if (quantize_into(q, m, imp, poisons[p], poisoned, bytes) != rc0)
                fail_msg("%s: the status depends on the buffer's content", what);
            if (rc0 == 0)
                expect_same_bytes(what, zeroed, poisoned, bytes, poisons[p]);
        }
    }
    if (q->fmt->store_groups) {
        const int rc0 = store_into(q, m, 0x00, zeroed, bytes);
        for (size_t p = 0; p < sizeof poisons; p++) {
            snprintf(what, sizeof what, "%s store_groups, %d x %d", label, m->rows, m->cols);
            if (store_into(q, m, poisons[p], poisoned, bytes) != rc0)
                fail_msg("%s: the status depends on the buffer's content", what);
            if (rc0 == 0)
                expect_same_bytes(what, zeroed, poisoned, bytes, poisons[p]);
        }
    }
    free(zeroed);
    free(poisoned);
}

static void check_on_shapes(const gq_quantizer *q)
{
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        matrix m = make_matrix(shapes[s][0], shapes[s][1], 7u + s);
        check_quantizer(q, &m);
        free(m.w);
        free(m.imp);
    }
}

static void test_every_format_writes_every_byte(void **state)
{
    (void)state;
    int n;
    const gq_format *const *all = gq_format_all(&n);
    for (int i = 0; i < n; i++) {
        gq_quantizer q;
        gq_error err = {{0}};
        if (gq_quantizer_init(&q, all[i]->name, NULL, "$", &err))
            fail_msg("%s: %s", all[i]->name, err.msg);
        check_on_shapes(&q);
        gq_quantizer_free(&q);
    }
}

/* The grid formats through the fast path (when their parameters have one) and the reference. */
static void test_grid_paths_write_every_byte(void **state)
{
    (void)state;
    for (int ref = 0; ref < 2; ref++) {
        grid_force_reference(ref);
        for (size_t i = 0; i < sizeof grid_configs / sizeof grid_configs[0]; i++) {
            json_t *spec = json_loads(grid_configs[i], 0, NULL);
            gq_quantizer q;
            gq_error err = {{0}};
            if (gq_quantizer_from_json(spec, "$", &q, &err))
                fail_msg("%s: %s", grid_configs[i], err.msg);
            json_decref(spec);
            check_on_shapes(&q);
            gq_quantizer_free(&q);
        }
    }
    grid_force_reference(false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_format_writes_every_byte),
        cmocka_unit_test(test_grid_paths_write_every_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
