/* Activation and KV-cache quantizers (src/act):
 *   - each granularity of dynamic scales against a scalar reference (INT8 sym per token) and
 *     against the format's own quantize of the same matrix (per tensor, per group, MX blocks);
 *   - static scales against the scalar reference on set ranges, and the calibration rules
 *     (max = the observed min/max of block 0's inputs, percentile and MSE inside it); chunked
 *     calibration gives the same ranges for any chunking; the histogram percentile and MSE
 *     against the exact ones (half a bin; 1% of the best error);
 *   - the activation file: a reload gives the same ranges and the same logits bit for bit;
 *   - batched prefill against decode with KV-cache and activation quantizers;
 *   - the same bits at 1, 2 and 3 threads (calibration and evaluation);
 *   - validation messages naming the JSON path;
 *   - W8A8 per token on stories260K within 1% of the weight-only W8 perplexity. */
#include "test_quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act/gq_act.h"
#include "core/gq_half.h"
#include "core/gq_log.h"
#include "core/gq_rng.h"
#include "core/gq_threads.h"
#include "model/gq_forward.h"
#include "model/gq_synth.h"

static void parse_ok(const char *json, bool kv, gq_act_cfg *a)
{
    gq_error err = {{0}};
    json_t *j = json_loads(json, 0, NULL);
    assert_non_null(j);
    if (gq_act_cfg_parse(j, "$.activations", kv, a, &err))
        fail_msg("%s: %s", json, err.msg);
    json_decref(j);
}

static float *random_rows(int n, int width, uint64_t seed)
{
    gq_rng r;
    gq_rng_seed(&r, seed);
    float *x = malloc((size_t)n * width * sizeof(float));
    for (int i = 0; i < n * width; i++) /* heavy-ish tails: a few large channels */
        x[i] = (float)(gq_rng_normal(&r) * ((i % width) % 13 == 0 ? 8.0 : 1.0));
    return x;
}

/* INT8 sym with the range amax: s = fp16(amax / 127), clamp(rint(x / s), -127, 127) * s (the
 * + 0 turns a rounded -0 into +0, as the format's zero point does). */
static float int8_sym_q(float x, float amax)
{
    float s = gq_round_fp16(amax / 127.0f), q = rintf(x / s) + 0.0f;
    return s * (q > 127 ? 127 : q < -127 ? -127 : q);
}

/* The same with the run's own amax. */
static void int8_sym_ref(const float *x, float *y, int n)
{
    float amax = 0;
    for (int i = 0; i < n; i++)
        amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    for (int i = 0; i < n; i++)
        y[i] = int8_sym_q(x[i], amax);
}

static void test_dynamic_token_vs_scalar(void **state)
{
    (void)state;
    gq_act_cfg a;
    parse_ok("{\"format\": \"int\", \"bits\": 8, \"zero\": \"sym\", \"granularity\": \"token\"}",
             false, &a);
    int n = 9, w = 96;
    float *x = random_rows(n, w, 1), *y = malloc(sizeof(float) * n * w), *r = malloc(sizeof(float) * w);
    gq_act_quant_dynamic(&a.def, x, y, n, w, 3, 0);
    for (int i = 0; i < n; i++) {
        int8_sym_ref(x + i * w, r, w);
        assert_memory_equal(y + i * w, r, sizeof(float) * w);
    }
    free(x);
    free(y);
    free(r);
    gq_act_cfg_free(&a);
}

/* Dynamic activations of one window (T, width) against the format's quantize of that matrix
 * with the matching granularity (act spec JSON, format JSON). */
static void check_against_format(const char *act, const char *fmt, int T, int w)
{
    gq_act_cfg a;
    parse_ok(act, false, &a);
    gq_quantizer q;
    gq_error err = {{0}};
    json_t *fj = json_loads(fmt, 0, NULL);
    assert_int_equal(gq_quantizer_from_json(fj, NULL, &q, &err), 0);
    json_decref(fj);
    int B = 2;
    float *x = random_rows(B * T, w, 7), *y = malloc(sizeof(float) * B * T * w);
    float *ref = malloc(sizeof(float) * T * w);
    gq_act_quant_dynamic(&a.def, x, y, B * T, w, T, 0);
    for (int b = 0; b < B; b++) {
        assert_int_equal(gq_quantizer_run(&q, x + (size_t)b * T * w, T, w, NULL, NULL, ref, &err),
                         0);
        assert_memory_equal(y + (size_t)b * T * w, ref, sizeof(float) * T * w);
    }
    free(x);
    free(y);
    free(ref);
    gq_quantizer_free(&q);
    gq_act_cfg_free(&a);
}

