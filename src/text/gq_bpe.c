#include "text/gq_bpe.h"

#include <stdlib.h>

static void sift_up(gq_bpe_heap *h, size_t i)
{
    gq_bpe_candidate c = h->a[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->a[p].key >= c.key)
            break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = c;
}

static void sift_down(gq_bpe_heap *h, size_t i)
{
    gq_bpe_candidate c = h->a[i];
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= h->n)
            break;
        if (l + 1 < h->n && h->a[l + 1].key > h->a[l].key)
            l++;
        if (h->a[l].key <= c.key)
            break;
        h->a[i] = h->a[l];
        i = l;
    }
    h->a[i] = c;
}

static gq_bpe_candidate heap_pop(gq_bpe_heap *h)
{
    gq_bpe_candidate top = h->a[0];
    h->a[0] = h->a[--h->n];
    if (h->n)
        sift_down(h, 0);
    return top;
}

/* Pushes the candidate merge of symbols l and r when the rule merges them. */
static int push_pair(gq_bpe_heap *h, const gq_bpe_symbol *s, int l, int r, gq_bpe_rule rule,
                     const void *ctx)
{
    uint32_t prio = 0;
    int merged = rule(ctx, s[l].id, s[r].id, &prio);
    if (merged < 0)
        return 0;
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 1024;
        gq_bpe_candidate *a = realloc(h->a, cap * sizeof *a);
        if (!a)
            return -1;
        h->a = a;
        h->cap = cap;
    }
    h->a[h->n] = (gq_bpe_candidate){((uint64_t)prio << 32) | (uint32_t)~(uint32_t)l, r,
                                    s[r].id, merged};
    sift_up(h, h->n++);
    return 0;
}

void gq_bpe_link(gq_bpe_symbol *s, int a, int b)
{
    for (int i = a; i < b; i++) {
        s[i].prev = i > a ? i - 1 : -1;
        s[i].next = i + 1 < b ? i + 1 : -1;
    }
}

int gq_bpe_merge(gq_bpe_symbol *s, int a, int b, gq_bpe_rule rule, const void *ctx,
                 gq_bpe_heap *h)
{
    for (int i = a; i + 1 < b; i++)
        if (push_pair(h, s, i, i + 1, rule, ctx) != 0)
            return -1;
    while (h->n) {
        gq_bpe_candidate c = heap_pop(h);
        int l = (int)~(uint32_t)c.key, r = c.right;
        /* Stale when r is no longer l's right neighbour (l or r merged away) or r absorbed its
         * own right neighbour since the push (l's id cannot change while r stays its next). */
        if (s[l].next != r || s[r].id != c.right_id || s[l].id < 0)
            continue;
        s[l].id = c.merged;
        s[r].id = -1;
        s[l].next = s[r].next;
        if (s[r].next >= 0)
            s[s[r].next].prev = l;
        s[r].next = s[r].prev = -1;
        if ((s[l].prev >= 0 && push_pair(h, s, s[l].prev, l, rule, ctx) != 0) ||
            (s[l].next >= 0 && push_pair(h, s, l, s[l].next, rule, ctx) != 0))
            return -1;
    }
    return 0;
}

int gq_bpe_merge_all(gq_bpe_symbol *s, int n, const gq_vocab *v, gq_bpe_rule rule,
                     const void *ctx, gq_bpe_heap *h)
{
    for (int a = 0; a < n;) {
        int b = a + 1;
        while (b < n) {
            int l = s[b - 1].id, r = s[b].id;
            if (!gq_vocab_has_bigram(v, (unsigned char)v->pieces[l][v->lens[l] - 1],
                                     (unsigned char)v->pieces[r][0]))
                break;
            b++;
        }
        gq_bpe_link(s, a, b);
        if (gq_bpe_merge(s, a, b, rule, ctx, h) != 0)
            return -1;
        a = b;
    }
    return 0;
}

void gq_bpe_heap_free(gq_bpe_heap *h)
{
    free(h->a);
    h->a = NULL;
    h->n = h->cap = 0;
}
