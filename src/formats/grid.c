/* Driver of the scaled-grid formats: groups, parallel rows, storage layout (see grid.h). */
#include "formats/grid.h"

#include <math.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_half.h"
#include "formats/grid_internal.h"

const char *const grid_granularity_names[] = {"tensor", "channel", "group", NULL};
const char *const grid_scale_dtype_names[] = {"fp16", "fp32", NULL};
const char *const grid_rounding_names[] = {"even", "away", NULL};

int grid_group_cols(int granularity, int group_size, int cols)
{
    switch (granularity) {
    case GRID_TENSOR:
        return 0;
    case GRID_CHANNEL:
        return cols;
    default:
        return group_size < cols ? group_size : cols;
    }
}

void grid_granularity_label(int granularity, int group_size, char *buf, size_t n)
{
    if (granularity == GRID_GROUP)
        snprintf(buf, n, "g%d", group_size);
    else
        snprintf(buf, n, "%s", grid_granularity_names[granularity]);
}

int grid_scale_bits(int dtype)
{
    return dtype == GRID_SCALE_FP16 ? 16 : 32;
}

int grid_scale_check(int dtype, double max_scale, const char *what, gq_error *err)
{
    if (dtype == GRID_SCALE_FP16 && !isfinite(gq_round_fp16((float)max_scale)))
        return gq_fail(err, "%s: weights this large need a scale of %g, beyond fp16 (65504); "
                       "use scale_dtype fp32", what, max_scale);
    return 0;
}

/* ---- bit streams ---------------------------------------------------------------------- */

void grid_pack(uint8_t *buf, size_t pos, const uint32_t *codes, size_t n, int w)
{
    uint8_t *b = buf + pos / 8;
    if (w == 8 && pos % 8 == 0) {
        for (size_t i = 0; i < n; i++)
            b[i] = (uint8_t)codes[i];
        return;
    }
    const uint64_t mask = (w == 32) ? 0xffffffffu : ((1u << w) - 1u);
    uint64_t acc = 0;
    unsigned nacc = (unsigned)(pos % 8); /* bits already in the first byte (kept by |=) */
    for (size_t i = 0; i < n; i++) {
        acc |= ((uint64_t)codes[i] & mask) << nacc;
        nacc += (unsigned)w;
        while (nacc >= 8) {
            *b++ |= (uint8_t)acc;
            acc >>= 8;
            nacc -= 8;
        }
    }
    if (nacc)
        *b |= (uint8_t)acc;
}

void grid_unpack(const uint8_t *buf, size_t pos, uint32_t *codes, size_t n, int w)
{
    if (n == 0)
        return;
    const uint8_t *b = buf + pos / 8;
    if (w == 8 && pos % 8 == 0) {
        for (size_t i = 0; i < n; i++)
            codes[i] = b[i];
        return;
    }
    const uint64_t mask = (w == 32) ? 0xffffffffu : ((1u << w) - 1u);
    unsigned sh = (unsigned)(pos % 8);
    uint64_t acc = (uint64_t)(*b++ >> sh);
    unsigned nacc = 8 - sh;
    for (size_t i = 0; i < n; i++) {
        while (nacc < (unsigned)w) {
            acc |= (uint64_t)(*b++) << nacc;
            nacc += 8;
        }
        codes[i] = (uint32_t)(acc & mask);
        acc >>= w;
        nacc -= (unsigned)w;
    }
}

void grid_put_bits(uint8_t *buf, size_t pos, uint32_t v, int w)
{
    grid_pack(buf, pos, &v, 1, w);
}

void grid_put_records(uint8_t *buf, size_t pos, const uint64_t *v, int n, int w)
{
    uint8_t *b = buf + pos / 8;
    unsigned nacc = (unsigned)(pos % 8);
    uint64_t acc = nacc ? *b & ((1u << nacc) - 1u) : 0; /* the earlier records' bits */
    for (int i = 0; i < n; i++) {
        acc |= v[i] << nacc; /* nacc < 8 and w <= 56: within the word */
        for (nacc += (unsigned)w; nacc >= 8; nacc -= 8, acc >>= 8)
            *b++ = (uint8_t)acc;
    }
    if (nacc)
        *b |= (uint8_t)acc;
}

uint32_t grid_get_bits(const uint8_t *buf, size_t pos, int w)
{
    uint32_t v;
    grid_unpack(buf, pos, &v, 1, w);
    return v;
}

/* ---- layout --------------------------------------------------------------------------- */

