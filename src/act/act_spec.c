/* Activation and KV-cache specs: parameter tables, parsing, validation against a model, and
 * the labels of the result columns. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act/gq_act.h"

/* What the tables parse (the format's own parameters are the remaining keys). */
typedef struct act_fields {
    char *format;
    int granularity, group_size, scales, calibration;
    double percentile;
} act_fields;

static const char *const act_gran_names[] = {"tensor", "token", "group", NULL};
static const char *const kv_gran_names[] = {"token", "head", "group", NULL};
static const int kv_gran_map[] = {GQ_ACT_TOKEN, GQ_ACT_HEAD, GQ_ACT_GROUP};
static const char *const scales_names[] = {"dynamic", "static", NULL};
static const char *const calib_names[] = {"max", "percentile", "mse", NULL};

const gq_param_spec gq_act_params[] = {
    {"format", GQ_PARAM_STRING, offsetof(act_fields, format), NULL, 0, 0, NULL,
     "registry format of the activations (its parameters sit beside this key)"},
    {"granularity", GQ_PARAM_CHOICE, offsetof(act_fields, granularity), "token", 0, 0,
     act_gran_names, "one scale per window (tensor), per token, or per group of input channels"},
    {"group_size", GQ_PARAM_INT, offsetof(act_fields, group_size), "128", 1, 1 << 20, NULL,
     "input channels per group (granularity group; must divide every linear's input width)"},
    {"scales", GQ_PARAM_CHOICE, offsetof(act_fields, scales), "dynamic", 0, 0, scales_names,
     "dynamic: fitted on the values at run time; static: calibrated (per tensor or group)"},
    {"calibration", GQ_PARAM_CHOICE, offsetof(act_fields, calibration), "max", 0, 0,
     calib_names, "static range: min/max, the percentile below, or the MSE-optimal shrink"},
    {"percentile", GQ_PARAM_FLOAT, offsetof(act_fields, percentile), "99.99", 50, 100, NULL,
     "calibration percentile: range [p(100-q), p(q)] of the calibration values"},
    {0}};

const gq_param_spec gq_kv_params[] = {
    {"format", GQ_PARAM_STRING, offsetof(act_fields, format), NULL, 0, 0, NULL,
     "registry format of cached keys and values (its parameters sit beside this key)"},
    {"granularity", GQ_PARAM_CHOICE, offsetof(act_fields, granularity), "head", 0, 0,
     kv_gran_names, "one dynamic scale per token, per head of a token, or per group of a head"},
    {"group_size", GQ_PARAM_INT, offsetof(act_fields, group_size), "32", 1, 1 << 20, NULL,
     "channels per group (granularity group; must divide the head size)"},
    {0}};

/* The format object: the section's keys minus the table's, plus "name". */
static json_t *format_json(const json_t *obj, const gq_param_spec *specs, const char *name)
{
    json_t *f = json_object();
    const char *key;
    json_t *v;
    if (!f || json_object_set_new(f, "name", json_string(name)))
        return json_decref(f), NULL;
    json_object_foreach((json_t *)obj, key, v) {
        if (strcmp(key, "overrides") && !gq_params_find(specs, key) &&
            json_object_set(f, key, v)) {
            json_decref(f);
            return NULL;
        }
    }
    return f;
}

/* The table's keys of obj only. */
static json_t *table_json(const json_t *obj, const gq_param_spec *specs)
{
    json_t *t = json_object();
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        if (t && gq_params_find(specs, key) && json_object_set(t, key, v)) {
            json_decref(t);
            return NULL;
        }
    }
    return t;
}

