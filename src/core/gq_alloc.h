#ifndef GQ_ALLOC_H
#define GQ_ALLOC_H

#include <stddef.h>

#include "core/gq_error.h"

/* Buffers of a block's size: weights, reconstructions, activations, workspaces.
 *
 * A buffer of GQ_ALLOC_HUGE bytes or more is aligned to 2 MiB and advised for transparent huge
 * pages (madvise MADV_HUGEPAGE). Its first touch then faults once per 2 MiB instead of once per
 * 4 KiB page; each fault is a trap into the kernel (in a virtual machine often one into the host
 * as well), so a block-sized buffer written for the first time through 4 KiB faults costs many
 * times the writes themselves, and the pipeline allocates such buffers for every block. The
 * advice changes no value: where the kernel has no huge page to give, the buffer is ordinary
 * memory. Smaller buffers are 64-byte aligned. Free all of them with free(). */
#define GQ_ALLOC_HUGE ((size_t)2 << 20)

/* Uninitialised; NULL when out of memory (a drop-in for malloc). */
void *gq_alloc_big(size_t bytes);

/* Zero-filled n x size bytes; NULL when out of memory or n x size overflows (a drop-in for
 * calloc). */
void *gq_calloc_big(size_t n, size_t size);

/* Zero-filled; NULL and err set, naming `what`, when out of memory. */
void *gq_alloc_zero(size_t bytes, const char *what, gq_error *err);

#endif
