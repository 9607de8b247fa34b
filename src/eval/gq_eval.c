/* Perplexity and baseline comparison over evaluation windows (protocols in gq_eval.h).
 *
 * Per batch: B windows (B, ctx) -> one prefill -> logits (B*ctx, vocab). Each scored row is
 * reduced by one thread to its log-sum-exp, NLL, argmax and, with a baseline, KL; the
 * per-position values land in arrays indexed by position, and the totals are summed in
 * position order at the end, so the numbers do not depend on the thread count. */
#include "eval/gq_eval.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_fileio.h"
#include "core/gq_log.h"
#include "core/gq_threads.h"
#include "core/gq_time.h"
#include "eval/eval_baseline.h"
#include "model/gq_forward.h"
#include "text/gq_tokenizer.h"

#define AUTO_BATCH_LOGIT_BYTES (256u << 20)
#define AUTO_BATCH_MAX 16

const char *gq_ppl_protocol_name(gq_ppl_protocol p)
{
    return p == GQ_PPL_LLAMACPP ? "llamacpp" : "full";
}

int gq_ppl_protocol_parse(const char *s, gq_ppl_protocol *p, gq_error *err)
{
    if (strcmp(s, "full") == 0)
        *p = GQ_PPL_FULL;
    else if (strcmp(s, "llamacpp") == 0)
        *p = GQ_PPL_LLAMACPP;
    else
        return gq_fail(err, "unknown perplexity protocol '%s' (expected full or llamacpp)", s);
    return 0;
}

gq_eval_opts gq_eval_opts_default(int ctx)
{
    gq_eval_opts o = {.ctx = ctx, .protocol = GQ_PPL_FULL, .max_windows = 0, .batch = 0,
                      .progress = true};
    return o;
}

/* First scored position of a window: predictions at positions first..ctx-2. */
static int first_scored(gq_ppl_protocol p, int ctx) { return p == GQ_PPL_LLAMACPP ? ctx / 2 : 0; }

/* Per scored row: log-sum-exp (double) and the index of the largest logit (first on ties). */
static double row_lse(const float *x, int n, int *argmax)
{
    float mx = x[0];
    int am = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > mx) {
            mx = x[i];
            am = i;
        }
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += exp((double)x[i] - mx);
    *argmax = am;
    return mx + log(sum);
}

/* KL(base || model) of one row: sum_v p_b(v) (log p_b(v) - log p_m(v)). The model's
 * log-probabilities are rounded to float exactly as the baseline's were stored, so a model
 * compared with itself gives exactly 0. */
static double row_kl(const float *base_logp, const float *x, double lse, int n)
{
    double kl = 0.0;
    for (int i = 0; i < n; i++) {
        double lb = base_logp[i];
        kl += exp(lb) * (lb - (double)(float)((double)x[i] - lse));
    }
    return kl;
}

/* Mean and llama.cpp's standard error sqrt(var / (n-1)) (population variance), fixed order. */
static void mean_se(const double *v, size_t n, double *mean, double *se)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    double m = s / (double)n, ss = 0.0;
    for (size_t i = 0; i < n; i++)
        ss += (v[i] - m) * (v[i] - m);
    *mean = m;
    *se = n > 1 ? sqrt(ss / (double)n / (double)(n - 1)) : 0.0;
}

