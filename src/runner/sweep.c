/* Sweep axes and their expansion into cells.
 *
 * Every axis is a list of values for one parameter: "bits", "group_size" or any other format or
 * method parameter by its name ("format.X" / "method.X" when a name is ambiguous), "n_calib" and
 * "calib_ctx". Axes named together in $.zip advance together; the rest form a cartesian
 * product, in the order written in $.sweep (the first axis varies slowest). For each method
 * entry only the axes that apply to it are swept: the parameter must exist in its format or
 * method, calibration axes need a method that calibrates, group_size must change the format's
 * group width, and the entry must not exclude it. Identical cells of an entry are merged.
 * Expansion is linear in the number of cells (hash sets of canonical JSON, no pairwise
 * comparisons); a sweep of more than GQ_SWEEP_MAX_CELLS_DEFAULT cells (GQ_SWEEP_MAX_CELLS
 * overrides it) is refused before any cell is built. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_params.h"
#include "runner/runner_internal.h"

static gq_axis_target axis_target(const gq_axis *a, const gq_exp_method *em)
{
    if (strcmp(a->name, "n_calib") == 0)
        return GQ_AXIS_N_CALIB;
    if (strcmp(a->name, "calib_ctx") == 0)
        return GQ_AXIS_CALIB_CTX;
    if (strncmp(a->name, "method.", 7) == 0)
        return GQ_AXIS_METHOD;
    if (strncmp(a->name, "activations.", 12) == 0)
        return GQ_AXIS_ACT;
    if (strncmp(a->name, "kv_cache.", 9) == 0)
        return GQ_AXIS_KV;
    if (strncmp(a->name, "format.", 7) == 0)
        return GQ_AXIS_FORMAT;
    const gq_format *f = gq_format_find(json_string_value(json_object_get(em->format, "name")));
    return f && gq_params_find(f->params, a->param) ? GQ_AXIS_FORMAT : GQ_AXIS_METHOD;
}

/* Whether the method object, or a member of a chain (a list of them), has parameter `param`. */
static bool method_has_param(const json_t *method, const char *param)
{
    for (size_t i = 0; json_is_array(method) && i < json_array_size(method); i++)
        if (method_has_param(json_array_get(method, i), param))
            return true;
    const gq_method *m = gq_method_find(json_string_value(json_object_get(method, "name")));
    return m && gq_params_find(gq_method_params(m), param);
}

/* Sets `param` in the method object, or in every member of a chain that has it. */
static int method_set_param(json_t *method, const char *param, json_t *v)
{
    if (!json_is_array(method))
        return json_object_set(method, param, v);
    for (size_t i = 0; i < json_array_size(method); i++) {
        json_t *m = json_array_get(method, i);
        if (method_has_param(m, param) && json_object_set(m, param, v))
            return -1;
    }
    return 0;
}

static bool has_param(const gq_axis *a, const gq_exp_method *em, gq_axis_target t)
{
    if (t == GQ_AXIS_ACT || t == GQ_AXIS_KV) /* any key: the spec's parse checks it per cell */
        return (t == GQ_AXIS_ACT ? em->act : em->kv) != NULL;
    if (t == GQ_AXIS_FORMAT) {
        const gq_format *f = gq_format_find(json_string_value(json_object_get(em->format, "name")));
        return f && gq_params_find(f->params, a->param);
    }
    return method_has_param(em->method, a->param);
}

/* Whether the entry's method calibrates with the entry's own parameters (rtn with imatrix). */
static bool needs_calib(const gq_exp_method *em)
{
    return em->calibrates;
}