static int spec_parse(const json_t *obj, const char *path, bool kv, gq_act_spec *s,
                      json_t **canonical, gq_error *err)
{
    const gq_param_spec *specs = kv ? gq_kv_params : gq_act_params;
    memset(s, 0, sizeof *s);
    if (!json_is_object(obj))
        return gq_fail(err, "%s: expected an object {\"format\": ..., parameters}", path);
    act_fields f;
    json_t *tj = table_json(obj, specs);
    int rc = !tj ? gq_fail(err, "%s: out of memory", path)
                 : gq_params_parse(specs, tj, path, &f, err);
    json_decref(tj);
    if (rc) {
        gq_params_release(specs, &f);
        return -1;
    }
    s->kv = kv;
    s->granularity = kv ? kv_gran_map[f.granularity] : f.granularity;
    s->group_size = f.group_size;
    s->scales = kv ? GQ_ACT_DYNAMIC : f.scales;
    s->calibration = kv ? GQ_ACT_CAL_MAX : f.calibration;
    s->percentile = kv ? 100.0 : f.percentile;
    json_t *fj = format_json(obj, specs, f.format);
    rc = !fj ? gq_fail(err, "%s: out of memory", path)
             : gq_quantizer_init(&s->q, f.format, NULL, path, err);
    if (rc == 0) { /* again with the parameters, for errors naming them */
        gq_quantizer_free(&s->q);
        json_object_del(fj, "name");
        rc = gq_quantizer_init(&s->q, f.format, fj, path, err);
    }
    if (rc == 0) {
        s->fixed_blocks = !gq_params_find(s->q.fmt->params, "granularity");
        json_t *c = gq_quantizer_to_json(&s->q), *p = gq_params_to_json(specs, &f);
        json_object_del(c, "name");
        json_object_del(c, "granularity");
        json_object_del(c, "group_size");
        json_object_update(p, c);
        json_decref(c);
        /* keys without effect are left out, so that cells differing only there merge */
        if (kv || s->scales == GQ_ACT_DYNAMIC)
            json_object_del(p, "calibration");
        if (kv || s->scales == GQ_ACT_DYNAMIC || s->calibration != GQ_ACT_CAL_PERCENTILE)
            json_object_del(p, "percentile");
        if (s->granularity != GQ_ACT_GROUP)
            json_object_del(p, "group_size");
        *canonical = p;
    }
    json_decref(fj);
    gq_params_release(specs, &f);
    return rc;
}

static int parse_rules(const json_t *arr, const char *path, gq_act_cfg *a, gq_error *err)
{
    if (!json_is_array(arr))
        return gq_fail(err, "%s.overrides: expected an array of {\"pattern\", \"keep_fp\" | "
                            "spec}", path);
    size_t n = json_array_size(arr);
    a->rules = calloc(n + 1, sizeof *a->rules);
    a->rule_specs = calloc(n + 1, sizeof *a->rule_specs);
    if (!a->rules || !a->rule_specs)
        return gq_fail(err, "%s.overrides: out of memory", path);
    for (size_t i = 0; i < n; i++, a->n_rules++) {
        char sub[160];
        snprintf(sub, sizeof sub, "%s.overrides[%zu]", path, i);
        json_t *o = json_array_get(arr, i), *pat = json_object_get(o, "pattern");
        if (!json_is_object(o) || !json_is_string(pat))
            return gq_fail(err, "%s: expected an object with a \"pattern\" string", sub);
        gq_tensor_rule *r = &a->rules[i];
        if (!(r->pattern = strdup(json_string_value(pat))))
            return gq_fail(err, "%s: out of memory", sub);
        json_t *kf = json_object_get(o, "keep_fp");
        if (kf) {
            if (!json_is_true(kf) || json_object_size(o) != 2)
                return gq_fail(err, "%s: give either \"keep_fp\": true alone or a spec", sub);
            r->keep_fp = true;
            continue;
        }
        json_t *spec = json_deep_copy(o), *canon = NULL;
        json_object_del(spec, "pattern");
        int rc = spec_parse(spec, sub, false, &a->rule_specs[i], &canon, err);
        json_decref(spec);
        json_decref(canon);
        if (rc)
            return -1;
        r->quantizer = a->rule_specs[i].q; /* shared: gq_act_cfg_free frees it once */
    }
    return 0;
}