static void test_dynamic_granularities_vs_format(void **state)
{
    (void)state;
    check_against_format("{\"format\": \"int\", \"bits\": 8, \"zero\": \"sym\", "
                         "\"granularity\": \"tensor\"}",
                         "{\"name\": \"int\", \"bits\": 8, \"zero\": \"sym\", "
                         "\"granularity\": \"tensor\"}", 5, 64);
    check_against_format("{\"format\": \"int\", \"bits\": 4, \"zero\": \"asym\", "
                         "\"granularity\": \"group\", \"group_size\": 16}",
                         "{\"name\": \"int\", \"bits\": 4, \"zero\": \"asym\", "
                         "\"granularity\": \"group\", \"group_size\": 16}", 4, 64);
    check_against_format("{\"format\": \"fp\", \"element\": \"e4m3\", \"granularity\": \"token\"}",
                         "{\"name\": \"fp\", \"element\": \"e4m3\", \"granularity\": \"channel\"}",
                         3, 64);
    check_against_format("{\"format\": \"mx\", \"element\": \"fp4_e2m1\", \"granularity\": "
                         "\"group\", \"group_size\": 32}",
                         "{\"name\": \"mx\", \"element\": \"fp4_e2m1\"}", 3, 64);
}

static gq_model tiny_model(void)
{
    gq_model m;
    gq_error err = {{0}};
    assert_int_equal(gq_model_synth("tiny", 3, &m, &err), 0);
    return m;
}

/* Static per-tensor (one range) and per-group (a range per 4 channels) against the scalar
 * INT8 sym reference on the same ranges. */
static void test_static_vs_scalar(void **state)
{
    (void)state;
    gq_model m = tiny_model();
    gq_act_cfg a;
    parse_ok("{\"format\": \"int\", \"bits\": 8, \"zero\": \"sym\", \"granularity\": \"tensor\", "
             "\"scales\": \"static\", \"overrides\": [{\"pattern\": \"layers.*.attn.o_proj\", "
             "\"format\": \"int\", \"bits\": 8, \"zero\": \"sym\", \"granularity\": \"group\", "
             "\"group_size\": 4, \"scales\": \"static\"}]}", false, &a);
    gq_act_model am;
    gq_error err = {{0}};
    assert_int_equal(gq_act_model_init(&am, &m.cfg, &a, NULL, &err), 0);
    assert_true(gq_act_model_needs_calibration(&am));
    int w = m.cfg.dim, n = 5;
    assert_int_equal(gq_act_n_ranges(&am, 0, GQ_LIN_Q), 1);
    assert_int_equal(gq_act_n_ranges(&am, 0, GQ_LIN_O), w / 4);
    float *x = random_rows(n, w, 3), *y = malloc(sizeof(float) * n * w), *r = malloc(sizeof(float) * w);
    const float tensor_range[2] = {-2.5f, 1.75f};
    assert_int_equal(gq_act_set_ranges(&am, 0, GQ_LIN_Q, tensor_range, &err), 0);
    gq_act_quant_static(am.in[GQ_LIN_Q], am.states[GQ_LIN_Q], x, y, n, w);
    for (int i = 0; i < n * w; i++) { /* the range's amax 2.5 sets the scale */
        float ref = int8_sym_q(x[i], 2.5f);
        assert_memory_equal(&y[i], &ref, sizeof(float));
    }
    float *gr = malloc(sizeof(float) * 2 * (w / 4));
    for (int g = 0; g < w / 4; g++) {
        gr[2 * g] = -0.5f * (float)(g + 1);
        gr[2 * g + 1] = 0.25f * (float)(g + 1);
    }
    assert_int_equal(gq_act_set_ranges(&am, 0, GQ_LIN_O, gr, &err), 0);
    gq_act_quant_static(am.in[GQ_LIN_O], am.states[GQ_LIN_O], x, y, n, w);
    for (int i = 0; i < n * w; i++) {
        int g = (i % w) / 4;
        float ref = int8_sym_q(x[i], -gr[2 * g]);
        assert_memory_equal(&y[i], &ref, sizeof(float));
    }
    free(gr);
    free(x);
    free(y);
    free(r);
    gq_act_model_free(&am);
    gq_act_cfg_free(&a);
    gq_model_free(&m);
}

