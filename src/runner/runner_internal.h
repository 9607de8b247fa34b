#ifndef GQ_RUNNER_INTERNAL_H
#define GQ_RUNNER_INTERNAL_H
/* Functions shared between the runner's files (not part of its public interface). */
#include <stdbool.h>

#include "core/gq_error.h"
#include "model/gq_model.h"
#include "runner/gq_experiment.h"

/* Parses $.sweep and $.zip and fills e->axes and e->cells (baseline first). Needs e->cfg. */
int gq_sweep_expand(gq_experiment *e, gq_error *err);

/* The model named by the experiment: loaded from its checkpoint or generated. */
int gq_runner_model_open(const gq_experiment *e, gq_model *m, gq_error *err);
/* Only its configuration (cheap: maps the file or generates the model once). */
int gq_runner_model_config(const gq_experiment *e, gq_config *cfg, gq_error *err);

/* fnmatch glob over a tensor name, as gq_quantize_model applies override rules. */
bool gq_runner_rule_matches(const char *pattern, const char *tensor);

#endif