static int check_inputs(const gq_model *m, const gq_dataset *ds, const gq_eval_opts *o,
                        const gq_eval_baseline *base, size_t *n_windows, gq_error *err)
{
    const gq_config *c = &m->cfg;
    int min_ctx = o->protocol == GQ_PPL_LLAMACPP ? 4 : 2;
    if (o->ctx < min_ctx || o->ctx > c->seq_len)
        return gq_fail(err, "ctx %d is outside %d..%d (the model's seq_len) for the %s protocol",
                       o->ctx, min_ctx, c->seq_len, gq_ppl_protocol_name(o->protocol));
    if (o->max_windows < 0 || o->batch < 0)
        return gq_fail(err, "max_windows and batch must be >= 0 (0 = all / automatic)");
    size_t n = gq_dataset_n_windows(ds, o->ctx);
    if (n == 0)
        return gq_fail(err, "%s: %zu tokens, fewer than one window of %d", ds->path,
                       ds->n_tokens, o->ctx);
    if (o->max_windows > 0 && (size_t)o->max_windows < n)
        n = (size_t)o->max_windows;
    for (size_t i = 0; i < n * (size_t)o->ctx; i++)
        if (ds->tokens[i] < 0 || ds->tokens[i] >= c->vocab_size)
            return gq_fail(err, "%s: token %zu has id %d, outside the model's vocabulary of %d",
                           ds->path, i, ds->tokens[i], c->vocab_size);
    if (base) {
        const gq_baseline_header *h = base->hdr;
        if (h->protocol != (int32_t)o->protocol || h->ctx != o->ctx || h->windows != n ||
            h->vocab != c->vocab_size || strcmp(h->dataset_sha256, ds->sha256) != 0)
            return gq_fail(err, "baseline does not match this evaluation: baseline %s ctx %d, "
                           "%llu windows, vocab %d, data %.12s; here %s ctx %d, %zu windows, "
                           "vocab %d, data %.12s",
                           gq_ppl_protocol_name((gq_ppl_protocol)h->protocol), h->ctx,
                           (unsigned long long)h->windows, h->vocab, h->dataset_sha256,
                           gq_ppl_protocol_name(o->protocol), o->ctx, n, c->vocab_size,
                           ds->sha256);
    }
    *n_windows = n;
    return 0;
}

int gq_eval_check(const gq_model *m, const gq_dataset *ds, const gq_eval_opts *o,
                  const gq_eval_baseline *base, gq_error *err)
{
    size_t n;
    return check_inputs(m, ds, o, base, &n, err);
}

static int auto_batch(const gq_eval_opts *o, int vocab, size_t n_windows)
{
    size_t per = (size_t)o->ctx * (size_t)vocab * sizeof(float);
    size_t b = o->batch > 0 ? (size_t)o->batch : AUTO_BATCH_LOGIT_BYTES / per;
    if (o->batch == 0 && b > AUTO_BATCH_MAX)
        b = AUTO_BATCH_MAX;
    if (b < 1)
        b = 1;
    if (b > n_windows)
        b = n_windows;
    return (int)b;
}