/* n token ids spread over the vocabulary (a multiplicative hash of the index and seed). */
static int *random_tokens(int n, int vocab, uint64_t seed)
{
    int *t = malloc((size_t)n * sizeof *t);
    for (int i = 0; i < n; i++)
        t[i] = (int)((((uint64_t)i + 1) * 0x9E3779B97F4A7C15ull ^ seed * 0xBF58476D1CE4E5B9ull) >>
                     40) % vocab;
    return t;
}

/* Calibrates `spec` on 3 windows of 16 random tokens of the tiny model. */
static void calibrate(const gq_model *m, const char *spec, gq_act_cfg *a, gq_act_model *am)
{
    gq_error err = {{0}};
    parse_ok(spec, false, a);
    assert_int_equal(gq_act_cfg_check(a, &m->cfg, "$.activations", true, &err), 0);
    assert_int_equal(gq_act_model_init(am, &m->cfg, a, NULL, &err), 0);
    int *tok = random_tokens(48, m->cfg.vocab_size, 11);
    if (gq_act_calibrate(am, m, tok, 3, 16, &err))
        fail_msg("calibrate: %s", err.msg);
    free(tok);
}

static void test_calibration_rules(void **state)
{
    (void)state;
    gq_model m = tiny_model();
    /* block 0's q_proj input, observed directly */
    int *tok = random_tokens(48, m.cfg.vocab_size, 11);
    gq_error err = {{0}};
    gq_forward_ws *ws = gq_forward_ws_new(&m.cfg, 48, &err);
    float *x = malloc(sizeof(float) * 48 * m.cfg.dim), *ain = malloc(sizeof(float) * 48 * m.cfg.dim);
    gq_embed(&m, tok, 48, x);
    gq_block_trace t = {.attn_in = ain};
    gq_block_forward(&m, 0, x, 3, 16, ws, &t);
    float mn = ain[0], mx = ain[0];
    for (int i = 0; i < 48 * m.cfg.dim; i++) {
        mn = ain[i] < mn ? ain[i] : mn;
        mx = ain[i] > mx ? ain[i] : mx;
    }
    /* INT8 MSE keeps the whole range here (clipping costs more than rounding); INT4 shrinks */
    const char *rules[] = {"max", "percentile", "mse", "mse"};
    for (int r = 0; r < 4; r++) {
        char spec[256];
        snprintf(spec, sizeof spec, "{\"format\": \"int\", \"bits\": %d, \"zero\": \"asym\", "
                 "\"granularity\": \"tensor\", \"scales\": \"static\", \"calibration\": \"%s\", "
                 "\"percentile\": 99}", r == 3 ? 4 : 8, rules[r]);
        gq_act_cfg a;
        gq_act_model am;
        calibrate(&m, spec, &a, &am);
        const float *rg = am.ranges[GQ_LIN_Q];
        printf("%s: [%g, %g] (min/max [%g, %g])\n", rules[r], rg[0], rg[1], mn, mx);
        if (r == 0)
            assert_true(rg[0] == mn && rg[1] == mx);
        else /* inside the max range (99th percentile: strictly) */
            assert_true(rg[0] >= mn && rg[1] <= mx && rg[0] < 0 && rg[1] > 0 &&
                        (r == 2 || rg[1] - rg[0] < mx - mn));
        if (r == 2) /* MSE never widens the range */
            assert_true(rg[1] - rg[0] <= mx - mn);
        for (int l = 0; l < m.cfg.n_layers; l++) /* every linear got its ranges */
            for (int k = 0; k < GQ_N_LINEAR; k++)
                assert_non_null(am.ranges[l * GQ_N_LINEAR + k]);
        gq_act_model_free(&am);
        gq_act_cfg_free(&a);
    }
    gq_forward_ws_free(ws);
    free(x);
    free(ain);
    free(tok);
    gq_model_free(&m);
}

