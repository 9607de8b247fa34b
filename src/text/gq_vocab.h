#ifndef GQ_VOCAB_H
#define GQ_VOCAB_H
/* A tokenizer vocabulary: id -> piece (bytes, NUL-terminated copies in one arena) and
 * piece -> id through an open-addressing hash (FNV-1a), shared by the llama2.c and the
 * tokenizer.json readers. Private to src/text. */
#include <stddef.h>
#include <stdint.h>

typedef struct gq_vocab {
    int n;              /* number of ids */
    int max_len;        /* longest piece, bytes */
    char **pieces;      /* n pieces pointing into arena (NULL until set) */
    int *lens;          /* piece lengths in bytes */
    char *arena;
    size_t arena_cap, arena_used;
    int *table;         /* piece -> id, -1 empty; table_mask + 1 slots */
    uint32_t table_mask;
    uint8_t bigram[256 * 256 / 8]; /* bit (a << 8 | b): some piece has adjacent bytes a, b */
} gq_vocab;

/* Allocates n ids and an arena of arena_bytes (pieces plus one NUL each). -1 when out of memory
 * (free with gq_vocab_free either way). */
int gq_vocab_alloc(gq_vocab *v, size_t n, size_t arena_bytes);
/* Copies piece `s` (len bytes) for id; -1 when the arena is full. */
int gq_vocab_set(gq_vocab *v, int id, const char *s, size_t len);
/* Builds the hash table over every id that has a piece (a repeated piece keeps its lowest id)
 * and the bigram bitmap. */
void gq_vocab_index(gq_vocab *v);
/* Whether some piece has the adjacent bytes a, b. */
static inline int gq_vocab_has_bigram(const gq_vocab *v, unsigned char a, unsigned char b)
{
    unsigned k = (unsigned)a << 8 | b;
    return v->bigram[k >> 3] >> (k & 7) & 1;
}
/* Id of the piece a (na bytes) followed by b (nb bytes), or -1. */
int gq_vocab_find2(const gq_vocab *v, const char *a, int na, const char *b, int nb);
void gq_vocab_free(gq_vocab *v);

#endif
