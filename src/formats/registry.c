#include "formats/gq_format.h"

#include "core/gq_registry.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GQ_FORMAT(sym) extern const gq_format sym;
#include "formats/formats.def"
#undef GQ_FORMAT

/* Built-ins first (formats.def order), then plugins in registration order. */
#define MAX_FORMATS 128
static const void *slots[MAX_FORMATS + 1] = {
#define GQ_FORMAT(sym) &sym,
#include "formats/formats.def"
#undef GQ_FORMAT
};

static const char *format_name(const void *e) { return ((const gq_format *)e)->name; }

/* What a format must provide beyond its name (gq_format.h). */
static int format_check(const void *e, gq_error *err)
{
    const gq_format *f = e;
    const char *missing = !f->summary        ? "summary"
                          : !f->params       ? "params (use an empty table {0})"
                          : !f->storage_bytes ? "storage_bytes"
                          : !f->quantize      ? "quantize"
                          : !f->dequantize    ? "dequantize"
                                              : NULL;
    if (!missing && f->group_cols && (!f->fit_group || !f->quant_elem || !f->group_state_bytes))
        missing = "fit_group, quant_elem or group_state_bytes (group_cols is set)";
    if (!missing && f->store_groups && !f->group_cols)
        missing = "group_cols (store_groups is set)";
    if (!missing && f->packing && !f->packing->describe)
        missing = "packing.describe (packing is set)";
    return missing ? gq_fail(err, "format \"%s\": missing %s", f->name, missing) : 0;
}

static gq_registry registry = {"format", format_name, format_check, slots, MAX_FORMATS};

const gq_format *const *gq_format_all(int *n)
{
    /* A typed copy of the table (which holds const void *), NULL-terminated like it. */
    static const gq_format *all[MAX_FORMATS + 1];
    *n = gq_registry_count(&registry);
    for (int i = 0; i <= *n; i++)
        all[i] = gq_registry_at(&registry, i);
    return all;
}

const gq_format *gq_format_find(const char *name) { return gq_registry_find(&registry, name); }

int gq_format_register(const gq_format *f, gq_error *err)
{
    return gq_registry_add(&registry, f, err);
}

void gq_format_truncate(int n) { gq_registry_truncate(&registry, n); }

int gq_quantizer_init(gq_quantizer *q, const char *name, const json_t *params, const char *path,
                      gq_error *err)
{
    memset(q, 0, sizeof *q);
    if (!path)
        path = "$";
    const gq_format *f = gq_format_find(name);
    if (!f) {
        char known[1024];
        gq_registry_names(&registry, known, sizeof known);
        return gq_fail(err, "%s.name: unknown format \"%s\" (known: %s)", path, name, known);
    }
    if (gq_params_new(f->params, f->params_size, f->validate, params, path, &q->params, err))
        return -1;
    q->fmt = f;
    return 0;
}

int gq_quantizer_from_json(const json_t *spec, const char *path, gq_quantizer *q, gq_error *err)
{
    if (!path)
        path = "$";
    const char *name;
    json_t *params;
    if (gq_params_split_named(spec, path, "format", &name, &params, err))
        return -1;
    int rc = gq_quantizer_init(q, name, params, path, err);
    json_decref(params);
    return rc;
}

void gq_quantizer_free(gq_quantizer *q)
{
    free(q->params);
    memset(q, 0, sizeof *q);
}

json_t *gq_quantizer_to_json(const gq_quantizer *q)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(q->fmt->name));
    json_t *p = gq_params_to_json(q->fmt->params, q->params);
    json_object_update(o, p);
    json_decref(p);
    return o;
}

bool gq_quantizer_equal(const gq_quantizer *a, const gq_quantizer *b)
{
    if (a == b)
        return true;
    if (a->fmt != b->fmt)
        return false;
    json_t *ja = gq_quantizer_to_json(a), *jb = gq_quantizer_to_json(b);
    bool eq = ja && jb && json_equal(ja, jb);
    json_decref(ja);
    json_decref(jb);
    return eq;
}

void gq_quantizer_label(const gq_quantizer *q, char *buf, size_t n)
{
    if (q->fmt->label)
        q->fmt->label(q->params, buf, n);
    else
        snprintf(buf, n, "%s", q->fmt->name);
}

int gq_quantizer_run(const gq_quantizer *q, const float *w, int rows, int cols,
                     const float *imatrix, uint8_t *codes, float *deq, gq_error *err)
{
    if (rows <= 0 || cols <= 0)
        return gq_fail(err, "%s: empty matrix (%d x %d)", q->fmt->name, rows, cols);
    if (q->fmt->check_shape && q->fmt->check_shape(q->params, rows, cols, err))
        return -1;
    return q->fmt->quantize(q->params, w, rows, cols, imatrix, codes, deq, err);
}

size_t gq_quantizer_bytes(const gq_quantizer *q, int rows, int cols)
{
    return q->fmt->storage_bytes(q->params, rows, cols);
}

double gq_quantizer_bpw(const gq_quantizer *q, int rows, int cols)
{
    return 8.0 * (double)gq_quantizer_bytes(q, rows, cols) / ((double)rows * (double)cols);
}