/* Chunked calibration: chunkings into whole 256-row product tiles (what gq_act_calib_chunk
 * picks; 8 windows of 32 tokens here) give the same ranges bit for bit (the statistics are
 * exact min/max and integer counts, and the chunks' products round as one product does). */
static void test_calibration_chunks_same_bits(void **state)
{
    (void)state;
    gq_model m = tiny_model();
    int *tok = random_tokens(24 * 32, m.cfg.vocab_size, 12);
    const char *rules[] = {"max", "percentile", "mse"};
    for (int r = 0; r < 3; r++) {
        char spec[256];
        snprintf(spec, sizeof spec, "{\"format\": \"int\", \"bits\": 4, \"granularity\": "
                 "\"group\", \"group_size\": 4, \"scales\": \"static\", \"calibration\": "
                 "\"%s\", \"percentile\": 99}", rules[r]);
        gq_act_cfg a;
        parse_ok(spec, false, &a);
        gq_act_model am[3];
        const int chunks[3] = {24, 8, 16};
        gq_error err = {{0}};
        assert_int_equal(gq_act_calib_chunk(24, 32), 24);
        assert_int_equal(gq_act_calib_chunk(1000, 2048), 4);
        assert_int_equal(gq_act_calib_chunk(1000, 100), 64); /* 64 x 100 tokens = 25 whole tiles */
        assert_int_equal(gq_act_calib_chunk(0, 0), 1); /* no windows (dynamic scales only) */
        for (int c = 0; c < 3; c++) {
            assert_int_equal(gq_act_model_init(&am[c], &m.cfg, &a, NULL, &err), 0);
            assert_int_equal(gq_act_calibrate_chunked(&am[c], &m, tok, 24, 32, chunks[c], &err),
                             0);
        }
        for (int l = 0; l < m.cfg.n_layers; l++)
            for (int k = 0; k < GQ_N_LINEAR; k++) {
                size_t i = (size_t)l * GQ_N_LINEAR + k;
                size_t bytes = 2 * sizeof(float) * gq_act_n_ranges(&am[0], l, (gq_linear_kind)k);
                assert_memory_equal(am[0].ranges[i], am[1].ranges[i], bytes);
                assert_memory_equal(am[0].ranges[i], am[2].ranges[i], bytes);
            }
        for (int c = 0; c < 3; c++)
            gq_act_model_free(&am[c]);
        gq_act_cfg_free(&a);
    }
    free(tok);
    gq_model_free(&m);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Sum of squared errors of v quantized by spec s's format fitted on [lo, hi]. */
static double exact_error(const gq_act_spec *s, const float *v, size_t n, float lo, float hi)
{
    _Alignas(16) unsigned char st[256];
    const float r[2] = {lo, hi};
    s->q.fmt->fit_group(s->q.params, r, 2, NULL, st);
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)s->q.fmt->quant_elem(s->q.params, st, 0, v[i]) - v[i];
        e += d * d;
    }
    return e;
}

/* The histogram rules against the exact ones on heavy-tailed values fed in 7 chunks: the
 * percentile within half a bin ((max - min) / 2^17) of the exact order statistic; the MSE
 * range's exact error within 1% of the best candidate's exact error. */