int gq_eval_perplexity(const gq_model *m, const gq_dataset *ds, const gq_eval_opts *o,
                       const gq_eval_baseline *base_in, gq_eval_baseline **base_out,
                       gq_eval_result *r, gq_error *err)
{
    memset(r, 0, sizeof *r);
    if (base_out)
        *base_out = NULL;
    size_t n_windows = 0;
    if (check_inputs(m, ds, o, base_in, &n_windows, err) != 0)
        return -1;
    const int ctx = o->ctx, V = m->cfg.vocab_size;
    const int first = first_scored(o->protocol, ctx);
    const int per_window = ctx - 1 - first;
    const size_t scored = n_windows * (size_t)per_window;
    const int B = auto_batch(o, V, n_windows);

    gq_eval_baseline *bout = NULL;
    gq_forward_ws *ws = NULL;
    float *logits = NULL;
    int *batch_tokens = NULL;
    double *nll = NULL, *kl = NULL;
    unsigned char *agree = NULL;
    int rc = -1;
    if (base_out && gq_baseline_new(o->protocol, ctx, V, n_windows, scored, ds->sha256, &bout,
                                    err) != 0)
        goto done;
    ws = gq_forward_ws_new(&m->cfg, B * ctx, err);
    if (!ws)
        goto done;
    logits = gq_alloc_zero((size_t)B * ctx * V * sizeof *logits, "evaluation logits", err);
    batch_tokens = malloc((size_t)B * ctx * sizeof *batch_tokens);
    nll = malloc(scored * sizeof *nll);
    if (base_in) {
        kl = malloc(scored * sizeof *kl);
        agree = malloc(scored);
    }
    if (!logits || !batch_tokens || !nll || (base_in && (!kl || !agree))) {
        gq_fail(err, "out of memory for evaluation buffers (%zu positions, batch %d)", scored, B);
        goto done;
    }

    gq_progress prog = {0};
    if (o->progress)
        gq_progress_start(&prog, "perplexity", (long)n_windows);
    double t0 = gq_now();
    for (size_t w0 = 0; w0 < n_windows; w0 += (size_t)B) {
        int nb = (int)(n_windows - w0 < (size_t)B ? n_windows - w0 : (size_t)B);
        memcpy(batch_tokens, ds->tokens + w0 * (size_t)ctx, (size_t)nb * ctx * sizeof(int));
        if (o->protocol == GQ_PPL_LLAMACPP)
            for (int b = 0; b < nb; b++)
                batch_tokens[(size_t)b * ctx] = GQ_TOKEN_BOS;
        if (gq_forward_prefill(m, batch_tokens, nb, ctx, ws, logits, err) != 0)
            goto done;
        const long rows = (long)nb * per_window;
#pragma omp parallel for schedule(static)
        for (long i = 0; i < rows; i++) {
            int b = (int)(i / per_window), p = first + (int)(i % per_window);
            const float *x = logits + ((size_t)b * ctx + (size_t)p) * V;
            int target = batch_tokens[(size_t)b * ctx + p + 1], am;
            double lse = row_lse(x, V, &am);
            size_t k = (w0 + (size_t)b) * (size_t)per_window + (size_t)(p - first);
            nll[k] = lse - x[target];
            if (bout) {
                float *lp = bout->logp + k * V;
                for (int v = 0; v < V; v++)
                    lp[v] = (float)((double)x[v] - lse);
                bout->argmax[k] = am;
                bout->nll[k] = nll[k];
            }
            if (base_in) {
                kl[k] = row_kl(base_in->logp + k * V, x, lse, V);
                agree[k] = am == base_in->argmax[k];
            }
        }
        if (o->progress)
            gq_progress_add(&prog, nb);
    }
    r->seconds = gq_now() - t0;
    if (o->progress)
        gq_progress_finish(&prog);

    r->protocol = o->protocol;
    r->ctx = ctx;
    r->batch = B;
    r->threads = gq_threads_get();
    r->windows = n_windows;
    r->tokens = n_windows * (size_t)ctx;
    r->scored = scored;
    mean_se(nll, scored, &r->mean_nll, &r->nll_se);
    r->ppl = exp(r->mean_nll);
    r->ppl_se = r->nll_se * r->ppl;
    r->tokens_per_s = r->seconds > 0 ? (double)r->tokens / r->seconds : 0.0;
    if (bout)
        bout->hdr->mean_nll = r->mean_nll;
    if (base_in) {
        r->has_baseline = true;
        r->base_ppl = gq_eval_baseline_ppl(base_in);
        r->delta_ppl = r->ppl - r->base_ppl;
        mean_se(kl, scored, &r->kl_mean, &r->kl_se);
        size_t hits = 0;
        for (size_t k = 0; k < scored; k++)
            hits += agree[k];
        double p = (double)hits / (double)scored;
        r->top1_pct = 100.0 * p;
        r->top1_se_pct = scored > 1 ? 100.0 * sqrt(p * (1.0 - p) / (double)(scored - 1)) : 0.0;
    }
    if (base_out) {
        *base_out = bout;
        bout = NULL;
    }
    rc = 0;
done:
    gq_eval_baseline_free(bout);
    gq_forward_ws_free(ws);
    free(logits);
    free(batch_tokens);
    free(nll);
    free(kl);
    free(agree);
    return rc;
}
