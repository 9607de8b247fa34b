#ifndef GQ_REGISTRY_H
#define GQ_REGISTRY_H
/* A table of named entries: the mechanics shared by the format and method registries.
 *
 * Entries are `const void *` pointing to structs that live as long as the process (built-ins,
 * plugins' structs); `name_of` reads an entry's name. The order is registration order, which
 * is listing order. The typed registries (src/formats/registry.c, methods/registry.c) each own
 * one table and add their completeness checks:
 *
 *     static const void *slots[MAX + 1] = {&builtin_a, &builtin_b}; (the rest NULL)
 *     static gq_registry reg = {"format", format_name, format_check, slots, MAX};
 *
 * Not thread-safe: register before running work. */
#include <stddef.h>

#include "core/gq_error.h"

typedef struct gq_registry {
    const char *kind;                          /* "format", "method": the noun in messages */
    const char *(*name_of)(const void *entry); /* may return NULL for a bad entry */
    /* Kind-specific checks of a new entry (missing fields, ...), run after the name check and
     * before the duplicate check; NULL for none. Fails with a message naming the entry. */
    int (*check)(const void *entry, gq_error *err);
    const void **slots; /* capacity + 1 pointers: the entries, then NULL up to the end */
    int capacity;
} gq_registry;

/* Number of entries. */
int gq_registry_count(const gq_registry *r);

/* Entry i in registration order; NULL when i is not in 0..count-1. */
const void *gq_registry_at(const gq_registry *r, int i);

/* The entry named `name`, or NULL. */
const void *gq_registry_find(const gq_registry *r, const char *name);

/* Appends an entry. Fails on NULL ("<kind> registration: NULL <kind>"), a name that is not
 * a registry key (gq_params_name_valid), r->check, a name already taken, or a full table. */
int gq_registry_add(gq_registry *r, const void *entry, gq_error *err);

/* Removes every entry after the first n (n >= 0; nothing when n >= count): undoes the
 * registrations made since the count was n (a plugin whose init failed). */
void gq_registry_truncate(gq_registry *r, int n);

/* "a, b, c": the names in order, cut to fit buf[0..n) (for "unknown name" messages). */
void gq_registry_names(const gq_registry *r, char *buf, size_t n);

#endif
