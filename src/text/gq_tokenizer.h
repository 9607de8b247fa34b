#ifndef GQ_TOKENIZER_H
#define GQ_TOKENIZER_H
/* llama2.c tokenizer.bin: SentencePiece-style BPE over vocabulary scores with byte fallback.
 *
 * File: int32 max_token_length, then per token: float32 score, int32 len, len bytes.
 * encode() gives exactly the ids of llama2.c's reference encode() (dummy-prefix space, UTF-8
 * code points looked up whole or as <0xXX> byte tokens (id = byte + 3), then repeated merging
 * of the adjacent pair with the highest merged-token score, leftmost on ties), but in
 * O(n log n) with a priority queue instead of llama2.c's O(n^2) rescans.
 *
 * Input is taken by length, so a NUL byte is an ordinary byte (byte token <0x00>) where the
 * reference, reading a C string, would stop. If the vocabulary has no " " piece the dummy
 * prefix is the byte token <0x20> (the reference would emit an invalid id). Loading checks the
 * layout, lengths (1..max_token_length), finite scores, that ids 3..258 are <0x00>..<0xFF>,
 * and the vocabulary size against the model; errors name the file, token and offset. */
#include <stdbool.h>
#include <stddef.h>

#include "core/gq_error.h"

#define GQ_TOKEN_UNK 0
#define GQ_TOKEN_BOS 1
#define GQ_TOKEN_EOS 2

typedef struct gq_tokenizer gq_tokenizer;

/* expected_vocab: the model's vocab_size to check against, or 0 to accept any. */
int gq_tokenizer_load(const char *path, int expected_vocab, gq_tokenizer **out, gq_error *err);
/* The same from a tokenizer.bin image in memory (size bytes; `path` names it in messages). */
int gq_tokenizer_parse(const char *path, const void *bytes, size_t size, int expected_vocab,
                       gq_tokenizer **out, gq_error *err);
void gq_tokenizer_free(gq_tokenizer *t);
int gq_tokenizer_vocab_size(const gq_tokenizer *t);

/* Encodes len bytes of text. *tokens is malloc'd (caller frees); *n_tokens its length. */
int gq_tokenizer_encode(const gq_tokenizer *t, const char *text, size_t len, bool bos, bool eos,
                        int **tokens, size_t *n_tokens, gq_error *err);

/* The text of `token` as llama2.c's decode(): the leading space is dropped after BOS and
 * byte tokens <0xXX> become that byte. Returns a pointer into the tokenizer or into *scratch
 * (at least 2 bytes); valid until the next call with the same scratch. The byte token <0x00>
 * decodes to "" (a C string cannot hold it). */
const char *gq_tokenizer_decode(const gq_tokenizer *t, int prev_token, int token, char scratch[2]);

/* The raw vocabulary piece (for tests and diagnostics), NULL when token is out of range. */
const char *gq_tokenizer_piece(const gq_tokenizer *t, int token);
/* The piece's merge score (token must be in range). */
float gq_tokenizer_score(const gq_tokenizer *t, int token);

#endif