layout grid_make_layout(const grid_ops *ops, const void *p, int rows, int cols)
{
    layout L;
    L.gc = ops->group_cols(p, cols);
    L.ngr = L.gc ? (cols + L.gc - 1) / L.gc : 0;
    L.eb = ops->elem_bits(p);
    L.mb = ops->meta_bits(p);
    L.row_elems = (L.gc && ops->pad_groups) ? (size_t)L.ngr * (size_t)L.gc : (size_t)cols;
    size_t n_meta = L.gc ? (size_t)rows * (size_t)L.ngr : 1;
    L.meta_bytes = (n_meta * (size_t)L.mb + 7) / 8;
    L.code_bytes = ((size_t)rows * L.row_elems * (size_t)L.eb + 7) / 8;
    /* Threads own whole rows; a work item of `chunk` rows starts and ends on byte boundaries
     * of both streams, so no byte is written by two threads. */
    L.chunk = 1;
    while (L.chunk < 8 && ((L.chunk * L.row_elems * (size_t)L.eb) % 8 != 0 ||
                           (L.gc && ((size_t)L.chunk * (size_t)L.ngr * (size_t)L.mb) % 8 != 0)))
        L.chunk *= 2;
    return L;
}

size_t grid_storage_bytes(const grid_ops *ops, const void *p, int rows, int cols)
{
    layout L = grid_make_layout(ops, p, rows, cols);
    return L.meta_bytes + L.code_bytes;
}

/* Largest magnitude; fails on the first non-finite value (by position, whatever the thread
 * count). */
int grid_scan_amax(const char *name, const float *w, int rows, int cols, float *amax_out,
                     gq_error *err)
{
    size_t n = (size_t)rows * (size_t)cols;
    float amax = 0.0f;
    int bad = 0;
#pragma omp parallel for reduction(max : amax) reduction(| : bad) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(w[i]);
        bad |= !isfinite(a);
        amax = a > amax ? a : amax;
    }
    if (bad)
        return grid_report_nonfinite(name, w, rows, cols, err);
    *amax_out = amax;
    return 0;
}

int grid_report_nonfinite(const char *name, const float *w, int rows, int cols, gq_error *err)
{
    for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++)
        if (!isfinite(w[i]))
            return gq_fail(err, "%s: non-finite weight %g at row %zu, column %zu", name,
                           (double)w[i], i / (size_t)cols, i % (size_t)cols);
    return 0;
}

/* Per-tensor fit: one state from every weight (importance expanded per element). */
static int fit_tensor(const grid_ops *ops, const void *p, const float *w, int rows, int cols,
                      const float *imatrix, void *state, gq_error *err)
{
    size_t n = (size_t)rows * (size_t)cols;
    if (n > (size_t)2147483647)
        return gq_fail(err, "%s: per-tensor fit of %zu weights exceeds 2^31", ops->name, n);
    float *imp = NULL;
    if (imatrix) {
        imp = malloc(n * sizeof *imp);
        if (!imp)
            return gq_fail(err, "%s: out of memory for the importance of %zu weights",
                           ops->name, n);
        for (size_t i = 0; i < n; i++)
            imp[i] = imatrix[i % (size_t)cols];
    }
    ops->fit(p, w, (int)n, imp, state);
    free(imp);
    return 0;
}

static bool reference_forced;

void grid_force_reference(bool on) { reference_forced = on; }

int grid_quantize(const grid_ops *ops, const void *p, const float *w, int rows, int cols,
                  const float *imatrix, uint8_t *codes, float *deq, gq_error *err)
{
    if (!reference_forced && ops->fast_ok && ops->fast_ok(p))
        return grid_quantize_fast(ops, p, w, rows, cols, codes, deq, err);
    float amax = 0.0f;
    if (grid_scan_amax(ops->name, w, rows, cols, &amax, err))
        return -1;
    if (ops->check_amax && ops->check_amax(p, amax, err))
        return -1;
    layout L = grid_make_layout(ops, p, rows, cols);
    if (codes)
        memset(codes, 0, L.meta_bytes + L.code_bytes);
    uint8_t *cstream = codes ? codes + L.meta_bytes : NULL;

    alignas(16) unsigned char tstate[GRID_STATE_MAX];
    if (L.gc == 0) {
        if (fit_tensor(ops, p, w, rows, cols, imatrix, tstate, err))
            return -1;
        if (codes)
            ops->meta_write(p, tstate, codes, 0);
    }
    int nchunks = (rows + L.chunk - 1) / L.chunk;
    int oom = 0;
#pragma omp parallel reduction(| : oom)
    {
        uint32_t *tmp = codes ? calloc(L.row_elems, sizeof *tmp) : NULL;
        alignas(16) unsigned char st[GRID_STATE_MAX];
        oom |= codes && !tmp;
#pragma omp for schedule(static)
        for (int ch = 0; ch < nchunks; ch++) {
            if (codes && !tmp)
                continue;
            int r1 = (ch + 1) * L.chunk < rows ? (ch + 1) * L.chunk : rows;
            for (int r = ch * L.chunk; r < r1; r++) {
                const float *x = w + (size_t)r * (size_t)cols;
                float *y = deq ? deq + (size_t)r * (size_t)cols : NULL;
                if (L.gc == 0) {
                    ops->encode(p, tstate, x, cols, tmp, y);
                } else {
                    for (int g = 0; g < L.ngr; g++) {
                        int c0 = g * L.gc;
                        int n = cols - c0 < L.gc ? cols - c0 : L.gc;
                        ops->fit(p, x + c0, n, imatrix ? imatrix + c0 : NULL, st);
                        ops->encode(p, st, x + c0, n, tmp ? tmp + c0 : NULL, y ? y + c0 : NULL);
                        if (codes)
                            ops->meta_write(p, st, codes,
                                            ((size_t)r * (size_t)L.ngr + (size_t)g) *
                                                (size_t)L.mb);
                    }
                }
                /* Padding codes (MX) stay 0, the code of +0. */
                if (codes)
                    grid_pack(cstream, (size_t)r * L.row_elems * (size_t)L.eb, tmp, L.row_elems,
                              L.eb);
            }
        }
        free(tmp);
    }
    if (oom)
        return gq_fail(err, "%s: out of memory for a row of %zu codes", ops->name, L.row_elems);
    return 0;
}

