/* The plugin loader: dlopen, ABI check, gq_plugin_init with the registries' entry points. */
#include "plugin/gq_plugin.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_PLUGINS 64

/* Canonical paths of the loaded plugins (their handles stay open for the whole process:
 * the registries point into them). */
static char loaded[MAX_PLUGINS][PATH_MAX];
static int n_loaded;

int gq_plugin_count(void) { return n_loaded; }

/* What is wrong with the gq_plugin_abi symbol at `addr`, or NULL when it is an int-sized
 * data object that can be read: a function, or a smaller object, would be read misaligned or
 * past its end. */
static const char *abi_symbol_problem(const void *addr)
{
    Dl_info info;
    const ElfW(Sym) *sym = NULL;
    if (!dladdr1(addr, &info, (void **)&sym, RTLD_DL_SYMENT) || !sym)
        return "not described by the object's symbol table";
    int type = ELF64_ST_TYPE(sym->st_info);
    if (type == STT_FUNC || type == STT_GNU_IFUNC)
        return "a function, not an int";
    if (type != STT_OBJECT)
        return "not a data object";
    if (sym->st_size != sizeof(int) || (uintptr_t)addr % _Alignof(int) != 0)
        return "not an aligned int";
    return NULL;
}

int gq_plugin_load(const char *path, gq_error *err)
{
    char real[PATH_MAX];
    if (!path || !path[0])
        return gq_fail(err, "plugin: empty path");
    if (!realpath(path, real))
        return gq_fail(err, "plugin %s: %s", path, strerror(errno));
    struct stat st;
    if (stat(real, &st) || !S_ISREG(st.st_mode))
        return gq_fail(err, "plugin %s: not a regular file", path);
    for (int i = 0; i < n_loaded; i++)
        if (strcmp(loaded[i], real) == 0)
            return 0;
    if (n_loaded == MAX_PLUGINS)
        return gq_fail(err, "plugin %s: too many plugins (at most %d)", path, MAX_PLUGINS);

    /* An absolute path, so that dlopen never searches the library path. */
    void *h = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return gq_fail(err, "plugin %s: not a loadable shared object (%s)", path, dlerror());
    const int *abi = dlsym(h, "gq_plugin_abi");
    const char *abi_bad = abi ? abi_symbol_problem(abi) : NULL;
    if (abi_bad) {
        dlclose(h);
        return gq_fail(err, "plugin %s: gq_plugin_abi is %s (expected `const int gq_plugin_abi "
                            "= GQ_PLUGIN_ABI;`)", path, abi_bad);
    }
    gq_plugin_init_fn init;
    /* ISO C forbids object-to-function pointer casts; POSIX guarantees this one works. */
    *(void **)&init = dlsym(h, "gq_plugin_init");
    if (!abi || !init) {
        dlclose(h);
        return gq_fail(err, "plugin %s: missing symbol %s (is it a gq-bench plugin?)", path,
                       !abi ? "gq_plugin_abi" : "gq_plugin_init");
    }
    if (*abi != GQ_PLUGIN_ABI) {
        int got = *abi;
        dlclose(h);
        return gq_fail(err, "plugin %s: built for plugin ABI %d, this gq-bench has ABI %d "
                            "(rebuild the plugin against these headers)", path, got,
                       GQ_PLUGIN_ABI);
    }
    const gq_plugin_host host = {
        .abi = GQ_PLUGIN_ABI,
        .path = path,
        .register_format = gq_format_register,
        .register_method = gq_method_register,
    };
    /* Transactional: when init fails, the entries it registered before failing are removed
     * and the handle closed (nothing refers into it any more), so the process is as before. */
    int n_formats, n_methods;
    gq_format_all(&n_formats);
    gq_method_all(&n_methods);
    gq_error_clear(err);
    if (init(&host, err)) {
        gq_format_truncate(n_formats);
        gq_method_truncate(n_methods);
        dlclose(h);
        if (err && !err->msg[0])
            gq_fail(err, "gq_plugin_init failed without a message");
        return gq_fail_prefix(err, "plugin %s", path);
    }
    snprintf(loaded[n_loaded++], PATH_MAX, "%s", real);
    return 0;
}

int gq_plugin_load_list(const char *list, gq_error *err)
{
    if (!list)
        return 0;
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ":");
        if (len >= PATH_MAX)
            return gq_fail(err, "plugin list: a path is longer than %d bytes", PATH_MAX - 1);
        if (len) {
            char path[PATH_MAX];
            memcpy(path, p, len);
            path[len] = '\0';
            if (gq_plugin_load(path, err))
                return -1;
        }
        p += len + (p[len] == ':');
    }
    return 0;
}
