#ifndef GQ_EVAL_H
#define GQ_EVAL_H
/* Perplexity, and KL divergence / top-1 agreement against a baseline model, over the
 * evaluation windows of a dataset.
 *
 * Protocols (windows are non-overlapping runs of ctx tokens of the dataset, whose token 0 is
 * the single BOS; the tail that does not fill a window is dropped; window w is tokens
 * [w*ctx, (w+1)*ctx)):
 *   GQ_PPL_FULL      (GPTQ/AWQ papers): the window as is; positions 0..ctx-2 predict tokens
 *                    1..ctx-1, so ctx-1 predictions per window.
 *   GQ_PPL_LLAMACPP  (llama.cpp perplexity tool): the window's first token replaced by BOS;
 *                    positions ctx/2..ctx-2 predict tokens ctx/2+1..ctx-1 (the second half),
 *                    so ctx-1-ctx/2 predictions per window.
 * PPL = exp(mean NLL) over all scored predictions (natural log). Its standard error is
 * llama.cpp's: sigma = sqrt(var(NLL) / (n-1)) * PPL with var the population variance.
 *
 * Baseline comparison against a reference (gq_eval_reference), in one of two modes:
 *   stored  a first call with baseline_out != NULL keeps the baseline model's
 *           log-probabilities (all vocab entries, fp32) at every scored position; a later call
 *           on another model with that stored baseline (same dataset, protocol, ctx and
 *           windows, checked) compares against them. Memory and file size of a baseline:
 *           192 + scored * (vocab * 4 + 12) bytes (gq_eval_stored_bytes).
 *   paired  the baseline MODEL is given instead: for every batch of windows its forward pass
 *           runs right before the evaluated model's, on the same tokens, and its logits are
 *           turned into the same fp32 log-probabilities in place. Nothing outlives the batch
 *           except 8 bytes per scored position (its NLL), so memory is two logits buffers
 *           (batch * ctx * vocab * 4 bytes each) instead of the whole baseline; the price is
 *           one extra forward pass per evaluation.
 * Both modes add mean KL(base || model) with its standard error, top-1 agreement (% of
 * positions whose argmax matches the baseline's argmax) and delta-PPL = PPL(model) -
 * PPL(base), and give the same numbers bit for bit: the same per-position arithmetic on the
 * same fp32 log-probabilities, summed in the same order.
 *
 * Every per-position number is computed in double by one thread and summed in position order,
 * so results do not depend on the thread count (beyond what the forward pass itself does). */
#include <stdbool.h>
#include <stddef.h>

#include "core/gq_error.h"
#include "model/gq_model.h"
#include "text/gq_dataset.h"

typedef enum { GQ_PPL_FULL = 0, GQ_PPL_LLAMACPP = 1 } gq_ppl_protocol;

/* "full" / "llamacpp". */
const char *gq_ppl_protocol_name(gq_ppl_protocol p);
int gq_ppl_protocol_parse(const char *s, gq_ppl_protocol *p, gq_error *err);

typedef struct gq_eval_opts {
    int ctx;                  /* window length in tokens, 2..seq_len (4.. for llamacpp) */
    gq_ppl_protocol protocol;
    long max_windows;         /* evaluate only the first max_windows windows; 0 = all */
    int batch;                /* windows per prefill; 0 = automatic (logits buffer <= 256 MiB) */
    bool progress;            /* show a progress line on stderr */
    bool split;               /* under mpirun: the batches are shared among the ranks and the
                                 per-position values gathered (eval_share.h); every rank gets
                                 the whole result, bit-identical to one process */
} gq_eval_opts;

/* Defaults: ctx = the model's seq_len (set by the caller), full protocol, all windows,
 * automatic batch, progress on. */
gq_eval_opts gq_eval_opts_default(int ctx);

typedef struct gq_eval_baseline gq_eval_baseline;

/* What KL / top-1 / delta-PPL are measured against. */
typedef enum {
    GQ_EVAL_REF_NONE = 0, /* perplexity only */
    GQ_EVAL_REF_STORED,   /* a baseline's saved log-probabilities */
    GQ_EVAL_REF_MODEL,    /* the baseline model, run on each batch beside the evaluated one */
} gq_eval_ref_kind;

