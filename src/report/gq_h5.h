#ifndef GQ_H5_H
#define GQ_H5_H
/* results.h5: the results table and per-cell details in one HDF5 file.
 *
 * Layout (readable with `h5dump results.h5`):
 *   /                 attributes: every entry of the main table's `attrs` (protocol,
 *                     environment, the experiment JSON, reasons for empty columns)
 *   /results          compound dataset, one record per row of the main table: TEXT columns as
 *                     variable-length strings (empty = ""), INT columns as int64, REAL columns
 *                     as float64; an INT column with an empty cell is stored as float64 with
 *                     NaN marking the empty cells (never a made-up number)
 *   /cells/<id>       one group per cell, attributes from that cell table's `attrs`
 *   /cells/<id>/tensors  compound dataset of the cell table (per-tensor metrics)
 * The file is written under a temporary name and renamed into place. Not thread-safe (the
 * HDF5 library may be built without thread safety): call from one thread. */
#include "core/gq_error.h"
#include "report/gq_table.h"

typedef struct gq_h5_group {
    const char *name;      /* group name under /cells */
    const gq_table *table; /* written as <group>/tensors, its attrs as group attributes */
} gq_h5_group;

int gq_h5_write(const char *path, const gq_table *main, const gq_h5_group *groups, int n_groups,
                gq_error *err);

/* Reads back the column names, the number of records and one column of /results as doubles
 * (for tests and tools). *values is malloc'd. */
int gq_h5_read_column(const char *path, const char *col, double **values, size_t *n,
                      gq_error *err);

#endif