static void test_stats_bounds(void **state)
{
    (void)state;
    const size_t n = 7 * 3000;
    float *v = random_rows(7, 3000, 31), *sorted = malloc(n * sizeof *sorted);
    for (size_t i = 0; i < n; i++) /* heavy tails: a few values 20x the rest */
        v[i] = i % 997 == 0 ? 20 * v[i] : v[i] * v[i] * v[i];
    memcpy(sorted, v, n * sizeof *v);
    qsort(sorted, n, sizeof *sorted, cmp_float);
    float mn = sorted[0], mx = sorted[n - 1];
    gq_act_cfg a;
    parse_ok("{\"format\": \"int\", \"bits\": 4, \"zero\": \"asym\", \"granularity\": "
             "\"tensor\", \"scales\": \"static\", \"calibration\": \"percentile\", "
             "\"percentile\": 99.5}", false, &a);
    gq_error err = {{0}};
    for (int rule = 0; rule < 2; rule++) {
        a.def.calibration = rule ? GQ_ACT_CAL_MSE : GQ_ACT_CAL_PERCENTILE;
        gq_act_stats st;
        assert_int_equal(gq_act_stats_init(&st, &a.def, 1, &err), 0);
        for (int c = 0; c < 7; c++)
            gq_act_stats_minmax(&st, v + (size_t)c * 3000, 3000, 1);
        for (int c = 0; c < 7; c++)
            gq_act_stats_hist(&st, v + (size_t)c * 3000, 3000, 1);
        float rg[2];
        gq_act_stats_ranges(&st, rg);
        if (rule == 0) {
            float lo = sorted[(size_t)llround(0.005 * (n - 1))];
            float hi = sorted[(size_t)llround(0.995 * (n - 1))];
            double half_bin = ((double)mx - mn) / (2.0 * GQ_ACT_HIST_BINS);
            printf("percentile 99.5: [%g, %g], exact [%g, %g], half bin %g\n", rg[0], rg[1], lo,
                   hi, half_bin);
            assert_true(fabs(rg[0] - lo) <= half_bin * 1.0001 + 1e-7 * fabs(lo));
            assert_true(fabs(rg[1] - hi) <= half_bin * 1.0001 + 1e-7 * fabs(hi));
        } else {
            double best = INFINITY;
            for (int i = 0; i < 80; i++) {
                float p = 1.0f - (float)i / 100.0f;
                best = fmin(best, exact_error(&a.def, v, n, p * mn, p * mx));
            }
            double got = exact_error(&a.def, v, n, rg[0], rg[1]);
            printf("mse: [%g, %g], exact error %g, best candidate %g\n", rg[0], rg[1], got, best);
            assert_true(got <= 1.01 * best);
        }
        gq_act_stats_free(&st);
    }
    gq_act_cfg_free(&a);
    free(v);
    free(sorted);
}

static float *prefill(const gq_model *m, const int *tok, int B, int T)
{
    gq_error err = {{0}};
    float *lg = malloc(sizeof(float) * B * T * m->cfg.vocab_size);
    gq_forward_ws *ws = gq_forward_ws_new(&m->cfg, B * T, &err);
    assert_non_null(ws);
    assert_int_equal(gq_forward_prefill(m, tok, B, T, ws, lg, &err), 0);
    gq_forward_ws_free(ws);
    return lg;
}

static const char STATIC_MIX[] =
    "{\"format\": \"int\", \"bits\": 8, \"zero\": \"sym\", \"granularity\": \"tensor\", "
    "\"scales\": \"static\", \"calibration\": \"percentile\", \"overrides\": ["
    "{\"pattern\": \"layers.*.mlp.down_proj\", \"format\": \"int\", \"bits\": 4, "
    "\"granularity\": \"group\", \"group_size\": 4}, "
    "{\"pattern\": \"layers.1.attn.o_proj\", \"keep_fp\": true}]}";

