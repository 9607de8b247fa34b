#include "core/gq_registry.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "core/gq_params.h"

int gq_registry_count(const gq_registry *r)
{
    int n = 0;
    while (r->slots[n])
        n++;
    return n;
}

const void *gq_registry_at(const gq_registry *r, int i)
{
    /* Slots past the last entry are NULL, up to and including slots[capacity]. */
    return i >= 0 && i <= r->capacity ? r->slots[i] : NULL;
}

const void *gq_registry_find(const gq_registry *r, const char *name)
{
    for (int i = 0; r->slots[i]; i++)
        if (strcmp(r->name_of(r->slots[i]), name) == 0)
            return r->slots[i];
    return NULL;
}

int gq_registry_add(gq_registry *r, const void *entry, gq_error *err)
{
    if (!entry)
        return gq_fail(err, "%s registration: NULL %s", r->kind, r->kind);
    const char *name = r->name_of(entry);
    if (!gq_params_name_valid(name))
        return gq_fail(err, "%s registration: invalid name \"%s\" (1-31 characters of "
                            "a-z, 0-9, _)", r->kind, name ? name : "(null)");
    if (r->check && r->check(entry, err))
        return -1;
    if (gq_registry_find(r, name))
        return gq_fail(err, "%s \"%s\" is already registered", r->kind, name);
    int n = gq_registry_count(r);
    if (n == r->capacity)
        return gq_fail(err, "%s \"%s\": the registry is full (%d %ss)", r->kind, name,
                       r->capacity, r->kind);
    r->slots[n] = entry; /* slots[n + 1] is already NULL */
    return 0;
}

void gq_registry_truncate(gq_registry *r, int n)
{
    assert(n >= 0);
    for (int i = n, count = gq_registry_count(r); i < count; i++)
        r->slots[i] = NULL;
}

void gq_registry_names(const gq_registry *r, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; r->slots[i] && len < n; i++) {
        int w = snprintf(buf + len, n - len, "%s%s", i ? ", " : "", r->name_of(r->slots[i]));
        len += w > 0 ? (size_t)w : 0;
    }
}
