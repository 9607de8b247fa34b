#include "formats/gq_format.h"

#include <stdlib.h>
#include <string.h>

#define GQ_FORMAT(sym) extern const gq_format sym;
#include "formats/formats.def"
#undef GQ_FORMAT

static const gq_format *const registry[] = {
#define GQ_FORMAT(sym) &sym,
#include "formats/formats.def"
#undef GQ_FORMAT
    NULL,
};

const gq_format *const *gq_format_all(int *n)
{
    *n = (int)(sizeof registry / sizeof registry[0]) - 1;
    return registry;
}

const gq_format *gq_format_find(const char *name)
{
    for (int i = 0; registry[i]; i++)
        if (strcmp(registry[i]->name, name) == 0)
            return registry[i];
    return NULL;
}

static void known_names(char *buf, size_t n)
{
    buf[0] = '\0';
    for (int i = 0; registry[i]; i++) {
        size_t len = strlen(buf);
        snprintf(buf + len, n - len, "%s%s", i ? ", " : "", registry[i]->name);
    }
}

int gq_quantizer_init(gq_quantizer *q, const char *name, const json_t *params, const char *path,
                      gq_error *err)
{
    memset(q, 0, sizeof *q);
    if (!path)
        path = "$";
    const gq_format *f = gq_format_find(name);
    if (!f) {
        char known[1024];
        known_names(known, sizeof known);
        return gq_fail(err, "%s.name: unknown format \"%s\" (known: %s)", path, name, known);
    }
    void *p = calloc(1, f->params_size ? f->params_size : 1);
    if (!p)
        return gq_fail(err, "%s: out of memory", path);
    if (gq_params_parse(f->params, params, path, p, err) ||
        (f->validate && f->validate(p, path, err))) {
        free(p);
        return -1;
    }
    q->fmt = f;
    q->params = p;
    return 0;
}

int gq_quantizer_from_json(const json_t *spec, const char *path, gq_quantizer *q, gq_error *err)
{
    if (!path)
        path = "$";
    if (json_is_string(spec))
        return gq_quantizer_init(q, json_string_value(spec), NULL, path, err);
    if (!json_is_object(spec))
        return gq_fail(err, "%s: expected a format object {\"name\": ..., parameters}", path);
    json_t *name = json_object_get(spec, "name");
    if (!name)
        return gq_fail(err, "%s: missing \"name\" of the format", path);
    if (!json_is_string(name))
        return gq_fail(err, "%s.name: expected a string", path);
    json_t *params = json_deep_copy(spec);
    json_object_del(params, "name");
    int rc = gq_quantizer_init(q, json_string_value(name), params, path, err);
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
