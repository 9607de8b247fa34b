/* UTF-8 and Unicode helpers of the tokenizer.json encoder: sanitizing, normalization forms
 * (utf8proc), GPT-2's byte-level alphabet. */
#include "text/gq_hf.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

int hf_buf_put(hf_buf *b, const char *s, size_t n)
{
    if (b->cap - b->n < n + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

int hf_utf8_len(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* The continuation bytes a lead byte needs and the range of the first one (the WHATWG UTF-8
 * decoder's table; later continuation bytes are 80..BF). 0 needed: not a lead byte. */
static int utf8_need(unsigned char c, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        return 1;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0)
            *lo = 0xA0;
        if (c == 0xED)
            *hi = 0x9F;
        return 2;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0)
            *lo = 0x90;
        if (c == 0xF4)
            *hi = 0x8F;
        return 3;
    }
    return 0;
}

int hf_utf8_sanitize(const char *s, size_t n, hf_buf *out)
{
    static const char repl[] = "\xEF\xBF\xBD";
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t run = i; /* copy runs of ASCII at once */
        while (run < n && u[run] < 0x80)
            run++;
        if (run > i && hf_buf_put(out, s + i, run - i) != 0)
            return -1;
        if ((i = run) >= n)
            break;
        unsigned char lo, hi;
        int need = utf8_need(u[i], &lo, &hi);
        size_t j = i + 1;
        int k = 0;
        for (; k < need && j < n && u[j] >= lo && u[j] <= hi; k++, j++) {
            lo = 0x80;
            hi = 0xBF;
        }
        if (need > 0 && k == need) {
            if (hf_buf_put(out, s + i, j - i) != 0)
                return -1;
        } else if (hf_buf_put(out, repl, 3) != 0) {
            return -1;
        }
        i = need > 0 ? j : i + 1;
    }
    return hf_buf_put(out, "", 0);
}

int hf_unicode_normalize(hf_norm_kind form, const char *s, size_t n, hf_buf *out)
{
    int opt = UTF8PROC_STABLE;
    if (form == HF_NFC || form == HF_NFKC)
        opt |= UTF8PROC_COMPOSE;
    else
        opt |= UTF8PROC_DECOMPOSE;
    if (form == HF_NFKC || form == HF_NFKD)
        opt |= UTF8PROC_COMPAT;
    utf8proc_uint8_t *res = NULL;
    utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &res,
                                      (utf8proc_option_t)opt);
    if (m < 0)
        return -1;
    int rc = hf_buf_put(out, (const char *)res, (size_t)m);
    free(res);
    return rc;
}

/* GPT-2's bytes_to_unicode: the printable bytes ! .. ~, ¡ .. ¬ and ® .. ÿ stand for
 * themselves, the other 68 (00..20, 7F..A0, AD) for U+0100 .. U+0143 in byte order. */
static bool byte_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

static unsigned byte_code_point(unsigned b)
{
    if (byte_printable(b))
        return b;
    return 0x100 + (b <= 0x20 ? b : b <= 0xA0 ? 33 + (b - 0x7F) : 67);
}

/* The byte a byte-level character stands for, or -1. */
static int code_point_byte(long cp)
{
    if (cp >= 0 && cp < 0x100)
        return byte_printable((unsigned)cp) ? (int)cp : -1;
    if (cp < 0x100 || cp > 0x143)
        return -1;
    unsigned k = (unsigned)(cp - 0x100);
    return (int)(k <= 0x20 ? k : k < 67 ? 0x7F + (k - 33) : 0xAD);
}

int hf_byte_char(unsigned b, char out[2])
{
    unsigned cp = byte_code_point(b);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

int hf_byte_level_decode(const char *s, size_t n, hf_buf *out)
{
    size_t i = 0;
    while (i < n) {
        int l = hf_utf8_len((unsigned char)s[i]);
        if ((size_t)l > n - i)
            l = (int)(n - i);
        utf8proc_int32_t cp = -1;
        utf8proc_iterate((const utf8proc_uint8_t *)s + i, l, &cp);
        int b = code_point_byte(cp);
        char c = (char)b;
        if (hf_buf_put(out, b >= 0 ? &c : s + i, b >= 0 ? 1 : (size_t)l) != 0)
            return -1;
        i += (size_t)l;
    }
    return hf_buf_put(out, "", 0);
}
