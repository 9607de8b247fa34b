/* A transform-only method's whole-model step as a streamed view of the FP model
 * (gq_model_step_view, methods/gq_pipeline.h): the outer tensors are transformed once, each
 * block when it is acquired, so the transformed model never exists whole. */
#include <stdlib.h>
#include <string.h>

#include "methods/gq_method.h"
#include "methods/gq_pipeline.h"
#include "model/gq_stream.h"

typedef struct {
    const gq_model *src;
    const gq_method *method;
    const void *params;
} step_source;

/* Block l of the view: src's block copied into the view's buffer, then the block step. */
static int step_fill(void *ctx, gq_model *m, int l, gq_error *err)
{
    const step_source *s = ctx;
    if (gq_block_acquire(s->src, l, err))
        return -1;
    gq_layer_copy(&m->cfg, &m->layers[l], &s->src->layers[l], l);
    gq_block_release(s->src, l);
    if (s->method->transform_block(s->params, &m->cfg, &m->layers[l], err))
        return gq_fail_prefix(err, "%s: layers.%d", s->method->name, l);
    return 0;
}

static void step_close(void *ctx)
{
    free(ctx);
}

/* src's embeddings, final norm, classifier, transforms and rotation, blocks NULL. */
static int outer_copy(const gq_model *src, gq_model *m, gq_error *err)
{
    const gq_config *c = &src->cfg;
    if (gq_model_outer_alloc(m, c, err) || gq_model_copy_transforms(m, src, err))
        return -1;
    size_t emb = (size_t)c->vocab_size * (size_t)c->dim;
    memcpy(m->tok_embeddings, src->tok_embeddings, emb * sizeof(float));
    memcpy(m->rms_final, src->rms_final, (size_t)c->dim * sizeof(float));
    if (!c->shared_classifier)
        memcpy(m->wcls, src->wcls, emb * sizeof(float));
    m->act = src->act;
    memcpy(m->path, src->path, sizeof m->path);
    return 0;
}

int gq_model_step_view(const gq_model *src, const gq_method_cfg *mc, gq_model *view,
                       gq_error *err)
{
    const gq_method *method = mc->method;
    gq_model m = {0};
    if (outer_copy(src, &m, err) || method->transform_outer(mc->params, &m, err)) {
        gq_model_free(&m);
        return -1;
    }
    step_source *s = malloc(sizeof *s);
    if (!s) {
        gq_model_free(&m);
        return gq_fail(err, "%s: out of memory", method->name);
    }
    *s = (step_source){src, method, mc->params};
    gq_block_source bs = {.fill = step_fill, .close = step_close, .ctx = s};
    if (gq_model_set_source(&m, &bs, err)) { /* it closed bs */
        gq_model_free(&m);
        return -1;
    }
    *view = m;
    return 0;
}
