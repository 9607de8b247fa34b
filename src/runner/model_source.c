/* The model an experiment names: a llama2.c checkpoint or a synthetic preset. */
#include <fnmatch.h>
#include <string.h>

#include "model/gq_synth.h"
#include "runner/runner_internal.h"

int gq_runner_model_open(const gq_experiment *e, gq_model *m, gq_error *err)
{
    if (e->synthetic) {
        if (gq_model_synth(e->synthetic, e->synthetic_seed, m, err))
            return gq_fail_prefix(err, "$.model.synthetic");
        return 0;
    }
    if (gq_model_load(e->model_path, m, err))
        return gq_fail_prefix(err, "$.model.path");
    return 0;
}

int gq_runner_model_config(const gq_experiment *e, gq_config *cfg, gq_error *err)
{
    if (e->synthetic) {
        if (gq_synth_preset(e->synthetic, cfg, err))
            return gq_fail_prefix(err, "$.model.synthetic");
        return 0;
    }
    gq_model m;
    if (gq_runner_model_open(e, &m, err))
        return -1;
    *cfg = m.cfg;
    gq_model_free(&m);
    return 0;
}

bool gq_runner_rule_matches(const char *pattern, const char *tensor)
{
    return fnmatch(pattern, tensor, 0) == 0;
}
