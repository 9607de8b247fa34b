#ifndef GQ_H5_H
#define GQ_H5_H
/* results.h5: the results table and per-cell details in one HDF5 file.
 *
 * Layout (readable with `h5dump results.h5`):
 *   /                 attributes: every entry of the main table's `attrs` (protocol,
 *                     environment, the experiment JSON, reasons for empty columns); a text
 *                     value longer than 16 KiB (the object header holds 64 KiB in all) is a
 *                     scalar string dataset of the same name instead (/experiment_json of a
 *                     large experiment)
 *   /results          compound dataset, one record per row of the main table: TEXT columns as
 *                     variable-length strings (empty = ""), INT columns as int64, REAL columns
 *                     as float64; an INT column with an empty cell is stored as float64 with
 *                     NaN marking the empty cells (never a made-up number)
 *   /cells/<id>       one group per cell, attributes from that cell table's `attrs`
 *   /cells/<id>/tensors  compound dataset of the cell table (per-tensor metrics)
 * The file is built in memory (HDF5's core driver) and written with gq_write_file_atomic: a
 * failed write (a full disk) is an error naming the file and leaves no file behind, and HDF5
 * never holds a half-written file at exit. Every HDF5 call is checked. Not thread-safe (the
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
