/* AWQ GEMM checkpoints from int-format codes (gq_awq_export.h). */
#include "runner/gq_awq_export.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gq_version.h"
#include "model/gq_hf_packed.h"
#include "runner/gq_ckpt_export.h"

int gq_awq_nibble(int t)
{
    return 4 * (t % 2) + t / 2;
}

/* gq_int_spec_check: what AWQ GEMM cannot hold of one linear's int settings. */
static int check_spec(const gq_plan_linear *b, const gq_int_spec *s, gq_error *err)
{
    const char *name = b->name;
    if (s->bits != 4)
        return gq_fail(err, "%s: int%d: AWQ's GEMM kernels hold 4-bit codes only", name,
                       s->bits);
    if (strcmp(s->zero, "asym") != 0)
        return gq_fail(err, "%s: zero %s: AWQ stores a zero point per group (zero_point true), "
                            "the min-max convention of --set zero=asym", name, s->zero);
    if (!s->fp16)
        return gq_fail(err, "%s: scale_dtype fp32: AWQ stores fp16 scales", name);
    if (s->group_size < 0)
        return gq_fail(err, "%s: granularity %s: an AWQ checkpoint holds one group_size for "
                            "every linear (--set granularity=group)", name, s->granularity);
    if (b->cols % s->group_size != 0)
        return gq_fail(err, "%s: group_size %d does not divide its %d input columns", name,
                       s->group_size, b->cols);
    if (b->rows % 8 != 0)
        return gq_fail(err, "%s: %d outputs are not whole int32 words of 8 4-bit codes", name,
                       b->rows);
    return 0;
}

/* Whether a method configuration (an object, or a chain's array of them) has act_order. */
static bool reorders_columns(const json_t *m)
{
    if (json_is_array(m)) {
        size_t i;
        json_t *v;
        json_array_foreach(m, i, v) {
            if (reorders_columns(v))
                return true;
        }
        return false;
    }
    return json_is_true(json_object_get(m, "act_order"));
}

int gq_export_awq_check(const gq_quant_plan *plan, const gq_config *c, gq_error *err)
{
    json_t *m = gq_method_cfg_to_json(&plan->method);
    bool reorder = reorders_columns(m);
    json_decref(m);
    if (reorder)
        return gq_fail(err, "method %s with act_order stores its columns in its own order, "
                            "which an AWQ checkpoint cannot hold (g_idx is GPTQ's)",
                       gq_method_name(plan->method.method));
    return gq_ckpt_check_plan(plan, c, "AWQ", check_spec, NULL, err);
}

void gq_awq_linear_free(gq_awq_linear *l)
{
    free(l->qweight);
    free(l->qzeros);
    free(l->scales);
    memset(l, 0, sizeof *l);
}

/* Output c of the checkpoint from storage row r: its codes into qweight (input j, word c / 8),
 * its scales and zero points per group. */
static void pack_output(const gq_pack_codes *pc, int c, int r, gq_awq_linear *o)
{
    const int cols = o->cols, words = o->rows / 8, shift = 4 * gq_awq_nibble(c % 8);
    uint32_t *qw = (uint32_t *)o->qweight, *qz = (uint32_t *)o->qzeros;
    for (int j = 0; j < cols; j++)
        qw[(size_t)j * words + c / 8] |= (uint32_t)pc->codes[(size_t)r * cols + j] << shift;
    for (int g = 0; g < o->groups; g++) {
        size_t src = (size_t)r * o->groups + g;
        o->scales[(size_t)g * o->rows + c] = pc->scales[src];
        qz[(size_t)g * words + c / 8] |= (uint32_t)pc->zeros[src] << shift;
    }
}

