/* The grid formats' fast path (grid_fast.c, grid_kernels.c, mf_table.c) against the reference
 * (fit + encode per group, gq_mf_encode): the table-driven element encoder (and E2M1's midpoint
 * count) on dense sweeps of every float class (every exponent, every top-12 mantissa pattern,
 * the low bits at their boundaries, both signs; all 2^32 floats with GQ_EXHAUSTIVE=1), E2M1's
 * midpoints through a non-dyadic scale, the F16C scale rounding, then whole quantizations of
 * int (every bits value, zero convention, granularity, rounding, scale dtype), fp and mx on
 * random and adversarial matrices, byte for byte (storage and reconstruction bits, errors), at
 * 1 and 2 threads, and matrices of many work items at 1 to 3 threads. */
#include "test_support.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_rng.h"
#include "formats/gq_format.h"
#include "formats/grid.h"
#include "formats/grid_kernels.h"
#include "formats/mf_table.h"
#include "formats/minifloat.h"

static const gq_minifloat *const elements[] = {&gq_mf_e2m1, &gq_mf_e3m2, &gq_mf_e2m3,
                                               &gq_mf_e4m3, &gq_mf_e5m2};

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- the element table ----------------------------------------------------------------- */

#define SWEEP_BATCH 4096

/* xs[0..n) through the scalar table and the vector kernel against gq_mf_encode. */
static void check_elements(const gq_mf_table *t, const float *xs, int n)
{
    uint8_t codes[SWEEP_BATCH];
    float ys[SWEEP_BATCH];
    grid_k_mf_encode(t, xs, n, 1.0f, false, 1.0f, codes, ys);
    for (int i = 0; i < n; i++) {
        const float x = xs[i] * 1.0f; /* the kernel's scaled value */
        float yr, yt;
        const uint32_t cr = gq_mf_encode(t->f, x, &yr), ct = gq_mf_table_encode(t, x, &yt);
        if (cr != ct || f2u(yr) != f2u(yt))
            fail_msg("%s: x = %a (0x%08x): table code 0x%x value 0x%08x, reference 0x%x 0x%08x",
                     t->f->name, (double)x, f2u(x), ct, f2u(yt), cr, f2u(yr));
        if (codes[i] != (uint8_t)cr || f2u(ys[i]) != f2u(yr * 1.0f))
            fail_msg("%s: x = %a (0x%08x): kernel code 0x%x value 0x%08x, reference 0x%x 0x%08x",
                     t->f->name, (double)x, f2u(x), codes[i], f2u(ys[i]), cr, f2u(yr));
    }
}

static void test_table_sweep(void **state)
{
    (void)state;
    static const uint32_t low[] = {0x000, 0x001, 0x400, 0x7ff}; /* sticky clear and set */
    float *xs = malloc(SWEEP_BATCH * sizeof *xs);
    for (size_t k = 0; k < sizeof elements / sizeof elements[0]; k++) {
        const gq_mf_table *t = gq_mf_table_of(elements[k]);
        int n = 0;
        for (uint32_t hi = 0; hi < (1u << 21); hi++) /* sign, exponent, top 12 mantissa bits */
            for (size_t j = 0; j < sizeof low / sizeof low[0]; j++) {
                xs[n++] = u2f(hi << 11 | low[j]);
                if (n == SWEEP_BATCH) {
                    check_elements(t, xs, n);
                    n = 0;
                }
            }
        check_elements(t, xs, n);
    }
    free(xs);
}

/* grid_fp16_bits and grid_scale_store (F16C when built for it) against gq_fp32_to_fp16 and
 * gq_round_fp16 on floats hi << 11 | low (every sign, exponent and top-12 mantissa pattern;
 * low at the rounding boundaries), or on every float. */
static void check_fp16(int lo_shift, const uint32_t *low, size_t n_low)
{
    for (uint32_t hi = 0; hi < (1u << (32 - lo_shift)); hi++)
        for (size_t j = 0; j < n_low; j++) {
            const float f = u2f(hi << lo_shift | low[j]);
            const uint16_t h = grid_fp16_bits(f), hr = gq_fp32_to_fp16(f);
            const float r = grid_scale_store(GRID_SCALE_FP16, f), rr = gq_round_fp16(f);
            if (h != hr || f2u(r) != f2u(rr))
                fail_msg("fp16 of 0x%08x: 0x%04x (round trip 0x%08x), reference 0x%04x "
                         "(0x%08x)", f2u(f), h, f2u(r), hr, f2u(rr));
        }
}

