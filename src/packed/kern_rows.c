/* Packed kernel of formats that hand over their own rows (GQ_PACK_ROWS, formats/gq_packing.h):
 * a row is decoded by the format's dequant_row into cols values, the padding to cols_pad is
 * zero; decode dots run on the decoded row (scalar), prefill tiles on sgemm as for every
 * packed format. No int8-activation path. */
#include "packed/packed_internal.h"

static void rows_dequant(const gq_packed_linear *P, int r, float *y)
{
    P->fmt_packing->dequant_row(P->fmt_params, pk_row(P, r), P->cols, y);
    memset(y + P->cols, 0, (size_t)(P->cols_pad - P->cols) * sizeof *y);
}

const pk_type pk_rows = {"rows", 32, rows_dequant, rows_dequant, pk_dot_generic, NULL, false, 1, 1};
