/* llama.cpp legacy block formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (32 weights per block).
 *
 * Per block of 32 values x[0..32):
 *   Q4_0 / Q5_0 (b = 4 / 5, nmax = 2^(b-1)): "max" = the value of largest magnitude with its
 *     sign, d = max / -nmax, code q = min(2^b - 1, trunc(x/d + nmax + 0.5)) (round half up; the
 *     extreme value lands exactly on q = 0), x^ = (q - nmax) * fp16(d).
 *   Q4_1 / Q5_1: d = (max - min) / (2^b - 1), q = min(2^b - 1, trunc((x - min)/d + 0.5)),
 *     x^ = q * fp16(d) + fp16(min).
 *   Q8_0: d = amax / 127, q = roundf(x/d) (half away from zero), x^ = q * fp16(d).
 * In all of them codes are computed with the fp32 inverse 1/d of the unrounded d; only the
 * stored d is fp16 (methods-reference.md section 0, pitfall b).
 *
 * Importance weights (imatrix) replace the closed-form scale by ggml's weighted searches, with
 * per-element weights qw[j] * sqrt(sigma2 + x[j]^2), sigma2 = mean x^2 over the whole row:
 * Q4_0 / Q5_0 make_qx_quants(32, nmax, rmse_type 1); Q4_1 / Q5_1 make_qkx3_quants(32, 2^b - 1,
 * rmin -0.9, rdelta 0.05, 36 steps); these store d and -min straight from the search. */
#include "formats/ggml_legacy.h"

#include <float.h>
#include <math.h>

/* ---- code packing: nibble j = element j, nibble j + 16 = element j + 16; qh bit j = bit 4 -- */

static void pack_codes(const uint8_t *L, uint8_t *qs, uint8_t *qh)
{
    uint32_t h = 0;
    for (int j = 0; j < GQ_QK / 2; ++j) {
        qs[j] = (uint8_t)((L[j] & 0x0F) | ((L[j + GQ_QK / 2] & 0x0F) << 4));
        h |= (uint32_t)((L[j] >> 4) & 1) << j;
        h |= (uint32_t)((L[j + GQ_QK / 2] >> 4) & 1) << (j + GQ_QK / 2);
    }
    if (qh)
        for (int b = 0; b < 4; ++b)
            qh[b] = (uint8_t)(h >> (8 * b));
}

static void unpack_codes(const uint8_t *qs, const uint8_t *qh, uint8_t *L)
{
    uint32_t h = 0;
    if (qh)
        h = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 |
            (uint32_t)qh[3] << 24;
    for (int j = 0; j < GQ_QK / 2; ++j) {
        L[j] = (uint8_t)((qs[j] & 0x0F) | ((h >> j) & 1) << 4);
        L[j + GQ_QK / 2] = (uint8_t)((qs[j] >> 4) | ((h >> (j + GQ_QK / 2)) & 1) << 4);
    }
}

/* ggml's (int8_t)(v) followed by MIN(qmax, .) for v in the range the fits produce, made total:
 * values outside [0, qmax] (only reachable through the group interface) saturate. */
static inline uint8_t trunc_code(float v, int qmax)
{
    if (!(v > 0))
        return 0;
    if (v >= (float)qmax)
        return (uint8_t)qmax;
    return (uint8_t)(int)v;
}

/* ---- fits of the reference paths: one block (n <= 32 values) -> scale and its inverse ---- */

typedef struct {
    float d;   /* scale before fp16 rounding (ref path codes use its inverse) */
    float id;  /* 1/d, or 0 for d = 0 */
    float min; /* asymmetric formats: block minimum; 0 otherwise */
} block_fit;

/* Q4_0 / Q5_0: d = (signed value of largest magnitude) / -nmax. */
static block_fit fit_sym(const float *x, int n, int nmax)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    block_fit f = {.d = max / (float)-nmax};
    f.id = f.d ? 1.0f / f.d : 0.0f;
    return f;
}

/* Q4_1 / Q5_1: d = (max - min) / qmax. */
static block_fit fit_asym(const float *x, int n, int qmax)
{
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < min)
            min = x[j];
        if (x[j] > max)
            max = x[j];
    }
    block_fit f = {.d = (max - min) / (float)qmax, .min = min};
    f.id = f.d ? 1.0f / f.d : 0.0f;
    return f;
}

