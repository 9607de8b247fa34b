#include "report/gq_table.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_fileio.h"

int gq_table_init(gq_table *t)
{
    memset(t, 0, sizeof *t);
    t->rows = json_array();
    t->attrs = json_object();
    return t->rows && t->attrs ? 0 : -1;
}

void gq_table_free(gq_table *t)
{
    free(t->cols);
    json_decref(t->rows);
    json_decref(t->attrs);
    memset(t, 0, sizeof *t);
}

int gq_table_col(const gq_table *t, const char *name)
{
    for (int i = 0; i < t->n_cols; i++)
        if (strcmp(t->cols[i].name, name) == 0)
            return i;
    return -1;
}

int gq_table_add_col(gq_table *t, const char *name, gq_col_type type)
{
    int i = gq_table_col(t, name);
    if (i >= 0)
        return i;
    gq_column *c = realloc(t->cols, (size_t)(t->n_cols + 1) * sizeof *c);
    if (!c)
        return -1;
    t->cols = c;
    snprintf(c[t->n_cols].name, sizeof c[t->n_cols].name, "%s", name);
    c[t->n_cols].type = type;
    return t->n_cols++;
}

int gq_table_add_row(gq_table *t, json_t *row) { return json_array_append_new(t->rows, row); }
size_t gq_table_n_rows(const gq_table *t) { return json_array_size(t->rows); }
json_t *gq_table_row(const gq_table *t, size_t i) { return json_array_get(t->rows, i); }

double gq_table_num(const gq_table *t, size_t row, const char *col)
{
    json_t *v = json_object_get(gq_table_row(t, row), col);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

const char *gq_table_str(const gq_table *t, size_t row, const char *col)
{
    json_t *v = json_object_get(gq_table_row(t, row), col);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

json_t *gq_table_distinct(const gq_table *t, const char *col)
{
    json_t *out = json_array();
    for (size_t r = 0; r < gq_table_n_rows(t); r++) {
        json_t *v = json_object_get(gq_table_row(t, r), col);
        if (!v || json_is_null(v))
            continue;
        bool seen = false;
        for (size_t k = 0; k < json_array_size(out) && !seen; k++)
            seen = json_equal(json_array_get(out, k), v);
        if (!seen)
            json_array_append(out, v);
    }
    return out;
}

/* ---- growable string ---- */
typedef struct {
    char *s;
    size_t len, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p)
            abort(); /* out of memory while formatting a small table */
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* The text of one cell ("" when empty). */
static void cell_text(const gq_column *c, json_t *v, char *buf, size_t n)
{
    buf[0] = '\0';
    if (!v || json_is_null(v))
        return;
    if (json_is_string(v))
        snprintf(buf, n, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(buf, n, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v)) {
        double x = json_real_value(v);
        if (c->type == GQ_COL_INT && x == floor(x))
            snprintf(buf, n, "%.0f", x);
        else if (isfinite(x))
            snprintf(buf, n, "%.17g", x);
        else
            snprintf(buf, n, "%s", isnan(x) ? "nan" : x > 0 ? "inf" : "-inf");
    } else if (json_is_boolean(v))
        snprintf(buf, n, "%s", json_is_true(v) ? "true" : "false");
    else {
        char *d = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
        snprintf(buf, n, "%s", d ? d : "");
        free(d);
    }
}

static void csv_field(sbuf *b, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        sb_str(b, s);
        return;
    }
    sb_put(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            sb_put(b, "\"", 1);
        sb_put(b, p, 1);
    }
    sb_put(b, "\"", 1);
}

char *gq_table_csv(const gq_table *t)
{
    sbuf b = {0};
    for (int c = 0; c < t->n_cols; c++) {
        if (c)
            sb_put(&b, ",", 1);
        csv_field(&b, t->cols[c].name);
    }
    sb_put(&b, "\n", 1);
    char buf[8192];
    for (size_t r = 0; r < gq_table_n_rows(t); r++) {
        json_t *row = gq_table_row(t, r);
        for (int c = 0; c < t->n_cols; c++) {
            if (c)
                sb_put(&b, ",", 1);
            cell_text(&t->cols[c], json_object_get(row, t->cols[c].name), buf, sizeof buf);
            csv_field(&b, buf);
        }
        sb_put(&b, "\n", 1);
    }
    return b.s;
}

int gq_table_write_csv(const gq_table *t, const char *path, gq_error *err)
{
    char *s = gq_table_csv(t);
    int rc = gq_write_file_atomic(path, s, strlen(s), err);
    free(s);
    return rc;
}

/* Splits one CSV record starting at *p into fields (a JSON array of strings); advances *p. */
static json_t *csv_record(const char **p)
{
    json_t *fields = json_array();
    sbuf f = {0};
    const char *s = *p;
    for (;;) {
        f.len = 0;
        sb_put(&f, "", 0);
        if (*s == '"') {
            s++;
            while (*s && !(*s == '"' && s[1] != '"')) {
                if (*s == '"')
                    s++;
                sb_put(&f, s++, 1);
            }
            if (*s == '"')
                s++;
        } else {
            while (*s && *s != ',' && *s != '\n' && *s != '\r')
                sb_put(&f, s++, 1);
        }
        json_array_append_new(fields, json_string(f.s));
        if (*s == ',') {
            s++;
            continue;
        }
        if (*s == '\r')
            s++;
        if (*s == '\n')
            s++;
        break;
    }
    free(f.s);
    *p = s;
    return fields;
}

static bool parse_int(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno)
        return false;
    *out = v;
    return true;
}