int gq_act_cfg_parse(const json_t *obj, const char *path, bool kv, gq_act_cfg *out,
                     gq_error *err)
{
    memset(out, 0, sizeof *out);
    json_t *copy = json_is_object(obj) ? json_deep_copy(obj) : NULL;
    json_t *ov = copy ? json_object_get(copy, "overrides") : NULL;
    if (ov && kv) {
        json_decref(copy);
        return gq_fail(err, "%s.overrides: the KV cache has one spec (no overrides)", path);
    }
    if (ov)
        json_incref(ov);
    if (copy)
        json_object_del(copy, "overrides");
    int rc = spec_parse(copy ? copy : obj, path, kv, &out->def, &out->canonical, err);
    if (rc == 0 && ov) {
        rc = parse_rules(ov, path, out, err);
        if (rc == 0 && json_object_set(out->canonical, "overrides", ov))
            rc = gq_fail(err, "%s: out of memory", path);
    }
    json_decref(ov);
    json_decref(copy);
    if (rc)
        gq_act_cfg_free(out);
    return rc;
}

void gq_act_cfg_free(gq_act_cfg *a)
{
    if (a->def.q.fmt)
        gq_quantizer_free(&a->def.q);
    for (int i = 0; i < a->n_rules; i++) {
        free(a->rules[i].pattern);
        if (a->rule_specs[i].q.fmt)
            gq_quantizer_free(&a->rule_specs[i].q);
    }
    if (a->rules && a->rule_specs && a->rule_specs[a->n_rules].q.fmt) /* parse failed mid-rule */
        gq_quantizer_free(&a->rule_specs[a->n_rules].q);
    if (a->rules)
        free(a->rules[a->n_rules].pattern);
    free(a->rules);
    free(a->rule_specs);
    json_decref(a->canonical);
    memset(a, 0, sizeof *a);
}

bool gq_act_cfg_is_static(const gq_act_cfg *a)
{
    bool st = a->def.scales == GQ_ACT_STATIC;
    for (int i = 0; i < a->n_rules; i++)
        st |= !a->rules[i].keep_fp && a->rule_specs[i].scales == GQ_ACT_STATIC;
    return st;
}

int gq_act_seg_cols(const gq_act_spec *s, int width, int head_size)
{
    switch (s->granularity) {
    case GQ_ACT_TENSOR: return 0;
    case GQ_ACT_TOKEN: return width;
    case GQ_ACT_HEAD: return head_size;
    default: return s->group_size < width ? s->group_size : width;
    }
}

static const char *gran_name(const gq_act_spec *s)
{
    static const char *const names[] = {"tensor", "token", "group", "head"};
    return names[s->granularity];
}

/* One spec against the row width of what it quantizes (`what`: a tensor name or "the KV
 * cache"); hs: the head size for the KV cache. */
static int check_width(const gq_act_spec *s, int width, int hs, const char *what,
                       const char *path, gq_error *err)
{
    const gq_format *f = s->q.fmt;
    int span = s->kv ? hs : width;
    if (s->granularity == GQ_ACT_GROUP && (s->group_size > span || span % s->group_size))
        return gq_fail(err, "%s.group_size: %d does not divide the %s of %s (%d)", path,
                       s->group_size, s->kv ? "head size" : "input width", what, span);
    if (!s->fixed_blocks)
        return 0;
    int blk = f->group_cols(s->q.params, width), seg = gq_act_seg_cols(s, width, hs);
    if (blk != seg)
        return gq_fail(err, "%s.granularity: format %s quantizes blocks of %d channels; use "
                            "\"granularity\": \"group\" with \"group_size\": %d (%s: %d wide)",
                       path, f->name, blk, blk, what, width);
    return 0;
}

/* What a spec needs whatever it quantizes. */
static int check_spec(const gq_act_spec *s, const char *path, bool has_calib, gq_error *err)
{
    const gq_format *f = s->q.fmt;
    if (!f->fit_group || !f->quant_elem || f->group_state_bytes > 256)
        return gq_fail(err, "%s.format: %s cannot quantize activations (it has no group "
                            "interface to fit a scale on a run of values)", path, f->name);
    if (s->scales == GQ_ACT_STATIC) {
        if (s->granularity == GQ_ACT_TOKEN)
            return gq_fail(err, "%s.scales: static scales are per tensor or per group of "
                                "channels (a token's scale exists only at run time)", path);
        if (s->fixed_blocks)
            return gq_fail(err, "%s.scales: static scales need a format with a scale per "
                                "tensor, channel or group (int, fp); %s fits its own blocks",
                           path, f->name);
        if (!has_calib)
            return gq_fail(err, "%s.scales: static scales are calibrated, but there is no "
                                "calibration data ($.calib or --calib-data)", path);
    }
    if (!s->kv && s->granularity == GQ_ACT_HEAD)
        return gq_fail(err, "%s.granularity: head is for the KV cache", path);
    return 0;
}

