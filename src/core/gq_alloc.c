/* Block-sized buffers (gq_alloc.h): 2 MiB aligned and advised for huge pages from
 * GQ_ALLOC_HUGE bytes up. */
#include "core/gq_alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void *gq_alloc_big(size_t bytes)
{
    if (bytes < GQ_ALLOC_HUGE) {
        size_t rounded = (bytes + 63) & ~(size_t)63;
        return aligned_alloc(64, rounded ? rounded : 64);
    }
    if (bytes > SIZE_MAX - GQ_ALLOC_HUGE)
        return NULL;
    size_t rounded = (bytes + GQ_ALLOC_HUGE - 1) & ~(GQ_ALLOC_HUGE - 1);
    void *p = aligned_alloc(GQ_ALLOC_HUGE, rounded);
    if (p)
        madvise(p, rounded, MADV_HUGEPAGE); /* advice only: a failure changes no value */
    return p;
}

void *gq_calloc_big(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = gq_alloc_big(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void *gq_alloc_zero(size_t bytes, const char *what, gq_error *err)
{
    void *p = gq_calloc_big(bytes, 1);
    if (!p)
        gq_fail(err, "out of memory allocating %zu bytes for %s", bytes, what);
    return p;
}
