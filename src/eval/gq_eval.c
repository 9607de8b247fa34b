/* Perplexity and baseline comparison over evaluation windows (protocols and reference modes
 * in gq_eval.h).
 *
 * Per batch: B windows (B, ctx) -> one prefill -> logits (B*ctx, vocab). In paired mode the
 * reference model's prefill of the same tokens comes first, into its own logits buffer, whose
 * scored rows are rewritten in place as the fp32 log-probabilities a stored baseline would
 * hold. Each scored row is reduced by one thread to its log-sum-exp, NLL, argmax and, with a
 * reference, KL; the per-position values land in arrays indexed by position, and the totals
 * are summed in position order at the end, so the numbers depend neither on the thread count
 * nor on the reference mode. */
#include "eval/gq_eval.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_alloc.h"
#include "core/gq_fileio.h"
#include "core/gq_log.h"
#include "core/gq_threads.h"
#include "core/gq_time.h"
#include "core/gq_vmath.h"
#include "eval/eval_baseline.h"
#include "eval/eval_share.h"
#include "model/gq_forward.h"
#include "model/gq_stream.h"
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
static double row_lse(const float *x, int n, int *argmax) { return gq_lse_row(x, n, argmax); }

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

const char *gq_eval_ref_kind_name(gq_eval_ref_kind k)
{
    return k == GQ_EVAL_REF_STORED ? "stored" : k == GQ_EVAL_REF_MODEL ? "paired" : "none";
}

/* Windows an evaluation covers: all full windows, or the first max_windows of them. */
static size_t eval_windows(const gq_dataset *ds, const gq_eval_opts *o)
{
    size_t n = gq_dataset_n_windows(ds, o->ctx);
    if (o->max_windows > 0 && (size_t)o->max_windows < n)
        n = (size_t)o->max_windows;
    return n;
}

static int check_stored(const gq_model *m, const gq_dataset *ds, const gq_eval_opts *o,
                        const gq_eval_baseline *base, size_t n, gq_error *err)
{
    const gq_baseline_header *h = base->hdr;
    /* KL reads one row of log-probabilities per scored position: fewer rows than this
     * evaluation scores would be read past the end */
    uint64_t scored = (uint64_t)n * (uint64_t)(o->ctx - 1 - first_scored(o->protocol, o->ctx));
    if (h->protocol == (int32_t)o->protocol && h->ctx == o->ctx && h->windows == n &&
        h->scored != scored)
        return gq_fail(err, "baseline does not match this evaluation: it holds %llu scored "
                            "positions, %zu windows of ctx %d score %llu",
                       (unsigned long long)h->scored, n, o->ctx, (unsigned long long)scored);
    if (h->protocol != (int32_t)o->protocol || h->ctx != o->ctx || h->windows != n ||
        h->vocab != m->cfg.vocab_size || strcmp(h->dataset_sha256, ds->sha256) != 0)
        return gq_fail(err, "baseline does not match this evaluation: baseline %s ctx %d, "
                       "%llu windows, vocab %d, data %.12s; here %s ctx %d, %zu windows, "
                       "vocab %d, data %.12s",
                       gq_ppl_protocol_name((gq_ppl_protocol)h->protocol), h->ctx,
                       (unsigned long long)h->windows, h->vocab, h->dataset_sha256,
                       gq_ppl_protocol_name(o->protocol), o->ctx, n, m->cfg.vocab_size,
                       ds->sha256);
    return 0;
}

static int check_ref_model(const gq_model *m, const gq_eval_opts *o, const gq_model *ref,
                           gq_error *err)
{
    if (!ref)
        return gq_fail(err, "paired baseline: no reference model given");
    if (ref->cfg.vocab_size != m->cfg.vocab_size)
        return gq_fail(err, "baseline model has a vocabulary of %d tokens, the evaluated model "
                       "%d: KL and top-1 need the same vocabulary", ref->cfg.vocab_size,
                       m->cfg.vocab_size);
    if (o->ctx > ref->cfg.seq_len)
        return gq_fail(err, "ctx %d exceeds the baseline model's seq_len %d", o->ctx,
                       ref->cfg.seq_len);
    return 0;
}

