#ifndef GQ_BPE_H
#define GQ_BPE_H
/* Byte-pair merging in O(n log n), shared by the llama2.c and tokenizer.json encoders.
 *
 * Symbols form a doubly linked list; a max-heap holds candidate merges of adjacent symbols
 * ordered by (priority, position of the left symbol: leftmost first), with lazy invalidation
 * (an entry is dropped when popped if either symbol changed since it was pushed). Since
 * symbols are only ever removed, the position order of the initial symbols is the
 * left-to-right order, so "highest priority, leftmost on ties" is the heap order: the same
 * merges as repeatedly rescanning all pairs (O(n^2)). Private to src/text. */
#include <stddef.h>
#include <stdint.h>

#include "text/gq_vocab.h"

typedef struct {
    int id;         /* token id; -1 once merged into its left neighbour */
    int prev, next; /* neighbours in the live list, -1 at the ends */
} gq_bpe_symbol;

typedef struct {
    uint64_t key;   /* priority in the high half, ~(left position) in the low half */
    int right, right_id, merged;
} gq_bpe_candidate;

typedef struct {
    gq_bpe_candidate *a;
    size_t n, cap;
} gq_bpe_heap;

/* The merge rule: the id that (left, right) merge into, with its priority (higher merges
 * first), or -1 when the pair never merges. */
typedef int (*gq_bpe_rule)(const void *ctx, int left, int right, uint32_t *priority);

/* Links symbols [a, b) in order (prev of a and next of b - 1 are -1). */
void gq_bpe_link(gq_bpe_symbol *s, int a, int b);

/* Merges the linked symbols [a, b) (no pair with a symbol outside the range may merge) until no
 * adjacent pair merges. h is an empty heap (reused across calls), left empty. -1: out of memory. */
int gq_bpe_merge(gq_bpe_symbol *s, int a, int b, gq_bpe_rule rule, const void *ctx,
                 gq_bpe_heap *h);

/* Merges symbols s[0..n) (ids of v, unlinked) as one text, in segments: a merged piece spanning
 * the boundary between two adjacent symbols contains the byte pair (last byte of the left
 * piece, first byte of the right piece); when no piece of v contains that pair nothing can
 * ever merge across the boundary and merges on either side commute. The list is cut there (in
 * practice at most word starts) and each segment is merged on its own with a small heap that
 * stays in cache: the same result as merging the whole text at once, without a heap of the
 * whole text's size. Merged tokens must be pieces of v equal to the concatenation. The
 * survivors (id >= 0) are the result, in index order. -1: out of memory. */
int gq_bpe_merge_all(gq_bpe_symbol *s, int n, const gq_vocab *v, gq_bpe_rule rule,
                     const void *ctx, gq_bpe_heap *h);

void gq_bpe_heap_free(gq_bpe_heap *h);

#endif