static void test_fp16_scales(void **state)
{
    (void)state;
    static const uint32_t low[] = {0x000, 0x001, 0x3ff, 0x400, 0x401, 0x7ff};
    check_fp16(11, low, sizeof low / sizeof low[0]);
    const char *on = getenv("GQ_EXHAUSTIVE");
    if (on && strcmp(on, "1") == 0) {
        uint32_t all[256];
        for (uint32_t i = 0; i < 256; i++)
            all[i] = i;
        check_fp16(8, all, 256);
    }
}

/* E2M1's vector kernel counts midpoints: each midpoint, its float neighbours, the values and
 * the extremes (subnormal, huge, zeros), both signs, divided by a non-dyadic scale (x = v * 3,
 * so x / 3 gives v back at the midpoints) and multiplied by 1/3, against gq_mf_encode. */
static void test_e2m1_midpoints(void **state)
{
    (void)state;
    static const float base[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 0.5f, 1.0f, 6.0f,
                                 7.0f, 0x1p-149f, 0x1p-126f, 0x1p100f, 0.0f};
    const int nb = (int)(sizeof base / sizeof base[0]);
    float xs[8 * 6 * 15];
    int n = 0;
    for (int i = 0; i < nb; i++)
        for (int sgn = 0; sgn < 2; sgn++) {
            const float v = sgn ? -base[i] : base[i];
            const float vs[3] = {nextafterf(v, -INFINITY), v, nextafterf(v, INFINITY)};
            for (int j = 0; j < 3; j++) {
                xs[n++] = vs[j];
                xs[n++] = vs[j] * 3.0f;
            }
        }
    const gq_mf_table *t = gq_mf_table_of(&gq_mf_e2m1);
    for (int mode = 0; mode < 2; mode++) {
        const float k = mode ? 3.0f : 1.0f / 3.0f;
        uint8_t codes[sizeof xs / sizeof xs[0]];
        float ys[sizeof xs / sizeof xs[0]];
        grid_k_mf_encode(t, xs, n, k, mode == 1, 2.0f, codes, ys);
        for (int i = 0; i < n; i++) {
            const float v = mode ? xs[i] / k : xs[i] * k;
            float e;
            const uint32_t c = gq_mf_encode(&gq_mf_e2m1, v, &e);
            if (codes[i] != c || f2u(ys[i]) != f2u(e * 2.0f))
                fail_msg("e2m1 %s: v = %a: kernel code 0x%x value %a, reference 0x%x %a",
                         mode ? "divide" : "multiply", (double)v, codes[i], (double)ys[i], c,
                         (double)(e * 2.0f));
        }
    }
}

/* Every float, with GQ_EXHAUSTIVE=1 (a few minutes; not part of the default run). */
static void test_table_exhaustive(void **state)
{
    (void)state;
    const char *on = getenv("GQ_EXHAUSTIVE");
    if (!on || strcmp(on, "1") != 0)
        skip();
    for (size_t k = 0; k < sizeof elements / sizeof elements[0]; k++) {
        const gq_mf_table *t = gq_mf_table_of(elements[k]);
#pragma omp parallel for schedule(dynamic)
        for (uint32_t hi = 0; hi < (1u << 20); hi++) {
            float xs[SWEEP_BATCH];
            for (uint32_t lo = 0; lo < SWEEP_BATCH; lo++)
                xs[lo] = u2f(hi << 12 | lo);
            check_elements(t, xs, SWEEP_BATCH);
        }
    }
}

/* ---- whole quantizations ---------------------------------------------------------------- */

enum { IN_RANDOM, IN_DYADIC, IN_ZERO_GROUPS, IN_DENORMAL, IN_WIDE, IN_HUGE, IN_NAN, IN_INF,
       N_INPUTS };
static const char *const input_names[] = {"random", "dyadic ties", "zero groups", "denormals",
                                          "wide exponents", "huge", "nan", "inf"};