static int check_inputs(const gq_model *m, const gq_dataset *ds, const gq_eval_opts *o,
                        const gq_eval_reference *ref, size_t *n_windows, gq_error *err)
{
    const gq_config *c = &m->cfg;
    int min_ctx = o->protocol == GQ_PPL_LLAMACPP ? 4 : 2;
    if (o->ctx < min_ctx || o->ctx > c->seq_len)
        return gq_fail(err, "ctx %d is outside %d..%d (the model's seq_len) for the %s protocol",
                       o->ctx, min_ctx, c->seq_len, gq_ppl_protocol_name(o->protocol));
    if (o->max_windows < 0 || o->batch < 0)
        return gq_fail(err, "max_windows and batch must be >= 0 (0 = all / automatic)");
    size_t n = eval_windows(ds, o);
    if (n == 0)
        return gq_fail(err, "%s: %zu tokens, fewer than one window of %d", ds->path,
                       ds->n_tokens, o->ctx);
    for (size_t i = 0; i < n * (size_t)o->ctx; i++)
        if (ds->tokens[i] < 0 || ds->tokens[i] >= c->vocab_size)
            return gq_fail(err, "%s: token %zu has id %d, outside the model's vocabulary of %d",
                           ds->path, i, ds->tokens[i], c->vocab_size);
    if (ref && ref->kind == GQ_EVAL_REF_STORED && check_stored(m, ds, o, ref->stored, n, err))
        return -1;
    if (ref && ref->kind == GQ_EVAL_REF_MODEL && check_ref_model(m, o, ref->model, err))
        return -1;
    *n_windows = n;
    return 0;
}

int gq_eval_check_ref(const gq_model *m, const gq_dataset *ds, const gq_eval_opts *o,
                      const gq_eval_reference *ref, gq_error *err)
{
    size_t n;
    return check_inputs(m, ds, o, ref, &n, err);
}

size_t gq_eval_stored_bytes(const gq_model *m, const gq_dataset *ds, const gq_eval_opts *o,
                            gq_error *err)
{
    size_t n = 0;
    if (check_inputs(m, ds, o, NULL, &n, err))
        return 0;
    uint64_t scored = (uint64_t)n * (uint64_t)(o->ctx - 1 - first_scored(o->protocol, o->ctx));
    size_t bytes = gq_baseline_block_bytes(scored, m->cfg.vocab_size);
    return bytes ? bytes : SIZE_MAX;
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

/* Paired mode, one batch of reference logits (nb*ctx, V): at each scored row i (window b,
 * position p; batch-local i = b*per_window + p-first, global position k = k0 + i) the NLL goes
 * to nll[k] and the argmax to am[i], then the row is rewritten in place as fp32
 * log-probabilities, exactly as a stored baseline holds them. */
static void reduce_reference(float *logits, const int *tokens, int nb, int ctx, int first,
                             int V, size_t k0, double *nll, int32_t *am)
{
    const int per_window = ctx - 1 - first;
    const long rows = (long)nb * per_window;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < rows; i++) {
        int b = (int)(i / per_window), p = first + (int)(i % per_window);
        float *x = logits + ((size_t)b * ctx + (size_t)p) * V;
        int a;
        double lse = row_lse(x, V, &a);
        nll[k0 + (size_t)i] = lse - x[tokens[(size_t)b * ctx + p + 1]];
        am[i] = a;
        for (int v = 0; v < V; v++)
            x[v] = (float)((double)x[v] - lse);
    }
}

/* Buffers of one evaluation; all NULL-initialised, freed together. */
typedef struct eval_bufs {
    gq_forward_ws *ws, *ref_ws;
    float *logits, *ref_logp; /* (B*ctx, V); ref_logp: paired mode */
    int *tokens;              /* (B, ctx) */
    int32_t *ref_am;          /* (B*per_window) paired mode */
    double *nll, *kl, *ref_nll; /* (scored) */
    unsigned char *agree;     /* (scored) */
} eval_bufs;