/* group_size applies when it changes the format's group width on a wide matrix. */
static bool group_size_matters(const gq_axis *a, const gq_exp_method *em)
{
    const gq_format *f = gq_format_find(json_string_value(json_object_get(em->format, "name")));
    if (!f || !f->group_cols)
        return true;
    int first = -1;
    bool varies = false;
    for (size_t k = 0; k < json_array_size(a->values); k++) {
        json_t *fj = json_deep_copy(em->format);
        if (!fj || json_object_set(fj, a->param, json_array_get(a->values, k))) {
            json_decref(fj);
            return true; /* out of memory: building the cell reports it */
        }
        gq_quantizer q;
        gq_error e2;
        if (gq_quantizer_from_json(fj, "$", &q, &e2) == 0) {
            int g = f->group_cols(q.params, 1 << 16);
            varies |= first >= 0 && g != first;
            first = g;
            gq_quantizer_free(&q);
        } else
            varies = true; /* let cell validation report the bad value */
        json_decref(fj);
    }
    return varies;
}

static bool applies(const gq_axis *a, const gq_exp_method *em)
{
    for (size_t k = 0; k < json_array_size(em->exclude); k++)
        if (strcmp(json_string_value(json_array_get(em->exclude, k)), a->name) == 0)
            return false;
    gq_axis_target t = axis_target(a, em);
    if (t == GQ_AXIS_N_CALIB || t == GQ_AXIS_CALIB_CTX)
        return needs_calib(em);
    if (!has_param(a, em, t))
        return false;
    if (strcmp(a->param, "group_size") == 0 && t == GQ_AXIS_FORMAT)
        return group_size_matters(a, em);
    return true;
}

/* Hash sets keyed by canonical JSON text (a jansson object is a hash table): expansion stays
 * linear in the number of values and cells instead of comparing each with every earlier one. */
static char *canonical(json_t *v)
{
    return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
}

/* 1 when x was seen before (its first index in *first); otherwise 0 after recording it at
 * index k; -1 when out of memory. */
static int value_seen(json_t *seen, json_t *x, size_t k, size_t *first)
{
    char *t = canonical(x);
    if (!t)
        return -1;
    json_t *prev = json_object_get(seen, t);
    int rc = 1;
    if (prev)
        *first = (size_t)json_integer_value(prev);
    else
        rc = json_object_set_new(seen, t, json_integer((json_int_t)k)) ? -1 : 0;
    free(t);
    return rc;
}

/* Each value of axis key (the array v) is a scalar, an integer for the calibration axes, and
 * not a repeat of an earlier one. */
static int check_axis_values(const char *key, json_t *v, gq_error *err)
{
    json_t *seen = json_object(); /* value text -> first index */
    size_t j;
    if (!seen)
        return gq_fail(err, "$.sweep: out of memory");
    for (size_t k = 0; k < json_array_size(v); k++) {
        json_t *x = json_array_get(v, k);
        if (json_is_array(x) || json_is_object(x) || json_is_null(x)) {
            json_decref(seen);
            gq_fail(err, "$.sweep.%s[%zu]: expected a number, string or boolean", key, k);
            return -1;
        }
        if ((!strcmp(key, "n_calib") || !strcmp(key, "calib_ctx")) && !json_is_integer(x)) {
            gq_fail(err, "$.sweep.%s[%zu]: expected an integer", key, k);
            json_decref(seen);
            return -1;
        }
        int rep = value_seen(seen, x, k, &j);
        if (rep < 0) {
            gq_fail(err, "$.sweep: out of memory");
            json_decref(seen);
            return -1;
        }
        if (rep) {
            gq_fail(err, "$.sweep.%s[%zu]: repeats $.sweep.%s[%zu]", key, k, key, j);
            json_decref(seen);
            return -1;
        }
    }
    json_decref(seen);
    return 0;
}

