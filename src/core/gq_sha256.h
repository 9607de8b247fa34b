#ifndef GQ_SHA256_H
#define GQ_SHA256_H
/* SHA-256 (FIPS 180-4), used to fingerprint model, data and config files in every result. */
#include <stddef.h>
#include <stdint.h>

#include "core/gq_error.h"

typedef struct gq_sha256 {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t nbuf;
} gq_sha256;

void gq_sha256_init(gq_sha256 *s);
void gq_sha256_update(gq_sha256 *s, const void *data, size_t n);
/* Writes the 64-character lowercase hex digest plus a NUL into hex[65]. */
void gq_sha256_final_hex(gq_sha256 *s, char hex[65]);
void gq_sha256_hex(const void *data, size_t n, char hex[65]);
int gq_sha256_file(const char *path, char hex[65], gq_error *err);

#endif
