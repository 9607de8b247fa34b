/* Throughput of fp32 and packed models (protocols in gq_packed.h) and the memory-bandwidth
 * ceiling they are compared with. */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_fileio.h"
#include "core/gq_time.h"
#include "model/gq_forward.h"
#include "packed/packed_internal.h"

gq_packed_bench_opts gq_packed_bench_defaults(void)
{
    return (gq_packed_bench_opts){.decode_tokens = 16, .warmup = 2, .prefill_tokens = 128,
                                  .reps = 3, .pack_classifier = false, .act_q8 = true};
}

/* Deterministic token ids spread over the vocabulary. */
static int bench_token(const gq_config *c, int i)
{
    return (int)((1u + 7919u * (unsigned)i) % (unsigned)c->vocab_size);
}

int gq_packed_time_decode(const gq_model *m, const gq_packed_bench_opts *o, double *tok_s,
                          gq_error *err)
{
    const gq_config *c = &m->cfg;
    int steps = o->warmup + o->decode_tokens;
    if (o->decode_tokens < 1 || steps > c->seq_len)
        return gq_fail(err, "bench: %d warm-up + %d decode tokens must fit seq_len %d", o->warmup,
                       o->decode_tokens, c->seq_len);
    float *logits = gq_alloc_zero((size_t)c->vocab_size * sizeof(float), "logits", err);
    gq_decode *d = logits ? gq_decode_new(m, err) : NULL;
    int rc = d ? 0 : -1;
    double best = DBL_MAX;
    for (int p = 0; p < steps && rc == 0; p++) {
        double t0 = gq_now();
        rc = gq_decode_step(d, bench_token(c, p), p, logits, err);
        double t = gq_now() - t0;
        if (p >= o->warmup && t < best)
            best = t;
    }
    if (rc == 0)
        *tok_s = 1.0 / best;
    gq_decode_free(d);
    free(logits);
    return rc;
}

int gq_packed_time_prefill(const gq_model *m, const gq_packed_bench_opts *o, double *tok_s,
                           gq_error *err)
{
    const gq_config *c = &m->cfg;
    int T = o->prefill_tokens < c->seq_len ? o->prefill_tokens : c->seq_len;
    if (T < 1 || o->reps < 1)
        return gq_fail(err, "bench: prefill tokens and repetitions must be positive");
    int *tok = malloc((size_t)T * sizeof(int));
    float *logits = gq_alloc_zero((size_t)T * c->vocab_size * sizeof(float), "logits", err);
    gq_forward_ws *ws = logits ? gq_forward_ws_new(c, T, err) : NULL;
    int rc = ws && tok ? 0 : -1;
    if (!tok)
        gq_fail(err, "bench: out of memory");
    for (int i = 0; rc == 0 && i < T; i++)
        tok[i] = bench_token(c, i);
    double best = DBL_MAX;
    for (int r = 0; r <= o->reps && rc == 0; r++) { /* r = 0: warm-up */
        double t0 = gq_now();
        rc = gq_forward_prefill(m, tok, 1, T, ws, logits, err);
        double t = gq_now() - t0;
        if (r > 0 && t < best)
            best = t;
    }
    if (rc == 0)
        *tok_s = T / best;
    gq_forward_ws_free(ws);
    free(logits);
    free(tok);
    return rc;
}

int gq_packed_measure(const gq_model *m, const gq_quantizer *q, const gq_packed_bench_opts *o,
                      gq_packed_throughput *out, gq_error *err)
{
    memset(out, 0, sizeof *out);
    gq_packed_bench_opts def = gq_packed_bench_defaults();
    if (!o)
        o = &def;
    int rows, cols;
    for (int k = 0; q && k < GQ_N_LINEAR; k++) {
        gq_linear_shape(&m->cfg, (gq_linear_kind)k, &rows, &cols);
        if (!gq_packed_supported(q, rows, cols, out->reason, sizeof out->reason))
            return 0;
    }
    gq_packed_model pm;
    if ((q ? gq_packed_model_build(m, q, o->pack_classifier, NULL, &pm, err)
           : gq_packed_model_fp32(m, &pm, err)) != 0)
        return -1;
    gq_packed_model_set_act_q8(&pm, o->act_q8);
    out->packed = true;
    out->packed_bytes = pm.packed_bytes;
    out->decode_bytes = pm.decode_bytes;
    int rc = gq_packed_time_decode(&pm.model, o, &out->decode_tok_s, err);
    if (rc == 0)
        rc = gq_packed_time_prefill(&pm.model, o, &out->prefill_tok_s, err);
    gq_packed_model_free(&pm);
    return rc;
}

int gq_packed_bandwidth(size_t mib, int reps, double *gbps, gq_error *err)
{
    size_t n = mib * (1u << 20) / sizeof(float);
    float *a = gq_alloc_zero(n * sizeof(float), "bandwidth arrays", err);
    float *b = a ? gq_alloc_zero(n * sizeof(float), "bandwidth arrays", err) : NULL;
    float *c = b ? gq_alloc_zero(n * sizeof(float), "bandwidth arrays", err) : NULL;
    if (!c) {
        free(a);
        free(b);
        return -1;
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) { /* first touch by the threads that stream them */
        a[i] = 0.0f;
        b[i] = 1.0f;
        c[i] = 2.0f;
    }
    double best = DBL_MAX;
    for (int r = 0; r < reps; r++) {
        double t0 = gq_now();
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++)
            a[i] = b[i] + 0.5f * c[i];
        double t = gq_now() - t0;
        if (t < best)
            best = t;
    }
    *gbps = 3.0 * (double)n * sizeof(float) / best / 1e9;
    volatile float sink = a[n / 2]; /* keep the stores observable */
    (void)sink;
    free(a);
    free(b);
    free(c);
    return 0;
}

int gq_packed_read_bandwidth(size_t mib, int reps, double *gbps, gq_error *err)
{
    size_t n = mib * (1u << 20) / sizeof(uint64_t);
    uint64_t *a = gq_alloc_zero(n * sizeof(uint64_t), "bandwidth array", err);
    if (!a)
        return -1;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) /* first touch by the threads that read them */
        a[i] = i;
    double best = DBL_MAX;
    uint64_t x = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = gq_now();
#pragma omp parallel for schedule(static) reduction(^ : x)
        for (size_t i = 0; i < n; i++) /* an integer reduction: vectorised, never compute-bound */
            x ^= a[i];
        double t = gq_now() - t0;
        if (t < best)
            best = t;
    }
    *gbps = (double)n * sizeof(uint64_t) / best / 1e9;
    volatile uint64_t sink = x; /* keep the reads observable */
    (void)sink;
    free(a);
    return 0;
}
