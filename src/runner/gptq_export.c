/* GPTQ v1 checkpoints from int-format codes (gq_gptq_export.h). */
#include "runner/gq_gptq_export.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_fileio.h"
#include "gq_version.h"
#include "model/gq_hf_packed.h"

/* What the quantization_config says of a linear's int format. */
typedef struct gptq_spec {
    int bits;
    int group_size; /* -1: one group per row (per channel or per tensor) */
    bool sym;       /* zero sym_gptq */
} gptq_spec;

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* The spec of quantizer q on linear `name` of (rows, cols), or a refusal naming why. */
static int spec_of(const gq_quantizer *q, const char *name, int rows, int cols, gptq_spec *s,
                   gq_error *err)
{
    if (strcmp(q->fmt->name, "int") != 0)
        return gq_fail(err, "%s: format %s: a GPTQ checkpoint holds int codes only (--quant "
                            "int --set zero=sym_gptq)", name, q->fmt->name);
    json_t *j = gq_quantizer_to_json(q);
    int bits = (int)json_integer_value(json_object_get(j, "bits"));
    int gs = (int)json_integer_value(json_object_get(j, "group_size"));
    bool grouped = strcmp(jstr(j, "granularity"), "group") == 0 && gs < cols;
    const char *zero = jstr(j, "zero");
    bool fp16 = strcmp(jstr(j, "scale_dtype"), "fp16") == 0;
    s->bits = bits;
    s->group_size = grouped ? gs : -1;
    s->sym = strcmp(zero, "sym_gptq") == 0;
    bool asym = strcmp(zero, "asym") == 0;
    json_decref(j);
    if (bits == 3)
        return gq_fail(err, "%s: int3: 3-bit codes straddle int32 words in GPTQ's packing, "
                            "which this writer does not implement (use 2, 4 or 8 bits)", name);
    if (bits != 2 && bits != 4 && bits != 8)
        return gq_fail(err, "%s: int%d: GPTQ packs 2, 3, 4 or 8 bits", name, bits);
    if (!fp16)
        return gq_fail(err, "%s: scale_dtype fp32: GPTQ stores fp16 scales", name);
    if (asym)
        return gq_fail(err, "%s: zero asym: checkpoint_format gptq (v1) stores zero - 1, so "
                            "asym's zero point 0 has no encoding; use --set zero=sym_gptq "
                            "(GPTQ's sym) or zero=sym", name);
    if (grouped && cols % gs != 0)
        return gq_fail(err, "%s: group_size %d does not divide its %d input columns", name, gs,
                       cols);
    int per = 32 / bits;
    if (cols % per != 0 || rows % per != 0)
        return gq_fail(err, "%s: (%d, %d) is not whole int32 words of %d %d-bit codes along "
                            "both dimensions", name, rows, cols, per, bits);
    return 0;
}

int gq_export_gptq_check(const gq_quant_plan *plan, const gq_config *c, gq_error *err)
{
    if (gq_method_cfg_adds_transforms(&plan->method))
        return gq_fail(err, "method %s leaves explicit input transforms or an online rotation in the "
                            "model, which a GPTQ checkpoint cannot hold", gq_method_name(plan->method.method));
    const char *outer[] = {"tok_embeddings", "classifier"};
    for (int i = 0; i < 2; i++)
        if (gq_plan_tensor_quantizer(plan, c, outer[i]))
            return gq_fail(err, "%s: a GPTQ checkpoint keeps the embeddings and the classifier "
                                "in fp16; drop the rule that quantizes them", outer[i]);
    gptq_spec first = {0}, s;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            int rows, cols;
            char name[96];
            gq_linear_shape(c, (gq_linear_kind)k, &rows, &cols);
            gq_tensor_name(l, (gq_linear_kind)k, name, sizeof name);
            const gq_quantizer *q = gq_plan_tensor_quantizer(plan, c, name);
            if (!q)
                return gq_fail(err, "%s: kept in float, but a GPTQ checkpoint quantizes every "
                                    "block linear", name);
            if (spec_of(q, name, rows, cols, &s, err))
                return -1;
            if (l == 0 && k == 0)
                first = s;
            else if (s.bits != first.bits || s.group_size != first.group_size ||
                     s.sym != first.sym)
                return gq_fail(err, "%s: settings differ from layers.0.attn.q_proj's, and one "
                                    "quantization_config holds one bits/group_size/sym", name);
        }
    return 0;
}