static void test_file_reload_same_bits(void **state)
{
    (void)state;
    gq_model m = tiny_model();
    gq_act_cfg a, kv;
    gq_act_model am;
    calibrate(&m, STATIC_MIX, &a, &am);
    parse_ok("{\"format\": \"int\", \"bits\": 4, \"granularity\": \"group\", \"group_size\": 4}",
             true, &kv);
    gq_error err = {{0}};
    gq_act_model am2;
    assert_int_equal(gq_act_model_init(&am2, &m.cfg, &a, &kv, &err), 0);
    int *tok = random_tokens(48, m.cfg.vocab_size, 11);
    assert_int_equal(gq_act_calibrate(&am2, &m, tok, 3, 16, &err), 0);
    char ckpt[4096];
    char *dir = test_tmpdir_file("act_file", "m.bin", ckpt, sizeof ckpt);
    char file[4200];
    gq_act_file_path(ckpt, file, sizeof file);
    assert_int_equal(gq_model_save(&m, ckpt, &err), 0);
    assert_int_equal(gq_act_save(&am2, &a, &kv, ckpt, file, &err), 0);
    gq_model back;
    assert_int_equal(gq_model_load(ckpt, &back, &err), 0);
    gq_act_cfg a2, kv2;
    gq_act_model am3;
    bool has_a, has_kv;
    if (gq_act_load(file, &back, ckpt, &a2, &has_a, &kv2, &has_kv, &am3, &err))
        fail_msg("load: %s", err.msg);
    assert_true(has_a && has_kv);
    for (int i = 0; i < m.cfg.n_layers * GQ_N_LINEAR; i++) {
        int nr = gq_act_n_ranges(&am2, i / GQ_N_LINEAR, (gq_linear_kind)(i % GQ_N_LINEAR));
        assert_int_equal(nr, gq_act_n_ranges(&am3, i / GQ_N_LINEAR, (gq_linear_kind)(i % GQ_N_LINEAR)));
        if (nr)
            assert_memory_equal(am2.ranges[i], am3.ranges[i], sizeof(float) * 2 * nr);
    }
    m.act = &am2.hook;
    back.act = &am3.hook;
    float *l1 = prefill(&m, tok, 3, 16), *l2 = prefill(&back, tok, 3, 16);
    assert_memory_equal(l1, l2, sizeof(float) * 48 * m.cfg.vocab_size);
    m.act = NULL;
    float *l0 = prefill(&m, tok, 3, 16); /* and the quantizers do change the logits */
    assert_memory_not_equal(l0, l1, sizeof(float) * 48 * m.cfg.vocab_size);
    free(l0);
    free(l1);
    free(l2);
    /* another checkpoint under the file is refused */
    gq_act_model am4;
    gq_act_cfg a4, kv4;
    assert_int_equal(gq_model_save_v1(&m, ckpt, &err), 0);
    assert_int_not_equal(gq_act_load(file, &back, ckpt, &a4, &has_a, &kv4, &has_kv, &am4, &err), 0);
    assert_non_null(strstr(err.msg, "checkpoint_sha256"));
    free(tok);
    free(dir);
    gq_act_model_free(&am);
    gq_act_model_free(&am2);
    gq_act_model_free(&am3);
    gq_act_cfg_free(&a);
    gq_act_cfg_free(&kv);
    gq_act_cfg_free(&a2);
    gq_act_cfg_free(&kv2);
    gq_model_free(&back);
    gq_model_free(&m);
}

/* Largest |a - b| / max|b| over the logits of a window. */
static double rel_diff(const float *a, const float *b, size_t n)
{
    double d = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        d = fabs((double)a[i] - b[i]) > d ? fabs((double)a[i] - b[i]) : d;
        mx = fabs((double)b[i]) > mx ? fabs((double)b[i]) : mx;
    }
    return d / mx;
}

/* The batched prefill and the decode path quantize the same rows the same way: with per-token
 * activations and an INT8 KV cache per head they agree as closely as without quantizers
 * (differences only where the two paths' fp32 sums round a value across a step). */
static void test_kv_batched_vs_decode(void **state)
{
    (void)state;
    gq_model m = tiny_model();
    gq_act_cfg a, kv;
    parse_ok("{\"format\": \"int\", \"bits\": 8, \"zero\": \"sym\"}", false, &a);
    const char *kvs[] = {"{\"format\": \"int\", \"bits\": 8, \"zero\": \"sym\"}",
                         "{\"format\": \"fp\", \"element\": \"e4m3\", \"granularity\": \"token\"}",
                         "{\"format\": \"int\", \"bits\": 4, \"granularity\": \"group\", "
                         "\"group_size\": 4}"};
    int T = 24, V = m.cfg.vocab_size;
    int *tok = random_tokens(T, V, 5);
    float *lr = malloc(sizeof(float) * T * V);
    gq_error err = {{0}};
    float *plain = prefill(&m, tok, 1, T);
    for (int i = 0; i < 3; i++) {
        parse_ok(kvs[i], true, &kv);
        assert_int_equal(gq_act_cfg_check(&kv, &m.cfg, "$.kv_cache", false, &err), 0);
        gq_act_model am;
        assert_int_equal(gq_act_model_init(&am, &m.cfg, &a, &kv, &err), 0);
        m.act = &am.hook;
        float *lb = prefill(&m, tok, 1, T);
        assert_int_equal(gq_forward_ref(&m, tok, T, lr, &err), 0);
        double d = rel_diff(lb, lr, (size_t)T * V), q = rel_diff(lb, plain, (size_t)T * V);
        printf("kv %s: batched vs decode %.3g, vs unquantized %.3g\n", kvs[i], d, q);
        assert_true(d < 2e-3);
        assert_true(q > 10 * d); /* the quantizers act, far above the paths' difference */
        m.act = NULL;
        free(lb);
        gq_act_model_free(&am);
        gq_act_cfg_free(&kv);
    }
    free(plain);
    free(lr);
    free(tok);
    gq_act_cfg_free(&a);
    gq_model_free(&m);
}