/* Q8_0: d = amax / 127. */
static block_fit fit_q8(const float *x, int n)
{
    float amax = 0.0f;
    for (int j = 0; j < n; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    block_fit f = {.d = amax / 127.0f};
    f.id = f.d ? 1.0f / f.d : 0.0f;
    return f;
}

static inline uint8_t code_sym(const block_fit *f, float x, int nmax)
{
    return trunc_code(x * f->id + ((float)nmax + 0.5f), 2 * nmax - 1);
}

static inline uint8_t code_asym(const block_fit *f, float x, int qmax)
{
    return trunc_code((x - f->min) * f->id + 0.5f, qmax);
}

static inline int8_t code_q8(const block_fit *f, float x)
{
    float q = roundf(x * f->id);
    return (int8_t)(q > 127.f ? 127.f : q < -127.f ? -127.f : q);
}

/* sigma2 of the imatrix paths: mean of x^2 over the whole (padded) row, summed in order. */
static float row_sigma2(const float *x, int n)
{
    float sum_x2 = 0;
    for (int j = 0; j < n; ++j)
        sum_x2 += x[j] * x[j];
    return sum_x2 / (float)n;
}

/* ---- Q4_0 / Q5_0 (symmetric, b = 4 or 5) -------------------------------------------------- */

/* Writes one block given its codes L (0 .. 2^b-1) and scale d: 16-bit d, [qh], qs. */
static void store_sym(uint8_t *blk, int bits, float d, const uint8_t *L)
{
    uint16_t dh = gq_fp32_to_fp16(d);
    memcpy(blk, &dh, 2);
    if (bits == 4) {
        pack_codes(L, blk + 2, NULL);
    } else {
        pack_codes(L, blk + 6, blk + 2);
    }
}

static void quantize_row_sym(const float *x, const float *qw, int n, void *blocks, int bits)
{
    const int nmax = 1 << (bits - 1);
    const size_t bsize = bits == 4 ? sizeof(gq_block_q4_0) : sizeof(gq_block_q5_0);
    const float sigma2 = qw ? row_sigma2(x, n) : 0;
    uint8_t L[GQ_QK];
    for (int ib = 0; ib < n / GQ_QK; ++ib) {
        const float *xb = x + GQ_QK * ib;
        uint8_t *blk = (uint8_t *)blocks + bsize * (size_t)ib;
        float d;
        if (qw) {
            float weight[GQ_QK];
            int8_t Ls[GQ_QK];
            gq_ggml_imatrix_weights(GQ_QK, xb, qw + GQ_QK * ib, sigma2, weight);
            d = gq_make_qx_quants(GQ_QK, nmax, xb, Ls, 1, weight);
            for (int j = 0; j < GQ_QK; ++j)
                L[j] = (uint8_t)Ls[j];
        } else {
            block_fit f = fit_sym(xb, GQ_QK, nmax);
            d = f.d;
            for (int j = 0; j < GQ_QK; ++j)
                L[j] = code_sym(&f, xb[j], nmax);
        }
        store_sym(blk, bits, d, L);
    }
}

static void quantize_row_q4_0(const float *x, const float *qw, int n, void *blocks)
{
    quantize_row_sym(x, qw, n, blocks, 4);
}

static void quantize_row_q5_0(const float *x, const float *qw, int n, void *blocks)
{
    quantize_row_sym(x, qw, n, blocks, 5);
}

void gq_dequant_row_q4_0_ref(const void *blocks, int n, float *y)
{
    const gq_block_q4_0 *b = blocks;
    for (int i = 0; i < n / GQ_QK; i++) {
        const float d = gq_fp16(b[i].d);
        for (int j = 0; j < GQ_QK / 2; ++j) {
            y[i * GQ_QK + j] = ((b[i].qs[j] & 0x0F) - 8) * d;
            y[i * GQ_QK + j + GQ_QK / 2] = ((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void dequant_row_q5_0(const void *blocks, int n, float *y)
{
    const gq_block_q5_0 *b = blocks;
    uint8_t L[GQ_QK];
    for (int i = 0; i < n / GQ_QK; i++) {
        const float d = gq_fp16(b[i].d);
        unpack_codes(b[i].qs, b[i].qh, L);
        for (int j = 0; j < GQ_QK; ++j)
            y[i * GQ_QK + j] = (L[j] - 16) * d;
    }
}

/* ---- Q4_1 / Q5_1 (asymmetric, b = 4 or 5) ------------------------------------------------- */

static void store_asym(uint8_t *blk, int bits, float d, float m, const uint8_t *L)
{
    uint16_t h[2] = {gq_fp32_to_fp16(d), gq_fp32_to_fp16(m)};
    memcpy(blk, h, 4);
    if (bits == 4)
        pack_codes(L, blk + 4, NULL);
    else
        pack_codes(L, blk + 8, blk + 4);
}

static void quantize_row_asym(const float *x, const float *qw, int n, void *blocks, int bits)
{
    const int qmax = (1 << bits) - 1;
    const size_t bsize = bits == 4 ? sizeof(gq_block_q4_1) : sizeof(gq_block_q5_1);
    const float sigma2 = qw ? row_sigma2(x, n) : 0;
    uint8_t L[GQ_QK];
    for (int ib = 0; ib < n / GQ_QK; ++ib) {
        const float *xb = x + GQ_QK * ib;
        uint8_t *blk = (uint8_t *)blocks + bsize * (size_t)ib;
        if (qw) {
            float weight[GQ_QK], neg_min;
            uint8_t Laux[GQ_QK];
            gq_ggml_imatrix_weights(GQ_QK, xb, qw + GQ_QK * ib, sigma2, weight);
            float d = gq_make_qkx3_quants(GQ_QK, qmax, xb, weight, L, &neg_min, Laux, -0.9f,
                                          0.05f, 36, false);
            store_asym(blk, bits, d, -neg_min, L);
        } else {
            block_fit f = fit_asym(xb, GQ_QK, qmax);
            for (int j = 0; j < GQ_QK; ++j)
                L[j] = code_asym(&f, xb[j], qmax);
            store_asym(blk, bits, f.d, f.min, L);
        }
    }
}

static void quantize_row_q4_1(const float *x, const float *qw, int n, void *blocks)
{
    quantize_row_asym(x, qw, n, blocks, 4);
}

static void quantize_row_q5_1(const float *x, const float *qw, int n, void *blocks)
{
    quantize_row_asym(x, qw, n, blocks, 5);
}

static void dequant_row_q4_1(const void *blocks, int n, float *y)
{
    const gq_block_q4_1 *b = blocks;
    for (int i = 0; i < n / GQ_QK; i++) {
        const float d = gq_fp16(b[i].d), m = gq_fp16(b[i].m);
        for (int j = 0; j < GQ_QK / 2; ++j) {
            y[i * GQ_QK + j] = (b[i].qs[j] & 0x0F) * d + m;
            y[i * GQ_QK + j + GQ_QK / 2] = (b[i].qs[j] >> 4) * d + m;
        }
    }
}

static void dequant_row_q5_1(const void *blocks, int n, float *y)
{
    const gq_block_q5_1 *b = blocks;
    uint8_t L[GQ_QK];
    for (int i = 0; i < n / GQ_QK; i++) {
        const float d = gq_fp16(b[i].d), m = gq_fp16(b[i].m);
        unpack_codes(b[i].qs, b[i].qh, L);
        for (int j = 0; j < GQ_QK; ++j)
            y[i * GQ_QK + j] = L[j] * d + m;
    }
}

/* ---- Q8_0 ----------------------------------------------------------------------------------- */

static void quantize_row_q8_0(const float *x, const float *qw, int n, void *blocks)
{
    (void)qw; /* ggml's quantize_q8_0 ignores importance weights */
    gq_block_q8_0 *b = blocks;
    for (int i = 0; i < n / GQ_QK; i++) {
        const float *xb = x + GQ_QK * i;
        block_fit f = fit_q8(xb, GQ_QK);
        b[i].d = gq_fp32_to_fp16(f.d);
        for (int j = 0; j < GQ_QK; ++j)
            b[i].qs[j] = code_q8(&f, xb[j]);
    }
}

void gq_dequant_row_q8_0_ref(const void *blocks, int n, float *y)
{
    const gq_block_q8_0 *b = blocks;
    for (int i = 0; i < n / GQ_QK; i++) {
        const float d = gq_fp16(b[i].d);
        for (int j = 0; j < GQ_QK; ++j)
            y[i * GQ_QK + j] = b[i].qs[j] * d;
    }
}

/* ---- types and formats -------------------------------------------------------------------- */

#if GQ_HAVE_AVX2_DEQUANT
#define DEQ_Q4_0 gq_dequant_row_q4_0_avx2
#define DEQ_Q8_0 gq_dequant_row_q8_0_avx2
#else
#define DEQ_Q4_0 gq_dequant_row_q4_0_ref
#define DEQ_Q8_0 gq_dequant_row_q8_0_ref
#endif

const gq_ggml_type gq_ggml_q4_0 = {"q4_0", GQ_QK, sizeof(gq_block_q4_0), quantize_row_q4_0,
                                   DEQ_Q4_0};
const gq_ggml_type gq_ggml_q4_1 = {"q4_1", GQ_QK, sizeof(gq_block_q4_1), quantize_row_q4_1,
                                   dequant_row_q4_1};
const gq_ggml_type gq_ggml_q5_0 = {"q5_0", GQ_QK, sizeof(gq_block_q5_0), quantize_row_q5_0,
                                   dequant_row_q5_0};
const gq_ggml_type gq_ggml_q5_1 = {"q5_1", GQ_QK, sizeof(gq_block_q5_1), quantize_row_q5_1,
                                   dequant_row_q5_1};
const gq_ggml_type gq_ggml_q8_0 = {"q8_0", GQ_QK, sizeof(gq_block_q8_0), quantize_row_q8_0,
                                   DEQ_Q8_0};

/* Group interface (GPTQ): one 32-column block per group, fitted with the reference path
 * (importance weights are not used by the fit); a shorter last segment is zero-padded, as the
 * row quantizer pads it. State: the fit plus the stored (fp16-rounded) scale and minimum. */
typedef struct {
    block_fit f;
    float d16, m16;
} group_state;

static int group_cols_32(const void *params, int cols)
{
    (void)params;
    (void)cols;
    return GQ_QK;
}

/* Copies a segment of n <= 32 values into a zero-padded block. */
static const float *pad_segment(const float *x, int n, float *buf)
{
    if (n >= GQ_QK)
        return x;
    memset(buf, 0, GQ_QK * sizeof *buf);
    memcpy(buf, x, (size_t)(n > 0 ? n : 0) * sizeof *buf);
    return buf;
}

/* The group interface of one legacy type: fit_call fits the zero-padded segment xb, m16 is the
 * stored minimum, elem the reconstruction of x through the fitted state s. */
#define LEGACY_GROUP(name, fit_call, m16_expr, elem)                                          \
    static void name##_fit(const void *p, const float *x, int n, const float *imp, void *st)  \
    {                                                                                         \
        (void)p;                                                                              \
        (void)imp;                                                                            \
        float buf[GQ_QK];                                                                     \
        group_state *s = st;                                                                  \
        const float *xb = pad_segment(x, n, buf);                                             \
        s->f = fit_call;                                                                      \
        s->d16 = gq_round_fp16(s->f.d);                                                       \
        s->m16 = m16_expr;                                                                    \
    }                                                                                         \
    static float name##_elem(const void *p, const void *st, int k, float x)                   \
    {                                                                                         \
        (void)p;                                                                              \
        (void)k;                                                                              \
        const group_state *s = st;                                                            \
        return elem;                                                                          \
    }

#define SYM_GROUP(name, nmax)                                                                 \
    LEGACY_GROUP(name, fit_sym(xb, GQ_QK, nmax), 0, (code_sym(&s->f, x, nmax) - (nmax)) * s->d16)
#define ASYM_GROUP(name, qmax)                                                                \
    LEGACY_GROUP(name, fit_asym(xb, GQ_QK, qmax), gq_round_fp16(s->f.min),                    \
                 code_asym(&s->f, x, qmax) * s->d16 + s->m16)

SYM_GROUP(q4_0, 8)
SYM_GROUP(q5_0, 16)
ASYM_GROUP(q4_1, 15)
ASYM_GROUP(q5_1, 31)

static void q8_0_fit(const void *p, const float *x, int n, const float *imp, void *st)
{
    (void)p;
    (void)imp;
    group_state *s = st;
    s->f = fit_q8(x, n < GQ_QK ? n : GQ_QK); /* zero padding cannot change amax */
    s->d16 = gq_round_fp16(s->f.d);
    s->m16 = 0;
}

static float q8_0_elem(const void *p, const void *st, int k, float x)
{
    (void)p;
    (void)k;
    const group_state *s = st;
    return code_q8(&s->f, x) * s->d16;
}

/* store_groups (gq_format.h): states per (row, 32-column block), row-major; each code is
 * recovered from its reconstruction through the stored (fp16) scale and minimum: q = (c -
 * nmax) d16 (sym), c d16 + m16 (asym), c d16 (q8_0), so the codes dequantize to q. Padding
 * columns are stored as zeros. */
static uint8_t code_of(float x, const group_state *s, bool asym, int lo, int hi, int off)
{
    float c = s->d16 != 0.0f ? rintf((asym ? x - s->m16 : x) / s->d16) + (float)off
                             : (float)off;
    return (uint8_t)(int)(c < (float)lo ? (float)lo : c > (float)hi ? (float)hi : c);
}

static int store_legacy(const void *states, const float *q, int rows, int cols, uint8_t *codes,
                        int bits, bool asym)
{
    const int nb = (cols + GQ_QK - 1) / GQ_QK, nmax = 1 << (bits - 1);
    const size_t bsize = asym ? (bits == 4 ? sizeof(gq_block_q4_1) : sizeof(gq_block_q5_1))
                              : (bits == 4 ? sizeof(gq_block_q4_0) : sizeof(gq_block_q5_0));
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < nb; b++) {
            const group_state *s = (const group_state *)states + (size_t)r * nb + b;
            uint8_t L[GQ_QK];
            for (int j = 0; j < GQ_QK; j++) {
                const int col = b * GQ_QK + j;
                const float x = col < cols ? q[(size_t)r * cols + col] : 0.0f;
                L[j] = asym ? code_of(x, s, true, 0, (1 << bits) - 1, 0)
                            : code_of(x, s, false, 0, 2 * nmax - 1, nmax);
            }
            uint8_t *blk = codes + ((size_t)r * nb + b) * bsize;
            if (asym)
                store_asym(blk, bits, s->d16, s->m16, L);
            else
                store_sym(blk, bits, s->d16, L);
        }
    return 0;
}

#define LEGACY_STORE(name, bits, asym)                                                        \
    static int name##_store(const void *p, const void *states, const float *q, int rows,      \
                            int cols, uint8_t *codes, gq_error *err)                          \
    {                                                                                         \
        (void)p;                                                                              \
        (void)err;                                                                            \
        return store_legacy(states, q, rows, cols, codes, bits, asym);                        \
    }

LEGACY_STORE(q4_0, 4, false)
LEGACY_STORE(q5_0, 5, false)
LEGACY_STORE(q4_1, 4, true)
LEGACY_STORE(q5_1, 5, true)

static int q8_0_store(const void *p, const void *states, const float *q, int rows, int cols,
                      uint8_t *codes, gq_error *err)
{
    (void)p;
    (void)err;
    const int nb = (cols + GQ_QK - 1) / GQ_QK;
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < nb; b++) {
            const group_state *s = (const group_state *)states + (size_t)r * nb + b;
            gq_block_q8_0 *o = (gq_block_q8_0 *)codes + (size_t)r * nb + b;
            o->d = gq_fp32_to_fp16(s->d16);
            for (int j = 0; j < GQ_QK; j++) {
                const int col = b * GQ_QK + j;
                const float x = col < cols ? q[(size_t)r * cols + col] : 0.0f;
                o->qs[j] = (int8_t)((int)code_of(x, s, false, 0, 254, 127) - 127);
            }
        }
    return 0;
}

#define GROUP_IFACE(name)                                                                     \
    .group_cols = group_cols_32, .group_state_bytes = sizeof(group_state),                   \
    .fit_group = name##_fit, .quant_elem = name##_elem, .store_groups = name##_store

GQ_GGML_PACKING(q4_0_packing, GQ_PACK_Q4_0, gq_block_q4_0, GQ_QK, offsetof(gq_block_q4_0, qs));
GQ_GGML_PACKING(q4_1_packing, GQ_PACK_Q4_1, gq_block_q4_1, GQ_QK, offsetof(gq_block_q4_1, qs));
GQ_GGML_PACKING(q8_0_packing, GQ_PACK_Q8_0, gq_block_q8_0, GQ_QK, offsetof(gq_block_q8_0, qs));

GQ_GGML_FORMAT(gq_format_q4_0, gq_ggml_q4_0, "q4_0",
               "llama.cpp Q4_0: 32-weight blocks, fp16 scale, 4-bit codes (4.5 bpw)",
               GROUP_IFACE(q4_0), .packing = &q4_0_packing);
GQ_GGML_FORMAT(gq_format_q4_1, gq_ggml_q4_1, "q4_1",
               "llama.cpp Q4_1: 32-weight blocks, fp16 scale and min, 4-bit codes (5.0 bpw)",
               GROUP_IFACE(q4_1), .packing = &q4_1_packing);
GQ_GGML_FORMAT(gq_format_q5_0, gq_ggml_q5_0, "q5_0",
               "llama.cpp Q5_0: 32-weight blocks, fp16 scale, 5-bit codes (5.5 bpw)",
               GROUP_IFACE(q5_0));
GQ_GGML_FORMAT(gq_format_q5_1, gq_ggml_q5_1, "q5_1",
               "llama.cpp Q5_1: 32-weight blocks, fp16 scale and min, 5-bit codes (6.0 bpw)",
               GROUP_IFACE(q5_1));
GQ_GGML_FORMAT(gq_format_q8_0, gq_ggml_q8_0, "q8_0",
               "llama.cpp Q8_0: 32-weight blocks, fp16 scale, int8 codes (8.5 bpw)",
               GROUP_IFACE(q8_0), .packing = &q8_0_packing);
