#include "report/gq_h5.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

/* Storage type of a column in HDF5 (see the header: INT with gaps becomes REAL). */
static gq_col_type stored_type(const gq_table *t, int c)
{
    if (t->cols[c].type != GQ_COL_INT)
        return t->cols[c].type;
    for (size_t r = 0; r < gq_table_n_rows(t); r++)
        if (!json_is_number(json_object_get(gq_table_row(t, r), t->cols[c].name)))
            return GQ_COL_REAL;
    return GQ_COL_INT;
}

/* Every field is 8 bytes (char *, int64 or double), so field c sits at offset 8*c. */
static int write_table(hid_t loc, const char *name, const gq_table *t, gq_error *err)
{
    size_t nr = gq_table_n_rows(t), nc = (size_t)t->n_cols;
    if (nc == 0)
        return 0;
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, H5T_VARIABLE);
    H5Tset_cset(str, H5T_CSET_UTF8);
    hid_t ct = H5Tcreate(H5T_COMPOUND, 8 * nc);
    gq_col_type *types = malloc(nc * sizeof *types);
    unsigned char *buf = calloc(nr ? nr : 1, 8 * nc);
    char **owned = calloc(nr * nc + 1, sizeof *owned);
    for (size_t c = 0; c < nc; c++) {
        types[c] = stored_type(t, (int)c);
        hid_t ft = types[c] == GQ_COL_TEXT  ? str
                   : types[c] == GQ_COL_INT ? H5T_NATIVE_INT64
                                            : H5T_NATIVE_DOUBLE;
        H5Tinsert(ct, t->cols[c].name, 8 * c, ft);
    }
    for (size_t r = 0; r < nr; r++) {
        json_t *row = gq_table_row(t, r);
        for (size_t c = 0; c < nc; c++) {
            unsigned char *f = buf + 8 * (r * nc + c);
            json_t *v = json_object_get(row, t->cols[c].name);
            if (types[c] == GQ_COL_TEXT) {
                char *s;
                if (json_is_string(v))
                    s = strdup(json_string_value(v));
                else if (!v || json_is_null(v))
                    s = strdup("");
                else
                    s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
                owned[r * nc + c] = s;
                memcpy(f, &s, sizeof s);
            } else if (types[c] == GQ_COL_INT) {
                int64_t x = (int64_t)json_number_value(v);
                memcpy(f, &x, 8);
            } else {
                double x = json_is_number(v) ? json_number_value(v) : NAN;
                memcpy(f, &x, 8);
            }
        }
    }
    hsize_t dims[1] = {nr};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t ds = H5Dcreate2(loc, name, ct, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (ds < 0 || H5Dwrite(ds, ct, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        rc = gq_fail(err, "cannot write HDF5 dataset %s", name);
    if (ds >= 0)
        H5Dclose(ds);
    H5Sclose(space);
    H5Tclose(ct);
    H5Tclose(str);
    for (size_t i = 0; i < nr * nc; i++)
        free(owned[i]);
    free(owned);
    free(buf);
    free(types);
    return rc;
}

static void write_attr(hid_t loc, const char *key, json_t *v)
{
    hid_t space = H5Screate(H5S_SCALAR), type, a;
    if (json_is_integer(v)) {
        int64_t x = json_integer_value(v);
        a = H5Acreate2(loc, key, H5T_NATIVE_INT64, space, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_INT64, &x);
    } else if (json_is_real(v)) {
        double x = json_real_value(v);
        a = H5Acreate2(loc, key, H5T_NATIVE_DOUBLE, space, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_DOUBLE, &x);
    } else {
        char *s = json_is_string(v) ? strdup(json_string_value(v))
                                    : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
        type = H5Tcopy(H5T_C_S1);
        H5Tset_size(type, strlen(s) + 1);
        H5Tset_cset(type, H5T_CSET_UTF8);
        a = H5Acreate2(loc, key, type, space, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, type, s);
        H5Tclose(type);
        free(s);
    }
    H5Aclose(a);
    H5Sclose(space);
}

static void write_attrs(hid_t loc, json_t *attrs)
{
    const char *key;
    json_t *v;
    json_object_foreach(attrs, key, v)
        write_attr(loc, key, v);
}

int gq_h5_write(const char *path, const gq_table *main, const gq_h5_group *groups, int n_groups,
                gq_error *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors are reported as one line below */
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        return gq_fail(err, "%s: cannot create HDF5 file", tmp);
    int rc = 0;
    write_attrs(f, main->attrs);
    if (write_table(f, "results", main, err))
        rc = -1;
    hid_t cells = H5Gcreate2(f, "cells", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    for (int i = 0; i < n_groups && rc == 0; i++) {
        hid_t g = H5Gcreate2(cells, groups[i].name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) {
            rc = gq_fail(err, "%s: cannot create group /cells/%s", path, groups[i].name);
            break;
        }
        write_attrs(g, groups[i].table->attrs);
        if (write_table(g, "tensors", groups[i].table, err))
            rc = gq_fail_prefix(err, "%s: /cells/%s", path, groups[i].name);
        H5Gclose(g);
    }
    H5Gclose(cells);
    if (H5Fclose(f) < 0 && rc == 0)
        rc = gq_fail(err, "%s: cannot close HDF5 file", tmp);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = gq_fail(err, "%s: cannot rename into place", path);
    if (rc != 0)
        unlink(tmp);
    return rc;
}

int gq_h5_read_column(const char *path, const char *col, double **values, size_t *n,
                      gq_error *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return gq_fail(err, "%s: cannot open as HDF5", path);
    hid_t ds = H5Dopen2(f, "results", H5P_DEFAULT);
    if (ds < 0) {
        H5Fclose(f);
        return gq_fail(err, "%s: no /results dataset", path);
    }
    hid_t space = H5Dget_space(ds);
    hsize_t dims[1] = {0};
    H5Sget_simple_extent_dims(space, dims, NULL);
    hid_t ft = H5Dget_type(ds);
    int rc = 0;
    if (H5Tget_member_index(ft, col) < 0)
        rc = gq_fail(err, "%s: /results has no column %s", path, col);
    double *out = calloc(dims[0] ? dims[0] : 1, sizeof *out);
    if (rc == 0) {
        hid_t mt = H5Tcreate(H5T_COMPOUND, sizeof(double));
        H5Tinsert(mt, col, 0, H5T_NATIVE_DOUBLE);
        if (H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
            rc = gq_fail(err, "%s: cannot read column %s as numbers", path, col);
        H5Tclose(mt);
    }
    H5Tclose(ft);
    H5Sclose(space);
    H5Dclose(ds);
    H5Fclose(f);
    if (rc) {
        free(out);
        return -1;
    }
    *values = out;
    *n = dims[0];
    return 0;
}