/* Calibration and evaluation give the same bits at 1, 2 and 3 threads. */
static void test_threads_same_bits(void **state)
{
    (void)state;
    gq_model m = tiny_model();
    int saved = gq_threads_get();
    int *tok = random_tokens(4 * 32, m.cfg.vocab_size, 9);
    float *first = NULL;
    float first_range[2];
    for (int th = 1; th <= 3; th++) {
        gq_threads_set(th);
        gq_act_cfg a, kv;
        gq_act_model am;
        calibrate(&m, "{\"format\": \"int\", \"bits\": 8, \"granularity\": \"tensor\", "
                      "\"scales\": \"static\", \"calibration\": \"mse\", \"overrides\": ["
                      "{\"pattern\": \"layers.*.mlp.*\", \"format\": \"int\", \"bits\": 4, "
                      "\"granularity\": \"group\", \"group_size\": 4}]}", &a, &am);
        parse_ok("{\"format\": \"int\", \"bits\": 4}", true, &kv);
        gq_error err = {{0}};
        gq_act_model full;
        assert_int_equal(gq_act_model_init(&full, &m.cfg, &a, &kv, &err), 0);
        for (int l = 0; l < m.cfg.n_layers; l++)
            for (int k = 0; k < GQ_N_LINEAR; k++)
                if (gq_act_n_ranges(&am, l, (gq_linear_kind)k))
                    assert_int_equal(gq_act_set_ranges(&full, l, (gq_linear_kind)k,
                                                       am.ranges[l * GQ_N_LINEAR + k], &err), 0);
        m.act = &full.hook;
        float *lg = prefill(&m, tok, 4, 32);
        m.act = NULL;
        if (!first) {
            first = lg;
            memcpy(first_range, am.ranges[GQ_LIN_O + GQ_N_LINEAR], sizeof first_range);
        } else {
            assert_memory_equal(first, lg, sizeof(float) * 128 * m.cfg.vocab_size);
            assert_memory_equal(first_range, am.ranges[GQ_LIN_O + GQ_N_LINEAR],
                                sizeof first_range);
            free(lg);
        }
        gq_act_model_free(&full);
        gq_act_model_free(&am);
        gq_act_cfg_free(&a);
        gq_act_cfg_free(&kv);
    }
    gq_threads_set(saved);
    free(first);
    free(tok);
    gq_model_free(&m);
}

/* Impossible settings: one message naming the JSON path. */
static void refuse(const char *json, bool kv, bool has_calib, const char *expect)
{
    gq_model m = tiny_model();
    gq_act_cfg a;
    gq_error err = {{0}};
    json_t *j = json_loads(json, 0, NULL);
    assert_non_null(j);
    const char *path = kv ? "$.kv_cache" : "$.activations";
    int rc = gq_act_cfg_parse(j, path, kv, &a, &err);
    if (rc == 0) {
        rc = gq_act_cfg_check(&a, &m.cfg, path, has_calib, &err);
        gq_act_cfg_free(&a);
    }
    json_decref(j);
    if (rc == 0 || !strstr(err.msg, expect))
        fail_msg("%s: expected \"%s\", got rc %d \"%s\"", json, expect, rc, err.msg);
    gq_model_free(&m);
}

