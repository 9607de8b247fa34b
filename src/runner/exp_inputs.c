/* Validation of the experiment's texts against its model, before any work: the tokenizer's
 * vocabulary is the model's, the evaluation text holds at least one window, and the
 * calibration text holds the tokens the cells draw (gq_exp_check_calib). The texts are
 * tokenized here once to know their token counts; their hashes come from the same reads. */
#include <string.h>

#include "gguf/gq_gguf_model.h"
#include "runner/runner_internal.h"
#include "text/gq_dataset.h"
#include "text/gq_tokenizer.h"

static int check_eval(gq_experiment *e, const gq_dataset *ds, gq_error *err)
{
    size_t windows = gq_dataset_n_windows(ds, e->eval.ctx);
    if (windows == 0)
        return gq_fail(err, "$.eval.text: %s has %zu tokens, fewer than one window of ctx = %d",
                       e->eval_path, ds->n_tokens, e->eval.ctx);
    if (e->eval.max_windows > 0 && (size_t)e->eval.max_windows < windows)
        windows = (size_t)e->eval.max_windows;
    e->eval_windows = windows;
    memcpy(e->eval_sha256, ds->sha256, sizeof e->eval_sha256);
    return 0;
}

int gq_exp_check_inputs(gq_experiment *e, gq_error *err)
{
    gq_tokenizer *tok;
    if (gq_tokenizer_open(e->tokenizer_path, e->cfg.vocab_size, &tok, err))
        return gq_fail_prefix(err, "$.model.tokenizer");
    gq_dataset ds = {0};
    int rc = -1;
    if (gq_dataset_load(e->eval_path, tok, &ds, err)) {
        gq_fail_prefix(err, "$.eval.text");
        goto done;
    }
    if (check_eval(e, &ds, err))
        goto done;
    if (e->has_calib) {
        if (strcmp(e->calib_path, e->eval_path) != 0) {
            gq_dataset_free(&ds);
            if (gq_dataset_load(e->calib_path, tok, &ds, err)) {
                gq_fail_prefix(err, "$.calib.text");
                goto done;
            }
        }
        memcpy(e->calib_sha256, ds.sha256, sizeof e->calib_sha256);
        e->calib_tokens = ds.n_tokens;
        /* Same text: hold out the evaluated windows so no cell calibrates on what it is
         * scored on. */
        e->calib_first = strcmp(e->calib_sha256, e->eval_sha256) == 0
                             ? e->eval_windows * (size_t)e->eval.ctx
                             : 0;
    }
    rc = 0;
done:
    gq_dataset_free(&ds);
    gq_tokenizer_free(tok);
    return rc;
}

int gq_exp_check_calib(const gq_experiment *e, int n_calib, int calib_ctx, gq_error *err)
{
    size_t avail = e->calib_tokens > e->calib_first ? e->calib_tokens - e->calib_first : 0;
    const char *held = e->calib_first ? " after the evaluated windows" : "";
    if (avail < (size_t)calib_ctx)
        return gq_fail(err, "$.calib: %s has %zu tokens%s, fewer than one window of calib_ctx "
                            "= %d", e->calib_path, avail, held, calib_ctx);
    if ((size_t)n_calib * (size_t)calib_ctx > avail)
        return gq_fail(err, "$.calib: n_calib %d x calib_ctx %d = %zu tokens, more than the %zu "
                            "tokens of %s%s (each window would repeat others)", n_calib,
                       calib_ctx, (size_t)n_calib * (size_t)calib_ctx, avail, e->calib_path, held);
    return 0;
}
