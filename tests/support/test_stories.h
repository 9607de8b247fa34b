#ifndef GQ_TEST_STORIES_H
#define GQ_TEST_STORIES_H
/* The stories260K fixture of the tests that run the real model: the model (FP), the TinyStories
 * validation text tokenized with its tok512 tokenizer, and calibration windows drawn from that
 * text. Used as a cmocka group fixture: each file's group setup calls test_stories_setup with its
 * own window plan, tests take the fixture with TEST_STORIES_OR_SKIP. */
#include "test_support.h"

#include "model/gq_model.h"
#include "text/gq_dataset.h"

/* Which calibration windows (gq_calib_windows): n_calib windows of calib_ctx tokens drawn with
 * calib_seed from the tokens after the first calib_first ones (those stay held out, for example
 * for evaluation). n_calib = 0: no calibration windows. */
typedef struct {
    size_t calib_first;
    int n_calib, calib_ctx;
    uint64_t calib_seed;
} test_stories_opts;

typedef struct {
    char model_path[4096], tok_path[4096], text_path[4096]; /* the resolved assets */
    gq_model fp;
    gq_dataset ds;   /* the whole validation text */
    int *calib;      /* (n_calib, calib_ctx) token ids, row-major; NULL when n_calib = 0 */
    int n_calib, calib_ctx;
} test_stories;

/* Group setup: *state = the loaded fixture, or NULL when an asset is missing (test_asset has
 * said so, or failed the run under GQ_REQUIRE_ASSETS=1); returns 0. On a load error prints
 * "setup: <message>" and returns -1. */
int test_stories_setup(void **state, const test_stories_opts *o);

/* Group teardown: frees the fixture in *state (NULL is fine). */
int test_stories_teardown(void **state);

/* Declares `test_stories *f` from the group state, or skips the test when assets are missing. */
#define TEST_STORIES_OR_SKIP(f)       \
    test_stories *f = *state;         \
    if (!f) {                         \
        skip();                       \
        return;                       \
    }

/* Perplexity of `m` on the fixture's text: full protocol, windows of ctx tokens, the first
 * `windows` of them, no progress output. Fails the test on an error. */
double test_stories_ppl(const test_stories *f, const gq_model *m, int ctx, long windows);

#endif