static void make_input(int kind, float *w, int rows, int cols, uint64_t seed)
{
    gq_rng r;
    gq_rng_seed(&r, seed);
    const size_t n = (size_t)rows * cols;
    for (size_t i = 0; i < n; i++) {
        const double u = gq_rng_uniform(&r);
        const int m = (int)(gq_rng_uniform(&r) * 33.0) - 16;
        switch (kind) {
        case IN_DYADIC: /* halves and quarters: ties of every grid with a dyadic scale */
            w[i] = (float)m * 0.25f;
            break;
        case IN_ZERO_GROUPS: /* runs of zeros (both signs) across groups */
            w[i] = (i / 37) % 3 ? (u < 0.5 ? 0.0f : -0.0f) : (float)(0.02 * gq_rng_student_t(&r, 4.0));
            break;
        case IN_DENORMAL:
            w[i] = u2f((uint32_t)(u * 0x7fffff) | (m < 0 ? 0x80000000u : 0u));
            break;
        case IN_WIDE: /* each value its own binade from 2^-140 to 2^100 */
            w[i] = ldexpf((float)(m | 1) * 0.125f, (int)(gq_rng_uniform(&r) * 240.0) - 140);
            break;
        case IN_HUGE:
            w[i] = 0x1.fffffep127f / 16.0f * (float)(m | 1); /* up to 2^127.9 */
            break;
        default:
            w[i] = (float)(0.02 * gq_rng_student_t(&r, 4.0));
        }
    }
    if (kind == IN_DYADIC && n > 3) { /* the extremes that make int's scale a power of two */
        w[0] = 2.0f;
        w[1] = -2.0f;
    }
    if (kind == IN_NAN)
        w[n * 2 / 3] = NAN;
    if (kind == IN_INF)
        w[n / 2] = -INFINITY;
}

/* What a run asks the quantizer for: both outputs, or one (each a separate kernel loop). */
enum { WANT_CODES = 1, WANT_Y = 2, WANT_BOTH = 3 };

typedef struct run_out {
    int rc, want;
    char msg[sizeof(((gq_error *)0)->msg)];
    uint8_t *codes;
    float *y;
} run_out;

/* The fast paths to compare with the reference: int's kernels in their AVX2 (or scalar) form,
 * and in their AVX-512 form where this CPU has it. */
static int fast_paths(void)
{
    grid_k_allow_avx512(true);
    return grid_k_avx512() ? 2 : 1;
}

static const char *path_name(int path) { return path ? "avx512" : GRID_K_AVX2 ? "avx2" : "scalar"; }

/* y is 64-byte aligned, so that the groups whose start is aligned take the streaming stores. */
static run_out run_some(const gq_quantizer *q, const float *w, int rows, int cols, bool ref,
                        int threads, int want, int path)
{
    run_out o = {.want = want};
    const size_t bytes = gq_quantizer_bytes(q, rows, cols);
    o.codes = malloc(bytes + 1);
    o.y = aligned_alloc(64, ((size_t)rows * cols * sizeof *o.y + 63) / 64 * 64);
    memset(o.codes, 0xa5, bytes + 1); /* the fast path must write every byte itself */
    gq_error err = {{0}};
    grid_force_reference(ref);
    grid_k_allow_avx512(path == 1);
    omp_set_num_threads(threads);
    o.rc = gq_quantizer_run(q, w, rows, cols, NULL, want & WANT_CODES ? o.codes : NULL,
                            want & WANT_Y ? o.y : NULL, &err);
    grid_force_reference(false);
    grid_k_allow_avx512(true);
    snprintf(o.msg, sizeof o.msg, "%s", err.msg);
    return o;
}

static run_out run(const gq_quantizer *q, const float *w, int rows, int cols, bool ref,
                   int threads)
{
    return run_some(q, w, rows, cols, ref, threads, WANT_BOTH, 0);
}

static void expect_same(const char *what, const run_out *a, const run_out *b, size_t bytes,
                        size_t n)
{
    if (a->rc != b->rc || strcmp(a->msg, b->msg) != 0)
        fail_msg("%s: fast rc %d \"%s\", reference rc %d \"%s\"", what, b->rc, b->msg, a->rc,
                 a->msg);
    if (a->rc)
        return; /* an error: the outputs are unspecified */
    for (size_t i = 0; (b->want & WANT_CODES) && i < bytes; i++)
        if (a->codes[i] != b->codes[i])
            fail_msg("%s: storage byte %zu of %zu: fast 0x%02x, reference 0x%02x", what, i,
                     bytes, b->codes[i], a->codes[i]);
    if (b->codes[bytes] != 0xa5)
        fail_msg("%s: the fast path wrote past the storage", what);
    for (size_t i = 0; (b->want & WANT_Y) && i < n; i++)
        if (f2u(a->y[i]) != f2u(b->y[i]))
            fail_msg("%s: reconstruction %zu: fast %a, reference %a", what, i, (double)b->y[i],
                     (double)a->y[i]);
}