static void test_validation(void **state)
{
    (void)state;
    refuse("{\"format\": \"int\", \"granularity\": \"group\", \"group_size\": 48}", false, true,
           "$.activations.group_size: 48 does not divide the input width of layers.0.attn.q_proj (64)");
    refuse("{\"format\": \"int\", \"granularity\": \"group\", \"group_size\": 16}", false, true,
           "$.activations.group_size: 16 does not divide the input width of layers.0.mlp.down_proj (172)");
    refuse("{\"format\": \"int\", \"scales\": \"static\", \"granularity\": \"tensor\"}", false,
           false, "$.activations.scales: static scales are calibrated, but there is no");
    refuse("{\"format\": \"int\", \"scales\": \"static\"}", false, true,
           "$.activations.scales: static scales are per tensor or per group");
    refuse("{\"format\": \"mx\"}", false, true,
           "$.activations.granularity: format mx quantizes blocks of 32 channels");
    refuse("{\"format\": \"mx\", \"granularity\": \"group\", \"group_size\": 32, \"scales\": "
           "\"static\"}", false, true, "$.activations.scales: static scales need a format");
    refuse("{\"format\": \"int\", \"bitz\": 8}", false, true, "$.activations");
    refuse("{\"format\": \"nope\"}", false, true, "unknown format \"nope\"");
    refuse("{\"format\": \"int\", \"granularity\": \"group\", \"group_size\": 16}", true, false,
           "$.kv_cache.group_size: 16 does not divide the head size of the KV cache (8)");
    refuse("{\"format\": \"int\", \"scales\": \"static\"}", true, false, "$.kv_cache");
    refuse("{\"format\": \"int\", \"overrides\": [{\"pattern\": \"x\", \"keep_fp\": false}]}",
           false, true, "$.activations.overrides[0]");
}

#define N_CALIB 8
#define CALIB_CTX 128

static int stories_setup(void **state)
{
    gq_log_set_level(GQ_LOG_WARN);
    const test_stories_opts o = {.calib_first = 32 * 256, .n_calib = N_CALIB,
                                 .calib_ctx = CALIB_CTX, .calib_seed = 2};
    return test_stories_setup(state, &o);
}

/* W8A8 with dynamic per-token INT8 activations against the weight-only INT8 model. */
static void test_w8a8_stories(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    gq_model q;
    gq_quant_report rep;
    gq_error err = {{0}};
    assert_int_equal(test_quantize(f, "rtn", NULL,
                                   "{\"name\": \"int\", \"bits\": 8, \"granularity\": \"channel\", "
                                   "\"zero\": \"sym\"}", NULL, GQ_PROPAGATE_METHOD_DEFAULT, &q,
                                   &rep, &err), 0);
    double w8 = test_stories_ppl(f, &q, 256, 32);
    gq_act_cfg a;
    parse_ok("{\"format\": \"int\", \"bits\": 8, \"zero\": \"sym\", \"granularity\": \"token\"}",
             false, &a);
    gq_act_model am;
    assert_int_equal(gq_act_model_init(&am, &q.cfg, &a, NULL, &err), 0);
    q.act = &am.hook;
    double w8a8 = test_stories_ppl(f, &q, 256, 32);
    printf("stories260K: W8 ppl %.5f, W8A8 per token %.5f (%+.3f%%)\n", w8, w8a8,
           100 * (w8a8 / w8 - 1));
    assert_true(fabs(w8a8 / w8 - 1) < 0.01);
    assert_true(w8a8 != w8);
    q.act = NULL;
    gq_act_model_free(&am);
    gq_act_cfg_free(&a);
    gq_quant_report_free(&rep);
    gq_model_free(&q);
}

int main(void)
{
    const struct CMUnitTest unit[] = {
        cmocka_unit_test(test_dynamic_token_vs_scalar),
        cmocka_unit_test(test_dynamic_granularities_vs_format),
        cmocka_unit_test(test_static_vs_scalar),
        cmocka_unit_test(test_calibration_rules),
        cmocka_unit_test(test_calibration_chunks_same_bits),
        cmocka_unit_test(test_stats_bounds),
        cmocka_unit_test(test_file_reload_same_bits),
        cmocka_unit_test(test_kv_batched_vs_decode),
        cmocka_unit_test(test_threads_same_bits),
        cmocka_unit_test(test_validation),
    };
    const struct CMUnitTest stories[] = {cmocka_unit_test(test_w8a8_stories)};
    int rc = cmocka_run_group_tests_name("act", unit, NULL, NULL);
    return rc | cmocka_run_group_tests_name("act_stories", stories, stories_setup,
                                            test_stories_teardown);
}