/* Some method in $.methods takes axis a (or uses calibration, for the calibration axes). */
static int check_axis_used(const gq_experiment *e, const gq_axis *a, const char *key,
                           gq_error *err)
{
    bool used = false;
    for (int m = 0; m < e->n_methods; m++) {
        gq_axis_target t = axis_target(a, &e->methods[m]);
        used |= (t == GQ_AXIS_N_CALIB || t == GQ_AXIS_CALIB_CTX)
                    ? needs_calib(&e->methods[m])
                    : has_param(a, &e->methods[m], t);
    }
    if (!used) {
        gq_fail(err, "$.sweep.%s: no method in $.methods has this parameter%s", key,
                strcmp(key, "n_calib") && strcmp(key, "calib_ctx")
                    ? " (see `gq-bench list` for method and format parameters)"
                    : " (none of them uses calibration)");
        return -1;
    }
    if ((!strcmp(key, "n_calib") || !strcmp(key, "calib_ctx")) && !e->has_calib) {
        gq_fail(err, "$.sweep.%s: sweeps calibration but $.calib is missing", key);
        return -1;
    }
    return 0;
}

static int parse_axes(gq_experiment *e, gq_error *err)
{
    json_t *sw = json_object_get(e->resolved, "sweep");
    if (!sw)
        sw = json_object();
    else
        json_incref(sw);
    if (!sw)
        return gq_fail(err, "$.sweep: out of memory");
    int rc = -1;
    if (!json_is_object(sw)) {
        gq_fail(err, "$.sweep: expected an object {axis: [values, ...]}");
        goto done;
    }
    e->axes = calloc(json_object_size(sw) + 1, sizeof *e->axes);
    if (!e->axes) {
        gq_fail(err, "$.sweep: out of memory");
        goto done;
    }
    e->n_axes = (int)json_object_size(sw);
    int i = 0;
    const char *key;
    json_t *v;
    json_object_foreach(sw, key, v) {
        gq_axis *a = &e->axes[i];
        if (!(a->name = strdup(key))) {
            gq_fail(err, "$.sweep: out of memory");
            goto done;
        }
        const char *dot = strchr(a->name, '.');
        a->param = dot ? dot + 1 : a->name;
        a->values = json_incref(v);
        a->zip_group = i++;
        if (dot && strncmp(key, "method.", 7) && strncmp(key, "format.", 7) &&
            strncmp(key, "activations.", 12) && strncmp(key, "kv_cache.", 9)) {
            gq_fail(err, "$.sweep.%s: a prefixed axis must start with \"method.\", \"format.\", "
                         "\"activations.\" or \"kv_cache.\"", key);
            goto done;
        }
        if (!json_is_array(v) || json_array_size(v) == 0) {
            gq_fail(err, "$.sweep.%s: expected a non-empty array of values", key);
            goto done;
        }
        if (check_axis_values(key, v, err))
            goto done;
        if (check_axis_used(e, a, key, err))
            goto done;
    }
    rc = 0;
done:
    json_decref(sw);
    return rc;
}

static int find_axis(const gq_experiment *e, const char *name)
{
    for (int i = 0; i < e->n_axes; i++)
        if (strcmp(e->axes[i].name, name) == 0)
            return i;
    return -1;
}

static int parse_zip(gq_experiment *e, gq_error *err)
{
    json_t *z = json_object_get(e->resolved, "zip");
    if (!z)
        return 0;
    if (!json_is_array(z))
        return gq_fail(err, "$.zip: expected an array of arrays of axis names");
    bool zipped[64] = {false};
    if (e->n_axes > 64)
        return gq_fail(err, "$.sweep: more than 64 axes");
    for (size_t g = 0; g < json_array_size(z); g++) {
        json_t *grp = json_array_get(z, g);
        if (!json_is_array(grp) || json_array_size(grp) < 2)
            return gq_fail(err, "$.zip[%zu]: expected an array of at least two axis names", g);
        int first = -1;
        for (size_t k = 0; k < json_array_size(grp); k++) {
            json_t *n = json_array_get(grp, k);
            if (!json_is_string(n))
                return gq_fail(err, "$.zip[%zu][%zu]: expected an axis name", g, k);
            int a = find_axis(e, json_string_value(n));
            if (a < 0)
                return gq_fail(err, "$.zip[%zu][%zu]: \"%s\" is not an axis of $.sweep", g, k,
                               json_string_value(n));
            if (zipped[a])
                return gq_fail(err, "$.zip[%zu][%zu]: \"%s\" is already zipped", g, k,
                               json_string_value(n));
            zipped[a] = true;
            if (first < 0)
                first = a;
            else {
                if (json_array_size(e->axes[a].values) != json_array_size(e->axes[first].values))
                    return gq_fail(err, "$.zip[%zu]: zipped axes need as many values: %s has %zu, "
                                        "%s has %zu", g, e->axes[first].name,
                                   json_array_size(e->axes[first].values), e->axes[a].name,
                                   json_array_size(e->axes[a].values));
                e->axes[a].zip_group = first;
            }
        }
    }
    return 0;
}

