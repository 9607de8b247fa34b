/* The shared part of the GPTQ and AWQ checkpoint exporters (gq_ckpt_export.h). */
#include "runner/gq_ckpt_export.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void copy_str(char *dst, size_t n, const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    snprintf(dst, n, "%s", s ? s : "");
}

/* The settings of b's int quantizer, or a refusal when it is another format. */
static int spec_of(const gq_plan_linear *b, const char *target, gq_int_spec *s, gq_error *err)
{
    if (strcmp(b->q->fmt->name, "int") != 0)
        return gq_fail(err, "%s: format %s: %s checkpoints hold int codes only (--quant int)",
                       b->name, b->q->fmt->name, target);
    json_t *j = gq_quantizer_to_json(b->q);
    s->bits = (int)json_integer_value(json_object_get(j, "bits"));
    int gs = (int)json_integer_value(json_object_get(j, "group_size"));
    copy_str(s->granularity, sizeof s->granularity, j, "granularity");
    copy_str(s->zero, sizeof s->zero, j, "zero");
    char dtype[16];
    copy_str(dtype, sizeof dtype, j, "scale_dtype");
    s->fp16 = strcmp(dtype, "fp16") == 0;
    /* a group as wide as the row is still that group size (one group in this linear) */
    s->group_size = strcmp(s->granularity, "group") == 0 ? gs : -1;
    json_decref(j);
    return 0;
}

typedef struct {
    const char *target;
    gq_int_spec_check check;
    gq_int_spec first;
    char first_name[64];
} plan_walk;

static int check_linear(void *ctx, const gq_plan_linear *b, gq_error *err)
{
    plan_walk *w = ctx;
    gq_int_spec s;
    if (!b->q)
        return gq_fail(err, "%s: kept in float, but %s checkpoints quantize every block "
                            "linear", b->name, w->target);
    if (spec_of(b, w->target, &s, err) || w->check(b, &s, err))
        return -1;
    if (!w->first_name[0]) {
        w->first = s;
        snprintf(w->first_name, sizeof w->first_name, "%s", b->name);
    } else if (s.bits != w->first.bits || s.group_size != w->first.group_size ||
               strcmp(s.zero, w->first.zero) != 0) {
        return gq_fail(err, "%s: settings differ from %s's, and one quantization_config "
                            "holds one bits/group_size/zero", b->name, w->first_name);
    }
    return 0;
}

int gq_ckpt_check_plan(const gq_quant_plan *plan, const gq_config *c, const char *target,
                       gq_int_spec_check check, gq_int_spec *first, gq_error *err)
{
    if (gq_method_cfg_adds_transforms(&plan->method))
        return gq_fail(err, "method %s leaves explicit input transforms or an online rotation "
                            "in the model, which %s checkpoints cannot hold", gq_method_name(plan->method.method),
                       target);
    const char *outer[] = {"tok_embeddings", "classifier"};
    for (int i = 0; i < 2; i++)
        if (gq_plan_tensor_quantizer(plan, c, outer[i]))
            return gq_fail(err, "%s: %s checkpoints keep the embeddings and the classifier "
                                "in fp16; drop the rule that quantizes them", outer[i], target);
    plan_walk w = {.target = target, .check = check};
    gq_plan_linears src = {.quant_of = gq_plan_tensor_quantizer, .quant_ctx = plan};
    if (gq_plan_each_linear(c, &src, check_linear, &w, err))
        return -1;
    if (first)
        *first = w.first;
    return 0;
}

int gq_ckpt_linear(const gq_ckpt_ctx *x, const gq_hf_linear_site *s, gq_plan_linear *b,
                   gq_error *err)
{
    const gq_quant_report *rep = x->rep;
    gq_plan_linears src = {gq_plan_tensor_quantizer, x->plan,
                           (const uint8_t *const *)rep->linear_codes,
                           (const int32_t *const *)rep->linear_perm, rep->n_linear_codes};
    gq_plan_linear_at(&x->model->cfg, &src, (size_t)s->layer * GQ_N_LINEAR + (size_t)s->kind, b);
    if (!b->q || !b->codes)
        return gq_fail(err, "%s: the method handed over reconstructions only, not the codes "
                            "it chose; writing re-quantized codes would not be the evaluated "
                            "model", b->name);
    return 0;
}

int gq_ckpt_save(const gq_ckpt_ctx *x, const char *dir, char *qc, gq_hf_pack_fn pack,
                 gq_error *err)
{
    if (!qc)
        return gq_fail(err, "%s: out of memory", dir);
    int rc = gq_model_save_hf_packed(x->model, dir, GQ_ST_F16, qc, pack, (void *)x, err);
    free(qc);
    return rc ? -1 : 0;
}

int gq_ckpt_int_codes(const gq_quantizer *q, const uint8_t *storage, int rows, int cols,
                      gq_pack_codes *pc, gq_error *err)
{
    memset(pc, 0, sizeof *pc);
    if (!q->fmt->packing || !q->fmt->packing->describe)
        return gq_fail(err, "format %s: no integer codes to pack", q->fmt->name);
    if (q->fmt->packing->describe(q->params, storage, rows, cols, pc, err))
        return -1;
    if (pc->kernel != GQ_PACK_INT) {
        gq_pack_codes_free(pc);
        return gq_fail(err, "format %s: its storage is not integer codes", q->fmt->name);
    }
    return 0;
}

void gq_ckpt_put_bits(uint32_t *words, size_t stride, size_t pos, uint32_t v, int bits)
{
    const uint32_t mask = bits >= 32 ? 0xffffffffu : (1u << bits) - 1u;
    size_t n = pos / 32;
    unsigned off = (unsigned)(pos % 32);
    v &= mask;
    words[n * stride] |= v << off;
    if (off + (unsigned)bits > 32)
        words[(n + 1) * stride] |= v >> (32 - off);
}

void gq_ckpt_blob(gq_st_blob *b, const char *prefix, const char *part, gq_st_dtype dtype,
                  int ndim, int64_t d0, int64_t d1, void *data)
{
    memset(b, 0, sizeof *b);
    snprintf(b->name, sizeof b->name, "%s.%s", prefix, part);
    b->dtype = dtype;
    b->ndim = ndim;
    b->shape[0] = d0;
    b->shape[1] = d1;
    b->data = data;
}
