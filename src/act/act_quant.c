/* Fake quantization of activation rows through a format's group interface, and the per-cell
 * hook the forward pass calls (model/gq_act_hook.h). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "act/gq_act.h"

#define STATE_MAX 256 /* group_state_bytes limit (gq_act_cfg_check) */

/* One segment x[0..len) fitted and quantized into xq (may equal x: every value is read by the
 * fit before any is written). */
static void quant_segment(const gq_format *f, const void *p, const float *x, float *xq,
                          int len)
{
    _Alignas(16) unsigned char st[STATE_MAX];
    f->fit_group(p, x, len, NULL, st);
    for (int i = 0; i < len; i++)
        xq[i] = f->quant_elem(p, st, i, x[i]);
}

void gq_act_quant_dynamic(const gq_act_spec *s, const float *x, float *xq, int n, int width,
                          int T, int head_size)
{
    const gq_format *f = s->q.fmt;
    const void *p = s->q.params;
    int seg = gq_act_seg_cols(s, width, head_size);
    if (seg == 0) { /* one state per window of T tokens */
        int nw = n / T;
        size_t len = (size_t)T * width;
#pragma omp parallel for schedule(static) if ((long)n * width >= 65536 && nw > 1)
        for (int w = 0; w < nw; w++)
            quant_segment(f, p, x + (size_t)w * len, xq + (size_t)w * len, (int)len);
        return;
    }
#pragma omp parallel for schedule(static) if ((long)n * width >= 65536)
    for (int r = 0; r < n; r++)
        for (int j0 = 0; j0 < width; j0 += seg) {
            size_t o = (size_t)r * width + j0;
            quant_segment(f, p, x + o, xq + o, width - j0 < seg ? width - j0 : seg);
        }
}

void gq_act_quant_static(const gq_act_spec *s, const uint8_t *states, const float *x, float *xq,
                         int n, int width)
{
    const gq_format *f = s->q.fmt;
    const void *p = s->q.params;
    size_t sb = f->group_state_bytes;
    int seg = gq_act_seg_cols(s, width, 0);
#pragma omp parallel for schedule(static) if ((long)n * width >= 65536)
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * width;
        float *yr = xq + (size_t)r * width;
        for (int j = 0; j < width; j++) {
            int g = seg ? j / seg : 0, k = seg ? j % seg : j;
            yr[j] = f->quant_elem(p, states + (size_t)g * sb, k, xr[j]);
        }
    }
}

/* The hook is the first member of gq_act_model. */
static const gq_act_model *of_hook(const gq_act_hook *h) { return (const gq_act_model *)h; }

static bool hook_has_input(const gq_act_hook *h, int layer, gq_linear_kind k)
{
    const gq_act_model *am = of_hook(h);
    return layer != am->skip_layer && am->in[(size_t)layer * GQ_N_LINEAR + k] != NULL;
}

static void hook_quant_input(const gq_act_hook *h, int layer, gq_linear_kind k, const float *x,
                             float *xq, int n, int width, int T)
{
    const gq_act_model *am = of_hook(h);
    size_t i = (size_t)layer * GQ_N_LINEAR + k;
    const gq_act_spec *s = am->in[i];
    if (s->scales == GQ_ACT_STATIC)
        gq_act_quant_static(s, am->states[i], x, xq, n, width);
    else
        gq_act_quant_dynamic(s, x, xq, n, width, T, 0);
}

static void hook_quant_kv(const gq_act_hook *h, int layer, bool value, float *rows, int n)
{
    (void)layer;
    (void)value;
    const gq_act_model *am = of_hook(h);
    gq_act_quant_dynamic(am->kv, rows, rows, n, gq_kv_dim(&am->cfg), 1, gq_head_size(&am->cfg));
}

int gq_act_model_init(gq_act_model *am, const gq_config *c, const gq_act_cfg *acts,
                      const gq_act_cfg *kv, gq_error *err)
{
    memset(am, 0, sizeof *am);
    am->cfg = *c;
    am->skip_layer = -1;
    am->hook.has_input = hook_has_input;
    am->hook.quant_input = hook_quant_input;
    am->hook.quant_kv = kv ? hook_quant_kv : NULL;
    am->hook.calibrate_input = gq_act_hook_calibrate_input;
    am->kv = kv ? &kv->def : NULL;
    size_t n = (size_t)c->n_layers * GQ_N_LINEAR;
    am->in = calloc(n, sizeof *am->in);
    am->ranges = calloc(n, sizeof *am->ranges);
    am->states = calloc(n, sizeof *am->states);
    if (!am->in || !am->ranges || !am->states) {
        gq_act_model_free(am);
        return gq_fail(err, "activation quantizers: out of memory");
    }
    for (int l = 0; acts && l < c->n_layers; l++)
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            char name[96];
            gq_tensor_name(l, (gq_linear_kind)k, name, sizeof name);
            am->in[(size_t)l * GQ_N_LINEAR + k] = gq_act_cfg_spec(acts, name);
        }
    return 0;
}

void gq_act_model_free(gq_act_model *am)
{
    size_t n = (size_t)am->cfg.n_layers * GQ_N_LINEAR;
    for (size_t i = 0; am->ranges && i < n; i++)
        free(am->ranges[i]);
    for (size_t i = 0; am->states && i < n; i++)
        free(am->states[i]);
    free(am->ranges);
    free(am->states);
    free(am->in);
    memset(am, 0, sizeof *am);
}

static const gq_act_spec *static_spec(const gq_act_model *am, int l, gq_linear_kind k)
{
    const gq_act_spec *s = am->in[(size_t)l * GQ_N_LINEAR + k];
    return s && s->scales == GQ_ACT_STATIC ? s : NULL;
}

bool gq_act_model_needs_calibration(const gq_act_model *am)
{
    for (int l = 0; l < am->cfg.n_layers; l++)
        for (int k = 0; k < GQ_N_LINEAR; k++)
            if (static_spec(am, l, (gq_linear_kind)k))
                return true;
    return false;
}

int gq_act_n_ranges(const gq_act_model *am, int l, gq_linear_kind k)
{
    const gq_act_spec *s = static_spec(am, l, k);
    if (!s)
        return 0;
    int rows, width;
    gq_linear_shape(&am->cfg, k, &rows, &width);
    int seg = gq_act_seg_cols(s, width, 0);
    return seg ? (width + seg - 1) / seg : 1;
}

int gq_act_set_ranges(gq_act_model *am, int l, gq_linear_kind k, const float *ranges,
                      gq_error *err)
{
    const gq_act_spec *s = static_spec(am, l, k);
    int nr = gq_act_n_ranges(am, l, k);
    size_t i = (size_t)l * GQ_N_LINEAR + k, sb = s ? s->q.fmt->group_state_bytes : 0;
    if (!s)
        return gq_fail(err, "activation ranges for layers.%d.%s, which has no static scales", l,
                       gq_linear_name(k));
    free(am->ranges[i]);
    free(am->states[i]);
    am->ranges[i] = malloc((size_t)nr * 2 * sizeof(float));
    am->states[i] = calloc((size_t)nr, sb);
    if (!am->ranges[i] || !am->states[i])
        return gq_fail(err, "activation ranges: out of memory");
    memcpy(am->ranges[i], ranges, (size_t)nr * 2 * sizeof(float));
    for (int g = 0; g < nr; g++)
        s->q.fmt->fit_group(s->q.params, ranges + 2 * g, 2, NULL, am->states[i] + (size_t)g * sb);
    return 0;
}
