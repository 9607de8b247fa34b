#ifndef GQ_HF_H
#define GQ_HF_H
/* tokenizer.json as parsed by gq_hf_load.c and run by gq_hf_encode.c: the steps of the
 * normalizer and the pre-tokenizer, the BPE model's merges, added tokens, the post-processor's
 * special tokens and the decoded text of every id. Private to src/text. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <jansson.h>

#include "text/gq_tokenizer_impl.h"

#define HF_MAX_STEPS 16
#define HF_MAX_TEMPLATE 8

typedef enum { HF_NFC, HF_NFD, HF_NFKC, HF_NFKD, HF_PREPEND, HF_REPLACE } hf_norm_kind;

typedef struct {
    hf_norm_kind kind;
    char *from, *to; /* Prepend: to; Replace: the literal from -> to */
} hf_norm;

typedef enum { HF_SPLIT, HF_BYTE_LEVEL, HF_METASPACE } hf_pre_kind;
typedef enum { HF_PREPEND_NEVER, HF_PREPEND_ALWAYS, HF_PREPEND_FIRST } hf_prepend_scheme;

typedef struct {
    hf_pre_kind kind;
    pcre2_code *re;          /* Split: the pattern; ByteLevel with use_regex: GPT-2's */
    bool keep_matches_only;  /* Split invert=true, ByteLevel regex: gaps are dropped */
    bool removed;            /* Split behavior Removed: matches are dropped */
    bool add_prefix_space;   /* ByteLevel */
    char *replacement;       /* Metaspace */
    hf_prepend_scheme prepend;
} hf_pre;

typedef struct {
    char *text;
    size_t len;
    int id;
} hf_added;

/* Merge table: (left id, right id) -> (rank, merged id), open addressing on the pair. */
typedef struct {
    uint64_t key; /* (uint64)left << 32 | right, UINT64_MAX empty */
    int rank, merged;
} hf_merge;

typedef enum { HF_DEC_REPLACE, HF_DEC_BYTE_FALLBACK, HF_DEC_BYTE_LEVEL } hf_dec_kind;

typedef struct {
    hf_dec_kind kind;
    char *from, *to; /* Replace */
} hf_dec;

struct gq_hf_tok {
    hf_norm norm[HF_MAX_STEPS];
    int n_norm;
    hf_pre pre[HF_MAX_STEPS];
    int n_pre;
    pcre2_match_context *mctx; /* match limits: a hostile pattern fails instead of hanging */
    hf_merge *merges;
    uint32_t merge_mask;
    int n_merges;
    int unk_id;
    bool byte_fallback, fuse_unk, ignore_merges, byte_level;
    int byte_id[256];  /* id of <0xXX>, -1 when missing */
    hf_added *added;   /* matched in the raw text before the model, longest first */
    int n_added;
    uint8_t added_first[256 / 8]; /* bit b: some added token starts with byte b */
    int prefix[HF_MAX_TEMPLATE], suffix[HF_MAX_TEMPLATE]; /* post-processor special tokens */
    int n_prefix, n_suffix;
    hf_dec dec_ops[HF_MAX_STEPS]; /* the decoder, applied to each piece in order */
    int n_dec_ops;
    gq_vocab dec;      /* decoded bytes of every id */
    bool strip_after_bos; /* decoder Strip: the leading space after BOS is dropped */
    char describe[160];
    char *source;      /* the file as read, for writing it back */
    size_t source_len;
};

/* One line naming the file and the JSON field (printf-style message); returns -1. */
int hf_fail(gq_error *err, const char *path, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The merge of the pair (a, b), or NULL (gq_hf_load.c). */
const hf_merge *hf_merge_find(const gq_hf_tok *hf, int a, int b);

/* gq_hf_steps.c: the pipeline's JSON sections; `field` names the section in messages. */
int hf_parse_normalizer(gq_hf_tok *hf, const json_t *j, const char *path, const char *field,
                        gq_error *err);
int hf_parse_pre_tokenizer(gq_hf_tok *hf, const json_t *j, const char *path, const char *field,
                           gq_error *err);
int hf_parse_post_processor(gq_tokenizer *t, const json_t *j, const char *path,
                            const char *field, gq_error *err);
int hf_parse_decoder(gq_hf_tok *hf, const json_t *j, const char *path, const char *field,
                     gq_error *err);

/* gq_hf_text.c: UTF-8 and Unicode helpers. Growable byte buffer: */
typedef struct {
    char *p;
    size_t n, cap;
} hf_buf;

int hf_buf_put(hf_buf *b, const char *s, size_t n);
/* Valid UTF-8 copy of s: every maximal invalid subpart becomes U+FFFD (WHATWG / Python
 * errors="replace"). */
int hf_utf8_sanitize(const char *s, size_t n, hf_buf *out);
/* Length of the (valid) UTF-8 sequence starting with lead byte c. */
int hf_utf8_len(unsigned char c);
/* Unicode normalization form (HF_NFC..HF_NFKD) of valid UTF-8 s into out. */
int hf_unicode_normalize(hf_norm_kind form, const char *s, size_t n, hf_buf *out);
/* GPT-2's byte-level alphabet: the UTF-8 of the character standing for byte b (1..2 bytes). */
int hf_byte_char(unsigned b, char out[2]);
/* Inverse: decodes byte-level text into bytes; characters outside the alphabet are copied. */
int hf_byte_level_decode(const char *s, size_t n, hf_buf *out);

#endif