void gq_gptq_linear_free(gq_gptq_linear *l)
{
    free(l->qweight);
    free(l->qzeros);
    free(l->scales);
    free(l->g_idx);
    memset(l, 0, sizeof *l);
}

/* Output c of the checkpoint from storage row r of the described codes: its codes into
 * qweight (input column perm[i] <- storage column i), its scales and zeros - 1 per group. */
static void pack_output(const gq_pack_codes *pc, const int32_t *perm, int c, int r,
                        gq_gptq_linear *o)
{
    const int bits = o->bits, per = 32 / bits, cols = o->cols, rows = o->rows;
    const int stored_groups = pc->group ? o->groups : 1;
    uint32_t *qw = (uint32_t *)o->qweight, *qz = (uint32_t *)o->qzeros;
    for (int i = 0; i < cols; i++) {
        int j = perm ? perm[i] : i;
        uint32_t code = pc->codes[(size_t)r * cols + i];
        qw[(size_t)(j / per) * rows + c] |= code << (bits * (j % per));
    }
    for (int g = 0; g < o->groups; g++) {
        size_t src = (size_t)r * stored_groups + (pc->group ? g : 0);
        uint32_t z = pc->zeros ? pc->zeros[src] : (uint32_t)pc->zconst;
        o->scales[(size_t)g * rows + c] = pc->scales[src];
        qz[(size_t)g * (rows / per) + c / per] |= ((z - 1u) & ((1u << bits) - 1u))
                                                   << (bits * (c % per));
    }
}

int gq_gptq_pack(const gq_quantizer *q, const uint8_t *storage, const int32_t *perm, int rows,
                 int cols, int head_size, gq_gptq_linear *o, gq_error *err)
{
    memset(o, 0, sizeof *o);
    gq_pack_codes pc;
    if (!q->fmt->packing || !q->fmt->packing->describe)
        return gq_fail(err, "format %s: no integer codes to pack", q->fmt->name);
    if (q->fmt->packing->describe(q->params, storage, rows, cols, &pc, err))
        return -1;
    int bits = pc.bits, per = bits > 0 ? 32 / bits : 0, gs = pc.group ? pc.group : cols;
    if (pc.kernel != GQ_PACK_INT || (bits != 2 && bits != 4 && bits != 8) || cols % gs ||
        cols % per || rows % per) {
        gq_pack_codes_free(&pc);
        return gq_fail(err, "(%d, %d) int%d g%d: not a GPTQ layout", rows, cols, bits, gs);
    }
    if (!pc.zeros && pc.zconst < 1) {
        gq_pack_codes_free(&pc);
        return gq_fail(err, "zero point %d has no v1 encoding (zero - 1)", pc.zconst);
    }
    *o = (gq_gptq_linear){bits, rows, cols, cols / gs, NULL, NULL, NULL, NULL};
    o->qweight = calloc((size_t)(cols / per) * rows, sizeof *o->qweight);
    o->qzeros = calloc((size_t)o->groups * (rows / per), sizeof *o->qzeros);
    o->scales = calloc((size_t)o->groups * rows, sizeof *o->scales);
    o->g_idx = calloc((size_t)cols, sizeof *o->g_idx);
    int rc = 0;
    if (!o->qweight || !o->qzeros || !o->scales || !o->g_idx)
        rc = gq_fail(err, "(%d, %d): out of memory for the GPTQ tensors", rows, cols);
    for (int i = 0; !rc && i < cols; i++)
        o->g_idx[perm ? perm[i] : i] = i / gs;
    for (int c = 0; !rc && c < rows; c++) {
        int r = gq_hf_model_row(c, head_size);
        int ng = pc.group ? o->groups : 1;
        for (int g = 0; pc.zeros && !rc && g < ng; g++)
            if (pc.zeros[(size_t)r * ng + g] < 1)
                rc = gq_fail(err, "row %d group %d: zero point 0 has no v1 encoding", r, g);
        if (!rc)
            pack_output(&pc, perm, c, r, o);
    }
    gq_pack_codes_free(&pc);
    if (rc)
        gq_gptq_linear_free(o);
    return rc;
}

