#include "report/gq_h5.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gq_fileio.h"

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

/* The HDF5 calls report failure as a negative value (an id or an herr_t). */
#define H5_OK(call) ((call) >= 0)

/* The compound type of a table: every field is 8 bytes (char *, int64 or double), so field c
 * sits at offset 8*c. Returns a negative id on failure. */
static hid_t table_type(const gq_table *t, hid_t str, const gq_col_type *types)
{
    size_t nc = (size_t)t->n_cols;
    hid_t ct = H5Tcreate(H5T_COMPOUND, 8 * nc);
    for (size_t c = 0; c < nc && ct >= 0; c++) {
        hid_t ft = types[c] == GQ_COL_TEXT  ? str
                   : types[c] == GQ_COL_INT ? H5T_NATIVE_INT64
                                            : H5T_NATIVE_DOUBLE;
        if (!H5_OK(H5Tinsert(ct, t->cols[c].name, 8 * c, ft))) {
            H5Tclose(ct);
            ct = -1;
        }
    }
    return ct;
}

/* Row-major records of the table in the layout of table_type; text cells are strdup'd into
 * owned (nr * nc). Returns false when out of memory. */
static bool pack_rows(const gq_table *t, const gq_col_type *types, unsigned char *buf,
                      char **owned)
{
    size_t nr = gq_table_n_rows(t), nc = (size_t)t->n_cols;
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
                if (!s)
                    return false;
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
    return true;
}

/* Closes a written dataset (a failed close counts: buffered data reach the file there), then
 * the dataspace and datatype it was written with; handles below 0 are skipped. */
static bool close_dataset(hid_t ds, hid_t space, hid_t type)
{
    bool ok = ds < 0 || H5_OK(H5Dclose(ds));
    if (space >= 0)
        H5Sclose(space);
    if (type >= 0)
        H5Tclose(type);
    return ok;
}

