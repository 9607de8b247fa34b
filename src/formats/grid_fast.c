/* Fast path of grid_quantize (grid.h): one pass over each row. Per group: the largest
 * magnitude (which also finds non-finite weights), the fast fit, the fast encode into byte
 * codes, the meta record (formats with row_fast do a row's groups in one call); per row the
 * codes are packed 8 fields at a time (4-bit ones by the format itself where it has
 * row_fast_packed4). Rows in parallel, in work items handed out dynamically,
 * each row's result independent of the others, so the bytes depend on neither the thread count
 * nor the assignment. Errors are those of the reference and come in its order
 * (non-finite weight first, then the format's amax check), found after the pass. */
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "formats/grid_internal.h"
#include "formats/grid_kernels.h"

static inline float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* A row's byte codes tmp[0..row_elems) into the code stream (if any) at bit pos. */
static void pack_row(const layout *L, uint8_t *stream, size_t pos, const uint8_t *tmp)
{
    if (stream)
        grid_pack8(stream, pos, tmp, L->row_elems, L->eb);
}

/* A row group by group through fit_fast, encode_fast and meta_write, then packed. */
static uint32_t group_by_group(const grid_ops *ops, const void *p, const layout *L,
                               const float *x, int cols, size_t rec0, uint8_t *meta,
                               uint8_t *stream, size_t pos, uint8_t *tmp, float *y)
{
    alignas(16) unsigned char st[GRID_STATE_MAX];
    uint32_t row_max = 0;
    for (int g = 0; g < L->ngr; g++) {
        const int c0 = g * L->gc, n = cols - c0 < L->gc ? cols - c0 : L->gc;
        const uint32_t bits = grid_k_absmax_bits(x + c0, (size_t)n);
        row_max = bits > row_max ? bits : row_max;
        if (bits >= 0x7f800000u)
            continue;
        ops->fit_fast(p, x + c0, (size_t)n, f32_from_bits(bits), st);
        ops->encode_fast(p, st, x + c0, n, tmp ? tmp + c0 : NULL, y ? y + c0 : NULL);
        if (meta)
            ops->meta_write(p, st, meta, (rec0 + (size_t)g) * (size_t)L->mb);
    }
    pack_row(L, stream, pos, tmp);
    return row_max;
}

/* One row: codes into the stream at bit pos (byte codes through tmp[0..row_elems), whose
 * padding stays 0, unless the format packs them itself), reconstruction into y; gbits has room
 * for a word per group of the row. Returns the bits of the row's largest magnitude
 * (>= 0x7f800000: a non-finite weight; that group is skipped). */
static uint32_t fast_row(const grid_ops *ops, const void *p, const layout *L, const void *tstate,
                         const float *x, int cols, size_t r, uint8_t *meta, uint8_t *stream,
                         size_t pos, uint8_t *tmp, float *y, uint32_t *gbits)
{
    if (L->gc == 0) {
        ops->encode_fast(p, tstate, x, cols, tmp, y);
        pack_row(L, stream, pos, tmp);
        return 0;
    }
    const size_t rec0 = r * (size_t)L->ngr;
    if (ops->row_fast_packed4 && L->eb == 4 && L->gc % 2 == 0 && pos % 8 == 0) {
        const uint32_t m = ops->row_fast_packed4(p, x, cols, L->gc, gbits,
                                                 stream ? stream + pos / 8 : NULL, y, meta, rec0);
        if (m < 0x7f800000u)
            return m;
    } else if (ops->row_fast) {
        const uint32_t m = ops->row_fast(p, x, cols, L->gc, gbits, tmp, y, meta, rec0);
        if (m < 0x7f800000u) {
            pack_row(L, stream, pos, tmp);
            return m;
        }
    }
    return group_by_group(ops, p, L, x, cols, rec0, meta, stream, pos, tmp, y);
}