int grid_store_groups(const grid_ops *ops, const void *p, const void *states, const float *q,
                      int rows, int cols, uint8_t *codes, gq_error *err)
{
    layout L = grid_make_layout(ops, p, rows, cols);
    uint32_t *tmp = calloc(L.row_elems, sizeof *tmp); /* padding codes (MX) stay 0 */
    if (!tmp)
        return gq_fail(err, "%s: out of memory for a row of %zu codes", ops->name, L.row_elems);
    memset(codes, 0, L.meta_bytes + L.code_bytes);
    const unsigned char *st = states;
    if (L.gc == 0)
        ops->meta_write(p, st, codes, 0);
    for (int r = 0; r < rows; r++) {
        const float *x = q + (size_t)r * (size_t)cols;
        if (L.gc == 0)
            ops->encode(p, st, x, cols, tmp, NULL);
        for (int g = 0; L.gc && g < L.ngr; g++) {
            const size_t rec = (size_t)r * (size_t)L.ngr + (size_t)g;
            const int c0 = g * L.gc, n = cols - c0 < L.gc ? cols - c0 : L.gc;
            ops->encode(p, st + rec * ops->state_bytes, x + c0, n, tmp + c0, NULL);
            ops->meta_write(p, st + rec * ops->state_bytes, codes, rec * (size_t)L.mb);
        }
        grid_pack(codes + L.meta_bytes, (size_t)r * L.row_elems * (size_t)L.eb, tmp,
                  L.row_elems, L.eb);
    }
    free(tmp);
    return 0;
}

int grid_dequantize(const grid_ops *ops, const void *p, const uint8_t *codes, int rows, int cols,
                    float *out, gq_error *err)
{
    if (rows <= 0 || cols <= 0)
        return gq_fail(err, "%s: empty matrix (%d x %d)", ops->name, rows, cols);
    layout L = grid_make_layout(ops, p, rows, cols);
    const uint8_t *cstream = codes + L.meta_bytes;
    alignas(16) unsigned char tstate[GRID_STATE_MAX];
    if (L.gc == 0)
        ops->meta_read(p, codes, 0, tstate);
    int nchunks = (rows + L.chunk - 1) / L.chunk;
    int oom = 0;
#pragma omp parallel reduction(| : oom)
    {
        uint32_t *tmp = malloc(L.row_elems * sizeof *tmp);
        alignas(16) unsigned char st[GRID_STATE_MAX];
        oom |= !tmp;
#pragma omp for schedule(static)
        for (int ch = 0; ch < nchunks; ch++) {
            if (!tmp)
                continue;
            int r1 = (ch + 1) * L.chunk < rows ? (ch + 1) * L.chunk : rows;
            for (int r = ch * L.chunk; r < r1; r++) {
                float *y = out + (size_t)r * (size_t)cols;
                grid_unpack(cstream, (size_t)r * L.row_elems * (size_t)L.eb, tmp, L.row_elems,
                            L.eb);
                if (L.gc == 0) {
                    ops->decode(p, tstate, tmp, cols, y);
                    continue;
                }
                for (int g = 0; g < L.ngr; g++) {
                    int c0 = g * L.gc;
                    int n = cols - c0 < L.gc ? cols - c0 : L.gc;
                    ops->meta_read(p, codes,
                                   ((size_t)r * (size_t)L.ngr + (size_t)g) * (size_t)L.mb, st);
                    ops->decode(p, st, tmp + c0, n, y + c0);
                }
            }
        }
        free(tmp);
    }
    if (oom)
        return gq_fail(err, "%s: out of memory for a row of %zu codes", ops->name, L.row_elems);
    return 0;
}

float grid_quant_elem(const grid_ops *ops, const void *p, const void *state, float x)
{
    float y;
    ops->encode(p, state, &x, 1, NULL, &y);
    return y;
}