static void bufs_free(eval_bufs *b)
{
    gq_forward_ws_free(b->ws);
    gq_forward_ws_free(b->ref_ws);
    free(b->logits);
    free(b->ref_logp);
    free(b->tokens);
    free(b->ref_am);
    free(b->nll);
    free(b->kl);
    free(b->ref_nll);
    free(b->agree);
}

static int bufs_alloc(eval_bufs *b, const gq_model *m, const gq_eval_reference *ref, int B,
                      int ctx, int per_window, size_t scored, gq_error *err)
{
    const size_t V = (size_t)m->cfg.vocab_size, rows = (size_t)B * ctx;
    const bool cmp = ref->kind != GQ_EVAL_REF_NONE, paired = ref->kind == GQ_EVAL_REF_MODEL;
    if (!(b->ws = gq_forward_ws_new(&m->cfg, B * ctx, err)) ||
        (paired && !(b->ref_ws = gq_forward_ws_new(&ref->model->cfg, B * ctx, err))) ||
        !(b->logits = gq_alloc_zero(rows * V * sizeof(float), "evaluation logits", err)) ||
        (paired && !(b->ref_logp = gq_alloc_zero(rows * V * sizeof(float),
                                                 "baseline model logits", err))))
        return -1;
    b->tokens = malloc(rows * sizeof *b->tokens);
    b->nll = malloc(scored * sizeof *b->nll);
    if (cmp) {
        b->kl = malloc(scored * sizeof *b->kl);
        b->agree = malloc(scored);
    }
    if (paired) {
        b->ref_nll = malloc(scored * sizeof *b->ref_nll);
        b->ref_am = malloc((size_t)B * per_window * sizeof *b->ref_am);
    }
    if (!b->tokens || !b->nll || (cmp && (!b->kl || !b->agree)) ||
        (paired && (!b->ref_nll || !b->ref_am)))
        return gq_fail(err, "out of memory for evaluation buffers (%zu positions, batch %d)",
                       scored, B);
    return 0;
}

/* Totals of the per-position arrays, in position order. */
static void summarise(const eval_bufs *b, const gq_eval_reference *ref, size_t scored,
                      gq_eval_result *r)
{
    mean_se(b->nll, scored, &r->mean_nll, &r->nll_se);
    r->ppl = exp(r->mean_nll);
    r->ppl_se = r->nll_se * r->ppl;
    r->tokens_per_s = r->seconds > 0 ? (double)r->tokens / r->seconds : 0.0;
    r->reference = ref->kind;
    if (ref->kind == GQ_EVAL_REF_NONE)
        return;
    r->has_baseline = true;
    if (ref->kind == GQ_EVAL_REF_STORED) {
        r->base_ppl = gq_eval_baseline_ppl(ref->stored);
    } else {
        double base_mean, base_se;
        mean_se(b->ref_nll, scored, &base_mean, &base_se);
        r->base_ppl = exp(base_mean);
    }
    r->delta_ppl = r->ppl - r->base_ppl;
    mean_se(b->kl, scored, &r->kl_mean, &r->kl_se);
    size_t hits = 0;
    for (size_t k = 0; k < scored; k++)
        hits += b->agree[k];
    double p = (double)hits / (double)scored;
    r->top1_pct = 100.0 * p;
    r->top1_se_pct = scored > 1 ? 100.0 * sqrt(p * (1.0 - p) / (double)(scored - 1)) : 0.0;
}

/* A non-finite NLL or KL (activations that overflow fp32, e.g. from a weight near FLT_MAX) is
 * an error naming the first window and position, never a number in the results. */
static int check_finite(const eval_bufs *b, const gq_eval_reference *ref, size_t scored,
                        int per_window, int first, gq_error *err)
{
    for (size_t k = 0; k < scored; k++) {
        bool bad_ref = ref->kind == GQ_EVAL_REF_MODEL && !isfinite(b->ref_nll[k]);
        bool bad_kl = ref->kind != GQ_EVAL_REF_NONE && !isfinite(b->kl[k]);
        if (isfinite(b->nll[k]) && !bad_ref && !bad_kl)
            continue;
        return gq_fail(err, "%s not finite at window %zu, position %d (activations overflow "
                            "fp32: a weight too large?)",
                       bad_ref ? "the baseline model's log-probabilities are"
                       : !isfinite(b->nll[k]) ? "the model's log-probabilities are"
                                              : "the KL divergence is",
                       k / (size_t)per_window, first + (int)(k % (size_t)per_window));
    }
    return 0;
}

