#ifndef GQ_METHOD_CHAIN_H
#define GQ_METHOD_CHAIN_H
/* Method chains (chain.c), for the configured-method functions of registry.c: a list such as
 * ["smoothquant", {"name": "gptq", "act_order": true}] becomes one gq_method_cfg whose method
 * is the chain ("smoothquant+gptq") and whose quantize_block runs the members in order on the
 * same block context. A chain is zero or more transform-only methods, then exactly one weight
 * method. */
#include <stdbool.h>

#include <jansson.h>

#include "core/gq_error.h"
#include "methods/gq_pipeline.h"

/* Parses a JSON array of method specs (names or {"name": ..., params}) at `path` into cfg;
 * a one-element list is that method itself. Refuses an empty list, a nested list, an unknown
 * method or parameter (naming "path[i]"), a transform-only method after the weight method, two
 * weight methods and a chain without one. */
int gq_method_chain_from_json(const json_t *list, const char *path, gq_method_cfg *cfg,
                              gq_error *err);
/* gq_method_cfg_init without the refusal of a transform-only method on its own (a chain
 * member). */
int gq_method_cfg_init_member(gq_method_cfg *cfg, const char *name, const json_t *params,
                              const char *path, gq_error *err);
/* The same from {"name": ..., params}. */
int gq_method_cfg_member_from_json(const json_t *spec, const char *path, gq_method_cfg *cfg,
                                   gq_error *err);
/* Whether cfg is a chain (then its params are the chain, freed by gq_method_chain_free). */
bool gq_method_cfg_is_chain(const gq_method_cfg *cfg);
void gq_method_chain_free(void *chain);
/* The members' canonical JSON, in order (new reference). */
json_t *gq_method_chain_to_json(const gq_method_cfg *cfg);

#endif