static void free_out(run_out *o)
{
    free(o->codes);
    free(o->y);
}

/* Every input kind on a few shapes (partial groups, rows that end mid-byte, and rows of more
 * groups than a row_fast batch included): each fast path against the reference at 1 thread,
 * and at 2 threads on the first shape; then asked for the codes alone and the reconstruction
 * alone. */
static void check_config(const char *json)
{
    static const int shapes[][2] = {{3, 300}, {5, 37}, {4, 13}, {2, 1001}};
    json_t *spec = json_loads(json, 0, NULL);
    assert_non_null(spec);
    gq_quantizer q;
    gq_error err = {{0}};
    if (gq_quantizer_from_json(spec, "$", &q, &err))
        fail_msg("%s: %s", json, err.msg);
    json_decref(spec);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int rows = shapes[s][0], cols = shapes[s][1];
        const size_t n = (size_t)rows * cols, bytes = gq_quantizer_bytes(&q, rows, cols);
        float *w = malloc(n * sizeof *w);
        for (int kind = 0; kind < N_INPUTS; kind++) {
            make_input(kind, w, rows, cols, 1000u * s + (uint64_t)kind);
            run_out ref = run(&q, w, rows, cols, true, 1);
            for (int path = 0; path < fast_paths(); path++) {
                for (int threads = 1; threads <= (s == 0 ? 2 : 1); threads++) {
                    run_out fast = run_some(&q, w, rows, cols, false, threads, WANT_BOTH, path);
                    char what[1400];
                    snprintf(what, sizeof what, "%s, %d x %d, %s, %s, %d thread(s)", json, rows,
                             cols, input_names[kind], path_name(path), threads);
                    expect_same(what, &ref, &fast, bytes, n);
                    free_out(&fast);
                }
                for (int want = WANT_CODES; want <= WANT_Y; want++) {
                    run_out one = run_some(&q, w, rows, cols, false, 1, want, path);
                    char what[1400];
                    snprintf(what, sizeof what, "%s, %d x %d, %s, %s, %s only", json, rows, cols,
                             input_names[kind], path_name(path),
                             want == WANT_CODES ? "codes" : "reconstruction");
                    expect_same(what, &ref, &one, bytes, n);
                    free_out(&one);
                }
            }
            free_out(&ref);
        }
        free(w);
    }
    gq_quantizer_free(&q);
}

static void test_int_fast_equals_reference(void **state)
{
    (void)state;
    print_message("int's fast paths against the reference: %s%s\n", path_name(0),
                  fast_paths() > 1 ? " and avx512" : " (this CPU has no AVX-512)");
    static const char *const zeros[] = {"sym", "sym_gptq", "asym"};
    static const char *const grans[] = {
        "\"granularity\": \"tensor\"", "\"granularity\": \"channel\"",
        "\"group_size\": 32", "\"group_size\": 128", "\"group_size\": 7"};
    for (int bits = 2; bits <= 8; bits++)
        for (int z = 0; z < 3; z++)
            for (int g = 0; g < 5; g++)
                for (int opt = 0; opt < 4; opt += 3) { /* fp16 even, fp32 away */
                    char json[256];
                    snprintf(json, sizeof json,
                             "{\"name\": \"int\", \"bits\": %d, \"zero\": \"%s\", %s, "
                             "\"scale_dtype\": \"%s\", \"rounding\": \"%s\"}",
                             bits, zeros[z], grans[g], opt & 1 ? "fp32" : "fp16",
                             opt & 2 ? "away" : "even");
                    check_config(json);
                }
}

