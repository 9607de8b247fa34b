/* Method chains: transform-only methods (SmoothQuant, rotate) followed by one weight method,
 * applied in order to the same block within the layer-wise pipeline (the whole-model steps of
 * members that have one first, in order). The chain is itself a gq_method
 * (name "smoothquant+rtn"), so the pipeline, validation and the results see one method; its
 * parameters are the members' (gq_method_chain_to_json: one object per member). */
#include "methods/method_chain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct chain {
    gq_method m;             /* the chain as a method; m.name = name */
    char *name;              /* member names joined by '+' */
    int n;
    gq_method_cfg *members;  /* n, in order; the last is the weight method */
} chain;

static const gq_param_spec no_params[] = {{0}};

/* Whether pred holds for some member. */
static bool any_member(const chain *ch, bool (*pred)(const gq_method_cfg *))
{
    for (int i = 0; i < ch->n; i++)
        if (pred(&ch->members[i]))
            return true;
    return false;
}

static bool chain_needs_calibration(const void *p)
{
    return any_member(p, gq_method_cfg_needs_calibration);
}

static bool chain_adds_transforms(const void *p)
{
    return any_member(p, gq_method_cfg_adds_transforms);
}

static int chain_check_layer(const void *p, const gq_config *c, int layer,
                             const gq_quantizer *const quant[GQ_N_LINEAR], gq_error *err)
{
    const chain *ch = p;
    for (int i = 0; i < ch->n; i++)
        if (gq_method_cfg_check_layer(&ch->members[i], c, layer, quant, err))
            return -1;
    return 0;
}

/* The members' whole-model steps, in order (gq_method.transform_outer, transform_block). */
static int chain_transform_outer(const void *p, gq_model *m, gq_error *err)
{
    const chain *ch = p;
    for (int i = 0; i < ch->n; i++) {
        const gq_method *mm = ch->members[i].method;
        if (mm->transform_outer && mm->transform_outer(ch->members[i].params, m, err))
            return gq_fail_prefix(err, "%s", mm->name);
    }
    return 0;
}

static int chain_transform_block(const void *p, const gq_config *c, gq_layer *L, gq_error *err)
{
    const chain *ch = p;
    for (int i = 0; i < ch->n; i++) {
        const gq_method *mm = ch->members[i].method;
        if (mm->transform_block && mm->transform_block(ch->members[i].params, c, L, err))
            return gq_fail_prefix(err, "%s", mm->name);
    }
    return 0;
}

static int chain_block(const void *p, gq_block_ctx *ctx, gq_error *err)
{
    const chain *ch = p;
    for (int i = 0; i < ch->n; i++)
        if (ch->members[i].method->quantize_block &&
            ch->members[i].method->quantize_block(ch->members[i].params, ctx, err))
            return gq_fail_prefix(err, "%s", ch->members[i].method->name);
    return 0;
}

bool gq_method_cfg_is_chain(const gq_method_cfg *cfg)
{
    return cfg->method && cfg->method->quantize_block == chain_block;
}

void gq_method_chain_free(void *p)
{
    chain *ch = p;
    if (!ch)
        return;
    for (int i = 0; i < ch->n; i++)
        if (ch->members[i].method)
            gq_method_cfg_free(&ch->members[i]);
    free(ch->members);
    free(ch->name);
    free(ch);
}

json_t *gq_method_chain_to_json(const gq_method_cfg *cfg)
{
    const chain *ch = cfg->params;
    json_t *a = json_array();
    for (int i = 0; a && i < ch->n; i++)
        if (json_array_append_new(a, gq_method_cfg_to_json(&ch->members[i]))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

/* The order rules over the parsed members (see method_chain.h). */
static int check_order(const chain *ch, const char *path, gq_error *err)
{
    int weight = -1;
    for (int i = 0; i < ch->n; i++) {
        const gq_method *m = ch->members[i].method;
        if (m->transform_only && weight >= 0)
            return gq_fail(err, "%s[%d]: \"%s\" only transforms the FP weights and must come "
                                "before the weight method \"%s\"", path, i, m->name,
                           ch->members[weight].method->name);
        if (!m->transform_only && weight >= 0)
            return gq_fail(err, "%s[%d]: a second weight method \"%s\" after \"%s\" (a chain "
                                "quantizes once)", path, i, m->name,
                           ch->members[weight].method->name);
        if (!m->transform_only)
            weight = i;
    }
    if (weight < 0)
        return gq_fail(err, "%s: no weight method in the chain (end it with one, e.g. \"rtn\")",
                       path);
    return 0;
}

/* The chain's method entry: its name and the members' combined properties. */
static int describe(chain *ch, gq_error *err)
{
    size_t len = 1;
    for (int i = 0; i < ch->n; i++)
        len += strlen(ch->members[i].method->name) + 1;
    if (!(ch->name = malloc(len)))
        return gq_fail(err, "method chain: out of memory");
    ch->name[0] = '\0';
    bool fp_inputs = false, model_step = false;
    for (int i = 0; i < ch->n; i++) {
        if (i)
            strcat(ch->name, "+");
        strcat(ch->name, ch->members[i].method->name);
        fp_inputs |= ch->members[i].method->needs_fp_inputs;
        model_step |= ch->members[i].method->transform_outer != NULL;
    }
    ch->m = (gq_method){.name = ch->name, .summary = "method chain", .params = no_params,
                        .needs_calibration = chain_needs_calibration,
                        .propagate = ch->members[ch->n - 1].method->propagate,
                        .needs_fp_inputs = fp_inputs, .quantize_block = chain_block,
                        .check_layer = chain_check_layer,
                        .adds_transforms = chain_adds_transforms,
                        .transform_outer = model_step ? chain_transform_outer : NULL,
                        .transform_block = model_step ? chain_transform_block : NULL};
    return 0;
}

/* Member i of the list at `path`: a name or an object, never a list. */
static int parse_member(const json_t *list, size_t i, const char *path, gq_method_cfg *out,
                        gq_error *err)
{
    char sub[256];
    snprintf(sub, sizeof sub, "%s[%zu]", path, i);
    const json_t *v = json_array_get(list, i);
    if (json_is_string(v))
        return gq_method_cfg_init_member(out, json_string_value(v), NULL, sub, err);
    if (!json_is_object(v))
        return gq_fail(err, "%s: expected a method name or an object {\"name\": ..., "
                            "parameters} (a chain cannot hold a chain)", sub);
    return gq_method_cfg_member_from_json(v, sub, out, err);
}

int gq_method_chain_from_json(const json_t *list, const char *path, gq_method_cfg *cfg,
                              gq_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    const size_t n = json_array_size(list);
    if (n == 0)
        return gq_fail(err, "%s: an empty method chain", path);
    chain *ch = calloc(1, sizeof *ch);
    if (!ch || !(ch->members = calloc(n, sizeof *ch->members))) {
        free(ch);
        return gq_fail(err, "%s: out of memory", path);
    }
    for (size_t i = 0; i < n; i++, ch->n++)
        if (parse_member(list, i, path, &ch->members[i], err)) {
            gq_method_chain_free(ch);
            return -1;
        }
    if (check_order(ch, path, err) || (n > 1 && describe(ch, err))) {
        gq_method_chain_free(ch);
        return -1;
    }
    if (n == 1) { /* ["rtn"] is "rtn" */
        *cfg = ch->members[0];
        ch->n = 0;
        gq_method_chain_free(ch);
        return 0;
    }
    cfg->method = &ch->m;
    cfg->params = ch;
    return 0;
}
