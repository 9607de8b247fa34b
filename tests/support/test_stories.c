#include "test_stories.h"

#include <stdio.h>
#include <stdlib.h>

#include "calib/gq_calib.h"
#include "eval/gq_eval.h"
#include "text/gq_tokenizer.h"

static const char MODEL[] = "models/stories260K/stories260K.bin";
static const char TOKENIZER[] = "models/stories260K/tok512.bin";
static const char TEXT[] = "text/tinystories/tinystories_val.txt";

static void stories_free(test_stories *f)
{
    gq_model_free(&f->fp);
    gq_dataset_free(&f->ds);
    free(f->calib);
    free(f);
}

int test_stories_setup(void **state, const test_stories_opts *o)
{
    *state = NULL;
    test_stories *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (!test_asset(MODEL, f->model_path, sizeof f->model_path) ||
        !test_asset(TOKENIZER, f->tok_path, sizeof f->tok_path) ||
        !test_asset(TEXT, f->text_path, sizeof f->text_path)) {
        free(f);
        return 0;
    }
    f->n_calib = o->n_calib;
    f->calib_ctx = o->calib_ctx;
    gq_error err;
    gq_tokenizer *t = NULL;
    /* each step allocates only on success, so the frees below see zeroed or complete parts */
    int rc = gq_model_load(f->model_path, &f->fp, &err) ||
             gq_tokenizer_load(f->tok_path, f->fp.cfg.vocab_size, &t, &err) ||
             gq_dataset_load(f->text_path, t, &f->ds, &err) ||
             (o->n_calib > 0 && gq_calib_windows(&f->ds, o->calib_first, o->n_calib, o->calib_ctx,
                                                 o->calib_seed, &f->calib, &err));
    if (t)
        gq_tokenizer_free(t);
    if (rc) {
        fprintf(stderr, "setup: %s\n", err.msg);
        stories_free(f);
        return -1;
    }
    *state = f;
    return 0;
}

int test_stories_teardown(void **state)
{
    if (*state)
        stories_free(*state);
    *state = NULL;
    return 0;
}

double test_stories_ppl(const test_stories *f, const gq_model *m, int ctx, long windows)
{
    gq_eval_opts o = gq_eval_opts_default(ctx);
    o.max_windows = windows;
    o.progress = false;
    gq_eval_result r;
    gq_error err;
    assert_int_equal(gq_eval_perplexity(m, &f->ds, &o, NULL, NULL, &r, &err), 0);
    return r.ppl;
}
