/* Packed linears and models: the packed dequantization equals the format's reconstruction
 * (fake quant) bit for bit, SIMD kernels agree with the scalar references, the prefill tile
 * path agrees with the decode dots, unsupported configurations say why, and a packed
 * stories260K gives the fake-quant perplexity (within 1e-3 relative) for every packed format,
 * in prefill and in decode. */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_rng.h"
#include "model/gq_forward.h"
#include "model/gq_synth.h"
#include "packed/gq_packed.h"
#include "packed/packed_internal.h"
#include "text/gq_tokenizer.h"

/* Every packed configuration: name and parameters. */
static const char *const packed_specs[] = {
    "{\"name\": \"int\", \"bits\": 4, \"group_size\": 128, \"zero\": \"asym\"}",
    "{\"name\": \"int\", \"bits\": 4, \"group_size\": 32, \"zero\": \"sym\"}",
    /* groups of 3 blocks: groups that start and end inside a 64-column unit of int4 */
    "{\"name\": \"int\", \"bits\": 4, \"group_size\": 96, \"zero\": \"asym\"}",
    "{\"name\": \"int\", \"bits\": 4, \"granularity\": \"channel\", \"zero\": \"sym_gptq\"}",
    "{\"name\": \"int\", \"bits\": 4, \"granularity\": \"tensor\", \"zero\": \"asym\"}",
    "{\"name\": \"int\", \"bits\": 8, \"group_size\": 64, \"zero\": \"asym\"}",
    "{\"name\": \"int\", \"bits\": 8, \"granularity\": \"channel\", \"zero\": \"sym\"}",
    "{\"name\": \"int\", \"bits\": 8, \"group_size\": 128, \"zero\": \"sym_gptq\"}",
    "{\"name\": \"q4_0\"}", "{\"name\": \"q4_1\"}", "{\"name\": \"q8_0\"}",
    "{\"name\": \"mxfp4_ggml\"}", "{\"name\": \"q4_K\"}", "{\"name\": \"q6_K\"}",
};
#define N_SPECS (sizeof packed_specs / sizeof packed_specs[0])

static void make_quantizer(const char *spec, gq_quantizer *q)
{
    gq_error err = {{0}};
    json_t *j = json_loads(spec, 0, NULL);
    assert_non_null(j);
    if (gq_quantizer_from_json(j, "$", q, &err) != 0)
        fail_msg("%s: %s", spec, err.msg);
    json_decref(j);
}

static float *random_matrix(int rows, int cols, uint64_t seed)
{
    gq_rng r;
    gq_rng_seed(&r, seed);
    float *w = malloc((size_t)rows * cols * sizeof(float));
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        w[i] = (float)gq_rng_normal(&r) * (i % 97 == 0 ? 6.0f : 1.0f);
    return w;
}

/* |a - b| <= tol * scale for every element, scale = sum |w||x| of the row. */
static void assert_close_rows(const float *a, const float *b, const float *scale, int n,
                              double tol, const char *what)
{
    for (int i = 0; i < n; i++)
        if (fabs((double)a[i] - b[i]) > tol * scale[i])
            fail_msg("%s: element %d: %.9g vs %.9g (scale %.3g)", what, i, a[i], b[i], scale[i]);
}