/* Batch tokens: nb windows of ctx tokens from window w0; the llama.cpp protocol starts each
 * window with the tokenizer's BOS (when it has one). */
static void load_windows(int *tokens, const gq_dataset *ds, gq_ppl_protocol protocol, size_t w0,
                         int nb, int ctx)
{
    memcpy(tokens, ds->tokens + w0 * (size_t)ctx, (size_t)nb * ctx * sizeof(int));
    if (protocol == GQ_PPL_LLAMACPP && ds->bos_id >= 0)
        for (int b = 0; b < nb; b++)
            tokens[(size_t)b * ctx] = ds->bos_id;
}

/* Scores the nb x per_window rows of one batch from b->logits ([nb*ctx][V]): NLL per row, the
 * baseline's log-probabilities when bout is set, KL and top-1 agreement against the reference.
 * Row i of the batch is scored position k0 + i. */
static void score_rows(eval_bufs *bf, const gq_eval_reference *ref, gq_eval_baseline *bout,
                       int nb, int ctx, int first, int V, size_t k0)
{
    const int per_window = ctx - 1 - first;
    const gq_eval_baseline *stored = ref->kind == GQ_EVAL_REF_STORED ? ref->stored : NULL;
    const long rows = (long)nb * per_window;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < rows; i++) {
        int b = (int)(i / per_window), p = first + (int)(i % per_window);
        const size_t row = (size_t)b * ctx + (size_t)p, k = k0 + (size_t)i;
        const float *x = bf->logits + row * V;
        int target = bf->tokens[row + 1], am;
        double lse = row_lse(x, V, &am);
        bf->nll[k] = lse - x[target];
        if (bout) {
            float *lp = bout->logp + k * V;
            for (int v = 0; v < V; v++)
                lp[v] = (float)((double)x[v] - lse);
            bout->argmax[k] = am;
            bout->nll[k] = bf->nll[k];
        }
        if (ref->kind != GQ_EVAL_REF_NONE) {
            const float *base_lp = stored ? stored->logp + k * V : bf->ref_logp + row * V;
            int base_am = stored ? stored->argmax[k] : bf->ref_am[i];
            bf->kl[k] = row_kl(base_lp, x, lse, V);
            bf->agree[k] = am == base_am;
        }
    }
}

static void set_shape(gq_eval_result *r, const gq_eval_opts *o, int B, size_t n_windows,
                      size_t scored)
{
    r->protocol = o->protocol;
    r->ctx = o->ctx;
    r->batch = B;
    r->threads = gq_threads_get();
    r->windows = n_windows;
    r->tokens = n_windows * (size_t)o->ctx;
    r->scored = scored;
}

/* Split evaluation: every per-position array (and a baseline being saved) from all ranks;
 * seconds: the slowest rank's. */
static int gather_shares(eval_bufs *bf, gq_eval_baseline *bout, size_t n_windows, int B,
                         int per_window, int V, double *seconds, gq_error *err)
{
    void *const arrays[] = {bf->nll, bf->kl, bf->agree, bf->ref_nll,
                            bout ? bout->nll : NULL, bout ? bout->argmax : NULL,
                            bout ? bout->logp : NULL};
    const size_t elem[] = {sizeof(double), sizeof(double), 1, sizeof(double), sizeof(double),
                           sizeof(int32_t), (size_t)V * sizeof(float)};
    return gq_eval_share_gather(n_windows, B, per_window, arrays, elem, 7, err) ||
           gq_eval_share_slowest(seconds, err);
}

/* A streamed model's progress counts blocks (each batch converts all of them, so one batch
 * can take minutes), any other model's counts windows. */
