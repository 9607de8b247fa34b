/* The method registry (methods.def) and configured methods (plugin + parsed parameters). */
#include "methods/gq_pipeline.h"

#include "core/gq_registry.h"
#include "methods/method_chain.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GQ_METHOD(sym) extern const gq_method sym;
#include "methods/methods.def"
#undef GQ_METHOD

/* Built-ins first (methods.def order), then plugins in registration order. */
#define MAX_METHODS 64
static const void *slots[MAX_METHODS + 1] = {
#define GQ_METHOD(sym) &sym,
#include "methods/methods.def"
#undef GQ_METHOD
};

static const char *method_name(const void *e) { return ((const gq_method *)e)->name; }

/* What a method must provide beyond its name (gq_method.h). */
static int method_check(const void *e, gq_error *err)
{
    const gq_method *m = e;
    const char *missing = !m->summary          ? "summary"
                          : !m->params         ? "params (use an empty table {0})"
                          : !m->quantize_block && !(m->transform_only && m->transform_outer)
                              ? "quantize_block (or, transform-only, transform_outer)"
                          : !m->transform_outer != !m->transform_block
                              ? "transform_outer or transform_block (both or neither)"
                              : NULL;
    if (missing)
        return gq_fail(err, "method \"%s\": missing %s", m->name, missing);
    if (m->propagate != GQ_PROPAGATE_FP && m->propagate != GQ_PROPAGATE_QUANTIZED)
        return gq_fail(err, "method \"%s\": propagate must be GQ_PROPAGATE_FP or "
                            "GQ_PROPAGATE_QUANTIZED", m->name);
    return 0;
}

static gq_registry registry = {"method", method_name, method_check, slots, MAX_METHODS};

const gq_method *const *gq_method_all(int *n)
{
    /* A typed copy of the table (which holds const void *), NULL-terminated like it. */
    static const gq_method *all[MAX_METHODS + 1];
    *n = gq_registry_count(&registry);
    for (int i = 0; i <= *n; i++)
        all[i] = gq_registry_at(&registry, i);
    return all;
}

const gq_method *gq_method_find(const char *name) { return gq_registry_find(&registry, name); }

int gq_method_register(const gq_method *m, gq_error *err)
{
    return gq_registry_add(&registry, m, err);
}

void gq_method_truncate(int n) { gq_registry_truncate(&registry, n); }

const char *gq_method_name(const gq_method *m) { return m->name; }
const char *gq_method_summary(const gq_method *m) { return m->summary; }
const char *gq_method_families(const gq_method *m) { return m->families; }
const gq_param_spec *gq_method_params(const gq_method *m) { return m->params; }

bool gq_method_needs_calibration(const gq_method *m)
{
    /* With default parameters. */
    if (!m->needs_calibration)
        return false;
    char buf[512] = {0};
    if (m->params_size > sizeof buf)
        return true;
    gq_params_defaults(m->params, buf);
    return m->needs_calibration(buf);
}

bool gq_method_cfg_needs_calibration(const gq_method_cfg *cfg)
{
    return cfg->method->needs_calibration && cfg->method->needs_calibration(cfg->params);
}

bool gq_method_cfg_adds_transforms(const gq_method_cfg *cfg)
{
    return cfg->method->adds_transforms && cfg->method->adds_transforms(cfg->params);
}

int gq_method_cfg_check_layer(const gq_method_cfg *cfg, const gq_config *c, int layer,
                              const gq_quantizer *const quant[GQ_N_LINEAR], gq_error *err)
{
    if (!cfg->method->check_layer)
        return 0;
    return cfg->method->check_layer(cfg->params, c, layer, quant, err);
}