/* Appends " name=value" (without the space first) to the malloc'd text *sweep. */
static int append_sweep(char **sweep, const char *name, json_t *v)
{
    char *val = json_is_string(v) ? strdup(json_string_value(v))
                                   : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    size_t old = *sweep ? strlen(*sweep) : 0;
    size_t n = old + strlen(name) + (val ? strlen(val) : 0) + 3;
    char *s = val ? realloc(*sweep, n) : NULL;
    if (s)
        snprintf(s + old, n - old, "%s%s=%s", old ? " " : "", name, val);
    free(val);
    if (!s)
        return -1;
    *sweep = s;
    return 0;
}

/* The quantizer a block linear gets: the first override rule that names it, else the cell's
 * format; NULL when kept in full precision. */
/* Every block linear fits the format it gets, and the method accepts every layer's plan. */
static int check_layers(const gq_experiment *e, const gq_cell *c, const char *path,
                        gq_error *err)
{
    for (int l = 0; l < e->cfg.n_layers; l++) {
        const gq_quantizer *quant[GQ_N_LINEAR];
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            char name[96];
            gq_tensor_name(l, (gq_linear_kind)k, name, sizeof name);
            const gq_quantizer *q = quant[k] =
                gq_tensor_quantizer(&c->q, e->rules, e->n_rules, false, name);
            int rows, cols;
            gq_linear_shape(&e->cfg, (gq_linear_kind)k, &rows, &cols);
            if (q && q->fmt->check_shape && q->fmt->check_shape(q->params, rows, cols, err))
                return gq_fail_prefix(err, "%s.format: cannot quantize %s (%d x %d)%s", path,
                                      name, rows, cols, q == &c->q ? "" : " (its override's format)");
        }
        if (gq_method_cfg_check_layer(&c->mc, &e->cfg, l, quant, err))
            return gq_fail_prefix(err, "%s.method", path);
    }
    return 0;
}

void gq_cell_release(gq_cell *c)
{
    if (c->mc.method)
        gq_method_cfg_free(&c->mc);
    gq_act_cfg_free(&c->act);
    gq_act_cfg_free(&c->kv);
    if (c->q.fmt)
        gq_quantizer_free(&c->q);
    json_decref(c->axes);
    json_decref(c->method);
    json_decref(c->format);
    free(c->sweep);
    memset(c, 0, sizeof *c);
}

/* The cell's method, format, activation and KV JSON with the swept values of idx[] (-1 = not
 * swept; aj and kj are NULL when the entry has no such section). */