typedef struct gq_eval_reference {
    gq_eval_ref_kind kind;
    union {
        const gq_eval_baseline *stored; /* GQ_EVAL_REF_STORED */
        const gq_model *model;          /* GQ_EVAL_REF_MODEL: same vocabulary, seq_len >= ctx */
    };
} gq_eval_reference;

static inline gq_eval_reference gq_eval_ref_none(void)
{
    return (gq_eval_reference){.kind = GQ_EVAL_REF_NONE};
}
static inline gq_eval_reference gq_eval_ref_stored(const gq_eval_baseline *b)
{
    return b ? (gq_eval_reference){.kind = GQ_EVAL_REF_STORED, .stored = b} : gq_eval_ref_none();
}
static inline gq_eval_reference gq_eval_ref_model(const gq_model *m)
{
    return (gq_eval_reference){.kind = GQ_EVAL_REF_MODEL, .model = m};
}
/* "none" / "stored" / "paired" (the names used in result tables). */
const char *gq_eval_ref_kind_name(gq_eval_ref_kind k);

typedef struct gq_eval_result {
    gq_ppl_protocol protocol;
    int ctx;
    int batch;           /* windows per prefill actually used */
    int threads;
    size_t windows;      /* windows evaluated */
    size_t tokens;       /* tokens run through the model: windows * ctx */
    size_t scored;       /* predictions scored */
    double mean_nll;     /* nats per scored token */
    double nll_se;       /* standard error of mean_nll */
    double ppl, ppl_se;
    double seconds;      /* wall time of this model's forward passes and scoring */
    double tokens_per_s; /* tokens / seconds */
    double ref_seconds;  /* paired mode: wall time of the reference model's passes (not in
                            seconds, so tokens_per_s compares across modes) */
    gq_eval_ref_kind reference;
    bool has_baseline;   /* the fields below are set (reference != GQ_EVAL_REF_NONE) */
    double base_ppl, delta_ppl;
    double kl_mean, kl_se; /* nats */
    double top1_pct, top1_se_pct;
} gq_eval_result;

/* The checks gq_eval_perplexity starts with (ctx range for the protocol, counts, at least one
 * window, token ids inside the vocabulary, a baseline matching the evaluation), without
 * running anything: callers use it to reject invalid input before any work. */
int gq_eval_check_ref(const gq_model *m, const gq_dataset *ds, const gq_eval_opts *opts,
                      const gq_eval_reference *ref, gq_error *err);

/* Evaluates `m` on `ds`, compared with `ref` (NULL = none). baseline_out: when non-NULL,
 * receives a new stored baseline of this model (caller frees). */
int gq_eval_run(const gq_model *m, const gq_dataset *ds, const gq_eval_opts *opts,
                const gq_eval_reference *ref, gq_eval_baseline **baseline_out,
                gq_eval_result *result, gq_error *err);
/* gq_eval_run with a stored baseline (baseline_in) or none (NULL). */
int gq_eval_perplexity(const gq_model *m, const gq_dataset *ds, const gq_eval_opts *opts,
                       const gq_eval_baseline *baseline_in, gq_eval_baseline **baseline_out,
                       gq_eval_result *result, gq_error *err);

/* Bytes a stored baseline of this evaluation takes in memory and on disk:
 * 192 + scored * (vocab * 4 + 12) with scored = windows * (ctx - 1 - first scored position),
 * windows as gq_eval_run would evaluate them. SIZE_MAX when that overflows size_t; 0 when the
 * inputs are invalid (err set). */
size_t gq_eval_stored_bytes(const gq_model *m, const gq_dataset *ds, const gq_eval_opts *opts,
                            gq_error *err);

void gq_eval_baseline_free(gq_eval_baseline *b);
/* Binary file with a header (magic, protocol, ctx, vocab, windows, dataset SHA-256), written
 * atomically; loading checks the header and the size. */
int gq_eval_baseline_save(const gq_eval_baseline *b, const char *path, gq_error *err);
int gq_eval_baseline_load(const char *path, gq_eval_baseline **b, gq_error *err);
/* The same checks on a block already in memory (malloc'd data of size bytes, the file image:
 * taken over, freed on failure); `path` names it in messages. */
int gq_eval_baseline_adopt(char *data, size_t size, const char *path, gq_eval_baseline **b,
                           gq_error *err);
/* PPL of the baseline model on its positions. */
double gq_eval_baseline_ppl(const gq_eval_baseline *b);

#endif
