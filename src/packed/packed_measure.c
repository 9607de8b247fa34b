/* Throughput of fp32 and packed models (protocols in gq_packed.h) and the memory-bandwidth
 * ceiling they are compared with. */
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gq_alloc.h"
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

/* One timed round of gq_measure_steady: the model and options of a measurement. */
typedef struct timed_round {
    const gq_model *m;
    const gq_packed_bench_opts *o;
} timed_round;

static int decode_round(void *ctx, double *rate, gq_error *err)
{
    const timed_round *t = ctx;
    return gq_packed_time_decode(t->m, t->o, rate, err);
}

static int prefill_round(void *ctx, double *rate, gq_error *err)
{
    const timed_round *t = ctx;
    return gq_packed_time_prefill(t->m, t->o, rate, err);
}

int gq_packed_measure(const gq_model *m, const gq_quantizer *q, const gq_packed_codes *codes,
                      const gq_packed_bench_opts *o, gq_packed_throughput *out, gq_error *err)
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
    if ((q ? gq_packed_model_build(m, q, codes, o->pack_classifier, NULL, &pm, err)
           : gq_packed_model_fp32(m, &pm, err)) != 0)
        return -1;
    gq_packed_model_set_act_q8(&pm, o->act_q8);
    out->packed = true;
    out->packed_bytes = pm.packed_bytes;
    out->decode_bytes = pm.decode_bytes;
    timed_round t = {&pm.model, o};
    int rc = gq_measure_steady(decode_round, &t, &out->decode, err);
    if (rc == 0)
        rc = gq_measure_steady(prefill_round, &t, &out->prefill, err);
    out->load_avg = gq_load_average();
    out->decode_tok_s = out->decode.best;
    out->prefill_tok_s = out->prefill.best;
    gq_packed_model_free(&pm);
    return rc;
}

struct gq_bandwidth_probe {
    size_t n;          /* floats per triad array */
    float *a, *b, *c;  /* the triad's arrays; b doubles as the read stream */
};

size_t gq_bandwidth_mib_beyond_cache(size_t *llc_mib)
{
    long bytes = 0;
#ifdef _SC_LEVEL3_CACHE_SIZE
    bytes = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (bytes <= 0)
        bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    const size_t mib = bytes > 0 ? ((size_t)bytes + (1u << 20) - 1) >> 20 : 0;
    if (llc_mib)
        *llc_mib = mib;
    return mib > 128 ? mib : 128;
}

gq_bandwidth_probe *gq_bandwidth_probe_new(size_t mib, gq_error *err)
{
    gq_bandwidth_probe *p = calloc(1, sizeof *p);
    if (!p)
        return gq_fail(err, "bandwidth probe: out of memory"), NULL;
    p->n = mib * (1u << 20) / sizeof(float);
    p->a = gq_alloc_zero(p->n * sizeof(float), "bandwidth arrays", err);
    p->b = p->a ? gq_alloc_zero(p->n * sizeof(float), "bandwidth arrays", err) : NULL;
    p->c = p->b ? gq_alloc_zero(p->n * sizeof(float), "bandwidth arrays", err) : NULL;
    if (!p->c) {
        gq_bandwidth_probe_free(p);
        return NULL;
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < p->n; i++) { /* first touch by the threads that stream them */
        p->a[i] = 0.0f;
        p->b[i] = 1.0f;
        p->c[i] = 2.0f;
    }
    return p;
}

void gq_bandwidth_probe_free(gq_bandwidth_probe *p)
{
    if (!p)
        return;
    free(p->a);
    free(p->b);
    free(p->c);
    free(p);
}

void gq_bandwidth_probe_run(gq_bandwidth_probe *p, int reps, double *triad, double *read)
{
    const size_t n = p->n, words = n * sizeof(float) / sizeof(uint64_t);
    const uint64_t *w = (const uint64_t *)p->b;
    float *a = p->a;
    const float *b = p->b, *c = p->c;
    double best_t = DBL_MAX, best_r = DBL_MAX;
    uint64_t x = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = gq_now();
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++)
            a[i] = b[i] + 0.5f * c[i];
        double t1 = gq_now();
#pragma omp parallel for schedule(static) reduction(^ : x)
        for (size_t i = 0; i < words; i++) /* an integer reduction: vectorised, never compute-bound */
            x ^= w[i];
        double t2 = gq_now();
        best_t = t1 - t0 < best_t ? t1 - t0 : best_t;
        best_r = t2 - t1 < best_r ? t2 - t1 : best_r;
    }
    volatile float sink_a = a[n / 2]; /* keep the stores and reads observable */
    volatile uint64_t sink_x = x;
    (void)sink_a;
    (void)sink_x;
    *triad = 3.0 * (double)n * sizeof(float) / best_t / 1e9;
    *read = (double)n * sizeof(float) / best_r / 1e9;
}