/* One matrix shape through every packed configuration. */
static void check_shape(int rows, int cols, uint64_t seed)
{
    gq_error err = {{0}};
    float *W = random_matrix(rows, cols, seed);
    const int n = 9; /* > GQ_PACKED_MATVEC_MAX_N: the tile + sgemm path */
    float *X = random_matrix(n, cols, seed + 1);
    float *deq = malloc((size_t)rows * cols * sizeof(float));
    float *out = malloc((size_t)rows * cols * sizeof(float));
    float *y_ref = malloc((size_t)rows * sizeof(float)), *y1 = malloc((size_t)rows * sizeof(float));
    float *Y = malloc((size_t)n * rows * sizeof(float)), *scale = malloc((size_t)rows * sizeof(float));
    for (size_t s = 0; s < N_SPECS; s++) {
        gq_quantizer q;
        make_quantizer(packed_specs[s], &q);
        gq_packed_linear *P = gq_packed_linear_new(&q, W, rows, cols, deq, &err);
        if (!P)
            fail_msg("%s: %s", packed_specs[s], err.msg);
        /* storage: never more than the format's own, exactly it for the ggml formats */
        size_t fmt_bytes = gq_quantizer_bytes(&q, rows, cols);
        if (strcmp(q.fmt->name, "int") != 0)
            assert_int_equal(gq_packed_linear_bytes(P), fmt_bytes);
        else
            assert_true(gq_packed_linear_bytes(P) >= (size_t)rows * cols / 2);
        /* dequantization: reference and SIMD both bit-identical to the fake-quant weights */
        for (int ref = 0; ref < 2; ref++) {
            gq_packed_linear_dequantize(P, out, ref);
            if (memcmp(out, deq, (size_t)rows * cols * sizeof(float)) != 0) {
                size_t i = 0;
                while (out[i] == deq[i] || (out[i] != out[i] && deq[i] != deq[i]))
                    i++;
                fail_msg("%s %dx%d (%s): dequantized [%zu] = %.9g, fake quant %.9g",
                         packed_specs[s], rows, cols, ref ? "ref" : "simd", i, out[i], deq[i]);
            }
        }
        /* products: fused dots and tiles against the scalar reference */
        for (int t = 0; t < n; t++) {
            const float *x = X + (size_t)t * cols;
            for (int r = 0; r < rows; r++) {
                double sc = 0;
                for (int j = 0; j < cols; j++)
                    sc += fabs((double)deq[(size_t)r * cols + j] * x[j]);
                scale[r] = (float)(sc + 1e-30);
            }
            gq_packed_linear_matvec_ref(P, y_ref, x);
            gq_packed_linear_apply(P, y1, x, 1);
            assert_close_rows(y1, y_ref, scale, rows, 2e-6, "fused dot vs reference");
            /* int8 activations: the kernel against the reference on the same quantized x */
            gq_packed_linear_set_act_q8(P, true);
            if (gq_packed_linear_act_q8(P)) {
                gq_packed_linear_matvec_ref(P, y_ref, x);
                gq_packed_linear_apply(P, y1, x, 1);
                char what[256];
                snprintf(what, sizeof what, "%s %dx%d: int8-activation dots vs reference",
                         packed_specs[s], rows, cols);
                assert_close_rows(y1, y_ref, scale, rows, 2e-6, what);
            }
            gq_packed_linear_set_act_q8(P, false);
            gq_packed_linear_matvec_ref(P, y_ref, x);
            if (t == 0)
                gq_packed_linear_apply(P, Y, X, n);
            assert_close_rows(Y + (size_t)t * rows, y_ref, scale, rows, 2e-6,
                              "prefill tiles vs reference");
        }
        gq_packed_linear_free(P);
        gq_quantizer_free(&q);
    }
    free(W), free(X), free(deq), free(out), free(y_ref), free(y1), free(Y), free(scale);
}

/* MXFP4 blocks whose E8M0 exponent is 0 or 1 (scales below the normal floats) next to normal
 * ones: the int8-activation kernel's general scale path against the reference. */
static void test_mxfp4_tiny_scales(void **state)
{
    (void)state;
    enum { ROWS = 13, COLS = 128 }; /* a whole set of 8 rows and 5 gathered ones */
    gq_error err = {{0}};
    float *W = random_matrix(ROWS, COLS, 21), deq[ROWS * COLS], x[COLS], y[ROWS], yr[ROWS],
          sc[ROWS];
    for (int i = 0; i < ROWS * COLS; i++)
        if ((i / 32) % 3 == 1)
            W[i] *= 1e-38f; /* these blocks' exponents fall to 0 or 1 */
    gq_rng rng;
    gq_rng_seed(&rng, 22);
    for (int j = 0; j < COLS; j++)
        x[j] = (float)gq_rng_normal(&rng);
    gq_quantizer q;
    make_quantizer("{\"name\": \"mxfp4_ggml\"}", &q);
    gq_packed_linear *P = gq_packed_linear_new(&q, W, ROWS, COLS, deq, &err);
    assert_non_null(P);
    gq_packed_linear_set_act_q8(P, true);
    gq_packed_linear_matvec_ref(P, yr, x);
    gq_packed_linear_apply(P, y, x, 1);
    int tiny = 0;
    for (int r = 0; r < ROWS; r++) {
        double s = 0;
        for (int j = 0; j < COLS; j++) {
            s += fabs((double)deq[r * COLS + j] * x[j]);
            tiny += deq[r * COLS + j] != 0 && fabsf(deq[r * COLS + j]) < 1e-37f;
        }
        sc[r] = (float)(s + 1e-30);
    }
    assert_true(tiny > 0); /* the subnormal scales really occur */
    assert_close_rows(y, yr, sc, ROWS, 2e-6, "mxfp4 with subnormal block scales");
    gq_packed_linear_free(P);
    gq_quantizer_free(&q);
    free(W);
}

