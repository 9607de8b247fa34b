/* GPTQ v1 checkpoints from int-format codes (gq_gptq_export.h). */
#include "runner/gq_gptq_export.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_fileio.h"
#include "gq_version.h"
#include "model/gq_hf_packed.h"
#include "runner/gq_ckpt_export.h"

/* Codes per whole number of int32 words: 32 / b for b = 2, 4, 8; 32 codes in 3 words at 3. */
static int codes_per_unit(int bits)
{
    return bits == 3 ? 32 : 32 / bits;
}

/* gq_int_spec_check: what GPTQ v1 cannot hold of one linear's int settings. */
static int check_spec(const gq_plan_linear *b, const gq_int_spec *s, gq_error *err)
{
    const char *name = b->name;
    if (s->bits != 2 && s->bits != 3 && s->bits != 4 && s->bits != 8)
        return gq_fail(err, "%s: int%d: GPTQ packs 2, 3, 4 or 8 bits", name, s->bits);
    if (!s->fp16)
        return gq_fail(err, "%s: scale_dtype fp32: GPTQ stores fp16 scales", name);
    if (strcmp(s->zero, "asym") == 0)
        return gq_fail(err, "%s: zero asym: checkpoint_format gptq (v1) stores zero - 1, so "
                            "asym's zero point 0 has no encoding; use --set zero=sym_gptq "
                            "(GPTQ's sym) or zero=sym", name);
    if (s->group_size > 0 && b->cols % s->group_size != 0)
        return gq_fail(err, "%s: group_size %d does not divide its %d input columns", name,
                       s->group_size, b->cols);
    int unit = codes_per_unit(s->bits);
    if (b->cols % unit != 0 || b->rows % unit != 0)
        return gq_fail(err, "%s: (%d, %d) is not whole int32 words of %d %d-bit codes along "
                            "both dimensions", name, b->rows, b->cols, unit, s->bits);
    return 0;
}

int gq_export_gptq_check(const gq_quant_plan *plan, const gq_config *c, gq_error *err)
{
    return gq_ckpt_check_plan(plan, c, "GPTQ", check_spec, NULL, err);
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
 * qweight's column c (input column perm[i] <- storage column i, a bit stream along the input),
 * its scales, and zeros - 1 per group into qzeros (a bit stream along the output). */
static void pack_output(const gq_pack_codes *pc, const int32_t *perm, int c, int r,
                        gq_gptq_linear *o)
{
    const int bits = o->bits, cols = o->cols, rows = o->rows;
    const int stored_groups = pc->group ? o->groups : 1;
    const size_t zero_words = (size_t)rows * bits / 32;
    uint32_t *qw = (uint32_t *)o->qweight, *qz = (uint32_t *)o->qzeros;
    for (int i = 0; i < cols; i++) {
        int j = perm ? perm[i] : i;
        gq_ckpt_put_bits(qw + c, (size_t)rows, (size_t)j * bits, pc->codes[(size_t)r * cols + i],
                         bits);
    }
    for (int g = 0; g < o->groups; g++) {
        size_t src = (size_t)r * stored_groups + (pc->group ? g : 0);
        uint32_t z = pc->zeros ? pc->zeros[src] : (uint32_t)pc->zconst;
        o->scales[(size_t)g * rows + c] = pc->scales[src];
        gq_ckpt_put_bits(qz + (size_t)g * zero_words, 1, (size_t)c * bits, z - 1u, bits);
    }
}

int gq_gptq_pack(const gq_quantizer *q, const uint8_t *storage, const int32_t *perm, int rows,
                 int cols, int head_size, gq_gptq_linear *o, gq_error *err)
{
    memset(o, 0, sizeof *o);
    gq_pack_codes pc;
    if (gq_ckpt_int_codes(q, storage, rows, cols, &pc, err))
        return -1;
    int bits = pc.bits, unit = bits > 0 ? codes_per_unit(bits) : 1;
    int gs = pc.group ? pc.group : cols;
    if ((bits != 2 && bits != 3 && bits != 4 && bits != 8) ||
        cols % gs || cols % unit || rows % unit) {
        gq_pack_codes_free(&pc);
        return gq_fail(err, "(%d, %d) int%d g%d: not a GPTQ layout", rows, cols, bits, gs);
    }
    if (!pc.zeros && pc.zconst < 1) {
        gq_pack_codes_free(&pc);
        return gq_fail(err, "zero point %d has no v1 encoding (zero - 1)", pc.zconst);
    }
    *o = (gq_gptq_linear){bits, rows, cols, cols / gs, NULL, NULL, NULL, NULL};
    o->qweight = calloc((size_t)cols * bits / 32 * rows, sizeof *o->qweight);
    o->qzeros = calloc((size_t)o->groups * ((size_t)rows * bits / 32), sizeof *o->qzeros);
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

/* gq_hf_pack_fn: the four GPTQ tensors of one block linear (their arrays move to the blobs). */
static int pack_site(void *pv, const gq_hf_linear_site *s, gq_st_blob *out, int *n,
                     gq_error *err)
{
    gq_plan_linear b;
    gq_gptq_linear l;
    if (gq_ckpt_linear(pv, s, &b, err))
        return -1;
    if (gq_gptq_pack(b.q, b.codes, b.perm, s->rows, s->cols, s->head_size, &l, err))
        return gq_fail_prefix(err, "%s", b.name);
    int64_t words_in = (int64_t)l.cols * l.bits / 32, words_out = (int64_t)l.rows * l.bits / 32;
    gq_ckpt_blob(&out[0], s->prefix, "qweight", GQ_ST_I32, 2, words_in, l.rows, l.qweight);
    gq_ckpt_blob(&out[1], s->prefix, "qzeros", GQ_ST_I32, 2, l.groups, words_out, l.qzeros);
    gq_ckpt_blob(&out[2], s->prefix, "scales", GQ_ST_F16, 2, l.groups, l.rows, l.scales);
    gq_ckpt_blob(&out[3], s->prefix, "g_idx", GQ_ST_I32, 1, l.cols, 0, l.g_idx);
    *n = 4;
    return 0;
}

/* quantization_config / quantize_config.json: AutoGPTQ's keys, and gq-bench's provenance. */
static char *quant_config(const gq_quant_plan *plan, const gq_config *c,
                          const gq_quant_report *rep)
{
    gq_int_spec s;
    gq_error ignored = {{0}};
    if (gq_ckpt_check_plan(plan, c, "GPTQ", check_spec, &s, &ignored))
        return NULL;
    const gq_quantizer *q = gq_plan_tensor_quantizer(plan, c, "layers.0.attn.q_proj");
    bool desc_act = false;
    for (size_t i = 0; rep->linear_perm && i < rep->n_linear_codes; i++)
        desc_act |= rep->linear_perm[i] != NULL;
    json_t *o = json_pack("{s:s,s:i,s:i,s:b,s:b,s:b,s:s,s:{s:[s],s:o,s:o}}", "quant_method",
                          "gptq", "bits", s.bits, "group_size", s.group_size, "desc_act",
                          desc_act, "sym", strcmp(s.zero, "sym_gptq") == 0, "static_groups", false, "checkpoint_format",
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
    gq_ckpt_ctx x = {plan, q, rep};
    char path[4200];
    snprintf(path, sizeof path, "%s/quantize_config.json", dir);
    int rc = gq_model_save_hf_packed(q, dir, GQ_ST_F16, qc, pack_site, &x, err) ||
             gq_write_file_atomic(path, qc, strlen(qc), err);
    free(qc);
    return rc ? -1 : 0;
}