static int apply_axes(gq_experiment *e, const gq_exp_method *em, const int *idx, gq_cell *c,
                      json_t *mj, json_t *fj, json_t *aj, json_t *kj, gq_error *err)
{
    for (int a = 0; a < e->n_axes; a++) {
        if (idx[a] < 0)
            continue;
        const gq_axis *ax = &e->axes[a];
        json_t *v = json_array_get(ax->values, (size_t)idx[a]);
        int set = 0;
        switch (axis_target(ax, em)) {
        case GQ_AXIS_FORMAT: set = json_object_set(fj, ax->param, v); break;
        case GQ_AXIS_METHOD: set = method_set_param(mj, ax->param, v); break;
        case GQ_AXIS_N_CALIB: c->n_calib = (int)json_integer_value(v); break;
        case GQ_AXIS_CALIB_CTX: c->calib_ctx = (int)json_integer_value(v); break;
        case GQ_AXIS_ACT: set = json_object_set(aj, ax->param, v); break;
        case GQ_AXIS_KV: set = json_object_set(kj, ax->param, v); break;
        }
        if (set || json_object_set(c->axes, ax->name, v) || append_sweep(&c->sweep, ax->name, v))
            return gq_fail(err, "$.sweep: out of memory");
    }
    return 0;
}

/* Calibration a cell needs: a $.calib section and windows that the model and text hold. */
static int check_calib(const gq_experiment *e, const gq_exp_method *em, gq_cell *c,
                       gq_error *err)
{
    c->needs_calib = gq_method_cfg_needs_calibration(&c->mc);
    if (!c->needs_calib) {
        c->n_calib = c->calib_ctx = 0;
        return 0;
    }
    if (!e->has_calib)
        return gq_fail(err, "%s.method: %s needs calibration data but $.calib is missing",
                       em->path, c->method_name);
    if (c->n_calib < 1 || c->calib_ctx < 2 || c->calib_ctx > e->cfg.seq_len)
        return gq_fail(err, "$.sweep: n_calib %d / calib_ctx %d: need n_calib >= 1 and 2 <= "
                            "calib_ctx <= %d (the model's context)", c->n_calib, c->calib_ctx,
                       e->cfg.seq_len);
    return gq_exp_check_calib(e, c->n_calib, c->calib_ctx, err);
}

/* The cell's activation and KV-cache quantizers, parsed and checked against the model; static
 * scales make the cell read calibration windows even when its method does not. */
static int cell_act(const gq_experiment *e, const gq_exp_method *em, gq_cell *c, json_t *aj,
                    json_t *kj, gq_error *err)
{
    c->has_act = aj != NULL;
    c->has_kv = kj != NULL;
    if ((aj && (gq_act_cfg_parse(aj, em->act_path, false, &c->act, err) ||
                gq_act_cfg_check(&c->act, &e->cfg, em->act_path, e->has_calib, err))) ||
        (kj && (gq_act_cfg_parse(kj, em->kv_path, true, &c->kv, err) ||
                gq_act_cfg_check(&c->kv, &e->cfg, em->kv_path, e->has_calib, err))))
        return -1;
    if (!c->has_act || !gq_act_cfg_is_static(&c->act) || c->needs_calib)
        return 0;
    c->needs_calib = true;
    c->n_calib = e->calib.n_calib;
    c->calib_ctx = e->calib.calib_ctx;
    return gq_exp_check_calib(e, c->n_calib, c->calib_ctx, err);
}