static void test_linear_shapes(void **state)
{
    (void)state;
    check_shape(37, 512, 11);  /* whole blocks, several groups */
    check_shape(70, 300, 12);  /* padded last block (and K-quant super-block) */
    check_shape(5, 64, 13);    /* one short row */
    check_shape(300, 96, 14);  /* several prefill tiles */
    check_shape(9, 1088, 15);  /* rows too wide for 4-row decode passes */
}

/* The decode activations: the SIMD preparation equals the scalar reference bit for bit
 * (values on exact halves, all-zero and single-spike blocks included), and the lane and block
 * sums are those of the quantized values. */
static void test_prepare_act(void **state)
{
    (void)state;
    enum { N = 32 * 12 };
    float x[N];
    gq_rng r;
    gq_rng_seed(&r, 5);
    for (int i = 0; i < N; i++)
        x[i] = (float)gq_rng_normal(&r) * (i < 64 ? 1.0f : 3.0f);
    for (int i = 64; i < 96; i++) /* amax 127: every value lands on an exact x.5 */
        x[i] = i == 64 ? 127.0f : (float)(i - 80) + 0.5f;
    for (int i = 96; i < 128; i++)
        x[i] = 0.0f;
    for (int i = 128; i < 160; i++)
        x[i] = i == 140 ? -1e-3f : 0.0f;
    int8_t q[N], qr[N];
    float d[N / 32], dr[N / 32], s[N / 32], sr[N / 32], l[N / 4], lr[N / 4];
    pk_prepare_act(x, N, q, d, s, l);
    pk_prepare_act_ref(x, N, qr, dr, sr, lr);
    assert_memory_equal(q, qr, sizeof q);
    assert_memory_equal(d, dr, sizeof d);
    assert_memory_equal(s, sr, sizeof s);
    assert_memory_equal(l, lr, sizeof l);
    assert_int_equal(q[64], 127);
    assert_int_equal(q[65], -14); /* -14.5 rounds half to even */
    for (int b = 0; b < N / 32; b++) {
        int sum = 0;
        for (int k = 0; k < 32; k++)
            sum += q[32 * b + k];
        assert_true(s[b] == d[b] * (float)sum);
    }
}

/* The per-256 activations (Q8_K): the SIMD preparation equals the scalar reference bit for
 * bit (a super-block on exact halves, a random one, an all-zero one), and bsk holds the sums
 * of the codes per 32. */
static void test_prepare_act_k(void **state)
{
    (void)state;
    enum { N = 256 * 3 };
    float x[N];
    gq_rng r;
    gq_rng_seed(&r, 6);
    for (int i = 0; i < N; i++)
        x[i] = i < 512 ? (float)gq_rng_normal(&r) * (i < 256 ? 1.0f : 3.0f) : 0.0f;
    for (int i = 64; i < 96; i++) /* amax 127: these values land on exact x.5 */
        x[i] = i == 64 ? 127.0f : (float)(i - 80) + 0.5f;
    int8_t q[N], qr[N];
    float d[N / 256], dr[N / 256];
    int16_t bs[N / 32], bsr[N / 32];
    pk_prepare_act_k(x, N, q, d, bs);
    pk_prepare_act_k_ref(x, N, qr, dr, bsr);
    assert_memory_equal(q, qr, sizeof q);
    assert_memory_equal(d, dr, sizeof d);
    assert_memory_equal(bs, bsr, sizeof bs);
    assert_int_equal(q[65], -14); /* -14.5 rounds half to even */
    assert_true(d[2] == 0.0f);
    for (int b = 0; b < N / 32; b++) {
        int sum = 0;
        for (int k = 0; k < 32; k++)
            sum += q[32 * b + k];
        assert_int_equal(bs[b], sum);
    }
}