static int write_table(hid_t loc, const char *name, const gq_table *t, gq_error *err)
{
    size_t nr = gq_table_n_rows(t), nc = (size_t)t->n_cols;
    if (nc == 0)
        return 0;
    gq_col_type *types = malloc(nc * sizeof *types);
    unsigned char *buf = calloc(nr ? nr : 1, 8 * nc);
    char **owned = calloc(nr * nc + 1, sizeof *owned);
    hid_t str = H5Tcopy(H5T_C_S1), ct = -1, space = -1, ds = -1;
    bool ok = types && buf && owned && str >= 0 && H5_OK(H5Tset_size(str, H5T_VARIABLE)) &&
              H5_OK(H5Tset_cset(str, H5T_CSET_UTF8));
    for (size_t c = 0; ok && c < nc; c++)
        types[c] = stored_type(t, (int)c);
    ok = ok && (ct = table_type(t, str, types)) >= 0 && pack_rows(t, types, buf, owned);
    hsize_t dims[1] = {nr};
    ok = ok && (space = H5Screate_simple(1, dims, NULL)) >= 0 &&
         (ds = H5Dcreate2(loc, name, ct, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
         H5_OK(H5Dwrite(ds, ct, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf));
    ok = close_dataset(ds, space, ct) && ok;
    if (str >= 0)
        H5Tclose(str);
    for (size_t i = 0; owned && i < nr * nc; i++)
        free(owned[i]);
    free(owned);
    free(buf);
    free(types);
    return ok ? 0 : gq_fail(err, "cannot write HDF5 dataset %s", name);
}

/* Text longer than this goes to a dataset: an attribute must fit the object header (64 KiB
 * in all, shared with the other attributes), and HDF5 refuses a larger one. */
#define H5_ATTR_TEXT_MAX 16384

/* One scalar value as an attribute (int64, float64, UTF-8 string) or, for text longer than
 * H5_ATTR_TEXT_MAX, as a scalar string dataset of the same name beside the attributes. Other
 * JSON values are written as compact JSON text. */
static int write_attr(hid_t loc, const char *key, json_t *v, gq_error *err)
{
    hid_t space = H5Screate(H5S_SCALAR), type = -1, a = -1, ds = -1;
    bool ok = space >= 0;
    char *s = NULL;
    if (json_is_integer(v)) {
        int64_t x = json_integer_value(v);
        ok = ok && (a = H5Acreate2(loc, key, H5T_NATIVE_INT64, space, H5P_DEFAULT,
                                   H5P_DEFAULT)) >= 0 &&
             H5_OK(H5Awrite(a, H5T_NATIVE_INT64, &x));
    } else if (json_is_real(v)) {
        double x = json_real_value(v);
        ok = ok && (a = H5Acreate2(loc, key, H5T_NATIVE_DOUBLE, space, H5P_DEFAULT,
                                   H5P_DEFAULT)) >= 0 &&
             H5_OK(H5Awrite(a, H5T_NATIVE_DOUBLE, &x));
    } else {
        s = json_is_string(v) ? strdup(json_string_value(v))
                              : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
        ok = ok && s && (type = H5Tcopy(H5T_C_S1)) >= 0 &&
             H5_OK(H5Tset_size(type, strlen(s) + 1)) && H5_OK(H5Tset_cset(type, H5T_CSET_UTF8));
        if (ok && strlen(s) + 1 > H5_ATTR_TEXT_MAX)
            ok = (ds = H5Dcreate2(loc, key, type, space, H5P_DEFAULT, H5P_DEFAULT,
                                  H5P_DEFAULT)) >= 0 &&
                 H5_OK(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, s));
        else
            ok = ok && (a = H5Acreate2(loc, key, type, space, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
                 H5_OK(H5Awrite(a, type, s));
    }
    if (a >= 0 && !H5_OK(H5Aclose(a)))
        ok = false;
    ok = close_dataset(ds, space, type) && ok;
    free(s);
    return ok ? 0 : gq_fail(err, "cannot write HDF5 attribute %s", key);
}

static int write_attrs(hid_t loc, json_t *attrs, gq_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(attrs, key, v)
        if (write_attr(loc, key, v, err))
            return -1;
    return 0;
}

static int write_cells(hid_t f, const char *path, const gq_h5_group *groups, int n_groups,
                       gq_error *err)
{
    hid_t cells = H5Gcreate2(f, "cells", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (cells < 0)
        return gq_fail(err, "%s: cannot create group /cells", path);
    int rc = 0;
    for (int i = 0; i < n_groups && rc == 0; i++) {
        hid_t g = H5Gcreate2(cells, groups[i].name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) {
            rc = gq_fail(err, "%s: cannot create group /cells/%s", path, groups[i].name);
            break;
        }
        if (write_attrs(g, groups[i].table->attrs, err) ||
            write_table(g, "tensors", groups[i].table, err))
            rc = gq_fail_prefix(err, "%s: /cells/%s", path, groups[i].name);
        if (!H5_OK(H5Gclose(g)) && rc == 0)
            rc = gq_fail(err, "%s: cannot close group /cells/%s", path, groups[i].name);
    }
    if (!H5_OK(H5Gclose(cells)) && rc == 0)
        rc = gq_fail(err, "%s: cannot close group /cells", path);
    return rc;
}

/* Builds the file in memory (HDF5's core driver, no backing store) and returns its image:
 * HDF5 itself never writes to disk, so a full disk cannot leave it with a half-flushed file. */
static int build_image(const char *path, const gq_table *main, const gq_h5_group *groups,
                       int n_groups, void **image, size_t *size, gq_error *err)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), f = -1;
    int rc = 0;
    if (fapl < 0 || !H5_OK(H5Pset_fapl_core(fapl, 1 << 20, 0)) ||
        (f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0)
        rc = gq_fail(err, "%s: cannot create HDF5 file (in memory)", path);
    if (rc == 0 && (write_attrs(f, main->attrs, err) || write_table(f, "results", main, err)))
        rc = gq_fail_prefix(err, "%s", path);
    if (rc == 0)
        rc = write_cells(f, path, groups, n_groups, err);
    ssize_t n = -1;
    if (rc == 0 && (!H5_OK(H5Fflush(f, H5F_SCOPE_GLOBAL)) ||
                    (n = H5Fget_file_image(f, NULL, 0)) <= 0 || !(*image = malloc((size_t)n)) ||
                    H5Fget_file_image(f, *image, (size_t)n) != n))
        rc = gq_fail(err, "%s: cannot serialise the HDF5 file", path);
    *size = n > 0 ? (size_t)n : 0;
    if (f >= 0 && !H5_OK(H5Fclose(f)) && rc == 0)
        rc = gq_fail(err, "%s: cannot close HDF5 file", path);
    H5Pclose(fapl);
    return rc;
}

int gq_h5_write(const char *path, const gq_table *main, const gq_h5_group *groups, int n_groups,
                gq_error *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors are reported as one line below */
    if (gq_check_output(path, err))
        return -1;
    void *image = NULL;
    size_t size = 0;
    int rc = build_image(path, main, groups, n_groups, &image, &size, err);
    if (rc == 0)
        rc = gq_write_file_atomic(path, image, size, err);
    free(image);
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
