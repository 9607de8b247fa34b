/* Streamed models (gq_stream.h): acquiring and releasing blocks, the llama2.c source (fp32
 * mapping, pages dropped on release), the loading rule. */
#include "model/gq_stream.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/gq_alloc.h"
#include "model/gq_hf.h"
#include "model/model_internal.h"

gq_stream_mode gq_stream_mode_parse(const char *s)
{
    if (s && strcmp(s, "on") == 0)
        return GQ_STREAM_ON;
    if (s && strcmp(s, "off") == 0)
        return GQ_STREAM_OFF;
    return GQ_STREAM_AUTO;
}

bool gq_model_streamed(const gq_model *m)
{
    return m->blocks != NULL;
}

bool gq_model_blocks_resident(const gq_model *m)
{
    return !m->blocks || !m->blocks->fill;
}

size_t gq_model_fp32_bytes(const gq_config *c)
{
    return gq_model_param_count(c) * sizeof(float);
}

void gq_drop_pages(const void *p, size_t bytes, bool round_out)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p, b = a + bytes;
    uintptr_t lo = round_out ? a / page * page : (a + page - 1) / page * page;
    uintptr_t hi = round_out ? (b + page - 1) / page * page : b / page * page;
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_DONTNEED); /* advice only: a failure changes no value */
}

/* Per-block state of a source: the fp32 buffer and how many users hold the block. */
typedef struct {
    gq_block_source src;
    int *held;
    pthread_mutex_t lock; /* runner jobs in parallel threads share one streamed model */
} source_state;

int gq_model_set_source(gq_model *m, const gq_block_source *src, gq_error *err)
{
    source_state *s = calloc(1, sizeof *s);
    int n = m->cfg.n_layers;
    if (s) {
        s->src = *src;
        s->src.buf = calloc((size_t)n, sizeof *s->src.buf);
        s->held = calloc((size_t)n, sizeof *s->held);
        pthread_mutex_init(&s->lock, NULL);
    }
    if (!s || !s->src.buf || !s->held) {
        if (s) {
            free(s->src.buf);
            free(s->held);
        }
        free(s);
        src->close(src->ctx);
        return gq_fail(err, "%s: out of memory", m->path);
    }
    m->blocks = &s->src;
    return 0;
}

void gq_model_close_source(gq_model *m)
{
    if (!m->blocks)
        return;
    source_state *s = (source_state *)m->blocks;
    for (int l = 0; l < m->cfg.n_layers; l++)
        free(s->src.buf[l]);
    s->src.close(s->src.ctx);
    free(s->src.buf);
    free(s->held);
    pthread_mutex_destroy(&s->lock);
    free(s);
    m->blocks = NULL;
}

/* Block l's tensor pointers to NULL (its storage is gone). */
static void unpoint_layer(const gq_config *c, gq_layer *L, int l)
{
    L->rms_att = L->rms_ffn = NULL;
    for (int k = 0; k < GQ_N_LINEAR; k++)
        L->w[k] = NULL;
    gq_extra_tensor ex[GQ_MAX_EXTRAS];
    int ne = gq_layer_extras(c, L, l, ex);
    for (int i = 0; i < ne; i++)
        *ex[i].slot = NULL;
}

/* Block l's fp32 storage filled from the source (the lock held). */
static int fill_block(gq_model *m, source_state *s, int l, gq_error *err)
{
    const gq_config *c = &m->cfg;
    float *buf = gq_alloc_big(gq_layer_floats(c) * sizeof(float));
    if (!buf)
        return gq_fail(err, "%s: out of memory converting block %d to fp32", m->path, l);
    s->src.buf[l] = buf;
    gq_layer_point(c, &m->layers[l], l, buf);
    if (s->src.fill(s->src.ctx, m, l, err) || gq_layer_check_finite(m, l, m->path, err)) {
        free(buf);
        s->src.buf[l] = NULL;
        unpoint_layer(c, &m->layers[l], l);
        return -1;
    }
    return 0;
}

int gq_block_acquire(const gq_model *cm, int l, gq_error *err)
{
    if (!cm->blocks)
        return 0;
    gq_model *m = (gq_model *)cm; /* only layer l's pointers and the source's state change */
    source_state *s = (source_state *)m->blocks;
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    if (s->held[l] == 0 && s->src.fill)
        rc = s->src.unfill ? s->src.fill(s->src.ctx, m, l, err) : fill_block(m, s, l, err);
    if (!rc)
        s->held[l]++;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void gq_block_release(const gq_model *cm, int l)
{
    if (!cm->blocks)
        return;
    gq_model *m = (gq_model *)cm;
    source_state *s = (source_state *)m->blocks;
    pthread_mutex_lock(&s->lock);
    if (s->held[l] > 0 && --s->held[l] == 0) {
        if (s->src.unfill) {
            s->src.unfill(s->src.ctx, m, l);
        } else if (s->src.fill) {
            free(s->src.buf[l]);
            s->src.buf[l] = NULL;
            unpoint_layer(&m->cfg, &m->layers[l], l);
        }
        if (s->src.drop)
            s->src.drop(s->src.ctx, m, l);
    }
    pthread_mutex_unlock(&s->lock);
}

/* llama2.c source: the block's tensors stay in the copy-on-write mapping, never written. */
static void llama2c_drop(void *ctx, const gq_model *m, int l)
{
    (void)ctx;
    const gq_config *c = &m->cfg;
    const gq_layer *L = &m->layers[l];
    for (int k = 0; k < GQ_N_LINEAR; k++) {
        int rows, cols;
        gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
        gq_drop_pages(L->w[k], (size_t)rows * cols * sizeof(float), false);
    }
}

static void no_close(void *ctx)
{
    (void)ctx;
}

static int load_llama2c_streamed(const char *path, gq_model *m, gq_error *err)
{
    if (gq_model_load(path, m, err))
        return -1;
    gq_drop_pages(m->map, m->map_size, false); /* the load's finiteness check touched it all */
    gq_block_source src = {.drop = llama2c_drop, .close = no_close};
    if (gq_model_set_source(m, &src, err)) {
        gq_model_free(m);
        return -1;
    }
    return 0;
}

int gq_model_load_streamed(const char *path, gq_model *m, gq_error *err)
{
    return gq_hf_is_dir(path) ? gq_model_load_hf_streamed(path, m, err)
                              : load_llama2c_streamed(path, m, err);
}

int gq_model_load_mode(const char *path, gq_stream_mode mode, gq_model *m, gq_error *err)
{
    if (mode == GQ_STREAM_OFF)
        return gq_model_load(path, m, err);
    if (gq_model_load_streamed(path, m, err))
        return -1;
    if (mode == GQ_STREAM_ON || gq_model_fp32_bytes(&m->cfg) > GQ_STREAM_AUTO_BYTES)
        return 0;
    gq_model_free(m);
    return gq_model_load(path, m, err);
}

void gq_model_drop_pages(const gq_model *m)
{
    if (!m->blocks)
        return;
    source_state *s = (source_state *)m->blocks;
    pthread_mutex_lock(&s->lock);
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (s->held[l] == 0 && s->src.drop)
            s->src.drop(s->src.ctx, m, l);
    pthread_mutex_unlock(&s->lock);
}