static void test_unsupported(void **state)
{
    (void)state;
    static const struct { const char *spec, *why; } cases[] = {
        {"{\"name\": \"int\", \"bits\": 3}", "4 and 8 bits"},
        {"{\"name\": \"int\", \"bits\": 4, \"group_size\": 48}", "multiple of 32"},
        {"{\"name\": \"int\", \"bits\": 4, \"scale_dtype\": \"fp32\"}", "fp16 scales"},
        {"{\"name\": \"fp\"}", "no packed kernel"},
        {"{\"name\": \"q5_K\"}", "no packed kernel"},
    };
    float W[4 * 128] = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gq_quantizer q;
        gq_error err = {{0}};
        char why[256] = "";
        make_quantizer(cases[i].spec, &q);
        assert_false(gq_packed_supported(&q, 4, 128, why, sizeof why));
        if (!strstr(why, cases[i].why))
            fail_msg("%s: reason '%s' lacks '%s'", cases[i].spec, why, cases[i].why);
        assert_null(gq_packed_linear_new(&q, W, 4, 128, NULL, &err));
        assert_non_null(strstr(err.msg, cases[i].why));
        gq_quantizer_free(&q);
    }
    /* a group of 48 is fine when it covers the whole row */
    gq_quantizer q;
    char why[256];
    make_quantizer("{\"name\": \"int\", \"bits\": 4, \"group_size\": 48}", &q);
    assert_true(gq_packed_supported(&q, 4, 40, why, sizeof why));
    gq_quantizer_free(&q);
}

/* Mean NLL (nats) of B windows of T tokens: every position after the first scored. */
static double mean_nll(const gq_model *m, const int *tok, int B, int T)
{
    gq_error err = {{0}};
    int V = m->cfg.vocab_size;
    float *logits = malloc((size_t)B * T * V * sizeof(float));
    gq_forward_ws *ws = gq_forward_ws_new(&m->cfg, B * T, &err);
    assert_non_null(ws);
    assert_int_equal(gq_forward_prefill(m, tok, B, T, ws, logits, &err), 0);
    double nll = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t + 1 < T; t++) {
            const float *l = logits + ((size_t)b * T + t) * V;
            double mx = l[0], s = 0;
            for (int v = 1; v < V; v++)
                mx = l[v] > mx ? l[v] : mx;
            for (int v = 0; v < V; v++)
                s += exp(l[v] - mx);
            nll += mx + log(s) - l[tok[b * T + t + 1]];
        }
    gq_forward_ws_free(ws);
    free(logits);
    return nll / ((double)B * (T - 1));
}

/* Mean NLL of one window's logits (T, V): positions 0..T-2 predict tokens 1..T-1. */
static double window_nll(const float *logits, const int *tok, int T, int V)
{
    double nll = 0;
    for (int t = 0; t + 1 < T; t++) {
        const float *l = logits + (size_t)t * V;
        double mx = l[0], s = 0;
        for (int v = 1; v < V; v++)
            mx = l[v] > mx ? l[v] : mx;
        for (int v = 0; v < V; v++)
            s += exp(l[v] - mx);
        nll += mx + log(s) - l[tok[t + 1]];
    }
    return nll / (T - 1);
}