int gq_awq_pack(const gq_quantizer *q, const uint8_t *storage, int rows, int cols,
                int head_size, gq_awq_linear *o, gq_error *err)
{
    memset(o, 0, sizeof *o);
    gq_pack_codes pc;
    if (gq_ckpt_int_codes(q, storage, rows, cols, &pc, err))
        return -1;
    int gs = pc.group ? pc.group : cols;
    if (pc.bits != 4 || !pc.zeros || cols % gs || rows % 8) {
        gq_pack_codes_free(&pc);
        return gq_fail(err, "(%d, %d) int%d g%d: not an AWQ GEMM layout (4 bits, asym zero "
                            "points, groups dividing the input, outputs in 8s)", rows, cols,
                       pc.bits, gs);
    }
    *o = (gq_awq_linear){rows, cols, cols / gs, NULL, NULL, NULL};
    o->qweight = calloc((size_t)cols * (rows / 8), sizeof *o->qweight);
    o->qzeros = calloc((size_t)o->groups * (rows / 8), sizeof *o->qzeros);
    o->scales = calloc((size_t)o->groups * rows, sizeof *o->scales);
    int rc = 0;
    if (!o->qweight || !o->qzeros || !o->scales)
        rc = gq_fail(err, "(%d, %d): out of memory for the AWQ tensors", rows, cols);
    for (int c = 0; !rc && c < rows; c++)
        pack_output(&pc, c, gq_hf_model_row(c, head_size), o);
    gq_pack_codes_free(&pc);
    if (rc)
        gq_awq_linear_free(o);
    return rc;
}

/* gq_hf_pack_fn: the three AWQ tensors of one block linear (their arrays move to the blobs). */
static int pack_site(void *pv, const gq_hf_linear_site *s, gq_st_blob *out, int *n,
                     gq_error *err)
{
    gq_plan_linear b;
    gq_awq_linear l;
    if (gq_ckpt_linear(pv, s, &b, err))
        return -1;
    if (b.perm)
        return gq_fail(err, "%s: the codes hold the columns in another order, which an AWQ "
                            "checkpoint cannot hold", b.name);
    if (gq_awq_pack(b.q, b.codes, s->rows, s->cols, s->head_size, &l, err))
        return gq_fail_prefix(err, "%s", b.name);
    gq_ckpt_blob(&out[0], s->prefix, "qweight", GQ_ST_I32, 2, l.cols, l.rows / 8, l.qweight);
    gq_ckpt_blob(&out[1], s->prefix, "qzeros", GQ_ST_I32, 2, l.groups, l.rows / 8, l.qzeros);
    gq_ckpt_blob(&out[2], s->prefix, "scales", GQ_ST_F16, 2, l.groups, l.rows, l.scales);
    *n = 3;
    return 0;
}

/* quantization_config: AutoAWQ's keys (as transformers' AwqConfig reads them) and gq-bench's
 * provenance. */
static char *quant_config(const gq_quant_plan *plan, const gq_config *c)
{
    gq_int_spec s;
    gq_error ignored = {{0}};
    if (gq_ckpt_check_plan(plan, c, "AWQ", check_spec, &s, &ignored))
        return NULL;
    const gq_quantizer *q = gq_plan_tensor_quantizer(plan, c, "layers.0.attn.q_proj");
    json_t *o = json_pack("{s:s,s:s,s:b,s:i,s:i,s:n,s:{s:[s],s:o,s:o}}", "quant_method", "awq",
                          "version", "gemm", "zero_point", true, "bits", s.bits, "group_size",
                          s.group_size, "modules_to_not_convert", "meta", "quantizer",
                          "gq-bench:" GQ_VERSION, "method",
                          gq_method_cfg_to_json(&plan->method), "format",
                          gq_quantizer_to_json(q));
    char *text = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return text;
}

int gq_export_awq(const char *dir, const gq_quant_plan *plan, const gq_model *q,
                  const gq_quant_report *rep, gq_error *err)
{
    if (gq_export_awq_check(plan, &q->cfg, err))
        return gq_fail_prefix(err, "%s", dir);
    gq_ckpt_ctx x = {plan, q, rep};
    return gq_ckpt_save(&x, dir, quant_config(plan, &q->cfg), pack_site, err);
}