static void progress_begin(gq_progress *p, const gq_model *m, gq_forward_ws *ws, int B,
                           size_t n_windows)
{
    if (!gq_model_streamed(m)) {
        gq_progress_start(p, "perplexity", (long)n_windows);
        return;
    }
    long n_batches = (long)((n_windows + (size_t)B - 1) / (size_t)B);
    gq_progress_start(p, "perplexity (blocks)", n_batches * m->cfg.n_layers);
    gq_forward_ws_block_progress(ws, p);
}

int gq_eval_run(const gq_model *m, const gq_dataset *ds, const gq_eval_opts *o,
                const gq_eval_reference *ref_in, gq_eval_baseline **base_out, gq_eval_result *r,
                gq_error *err)
{
    memset(r, 0, sizeof *r);
    if (base_out)
        *base_out = NULL;
    const gq_eval_reference ref = ref_in ? *ref_in : gq_eval_ref_none();
    size_t n_windows = 0;
    if (check_inputs(m, ds, o, &ref, &n_windows, err) != 0)
        return -1;
    const int ctx = o->ctx, V = m->cfg.vocab_size;
    const int first = first_scored(o->protocol, ctx);
    const int per_window = ctx - 1 - first;
    const size_t scored = n_windows * (size_t)per_window;
    const int B = auto_batch(o, V, n_windows);

    gq_eval_baseline *bout = NULL;
    eval_bufs bf = {0};
    int rc = -1;
    if (base_out && gq_baseline_new(o->protocol, ctx, V, n_windows, scored, ds->sha256, &bout,
                                    err) != 0)
        goto done;
    if (bufs_alloc(&bf, m, &ref, B, ctx, per_window, scored, err))
        goto done;

    size_t w_begin, w_end; /* this rank's windows (all of them unless o->split) */
    gq_eval_share_windows(n_windows, B, o->split, &w_begin, &w_end);
    const bool per_block = gq_model_streamed(m);
    gq_progress prog = {0};
    if (o->progress)
        progress_begin(&prog, m, bf.ws, B, w_end - w_begin);
    for (size_t w0 = w_begin; w0 < w_end; w0 += (size_t)B) {
        int nb = (int)(w_end - w0 < (size_t)B ? w_end - w0 : (size_t)B);
        const size_t k0 = w0 * (size_t)per_window;
        load_windows(bf.tokens, ds, o->protocol, w0, nb, ctx);
        if (ref.kind == GQ_EVAL_REF_MODEL) {
            double t = gq_now();
            if (gq_forward_prefill(ref.model, bf.tokens, nb, ctx, bf.ref_ws, bf.ref_logp, err))
                goto done;
            reduce_reference(bf.ref_logp, bf.tokens, nb, ctx, first, V, k0, bf.ref_nll,
                             bf.ref_am);
            r->ref_seconds += gq_now() - t;
        }
        double t = gq_now();
        if (gq_forward_prefill(m, bf.tokens, nb, ctx, bf.ws, bf.logits, err) != 0)
            goto done;
        score_rows(&bf, &ref, bout, nb, ctx, first, V, k0);
        r->seconds += gq_now() - t;
        if (o->progress && !per_block)
            gq_progress_add(&prog, nb);
    }
    if (o->progress)
        gq_progress_finish(&prog);

    if (o->split && gather_shares(&bf, bout, n_windows, B, per_window, V, &r->seconds, err))
        goto done;
    set_shape(r, o, B, n_windows, scored);
    if (check_finite(&bf, &ref, scored, per_window, first, err))
        goto done;
    summarise(&bf, &ref, scored, r);
    if (bout)
        bout->hdr->mean_nll = r->mean_nll;
    if (base_out) {
        *base_out = bout;
        bout = NULL;
    }
    rc = 0;
done:
    gq_eval_baseline_free(bout);
    bufs_free(&bf);
    return rc;
}

int gq_eval_perplexity(const gq_model *m, const gq_dataset *ds, const gq_eval_opts *o,
                       const gq_eval_baseline *base_in, gq_eval_baseline **base_out,
                       gq_eval_result *r, gq_error *err)
{
    gq_eval_reference ref = gq_eval_ref_stored(base_in);
    return gq_eval_run(m, ds, o, &ref, base_out, r, err);
}