static void test_stories260K_perplexity(void **state)
{
    (void)state;
    char mpath[1024], tpath[1024], xpath[1024];
    test_stories_files_or_skip(mpath, tpath, xpath, sizeof mpath);
    gq_error err = {{0}};
    gq_model m;
    gq_tokenizer *tk;
    assert_int_equal(gq_model_load(mpath, &m, &err), 0);
    assert_int_equal(gq_tokenizer_load(tpath, m.cfg.vocab_size, &tk, &err), 0);
    size_t len;
    char *text = test_read_file(xpath, &len);
    int *tok;
    size_t nt;
    const int B = 4, T = 128;
    assert_int_equal(gq_tokenizer_encode(tk, text, len < 40000 ? len : 40000, true, false, &tok,
                                         &nt, &err), 0);
    assert_true(nt >= (size_t)B * T);
    for (size_t s = 0; s < N_SPECS; s++) {
        gq_quantizer q;
        make_quantizer(packed_specs[s], &q);
        gq_model fake;
        gq_packed_model pm;
        assert_int_equal(gq_model_clone(&m, &fake, &err), 0);
        if (gq_packed_model_build(&m, &q, NULL, false, &fake, &pm, &err) != 0)
            fail_msg("%s: %s", packed_specs[s], err.msg);
        double nf = mean_nll(&fake, tok, B, T), np = mean_nll(&pm.model, tok, B, T);
        double pf = exp(nf), pp = exp(np), rel = fabs(pp / pf - 1);
        printf("# %-70s fake-quant ppl %.6f packed %.6f rel %.2e\n", packed_specs[s], pf, pp, rel);
        assert_true(rel < 1e-3);
        assert_true(nf > 0.1 && nf < 10); /* a working model, not a degenerate one */
        /* decode path (n = 1 fused dots) against the fake-quant decode */
        float *lf = malloc((size_t)16 * m.cfg.vocab_size * sizeof(float));
        float *lp = malloc((size_t)16 * m.cfg.vocab_size * sizeof(float));
        assert_int_equal(gq_forward_ref(&fake, tok, 16, lf, &err), 0);
        assert_int_equal(gq_forward_ref(&pm.model, tok, 16, lp, &err), 0);
        for (size_t i = 0; i < (size_t)16 * m.cfg.vocab_size; i++)
            if (fabsf(lf[i] - lp[i]) > 1e-3f * (1.0f + fabsf(lf[i])))
                fail_msg("%s: decode logit %zu: %g vs %g", packed_specs[s], i, lp[i], lf[i]);
        /* decode on int8 activations: the perplexity moves by the activation rounding only;
         * the difference is printed and bounded */
        gq_packed_model_set_act_q8(&pm, true);
        if (gq_packed_linear_act_q8(pm.lin[0])) {
            const int Td = 96;
            float *ld = malloc((size_t)Td * m.cfg.vocab_size * sizeof(float));
            double n_f = 0, n_q = 0;
            assert_int_equal(gq_forward_ref(&fake, tok, Td, ld, &err), 0);
            n_f = window_nll(ld, tok, Td, m.cfg.vocab_size);
            assert_int_equal(gq_forward_ref(&pm.model, tok, Td, ld, &err), 0);
            n_q = window_nll(ld, tok, Td, m.cfg.vocab_size);
            double d = exp(n_q) / exp(n_f) - 1;
            printf("#   decode, %d tokens: fake-quant ppl %.5f, int8 activations %.5f (%+.3f%%)\n",
                   Td, exp(n_f), exp(n_q), 100 * d);
            assert_true(fabs(d) < 0.01);
            free(ld);
        }
        free(lf), free(lp);
        gq_packed_model_free(&pm);
        gq_model_free(&fake);
        gq_quantizer_free(&q);
    }
    free(tok);
    free(text);
    gq_tokenizer_free(tk);
    gq_model_free(&m);
}

/* The fp32 classifier can be packed too; a tied one cannot be fake-quantized alone. */
static void test_classifier(void **state)
{
    (void)state;
    gq_error err = {{0}};
    gq_model m, fake;
    assert_int_equal(gq_model_synth("tiny", 7, &m, &err), 0);
    assert_int_equal(gq_model_clone(&m, &fake, &err), 0);
    gq_quantizer q;
    make_quantizer("{\"name\": \"q8_0\"}", &q);
    gq_packed_model pm;
    assert_int_equal(gq_packed_model_build(&m, &q, NULL, true, &fake, &pm, &err), 0);
    assert_non_null(pm.cls);
    int tok[32];
    for (int i = 0; i < 32; i++)
        tok[i] = (i * 37 + 1) % m.cfg.vocab_size;
    double nf = mean_nll(&fake, tok, 1, 32), np = mean_nll(&pm.model, tok, 1, 32);
    assert_true(fabs(np / nf - 1) < 1e-4);
    size_t lin = pm.packed_bytes;
    assert_true(pm.decode_bytes > lin && pm.decode_bytes < gq_packed_fp32_decode_bytes(&m.cfg));
    gq_packed_model_free(&pm);
    gq_quantizer_free(&q);
    gq_model_free(&fake);
    gq_model_free(&m);
}

/* The fp32 BLAS view computes what the fp32 model computes. */
static void test_fp32_view(void **state)
{
    (void)state;
    gq_error err = {{0}};
    gq_model m;
    gq_packed_model pm;
    assert_int_equal(gq_model_synth("tiny", 5, &m, &err), 0);
    assert_int_equal(gq_packed_model_fp32(&m, &pm, &err), 0);
    int tok[24], V = m.cfg.vocab_size;
    for (int i = 0; i < 24; i++)
        tok[i] = (i * 53 + 2) % V;
    double a = mean_nll(&m, tok, 2, 12), b = mean_nll(&pm.model, tok, 2, 12);
    assert_true(fabs(a - b) < 1e-5 * fabs(a));
    float *la = malloc((size_t)24 * V * sizeof(float)), *lb = malloc((size_t)24 * V * sizeof(float));
    assert_int_equal(gq_forward_ref(&m, tok, 24, la, &err), 0);
    assert_int_equal(gq_forward_ref(&pm.model, tok, 24, lb, &err), 0);
    for (int i = 0; i < 24 * V; i++)
        assert_true(fabsf(la[i] - lb[i]) <= 1e-4f * (1.0f + fabsf(la[i])));
    assert_int_equal(pm.decode_bytes, gq_packed_fp32_decode_bytes(&m.cfg));
    free(la), free(lb);
    gq_packed_model_free(&pm);
    gq_model_free(&m);
}

