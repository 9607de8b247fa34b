/* Construction of the element tables (mf_table.h): each entry is gq_mf_encode of one float of
 * its class, so the table holds the reference's results by construction. */
#include "formats/mf_table.h"

#include <assert.h>
#include <pthread.h>

static const gq_minifloat *const table_formats[] = {&gq_mf_e2m1, &gq_mf_e3m2, &gq_mf_e2m3,
                                                    &gq_mf_e4m3, &gq_mf_e5m2};
#define N_TABLES (int)(sizeof table_formats / sizeof table_formats[0])
static gq_mf_table tables[N_TABLES];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void build_table(gq_mf_table *t, const gq_minifloat *f)
{
    t->f = f;
    t->top = f->mbits + 1;
    /* Below 2^(emin - mbits - 1), half the smallest spacing, everything rounds to 0; from
     * 2^(emax + 1) on everything saturates. One binade of margin on each side. */
    t->e_lo = 127 + (1 - f->bias) - f->mbits - 2;
    t->e_hi = 127 + f->emax + 1;
    const int low = 23 - t->top;
    const uint32_t n_top = 1u << t->top;
    assert((uint32_t)(t->e_hi - t->e_lo + 1) * n_top * 2 <= GQ_MF_TABLE_MAX);
    for (uint32_t e = (uint32_t)t->e_lo; e <= (uint32_t)t->e_hi; e++)
        for (uint32_t m = 0; m < n_top; m++)
            for (uint32_t sticky = 0; sticky < 2; sticky++) {
                union { float f; uint32_t u; } x = { .u = e << 23 | m << low | sticky }, y;
                uint32_t code = gq_mf_encode(f, x.f, &y.f);
                t->entry[gq_mf_table_index(t, x.u)] = (y.u >> (23 - f->mbits)) << 16 | code;
            }
}

static void build_tables(void)
{
    for (int i = 0; i < N_TABLES; i++)
        build_table(&tables[i], table_formats[i]);
}

const gq_mf_table *gq_mf_table_of(const gq_minifloat *f)
{
    pthread_once(&tables_once, build_tables);
    for (int i = 0; i < N_TABLES; i++)
        if (table_formats[i] == f)
            return &tables[i];
    assert(!"gq_mf_table_of: not a registered element format");
    return NULL;
}