const gq_act_spec *gq_act_cfg_spec(const gq_act_cfg *a, const char *name)
{
    const gq_quantizer *q =
        gq_tensor_quantizer(&a->def.q, a->rules, a->n_rules, false, name);
    if (!q)
        return NULL;
    if (q == &a->def.q)
        return &a->def;
    const gq_tensor_rule *r = (const gq_tensor_rule *)(const void *)((const char *)q -
                                                                    offsetof(gq_tensor_rule,
                                                                             quantizer));
    return &a->rule_specs[r - a->rules];
}

/* The path of a spec of the section: "$.activations" or "$.activations.overrides[i]". */
static void spec_path(const gq_act_cfg *a, const gq_act_spec *s, const char *path, char *buf,
                      size_t n)
{
    if (s == &a->def)
        snprintf(buf, n, "%s", path);
    else
        snprintf(buf, n, "%s.overrides[%d]", path, (int)(s - a->rule_specs));
}

int gq_act_cfg_check(const gq_act_cfg *a, const gq_config *c, const char *path, bool has_calib,
                     gq_error *err)
{
    char sub[160];
    if (check_spec(&a->def, path, has_calib, err))
        return -1;
    for (int i = 0; i < a->n_rules; i++) {
        snprintf(sub, sizeof sub, "%s.overrides[%d]", path, i);
        if (!a->rules[i].keep_fp && check_spec(&a->rule_specs[i], sub, has_calib, err))
            return -1;
    }
    if (a->def.kv)
        return check_width(&a->def, gq_kv_dim(c), gq_head_size(c), "the KV cache", path, err);
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            char name[96];
            int rows, width;
            gq_tensor_name(l, (gq_linear_kind)k, name, sizeof name);
            gq_linear_shape(c, (gq_linear_kind)k, &rows, &width);
            const gq_act_spec *s = gq_act_cfg_spec(a, name);
            if (!s)
                continue;
            spec_path(a, s, path, sub, sizeof sub);
            if (check_width(s, width, 0, name, sub, err))
                return -1;
        }
    return 0;
}

int gq_act_spec_bits(const gq_act_spec *s)
{
    /* the element width: bits per value of a wide row, scales (under one bit) left out */
    return (int)floor(gq_quantizer_bpw(&s->q, 1, 1 << 12));
}

void gq_act_spec_format(const gq_act_spec *s, char *buf, size_t n)
{
    gq_quantizer_label(&s->q, buf, n);
    if (s->fixed_blocks)
        return;
    /* drop the format's own granularity word (the second), which activations do not use */
    char *sp = strchr(buf, ' ');
    if (!sp)
        return;
    char *end = strchr(sp + 1, ' ');
    if (end)
        memmove(sp, end, strlen(end) + 1);
    else
        *sp = '\0';
}

void gq_act_spec_granularity(const gq_act_spec *s, char *buf, size_t n)
{
    if (s->granularity == GQ_ACT_GROUP)
        snprintf(buf, n, "g%d", s->group_size);
    else
        snprintf(buf, n, "%s", gran_name(s));
}

void gq_act_spec_scales(const gq_act_spec *s, char *buf, size_t n)
{
    if (s->scales == GQ_ACT_DYNAMIC)
        snprintf(buf, n, "dynamic");
    else if (s->calibration == GQ_ACT_CAL_PERCENTILE)
        snprintf(buf, n, "static p%g", s->percentile);
    else
        snprintf(buf, n, "static %s", calib_names[s->calibration]);
}