/* The bench subcommands print their tables and reject bad options with one line. */
static void test_cli(void **state)
{
    (void)state;
    char out[8192], err[2048];
    int rc = test_run_cli("bench decode --preset tiny --tokens 4 --stream-mib 4 --format q4_K",
                          out, sizeof out, err, sizeof err);
    if (rc != 0)
        fail_msg("bench decode: %d: %s", rc, err);
    assert_non_null(strstr(out, "fp32"));
    assert_non_null(strstr(out, "q8_K")); /* q4_K's activation protocol is named */
    assert_non_null(strstr(out, "STREAM triad"));
    assert_non_null(strstr(out, "read bandwidth"));
    /* the ceiling sampled before each of 2 rows in 3 rounds and once after: 7 samples, and
     * every row also compared with the samples beside its fastest round */
    assert_non_null(strstr(out, "best of 7 samples"));
    assert_non_null(strstr(out, "% beside"));
    rc = test_run_cli("bench prefill --preset tiny --tokens 16 --reps 1 --format "
                      "'{\"name\": \"int\", \"bits\": 3}'", out, sizeof out, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "4 and 8 bits")); /* the row says why it is empty */
    rc = test_run_cli("bench decode --preset tiny --format nosuch", out, sizeof out, err,
                      sizeof err);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err, "nosuch"));
    rc = test_run_cli("bench prefill --classifier maybe", out, sizeof out, err, sizeof err);
    assert_int_equal(rc, 2);
}

static void test_measure(void **state)
{
    (void)state;
    gq_error err = {{0}};
    gq_model m;
    assert_int_equal(gq_model_synth("tiny", 3, &m, &err), 0);
    gq_packed_throughput t;
    gq_packed_bench_opts o = gq_packed_bench_defaults();
    o.decode_tokens = 4;
    o.prefill_tokens = 16;
    o.reps = 1;
    assert_int_equal(gq_packed_measure(&m, NULL, NULL, &o, &t, &err), 0); /* fp32 */
    assert_true(t.packed && t.decode_tok_s > 0 && t.prefill_tok_s > 0 && t.packed_bytes == 0);
    gq_quantizer q;
    make_quantizer("{\"name\": \"q4_K\"}", &q);
    assert_int_equal(gq_packed_measure(&m, &q, NULL, &o, &t, &err), 0);
    assert_true(t.packed && t.decode_tok_s > 0 && t.prefill_tok_s > 0);
    size_t want = 0; /* Q4_K: 144 bytes per 256-column super-block of every row */
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        int rows, cols;
        gq_linear_shape(&m.cfg, (gq_linear_kind)k, &rows, &cols);
        want += (size_t)m.cfg.n_layers * rows * ((cols + 255) / 256) * 144;
    }
    assert_int_equal(t.packed_bytes, want);
    gq_quantizer_free(&q);
    make_quantizer("{\"name\": \"fp\"}", &q);
    assert_int_equal(gq_packed_measure(&m, &q, NULL, &o, &t, &err), 0);
    assert_false(t.packed);
    assert_non_null(strstr(t.reason, "no packed kernel"));
    assert_true(t.decode_tok_s == 0 && t.prefill_tok_s == 0);
    gq_quantizer_free(&q);
    double triad = 0, read = 0;
    gq_bandwidth_probe *probe = gq_bandwidth_probe_new(8, &err);
    assert_non_null(probe);
    gq_bandwidth_probe_run(probe, 2, &triad, &read);
    assert_true(triad > 0.1 && read > 0.1);
    gq_bandwidth_probe_free(probe);
    gq_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_shapes),
        cmocka_unit_test(test_prepare_act),
        cmocka_unit_test(test_prepare_act_k),
        cmocka_unit_test(test_mxfp4_tiny_scales),
        cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_stories260K_perplexity),
        cmocka_unit_test(test_classifier),
        cmocka_unit_test(test_fp32_view),
        cmocka_unit_test(test_measure),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