typedef struct gptq_ctx {
    const gq_quant_plan *plan;
    const gq_model *model;
    const gq_quant_report *rep;
} gptq_ctx;

static void set_blob(gq_st_blob *b, const char *prefix, const char *part, gq_st_dtype dtype,
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

/* gq_hf_pack_fn: the four GPTQ tensors of one block linear (their arrays move to the blobs). */
static int pack_site(void *pv, const gq_hf_linear_site *s, gq_st_blob *out, int *n,
                     gq_error *err)
{
    const gptq_ctx *x = pv;
    size_t idx = (size_t)s->layer * GQ_N_LINEAR + s->kind;
    char name[96];
    gq_tensor_name(s->layer, s->kind, name, sizeof name);
    const gq_quantizer *q = gq_plan_tensor_quantizer(x->plan, &x->model->cfg, name);
    const uint8_t *codes = x->rep->linear_codes && idx < x->rep->n_linear_codes
                               ? x->rep->linear_codes[idx] : NULL;
    if (!q || !codes)
        return gq_fail(err, "%s: the method handed over reconstructions only, not the codes "
                            "it chose; writing re-quantized codes would not be the evaluated "
                            "model", name);
    const int32_t *perm = x->rep->linear_perm ? x->rep->linear_perm[idx] : NULL;
    gq_gptq_linear l;
    if (gq_gptq_pack(q, codes, perm, s->rows, s->cols, s->head_size, &l, err))
        return gq_fail_prefix(err, "%s", name);
    int per = 32 / l.bits;
    set_blob(&out[0], s->prefix, "qweight", GQ_ST_I32, 2, l.cols / per, l.rows, l.qweight);
    set_blob(&out[1], s->prefix, "qzeros", GQ_ST_I32, 2, l.groups, l.rows / per, l.qzeros);
    set_blob(&out[2], s->prefix, "scales", GQ_ST_F16, 2, l.groups, l.rows, l.scales);
    set_blob(&out[3], s->prefix, "g_idx", GQ_ST_I32, 1, l.cols, 0, l.g_idx);
    *n = 4;
    return 0;
}

/* quantization_config / quantize_config.json: AutoGPTQ's keys, and gq-bench's provenance. */
static char *quant_config(const gq_quant_plan *plan, const gq_config *c,
                          const gq_quant_report *rep)
{
    gptq_spec s;
    gq_error ignored = {{0}};
    int rows, cols;
    gq_linear_shape(c, GQ_LIN_Q, &rows, &cols);
    const gq_quantizer *q = gq_plan_tensor_quantizer(plan, c, "layers.0.attn.q_proj");
    if (!q || spec_of(q, "layers.0.attn.q_proj", rows, cols, &s, &ignored))
        return NULL;
    bool desc_act = false;
    for (size_t i = 0; rep->linear_perm && i < rep->n_linear_codes; i++)
        desc_act |= rep->linear_perm[i] != NULL;
    json_t *o = json_pack("{s:s,s:i,s:i,s:b,s:b,s:b,s:s,s:{s:[s],s:o,s:o}}", "quant_method",
                          "gptq", "bits", s.bits, "group_size", s.group_size, "desc_act",
                          desc_act, "sym", s.sym, "static_groups", false, "checkpoint_format",
                          "gptq", "meta", "quantizer", "gq-bench:" GQ_VERSION, "method",
                          gq_method_cfg_to_json(&plan->method), "format",
                          gq_quantizer_to_json(q));
    char *text = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return text;
}

int gq_export_gptq(const char *dir, const gq_quant_plan *plan, const gq_model *q,
                   const gq_quant_report *rep, gq_error *err)
{
    if (gq_export_gptq_check(plan, &q->cfg, err))
        return gq_fail_prefix(err, "%s", dir);
    char *qc = quant_config(plan, &q->cfg, rep);
    if (!qc)
        return gq_fail(err, "%s: out of memory", dir);
    gptq_ctx x = {plan, q, rep};
    char path[4200];
    snprintf(path, sizeof path, "%s/quantize_config.json", dir);
    int rc = gq_model_save_hf_packed(q, dir, GQ_ST_F16, qc, pack_site, &x, err) ||
             gq_write_file_atomic(path, qc, strlen(qc), err);
    free(qc);
    return rc ? -1 : 0;
}