/* Builds, parses and checks one cell of entry `m` with axis values idx[] (-1 = not swept). */
static int make_cell(gq_experiment *e, int m, const int *idx, gq_cell *c, gq_error *err)
{
    const gq_exp_method *em = &e->methods[m];
    memset(c, 0, sizeof *c);
    c->entry = m;
    c->n_calib = e->calib.n_calib;
    c->calib_ctx = e->calib.calib_ctx;
    json_t *mj = json_deep_copy(em->method), *fj = json_deep_copy(em->format);
    json_t *aj = em->act ? json_deep_copy(em->act) : NULL;
    json_t *kj = em->kv ? json_deep_copy(em->kv) : NULL;
    c->axes = json_object();
    char path[96];
    int rc = -1;
    if (!mj || !fj || !c->axes || (em->act && !aj) || (em->kv && !kj)) {
        gq_fail(err, "$.sweep: out of memory");
        goto done;
    }
    if (apply_axes(e, em, idx, c, mj, fj, aj, kj, err))
        goto done;
    snprintf(path, sizeof path, "%s.method", em->path);
    if (gq_method_cfg_from_json(mj, path, &c->mc, err))
        goto done;
    c->method_name = gq_method_name(c->mc.method);
    snprintf(path, sizeof path, "%s.format", em->path);
    if (gq_quantizer_from_json(fj, path, &c->q, err) || check_calib(e, em, c, err) ||
        check_layers(e, c, em->path, err) || cell_act(e, em, c, aj, kj, err))
        goto done;
    c->method = gq_method_cfg_to_json(&c->mc);
    c->format = gq_quantizer_to_json(&c->q);
    gq_quantizer_label(&c->q, c->format_label, sizeof c->format_label);
    if (!c->method || !c->format || (!c->sweep && !(c->sweep = strdup(""))))
        gq_fail(err, "$.sweep: out of memory");
    else
        rc = 0;
done:
    if (rc && c->sweep && c->sweep[0]) {
        char msg[GQ_ERROR_LEN];
        snprintf(msg, sizeof msg, "%s", err->msg);
        gq_fail(err, "%s (in the sweep cell %s)", msg, c->sweep);
    }
    json_decref(mj);
    json_decref(fj);
    json_decref(aj);
    json_decref(kj);
    if (rc)
        gq_cell_release(c);
    return rc;
}

/* Canonical text of what makes a cell distinct: its entry, method, format, calibration and
 * activation / KV-cache quantizers. */
static char *cell_key(const gq_cell *c)
{
    char *m = canonical(c->method), *f = canonical(c->format), *k = NULL;
    char *a = c->has_act ? canonical(c->act.canonical) : strdup("-");
    char *kv = c->has_kv ? canonical(c->kv.canonical) : strdup("-");
    if (m && f && a && kv &&
        asprintf(&k, "%d|%s|%s|%d|%d|%s|%s", c->entry, m, f, c->n_calib, c->calib_ctx, a, kv) < 0)
        k = NULL;
    free(m);
    free(f);
    free(a);
    free(kv);
    return k;
}

/* Moves *c into e->cells (growing it by doubling); on failure *c is released. */
static int push_cell(gq_experiment *e, gq_cell *c, int *cap, gq_error *err)
{
    if (e->n_cells == *cap) {
        int ncap = *cap ? 2 * *cap : 16;
        gq_cell *cells = realloc(e->cells, (size_t)ncap * sizeof *e->cells);
        if (!cells) {
            gq_cell_release(c);
            return gq_fail(err, "$.sweep: out of memory expanding the cells");
        }
        e->cells = cells;
        *cap = ncap;
    }
    e->cells[e->n_cells++] = *c;
    return 0;
}

/* The zip groups (first axis of each) that apply to entry m, and which axes apply. */
static int entry_groups(const gq_experiment *e, int m, bool *app, int *groups)
{
    int na = e->n_axes, ng = 0;
    for (int a = 0; a < na; a++)
        app[a] = applies(&e->axes[a], &e->methods[m]);
    for (int a = 0; a < na; a++) {
        if (e->axes[a].zip_group != a)
            continue;
        bool any = false;
        for (int b = 0; b < na; b++)
            any |= e->axes[b].zip_group == a && app[b];
        if (any)
            groups[ng++] = a;
    }
    return ng;
}

/* Odometer over the zip groups that apply to entry m; `seen` holds the keys of the cells so
 * far (identical cells are merged). */