static void test_fp_mx_fast_equal_reference(void **state)
{
    (void)state;
    static const char *const fp_elems[] = {"e2m1", "e4m3", "e5m2"};
    static const char *const grans[] = {
        "\"granularity\": \"tensor\"", "\"granularity\": \"channel\"",
        "\"granularity\": \"group\", \"group_size\": 32",
        "\"granularity\": \"group\", \"group_size\": 5"};
    for (int e = 0; e < 3; e++)
        for (int g = 0; g < 4; g++)
            for (int dt = 0; dt < 2; dt++) {
                char json[256];
                snprintf(json, sizeof json,
                         "{\"name\": \"fp\", \"element\": \"%s\", %s, \"scale_dtype\": \"%s\"}",
                         fp_elems[e], grans[g], dt ? "fp32" : "fp16");
                check_config(json);
            }
    static const char *const mx_elems[] = {"fp4_e2m1", "fp6_e3m2", "fp6_e2m3",
                                           "fp8_e4m3", "fp8_e5m2", "int8"};
    static const char *const rules[] = {"floor", "ceil", "even", "rceil"};
    for (int e = 0; e < 6; e++)
        for (int r = 0; r < 4; r++) {
            char json[256];
            snprintf(json, sizeof json,
                     "{\"name\": \"mx\", \"element\": \"%s\", \"scale_rule\": \"%s\"}",
                     mx_elems[e], rules[r]);
            check_config(json);
        }
}

/* Matrices of many work items (grid_fast.c hands them out dynamically), odd widths whose rows
 * end mid-byte: the reference's bytes at 1, 2 and 3 threads. */
static void test_fast_work_items(void **state)
{
    (void)state;
    static const char *const configs[] = {
        "{\"name\": \"int\", \"bits\": 4, \"group_size\": 128}",
        "{\"name\": \"int\", \"bits\": 3, \"group_size\": 7, \"zero\": \"sym\"}",
        "{\"name\": \"fp\", \"element\": \"e2m1\", \"granularity\": \"group\", "
        "\"group_size\": 5}",
        "{\"name\": \"mx\", \"element\": \"fp6_e3m2\"}"};
    const int rows = 67, cols = 1001;
    const size_t n = (size_t)rows * cols;
    float *w = malloc(n * sizeof *w);
    make_input(IN_RANDOM, w, rows, cols, 99);
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        json_t *spec = json_loads(configs[c], 0, NULL);
        gq_quantizer q;
        gq_error err = {{0}};
        if (gq_quantizer_from_json(spec, "$", &q, &err))
            fail_msg("%s: %s", configs[c], err.msg);
        json_decref(spec);
        const size_t bytes = gq_quantizer_bytes(&q, rows, cols);
        run_out ref = run(&q, w, rows, cols, true, 1);
        for (int path = 0; path < fast_paths(); path++)
            for (int threads = 1; threads <= 3; threads++) {
                run_out fast = run_some(&q, w, rows, cols, false, threads, WANT_BOTH, path);
                char what[300];
                snprintf(what, sizeof what, "%s, %d x %d, %s, %d thread(s)", configs[c], rows,
                         cols, path_name(path), threads);
                expect_same(what, &ref, &fast, bytes, n);
                free_out(&fast);
            }
        free_out(&ref);
        gq_quantizer_free(&q);
    }
    free(w);
}

/* grid_pack8 against grid_pack at every start bit and width. */
static void test_pack8(void **state)
{
    (void)state;
    uint8_t codes8[61];
    uint32_t codes32[61];
    for (int i = 0; i < 61; i++)
        codes32[i] = codes8[i] = (uint8_t)(i * 37 + 11);
    for (int w = 1; w <= 8; w++)
        for (size_t pos = 0; pos < 16; pos++)
            for (size_t n = 0; n <= 61; n += 3) {
                uint8_t a[80] = {0}, b[80];
                memset(b, 0x5a, sizeof b);
                const size_t first = pos / 8;
                for (size_t i = 0; i < first; i++) /* earlier rows */
                    a[i] = b[i] = (uint8_t)(0x77 + i);
                if (pos % 8) /* earlier fields in the first byte */
                    a[first] = b[first] = 0x6d & (uint8_t)((1u << (pos % 8)) - 1u);
                grid_pack(a, pos, codes32, n, w);
                grid_pack8(b, pos, codes8, n, w);
                const size_t end = (pos + n * (size_t)w + 7) / 8;
                for (size_t i = 0; i < end; i++)
                    if (a[i] != b[i])
                        fail_msg("w %d pos %zu n %zu: byte %zu 0x%02x, grid_pack 0x%02x", w, pos,
                                 n, i, b[i], a[i]);
                if (b[end] != 0x5a)
                    fail_msg("w %d pos %zu n %zu: wrote past the last field's byte", w, pos, n);
            }
}

/* grid_put_record against grid_put_bits (of its two halves past 32 bits) at every start bit:
 * the same bytes in a zeroed stream, and whole-byte records stored over any content without
 * touching the bytes around them. */
