/* The runner's throughput columns: a cell's quantized model on the packed kernels (the baseline
 * in fp32 on BLAS, or on the packed kernels from the codes of a quantized checkpoint), never an
 * estimate; and the gate that lets a measurement run alone while
 * other cells run side by side (--jobs). */
#include <stdio.h>
#include <string.h>

#include "core/gq_time.h"
#include "model/gq_stream.h"
#include "packed/gq_packed.h"
#include "runner/runner_internal.h"

size_t gq_runner_fp32_linear_bytes(const gq_config *c)
{
    size_t w = 0;
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        int rows, cols;
        gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
        w += (size_t)rows * (size_t)cols;
    }
    return w * (size_t)c->n_layers * sizeof(float);
}

/* Whether the experiment's rules make the quantized model what a packed model with q builds:
 * q on every block linear, embeddings and classifier fp32. Otherwise writes the first
 * difference to why. */
static bool one_quantizer(const gq_experiment *e, const gq_config *c, const gq_quantizer *q,
                          char *why, size_t n)
{
    char label[96], first_name[96] = "", first_label[96] = "fp32";
    int differ = 0;
    for (int i = 0; i < c->n_layers * GQ_N_LINEAR + 2; i++) {
        char name[96];
        const bool block = i < c->n_layers * GQ_N_LINEAR;
        if (block)
            gq_tensor_name(i / GQ_N_LINEAR, (gq_linear_kind)(i % GQ_N_LINEAR), name, sizeof name);
        else if (i % 2 && c->shared_classifier)
            continue; /* the tied classifier is the embedding table */
        else
            snprintf(name, sizeof name, "%s", i % 2 ? "classifier" : "tok_embeddings");
        const gq_quantizer *got =
            gq_tensor_quantizer(q, e->rules, e->n_rules, c->shared_classifier, name);
        if (block ? got && gq_quantizer_equal(got, q) : !got)
            continue;
        if (!differ++) {
            snprintf(first_name, sizeof first_name, "%s", name);
            if (got)
                gq_quantizer_label(got, first_label, sizeof first_label);
        }
    }
    if (!differ)
        return true;
    gq_quantizer_label(q, label, sizeof label);
    snprintf(why, n, "not measured: the overrides make %d tensor(s) differ from one packed "
                     "quantizer (%s on every block linear, embeddings and classifier fp32), e.g. "
                     "%s is %s", differ, label, first_name, first_label);
    return false;
}

/* Measures m with q (NULL: fp32) packed from codes (NULL: quantized from m's weights). */
static int measure(const gq_experiment *e, const gq_model *m, const gq_quantizer *q,
                   const gq_packed_codes *codes, gq_cell_throughput *out, gq_error *err)
{
    const gq_exp_throughput *t = &e->throughput;
    gq_packed_bench_opts o = gq_packed_bench_defaults();
    o.decode_tokens = t->decode_tokens;
    o.warmup = GQ_TP_WARMUP;
    o.prefill_tokens = t->prefill_tokens;
    o.reps = t->reps;
    gq_packed_throughput pt;
    double t0 = gq_now();
    if (gq_packed_measure(m, q, codes, &o, &pt, err))
        return gq_fail_prefix(err, "throughput");
    out->seconds = gq_now() - t0;
    if (!pt.packed) {
        snprintf(out->note, sizeof out->note, "not measured: %s", pt.reason);
        return 0;
    }
    out->measured = true;
    out->decode_tok_s = pt.decode_tok_s;
    out->prefill_tok_s = pt.prefill_tok_s;
    out->decode = pt.decode;
    out->prefill = pt.prefill;
    out->load_avg = pt.load_avg;
    out->packed_bytes = q ? pt.packed_bytes : gq_runner_fp32_linear_bytes(&m->cfg);
    return 0;
}

int gq_runner_throughput(const gq_experiment *e, const gq_model *m, const gq_quantizer *q,
                         const gq_quant_report *rep, gq_cell_throughput *out, gq_error *err)
{
    memset(out, 0, sizeof *out);
    if (!e->throughput.enabled) {
        snprintf(out->note, sizeof out->note, "not measured: $.throughput.enabled is false");
        return 0;
    }
    if (q && rep && !one_quantizer(e, &m->cfg, q, out->note, sizeof out->note))
        return 0;
    const gq_packed_codes codes = {
        rep ? (const uint8_t *const *)rep->linear_codes : NULL,
        rep ? (const int32_t *const *)rep->linear_perm : NULL};
    return measure(e, m, q, rep ? &codes : NULL, out, err);
}

int gq_runner_throughput_loaded(const gq_experiment *e, const gq_model *m, const gq_qcodes *qc,
                                gq_cell_throughput *out, gq_error *err)
{
    if (e->throughput.enabled && !gq_model_blocks_resident(m)) {
        /* the decode reads every block at every token: converting them per token would time
         * the conversion, and holding them all in fp32 is what streaming avoids */
        memset(out, 0, sizeof *out);
        snprintf(out->note, sizeof out->note,
                 "not measured: the model is streamed (%.1f MB in fp32; $.model.stream)",
                 (double)gq_model_fp32_bytes(&m->cfg) / 1e6);
        return 0;
    }
    if (!qc || qc->n_linear == 0 || !e->throughput.enabled)
        return gq_runner_throughput(e, m, NULL, NULL, out, err);
    memset(out, 0, sizeof *out);
    char why[200];
    const gq_quantizer *q = gq_qcodes_packed_quantizer(m, qc, why, sizeof why);
    if (!q) {
        snprintf(out->note, sizeof out->note, "not measured: %s checkpoint: %s", qc->source,
                 why);
        return 0;
    }
    const gq_packed_codes codes = {(const uint8_t *const *)qc->codes,
                                   (const int32_t *const *)qc->perm};
    return measure(e, m, q, &codes, out, err);
}

/* ---- gate: shared sections (cells computing) and exclusive ones (a measurement) ---------- */

void gq_tp_gate_init(gq_tp_gate *g)
{
    memset(g, 0, sizeof *g);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
}

void gq_tp_gate_destroy(gq_tp_gate *g)
{
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

void gq_tp_gate_enter_shared(gq_tp_gate *g)
{
    pthread_mutex_lock(&g->mu);
    while (g->waiting > 0 || g->active) /* a waiting measurement goes first */
        pthread_cond_wait(&g->cv, &g->mu);
    g->busy++;
    pthread_mutex_unlock(&g->mu);
}

void gq_tp_gate_leave_shared(gq_tp_gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->busy--;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

void gq_tp_gate_enter_exclusive(gq_tp_gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->waiting++;
    while (g->busy > 0 || g->active)
        pthread_cond_wait(&g->cv, &g->mu);
    g->waiting--;
    g->active = true;
    pthread_mutex_unlock(&g->mu);
}

void gq_tp_gate_leave_exclusive(gq_tp_gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->active = false;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}
