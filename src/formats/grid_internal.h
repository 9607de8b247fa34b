#ifndef GQ_GRID_INTERNAL_H
#define GQ_GRID_INTERNAL_H
/* What the grid driver (grid.c) shares with its fast path (grid_fast.c). */
#include <stddef.h>

#include "formats/grid.h"

typedef struct layout {
    int gc;           /* columns per group, 0 = per tensor */
    int ngr;          /* groups per row (0 for per tensor) */
    int eb, mb;       /* element and meta bits */
    size_t row_elems; /* stored codes per row (padded for MX) */
    size_t meta_bytes;
    size_t code_bytes;
    int chunk;        /* rows per parallel work item: byte-aligned meta and codes */
} layout;

layout grid_make_layout(const grid_ops *ops, const void *p, int rows, int cols);
/* Largest magnitude of w; fails on the first non-finite value (by position). */
int grid_scan_amax(const char *name, const float *w, int rows, int cols, float *amax_out,
                   gq_error *err);
/* The failure for the first non-finite value of w (by position); 0 when there is none. */
int grid_report_nonfinite(const char *name, const float *w, int rows, int cols, gq_error *err);
/* grid_quantize through ops' fast hooks (ops->fast_ok(p) holds). */
int grid_quantize_fast(const grid_ops *ops, const void *p, const float *w, int rows, int cols,
                       uint8_t *codes, float *deq, gq_error *err);

#endif