static void test_put_record(void **state)
{
    (void)state;
    static const int widths[] = {8, 16, 18, 20, 21, 24, 32, 35, 40, 48};
    for (size_t k = 0; k < sizeof widths / sizeof widths[0]; k++)
        for (size_t pos = 0; pos < 16; pos++) {
            const int w = widths[k];
            const uint64_t v = 0x9b3c5a6d7e1f2a3bull & ((1ull << w) - 1u);
            uint8_t a[16] = {0}, b[16] = {0}, c[16];
            for (size_t i = 0; i < pos / 8; i++) /* earlier records */
                a[i] = b[i] = (uint8_t)(0x77 + i);
            if (pos % 8) /* earlier records' bits in the first byte */
                a[pos / 8] = b[pos / 8] = 0x6d & (uint8_t)((1u << (pos % 8)) - 1u);
            grid_put_bits(a, pos, (uint32_t)v, w < 32 ? w : 32);
            if (w > 32)
                grid_put_bits(a, pos + 32, (uint32_t)(v >> 32), w - 32);
            grid_put_record(b, pos, v, w);
            if (memcmp(a, b, sizeof a) != 0)
                fail_msg("w %d pos %zu: grid_put_record differs from grid_put_bits", w, pos);
            if (pos % 8 || w % 8)
                continue;
            memset(c, 0x5a, sizeof c);
            grid_put_record(c, pos, v, w);
            for (size_t i = 0; i < sizeof c; i++)
                if (c[i] != (i >= pos / 8 && i < (pos + (size_t)w) / 8 ? a[i] : 0x5a))
                    fail_msg("w %d pos %zu: byte %zu is 0x%02x over 0x5a", w, pos, i, c[i]);
        }
}

/* grid_put_records against one grid_put_record per record, for runs of 0..9 records at every
 * start bit: the same bytes in a zeroed stream after earlier records, and byte-aligned runs
 * stored over any content without touching the bytes around them. */
static void test_put_records(void **state)
{
    (void)state;
    static const int widths[] = {8, 16, 18, 20, 21, 24, 32, 35, 40, 48, 56};
    for (size_t k = 0; k < sizeof widths / sizeof widths[0]; k++)
        for (size_t pos = 0; pos < 16; pos++)
            for (int n = 0; n <= 9; n++) {
                const int w = widths[k];
                uint64_t v[9];
                for (int i = 0; i < n; i++)
                    v[i] = (0x9b3c5a6d7e1f2a3bull * (uint64_t)(i + 1)) & ((1ull << w) - 1u);
                uint8_t a[80] = {0}, b[80] = {0}, c[80];
                for (size_t i = 0; i < pos / 8; i++) /* earlier records */
                    a[i] = b[i] = (uint8_t)(0x77 + i);
                if (pos % 8) /* earlier records' bits in the first byte */
                    a[pos / 8] = b[pos / 8] = 0x6d & (uint8_t)((1u << (pos % 8)) - 1u);
                for (int i = 0; i < n; i++)
                    grid_put_record(a, pos + (size_t)i * (size_t)w, v[i], w);
                grid_put_records(b, pos, v, n, w);
                if (memcmp(a, b, sizeof a) != 0)
                    fail_msg("w %d pos %zu n %d: grid_put_records differs from grid_put_record",
                             w, pos, n);
                if (pos % 8 || w % 8)
                    continue;
                memset(c, 0x5a, sizeof c);
                grid_put_records(c, pos, v, n, w);
                const size_t end = (pos + (size_t)n * (size_t)w) / 8;
                for (size_t i = 0; i < sizeof c; i++)
                    if (c[i] != (i >= pos / 8 && i < end ? a[i] : 0x5a))
                        fail_msg("w %d pos %zu n %d: byte %zu is 0x%02x over 0x5a", w, pos, n, i,
                                 c[i]);
            }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack8),
        cmocka_unit_test(test_put_record),
        cmocka_unit_test(test_put_records),
        cmocka_unit_test(test_table_sweep),
        cmocka_unit_test(test_e2m1_midpoints),
        cmocka_unit_test(test_fp16_scales),
        cmocka_unit_test(test_table_exhaustive),
        cmocka_unit_test(test_int_fast_equals_reference),
        cmocka_unit_test(test_fp_mx_fast_equal_reference),
        cmocka_unit_test(test_fast_work_items),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