static int expand_entry(gq_experiment *e, int m, json_t *seen, int *cap, gq_error *err)
{
    int na = e->n_axes;
    int *groups = calloc((size_t)na + 1, sizeof *groups);
    bool *app = calloc((size_t)na + 1, sizeof *app);
    int ng = groups && app ? entry_groups(e, m, app, groups) : 0;
    int *pos = calloc((size_t)ng + 1, sizeof *pos), *idx = calloc((size_t)na + 1, sizeof *idx);
    int rc = 0;
    if (!groups || !app || !pos || !idx) {
        rc = gq_fail(err, "$.sweep: out of memory expanding the cells");
        goto done;
    }
    for (;;) {
        for (int a = 0; a < na; a++)
            idx[a] = -1;
        for (int g = 0; g < ng; g++)
            for (int b = 0; b < na; b++)
                if (e->axes[b].zip_group == groups[g] && app[b])
                    idx[b] = pos[g];
        gq_cell c;
        if (make_cell(e, m, idx, &c, err)) {
            rc = -1;
            break;
        }
        char *key = cell_key(&c);
        if (!key || json_object_get(seen, key)) {
            gq_cell_release(&c);
            if (!key) {
                rc = gq_fail(err, "$.sweep: out of memory expanding the cells");
                break;
            }
        } else if (json_object_set_new(seen, key, json_true())) {
            gq_cell_release(&c);
            rc = gq_fail(err, "$.sweep: out of memory expanding the cells");
        } else {
            snprintf(c.id, sizeof c.id, "c%03d", e->n_cells);
            rc = push_cell(e, &c, cap, err);
        }
        free(key);
        if (rc)
            break;
        int g = ng - 1;
        while (g >= 0 && ++pos[g] == (int)json_array_size(e->axes[groups[g]].values))
            pos[g--] = 0;
        if (g < 0)
            break;
    }
done:
    free(groups);
    free(app);
    free(pos);
    free(idx);
    return rc;
}

/* Refuses up front a sweep whose cells (before identical ones are merged) exceed the limit. */
static int check_size(const gq_experiment *e, gq_error *err)
{
    unsigned long long limit;
    double total = 1; /* the baseline */
    if (gq_params_env_count("GQ_SWEEP_MAX_CELLS", "a positive integer",
                            GQ_SWEEP_MAX_CELLS_DEFAULT, 1, &limit, err))
        return -1;
    int na = e->n_axes;
    int *groups = calloc((size_t)na + 1, sizeof *groups);
    bool *app = calloc((size_t)na + 1, sizeof *app);
    if (!groups || !app) {
        free(groups);
        free(app);
        return gq_fail(err, "$.sweep: out of memory");
    }
    for (int m = 0; m < e->n_methods; m++) {
        double n = 1;
        int ng = entry_groups(e, m, app, groups);
        for (int g = 0; g < ng; g++)
            n *= (double)json_array_size(e->axes[groups[g]].values);
        total += n;
    }
    free(groups);
    free(app);
    if (total > (double)limit)
        return gq_fail(err, "$.sweep: %.0f cells, more than the limit of %llu (split the "
                            "experiment, or raise the limit with GQ_SWEEP_MAX_CELLS=N)",
                       total, limit);
    return 0;
}

int gq_sweep_expand(gq_experiment *e, gq_error *err)
{
    if (parse_axes(e, err) || parse_zip(e, err) || check_size(e, err))
        return -1;
    gq_cell base = {0};
    snprintf(base.id, sizeof base.id, "baseline");
    base.entry = -1;
    base.axes = json_object();
    base.sweep = strdup("");
    base.method_name = "none";
    snprintf(base.format_label, sizeof base.format_label, "%s", e->base_format);
    if (!base.axes || !base.sweep) {
        gq_cell_release(&base);
        return gq_fail(err, "$.sweep: out of memory");
    }
    int cap = 0;
    if (push_cell(e, &base, &cap, err))
        return -1;
    json_t *seen = json_object();
    int rc = seen ? 0 : gq_fail(err, "$.sweep: out of memory");
    for (int m = 0; m < e->n_methods && rc == 0; m++)
        rc = expand_entry(e, m, seen, &cap, err);
    json_decref(seen);
    return rc;
}
