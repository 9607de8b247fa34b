#ifndef GQ_PLUGIN_H
#define GQ_PLUGIN_H
/* Out-of-tree plugins: shared objects that add formats and methods at run time.
 *
 * A plugin is built against the same headers as the built-ins (formats/gq_format.h,
 * methods/gq_method.h) and links against nothing but libm: the host's functions (gq_fail,
 * gq_params_*, gq_fp32_to_fp16, ...) resolve at load time from the gq-bench executable, which
 * exports its symbols. It defines two symbols:
 *
 *     const int gq_plugin_abi = GQ_PLUGIN_ABI;
 *     int gq_plugin_init(const gq_plugin_host *host, gq_error *err)
 *     {
 *         return host->register_format(&my_format, err);
 *     }
 *
 * The loader reads gq_plugin_abi before calling anything (after checking in the ELF symbol
 * table that it is an int-sized data object, not a function) and refuses a plugin built for
 * another ABI. Plugins run in-process and are trusted: nothing isolates a crashing init. Registered structs must live as long as the process (a plugin whose init
 * succeeded is never unloaded; one whose init fails is unregistered and unloaded, so init
 * must not leave anything else behind). Example: examples/plugins/nf4.c. */
#include "core/gq_error.h"
#include "formats/gq_format.h"
#include "methods/gq_method.h"

/* Bumped whenever gq_plugin_host, gq_format or gq_method change layout or meaning. */
#define GQ_PLUGIN_ABI 4

typedef struct gq_plugin_host {
    int abi;          /* GQ_PLUGIN_ABI of the host */
    const char *path; /* the plugin being loaded, for messages */
    /* Add an entry to the registry; fail on a NULL or incomplete entry or a taken name. */
    int (*register_format)(const gq_format *fmt, gq_error *err);
    int (*register_method)(const gq_method *method, gq_error *err);
} gq_plugin_host;

typedef int (*gq_plugin_init_fn)(const gq_plugin_host *host, gq_error *err);

/* The entry point a plugin defines (declared here so that its definition is checked). */
int gq_plugin_init(const gq_plugin_host *host, gq_error *err);

/* ---- Host side ---------------------------------------------------------------------------
 *
 * Loads the shared object at `path` and runs its gq_plugin_init. Loading a file that is
 * already loaded does nothing. Errors name the file: missing file, not a shared object,
 * missing gq_plugin_abi or gq_plugin_init, ABI mismatch, and whatever registration rejects
 * (duplicate names, incomplete entries). A failed load leaves the registries as they were:
 * entries registered by an init that then fails are removed and the plugin unloaded. */
int gq_plugin_load(const char *path, gq_error *err);

/* Loads every path of a ':'-separated list (GQ_PLUGINS); empty items are skipped. */
int gq_plugin_load_list(const char *list, gq_error *err);

/* Number of plugins loaded so far. */
int gq_plugin_count(void);

#endif
