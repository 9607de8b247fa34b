#ifndef GQ_TOKENIZER_H
#define GQ_TOKENIZER_H
/* Tokenizers: llama2.c tokenizer.bin and Hugging Face tokenizer.json (BPE models), chosen by
 * the file's content.
 *
 * tokenizer.json (gq_hf_*.c): the BPE model with its normalizer (Sequence, NFC/NFD/NFKC/NFKD,
 * Prepend, Replace of a string), pre-tokenizer (Sequence, Split by a regular expression or a
 * string with behavior Isolated or Removed, ByteLevel, Metaspace without split), added tokens
 * matched in the raw text before the model (longest first), post-processor (TemplateProcessing,
 * ByteLevel, Sequence) and decoder; tokenizer_config.json beside the file gives bos_token /
 * eos_token and, without a TemplateProcessing, add_bos_token / add_eos_token. Merges go by rank
 * (lowest first, leftmost on ties) with the same priority-queue merging as below. Invalid UTF-8
 * in the text is replaced by U+FFFD (one per maximal invalid subpart, as the WHATWG decoder and
 * Python's errors="replace" do) before anything else. Other model types (Unigram, WordPiece,
 * WordLevel) and any other step or option are refused at load, naming the file and the field.
 *
 * llama2.c tokenizer.bin: SentencePiece-style BPE over vocabulary scores with byte fallback.
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

/* Loads a llama2.c tokenizer.bin or a tokenizer.json (a file starting with a JSON object).
 * expected_vocab: the model's vocab_size to check against, or 0 to accept any; a tokenizer.bin
 * must have exactly that many tokens, a tokenizer.json at most that many (embeddings are often
 * padded beyond the vocabulary). */
int gq_tokenizer_load(const char *path, int expected_vocab, gq_tokenizer **out, gq_error *err);
/* The same from a tokenizer.bin or tokenizer.json image in memory (size bytes; `path` names it
 * in messages). */
int gq_tokenizer_parse(const char *path, const void *bytes, size_t size, int expected_vocab,
                       gq_tokenizer **out, gq_error *err);
void gq_tokenizer_free(gq_tokenizer *t);
int gq_tokenizer_vocab_size(const gq_tokenizer *t);
/* BOS / EOS ids, -1 when the tokenizer has none (llama2.c: 1 and 2). */
int gq_tokenizer_bos_id(const gq_tokenizer *t);
int gq_tokenizer_eos_id(const gq_tokenizer *t);
/* One line saying which kind of tokenizer this is, for reports. */
const char *gq_tokenizer_describe(const gq_tokenizer *t);

/* Writes t as a tokenizer.json, atomically. A llama2.c tokenizer becomes the equivalent
 * SentencePiece-style BPE (same ids for valid UTF-8 text that spells no special token and no
 * U+2581; see gq_tokenizer_json.c); a tokenizer.json is written back as it was read. */
int gq_tokenizer_save_json(const gq_tokenizer *t, const char *path, gq_error *err);

/* The text of the tokenizer.json t was read from (*len bytes), or NULL for a llama2.c
 * tokenizer (exporters that describe the tokenizer in another format read it). */
const char *gq_tokenizer_json_source(const gq_tokenizer *t, size_t *len);
/* Encodes len bytes of text. *tokens is malloc'd (caller frees); *n_tokens its length.
 * bos: add the tokenizer's special tokens (llama2.c: BOS; tokenizer.json: those of its
 * post-processor, or tokenizer_config.json's add_bos_token / add_eos_token); eos: append EOS
 * (when the tokenizer has one and it was not just added). */
int gq_tokenizer_encode(const gq_tokenizer *t, const char *text, size_t len, bool bos, bool eos,
                        int **tokens, size_t *n_tokens, gq_error *err);

/* The text of `token` as llama2.c's decode(): the leading space is dropped after BOS and
 * byte tokens <0xXX> become that byte (tokenizer.json: its decoder's text of the token; the
 * leading space is dropped after BOS when the decoder strips it). Returns a pointer into the tokenizer or into *scratch
 * (at least 2 bytes); valid until the next call with the same scratch. The byte token <0x00>
 * decodes to "" (a C string cannot hold it). */
const char *gq_tokenizer_decode(const gq_tokenizer *t, int prev_token, int token, char scratch[2]);

/* The raw vocabulary piece (for tests and diagnostics), NULL when token is out of range. */
const char *gq_tokenizer_piece(const gq_tokenizer *t, int token);
/* The piece's merge score (token must be in range; 0 for tokenizer.json, whose merges are
 * ranked instead). */
float gq_tokenizer_score(const gq_tokenizer *t, int token);

#endif
