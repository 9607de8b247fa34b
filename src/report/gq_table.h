#ifndef GQ_TABLE_H
#define GQ_TABLE_H
/* A results table: typed columns and rows of JSON values, the one in-memory form that the CSV
 * writer, the HDF5 writer, the charts and the stdout summary all read.
 *
 * A row is a JSON object keyed by column name; a missing key or JSON null is an empty cell
 * (written as an empty CSV field, NaN / "" in HDF5). Columns are TEXT (strings), INT (64-bit
 * integers) or REAL (doubles). `attrs` holds table-level facts (protocol, environment, the
 * experiment JSON, why a column is empty) as a flat JSON object of strings and numbers. */
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "core/gq_error.h"

typedef enum { GQ_COL_TEXT, GQ_COL_INT, GQ_COL_REAL } gq_col_type;

typedef struct gq_column {
    char name[64];
    gq_col_type type;
} gq_column;

typedef struct gq_table {
    gq_column *cols;
    int n_cols;
    json_t *rows;  /* array of objects */
    json_t *attrs; /* object */
} gq_table;

/* An empty table; -1 when out of memory (gq_table_free still applies). */
int gq_table_init(gq_table *t);
void gq_table_free(gq_table *t);
/* Appends a column (no-op when a column of that name exists). Returns its index or -1. */
int gq_table_add_col(gq_table *t, const char *name, gq_col_type type);
int gq_table_col(const gq_table *t, const char *name);
/* Appends a row (steals the reference, also on failure). -1 when out of memory. */
int gq_table_add_row(gq_table *t, json_t *row);
size_t gq_table_n_rows(const gq_table *t);
json_t *gq_table_row(const gq_table *t, size_t i);

/* Cell accessors: NaN / NULL when empty or absent. */
double gq_table_num(const gq_table *t, size_t row, const char *col);
const char *gq_table_str(const gq_table *t, size_t row, const char *col);
/* Distinct non-empty values of a column, in first-seen order (new reference, JSON array). */
json_t *gq_table_distinct(const gq_table *t, const char *col);

/* CSV (RFC 4180: fields with a comma, quote or newline are quoted, quotes doubled; numbers
 * printed with %.17g for REAL so that a round trip is exact). Written atomically. */
char *gq_table_csv(const gq_table *t);
int gq_table_write_csv(const gq_table *t, const char *path, gq_error *err);
/* Reads a CSV written by gq_table_write_csv: column types are inferred (INT when every
 * non-empty field is an integer, REAL when every one is a number, TEXT otherwise). */
int gq_table_read_csv(const char *path, gq_table *t, gq_error *err);

/* A fixed-width text rendering of selected columns for the terminal (malloc'd string). */
char *gq_table_format(const gq_table *t, const char *const *cols, int n_cols);

#endif