/* Rows per work item: whole chunks (byte-aligned streams, grid_internal.h) of at least
 * ITEM_WEIGHTS weights. Threads take runs of items that shrink as the work runs out (guided):
 * the long first runs keep each thread's reads contiguous, so the kernels' prefetch ahead
 * (grid_kernels.c) lands in rows that thread encodes next, and the short last runs balance a
 * thread slowed by other work on the machine. Any assignment writes the same bytes, each row's
 * depending on that row alone. */
#define ITEM_WEIGHTS 16384
static int item_rows(const layout *L, int cols)
{
    const size_t chunk_weights = (size_t)L->chunk * (size_t)cols;
    return L->chunk * (int)((ITEM_WEIGHTS + chunk_weights - 1) / chunk_weights);
}

/* Per tensor: the state from every weight, before any row is encoded. */
static int fit_tensor_fast(const grid_ops *ops, const void *p, const float *w, int rows,
                           int cols, void *tstate, gq_error *err)
{
    float amax;
    if (grid_scan_amax(ops->name, w, rows, cols, &amax, err))
        return -1;
    if (ops->check_amax && ops->check_amax(p, amax, err))
        return -1;
    ops->fit_fast(p, w, (size_t)rows * (size_t)cols, amax, tstate);
    return 0;
}

int grid_quantize_fast(const grid_ops *ops, const void *p, const float *w, int rows, int cols,
                       uint8_t *codes, float *deq, gq_error *err)
{
    const layout L = grid_make_layout(ops, p, rows, cols);
    alignas(16) unsigned char tstate[GRID_STATE_MAX];
    if (L.gc == 0 && fit_tensor_fast(ops, p, w, rows, cols, tstate, err))
        return -1;
    if (codes) { /* records of whole bytes are stored, others ORed in (grid_put_record); the
                  * code stream is written whole (grid_pack8) */
        if (L.mb % 8 != 0)
            memset(codes, 0, L.meta_bytes);
        if (L.gc == 0)
            ops->meta_write(p, tstate, codes, 0);
    }
    uint8_t *cstream = codes ? codes + L.meta_bytes : NULL;
    const int item = item_rows(&L, cols), nitems = (rows + item - 1) / item;
    uint32_t max_bits = 0;
    int oom = 0;
#pragma omp parallel reduction(max : max_bits) reduction(| : oom)
    {
        uint8_t *tmp = codes ? calloc(L.row_elems, 1) : NULL;
        uint32_t *gbits = malloc(((size_t)L.ngr + 1) * sizeof *gbits);
        oom |= (codes && !tmp) || !gbits;
#pragma omp for schedule(guided)
        for (int it = 0; it < nitems; it++) {
            if ((codes && !tmp) || !gbits)
                continue;
            const int r1 = (it + 1) * item < rows ? (it + 1) * item : rows;
            for (int r = it * item; r < r1; r++) {
                const size_t off = (size_t)r * (size_t)cols;
                const uint32_t b = fast_row(ops, p, &L, tstate, w + off, cols, (size_t)r, codes,
                                            cstream, (size_t)r * L.row_elems * (size_t)L.eb,
                                            tmp, deq ? deq + off : NULL, gbits);
                max_bits = b > max_bits ? b : max_bits;
            }
        }
        grid_k_fence(); /* this thread's streamed reconstruction and codes, before the barrier */
        free(tmp);
        free(gbits);
    }
    if (oom)
        return gq_fail(err, "%s: out of memory for a row of %zu codes", ops->name, L.row_elems);
    if (max_bits >= 0x7f800000u)
        return grid_report_nonfinite(ops->name, w, rows, cols, err);
    if (L.gc && ops->check_amax && ops->check_amax(p, f32_from_bits(max_bits), err))
        return -1;
    return 0;
}

void grid_encode_tail(grid_encode_fn *encode, const void *p, const void *state, const float *x,
                      int from, int n, uint8_t *codes, float *y)
{
    for (int i = from; i < n; i += 8) {
        uint32_t c[8];
        const int m = n - i < 8 ? n - i : 8;
        encode(p, state, x + i, m, codes ? c : NULL, y ? y + i : NULL);
        for (int j = 0; codes && j < m; j++)
            codes[i + j] = (uint8_t)c[j];
    }
}