static bool parse_real(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end)
        return false;
    *out = v;
    return true;
}

int gq_table_read_csv(const char *path, gq_table *t, gq_error *err)
{
    char *text;
    size_t len;
    if (gq_read_file(path, &text, &len, err))
        return -1;
    gq_table_init(t);
    const char *p = text;
    json_t *header = csv_record(&p);
    json_t *records = json_array();
    while (*p)
        json_array_append_new(records, csv_record(&p));
    size_t nc = json_array_size(header);
    for (size_t c = 0; c < nc; c++) {
        const char *name = json_string_value(json_array_get(header, c));
        bool all_int = true, all_num = true;
        for (size_t r = 0; r < json_array_size(records); r++) {
            json_t *rec = json_array_get(records, r);
            if (json_array_size(rec) != nc) {
                json_decref(header);
                json_decref(records);
                free(text);
                gq_table_free(t);
                return gq_fail(err, "%s: line %zu has %zu fields, the header has %zu", path,
                               r + 2, json_array_size(rec), nc);
            }
            const char *s = json_string_value(json_array_get(rec, c));
            long long i;
            double d;
            if (!*s)
                continue;
            if (!parse_int(s, &i))
                all_int = false;
            if (!parse_real(s, &d))
                all_num = false;
        }
        /* rows index columns by header position: a repeated name would leave fewer columns
         * than fields */
        if (gq_table_add_col(t, name, all_int   ? GQ_COL_INT
                                      : all_num ? GQ_COL_REAL
                                                : GQ_COL_TEXT) != (int)c) {
            gq_fail(err, "%s: header column %zu (\"%.63s\") repeats an earlier column's name",
                    path, c + 1, name);
            json_decref(header);
            json_decref(records);
            free(text);
            gq_table_free(t);
            return -1;
        }
    }
    for (size_t r = 0; r < json_array_size(records); r++) {
        json_t *rec = json_array_get(records, r), *row = json_object();
        for (size_t c = 0; c < nc; c++) {
            const char *s = json_string_value(json_array_get(rec, c));
            long long i;
            double d;
            if (!*s)
                continue;
            json_t *v = t->cols[c].type == GQ_COL_INT && parse_int(s, &i) ? json_integer(i)
                        : t->cols[c].type != GQ_COL_TEXT && parse_real(s, &d) ? json_real(d)
                                                                               : json_string(s);
            json_object_set_new(row, t->cols[c].name, v);
        }
        gq_table_add_row(t, row);
    }
    json_decref(header);
    json_decref(records);
    free(text);
    return 0;
}

char *gq_table_format(const gq_table *t, const char *const *cols, int n_cols)
{
    size_t nr = gq_table_n_rows(t);
    int width[64] = {0};
    char buf[512];
    if (n_cols > 64)
        n_cols = 64;
    for (int c = 0; c < n_cols; c++) {
        width[c] = (int)strlen(cols[c]);
        int ci = gq_table_col(t, cols[c]);
        for (size_t r = 0; r < nr && ci >= 0; r++) {
            cell_text(&t->cols[ci], json_object_get(gq_table_row(t, r), cols[c]), buf, sizeof buf);
            json_t *v = json_object_get(gq_table_row(t, r), cols[c]);
            if (json_is_real(v) && isfinite(json_real_value(v)))
                snprintf(buf, sizeof buf, "%.4g", json_real_value(v));
            if ((int)strlen(buf) > width[c])
                width[c] = (int)strlen(buf);
        }
    }
    sbuf b = {0};
    for (int c = 0; c < n_cols; c++) {
        snprintf(buf, sizeof buf, "%s%-*s", c ? "  " : "", width[c], cols[c]);
        sb_str(&b, buf);
    }
    sb_str(&b, "\n");
    for (size_t r = 0; r < nr; r++) {
        for (int c = 0; c < n_cols; c++) {
            int ci = gq_table_col(t, cols[c]);
            char cell[512] = "";
            json_t *v = json_object_get(gq_table_row(t, r), cols[c]);
            if (ci >= 0)
                cell_text(&t->cols[ci], v, cell, sizeof cell);
            if (json_is_real(v) && isfinite(json_real_value(v)))
                snprintf(cell, sizeof cell, "%.4g", json_real_value(v));
            bool num = ci >= 0 && t->cols[ci].type != GQ_COL_TEXT;
            snprintf(buf, sizeof buf, num ? "%s%*s" : "%s%-*s", c ? "  " : "", width[c], cell);
            sb_str(&b, buf);
        }
        sb_str(&b, "\n");
    }
    return b.s;
}