int gq_method_cfg_init_member(gq_method_cfg *cfg, const char *name, const json_t *params,
                              const char *path, gq_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    const gq_method *m = gq_method_find(name);
    if (!m) {
        char known[512];
        gq_registry_names(&registry, known, sizeof known);
        return gq_fail(err, "%s.name: unknown method \"%s\" (known: %s)", path, name, known);
    }
    if (gq_params_new(m->params, m->params_size, m->validate, params, path, &cfg->params, err))
        return -1;
    cfg->method = m;
    return 0;
}

/* "smoothquant,rtn" with one parameter object: the list of members, each parameter given to
 * every member whose table has it. */
static json_t *chain_spec(const char *names, const json_t *params, const char *path,
                          gq_error *err)
{
    json_t *list = json_array();
    char *copy = strdup(names), *save = NULL;
    if (!list || !copy) {
        json_decref(list);
        free(copy);
        return gq_fail(err, "%s: out of memory", path), NULL;
    }
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
        json_array_append_new(list, json_pack("{s:s}", "name", t));
    free(copy);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)params, key, v) {
        bool used = false;
        for (size_t i = 0; i < json_array_size(list); i++) {
            json_t *o = json_array_get(list, i);
            const gq_method *m = gq_method_find(json_string_value(json_object_get(o, "name")));
            if (m && gq_params_find(m->params, key)) {
                json_object_set(o, key, v);
                used = true;
            }
        }
        if (!used) {
            json_decref(list);
            return gq_fail(err, "%s.%s: no method of the chain \"%s\" has this parameter",
                           path, key, names), NULL;
        }
    }
    return list;
}

/* A transform-only method on its own is refused (cfg freed); rc passes through otherwise. */
static int refuse_alone(int rc, gq_method_cfg *cfg, const char *path, gq_error *err)
{
    if (rc || !cfg->method->transform_only)
        return rc;
    const char *name = cfg->method->name;
    gq_fail(err, "%s.name: \"%s\" only transforms the weights: list it before a weight method, "
                 "e.g. [\"%s\", \"rtn\"]", path, name, name);
    gq_method_cfg_free(cfg);
    return -1;
}

int gq_method_cfg_init(gq_method_cfg *cfg, const char *name, const json_t *params, const char *path,
                       gq_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    if (!path)
        path = "$";
    if (strchr(name, ',')) {
        json_t *list = chain_spec(name, params, path, err);
        int rc = list ? gq_method_chain_from_json(list, path, cfg, err) : -1;
        json_decref(list);
        return rc;
    }
    return refuse_alone(gq_method_cfg_init_member(cfg, name, params, path, err), cfg, path, err);
}

int gq_method_cfg_member_from_json(const json_t *spec, const char *path, gq_method_cfg *cfg,
                                   gq_error *err)
{
    const char *name;
    json_t *params;
    memset(cfg, 0, sizeof *cfg);
    if (gq_params_split_named(spec, path, "method", &name, &params, err))
        return -1;
    int rc = gq_method_cfg_init_member(cfg, name, params, path, err);
    json_decref(params);
    return rc;
}

int gq_method_cfg_from_json(const json_t *spec, const char *path, gq_method_cfg *cfg, gq_error *err)
{
    if (!path)
        path = "$";
    if (json_is_array(spec))
        return gq_method_chain_from_json(spec, path, cfg, err);
    return refuse_alone(gq_method_cfg_member_from_json(spec, path, cfg, err), cfg, path, err);
}

void gq_method_cfg_free(gq_method_cfg *cfg)
{
    if (gq_method_cfg_is_chain(cfg))
        gq_method_chain_free(cfg->params);
    else
        free(cfg->params);
    cfg->params = NULL;
    cfg->method = NULL;
}

json_t *gq_method_cfg_to_json(const gq_method_cfg *cfg)
{
    if (gq_method_cfg_is_chain(cfg))
        return gq_method_chain_to_json(cfg);
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(cfg->method->name));
    json_t *params = gq_params_to_json(cfg->method->params, cfg->params);
    json_object_update(o, params); /* "name" first, then the parameters in table order */
    json_decref(params);
    return o;
}
