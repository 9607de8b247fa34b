#ifndef GQ_TOKENIZER_IMPL_H
#define GQ_TOKENIZER_IMPL_H
/* The tokenizer object behind gq_tokenizer.h, shared by its readers (llama2.c tokenizer.bin in
 * gq_tokenizer.c, tokenizer.json in gq_hf_*.c) and the tokenizer.json writer. Private to
 * src/text. */
#include <stdbool.h>
#include <stdint.h>

#include "text/gq_tokenizer.h"
#include "text/gq_vocab.h"

typedef struct gq_hf_tok gq_hf_tok;

struct gq_tokenizer {
    gq_vocab v;        /* pieces as stored: llama2.c bytes, or tokenizer.json token strings */
    float *scores;     /* llama2.c: merge score of each piece; NULL for tokenizer.json */
    int space_id;      /* llama2.c: id of " " (dummy prefix), or -1 */
    int bos_id, eos_id; /* -1 when the tokenizer has none */
    gq_hf_tok *hf;     /* tokenizer.json model, normalizer, pre-tokenizer...; NULL for llama2.c */
};

/* tokenizer.json (gq_hf_load.c): parses the file's text `json` (len bytes) read from path;
 * tokenizer_config.json beside it is read when present. */
int gq_hf_load(const char *path, const char *json, size_t len, gq_tokenizer *t, gq_error *err);
void gq_hf_free(gq_hf_tok *hf);
/* gq_hf_encode.c */
int gq_hf_encode(const gq_tokenizer *t, const char *text, size_t len, bool bos, bool eos,
                 int **tokens, size_t *n_tokens, gq_error *err);
const char *gq_hf_decode(const gq_tokenizer *t, int prev_token, int token);
const char *gq_hf_describe(const gq_tokenizer *t);

#endif
