#include "text/gq_vocab.h"

#include <stdlib.h>
#include <string.h>

/* FNV-1a, continuable so that a pair's concatenation is hashed in place. */
static uint64_t fnv_start(void) { return 1469598103934665603ULL; }

static uint64_t fnv_add(uint64_t h, const char *s, int n)
{
    for (int i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

int gq_vocab_alloc(gq_vocab *v, size_t n, size_t arena_bytes)
{
    memset(v, 0, sizeof *v);
    v->n = (int)n;
    v->pieces = calloc(n ? n : 1, sizeof *v->pieces);
    v->lens = calloc(n ? n : 1, sizeof *v->lens);
    v->arena = malloc(arena_bytes ? arena_bytes : 1);
    v->arena_cap = arena_bytes;
    size_t cap = 1;
    while (cap < 2 * n)
        cap <<= 1;
    v->table = malloc(cap * sizeof *v->table);
    if (!v->pieces || !v->lens || !v->arena || !v->table)
        return -1;
    v->table_mask = (uint32_t)(cap - 1);
    memset(v->table, 0xff, cap * sizeof *v->table);
    return 0;
}

int gq_vocab_set(gq_vocab *v, int id, const char *s, size_t len)
{
    if (v->arena_cap - v->arena_used < len + 1 || len > (size_t)INT32_MAX / 2)
        return -1;
    char *p = v->arena + v->arena_used;
    memcpy(p, s, len);
    p[len] = '\0';
    v->arena_used += len + 1;
    v->pieces[id] = p;
    v->lens[id] = (int)len;
    if ((int)len > v->max_len)
        v->max_len = (int)len;
    return 0;
}

static void table_insert(gq_vocab *v, int id)
{
    uint64_t h = fnv_add(fnv_start(), v->pieces[id], v->lens[id]);
    uint32_t i = (uint32_t)h & v->table_mask;
    while (v->table[i] >= 0) {
        int o = v->table[i];
        if (v->lens[o] == v->lens[id] && memcmp(v->pieces[o], v->pieces[id], v->lens[id]) == 0)
            return; /* duplicate piece: the lowest id wins */
        i = (i + 1) & v->table_mask;
    }
    v->table[i] = id;
}

void gq_vocab_index(gq_vocab *v)
{
    for (int i = 0; i < v->n; i++) {
        if (!v->pieces[i])
            continue;
        table_insert(v, i);
        const unsigned char *p = (const unsigned char *)v->pieces[i];
        for (int k = 0; k + 1 < v->lens[i]; k++) {
            unsigned bg = (unsigned)p[k] << 8 | p[k + 1];
            v->bigram[bg >> 3] |= (uint8_t)(1u << (bg & 7));
        }
    }
}

int gq_vocab_find2(const gq_vocab *v, const char *a, int na, const char *b, int nb)
{
    if (na + nb > v->max_len)
        return -1;
    uint64_t h = fnv_add(fnv_add(fnv_start(), a, na), b, nb);
    uint32_t i = (uint32_t)h & v->table_mask;
    for (;;) {
        int id = v->table[i];
        if (id < 0)
            return -1;
        if (v->lens[id] == na + nb && memcmp(v->pieces[id], a, na) == 0 &&
            memcmp(v->pieces[id] + na, b, nb) == 0)
            return id;
        i = (i + 1) & v->table_mask;
    }
}

void gq_vocab_free(gq_vocab *v)
{
    free(v->pieces);
    free(v->lens);
    free(v->arena);
    free(v->table);
    memset(v, 0, sizeof *v);
}
