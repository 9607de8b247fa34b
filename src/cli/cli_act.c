/* Activation and KV-cache options (cli_act.h). */
#include "cli/cli_act.h"

#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/gq_fileio.h"

bool cli_act_given(const cli_act_args *a)
{
    return a->act_format || a->act_params || a->act_granularity || a->act_group_size ||
           a->act_scales || a->act_calibration || a->act_percentile > 0 || a->act_keep_fp.n ||
           a->kv_format || a->kv_params || a->kv_granularity || a->kv_group_size;
}

/* {"format": NAME, the given options, the --*-set parameters}, or NULL (no format). */
static json_t *section_json(const char *format, json_t *params, const char *gran, long gs,
                            const char *opt, gq_error *err)
{
    if (!format) {
        if (params || gran || gs)
            gq_fail(err, "--%s-set/-granularity/-group-size need --%s-format", opt, opt);
        return NULL;
    }
    json_t *o = params ? json_deep_copy(params) : json_object();
    json_object_set_new(o, "format", json_string(format));
    if (gran)
        json_object_set_new(o, "granularity", json_string(gran));
    if (gs)
        json_object_set_new(o, "group_size", json_integer(gs));
    return o;
}

static int act_section(const cli_act_args *a, const gq_config *c, bool has_calib, cli_act *out,
                       gq_error *err)
{
    json_t *o = section_json(a->act_format, a->act_params, a->act_granularity,
                             a->act_group_size, "act", err);
    if (!o)
        return a->act_format || a->act_params || a->act_granularity || a->act_group_size ||
                       a->act_scales || a->act_calibration || a->act_percentile > 0 ||
                       a->act_keep_fp.n
                   ? gq_fail(err, "the --act-* options need --act-format")
                   : 0;
    if (a->act_scales)
        json_object_set_new(o, "scales", json_string(a->act_scales));
    if (a->act_calibration)
        json_object_set_new(o, "calibration", json_string(a->act_calibration));
    if (a->act_percentile > 0)
        json_object_set_new(o, "percentile", json_real(a->act_percentile));
    if (a->act_keep_fp.n) {
        json_t *rules = json_array();
        for (int i = 0; i < a->act_keep_fp.n; i++)
            json_array_append_new(rules, json_pack("{s:s, s:b}", "pattern", a->act_keep_fp.v[i],
                                                   "keep_fp", 1));
        json_object_set_new(o, "overrides", rules);
    }
    int rc = gq_act_cfg_parse(o, "activations", false, &out->acts, err) ||
             gq_act_cfg_check(&out->acts, c, "activations", has_calib, err);
    json_decref(o);
    out->has_acts = rc == 0;
    return rc ? -1 : 0;
}

int cli_act_build(const cli_act_args *a, const gq_config *c, bool has_calib, cli_act *out,
                  gq_error *err)
{
    memset(out, 0, sizeof *out);
    if (act_section(a, c, has_calib, out, err))
        return -1;
    gq_error_clear(err);
    json_t *o = section_json(a->kv_format, a->kv_params, a->kv_granularity, a->kv_group_size,
                             "kv", err);
    if (!o)
        return err->msg[0] ? -1 : 0;
    int rc = gq_act_cfg_parse(o, "kv_cache", true, &out->kv, err) ||
             gq_act_cfg_check(&out->kv, c, "kv_cache", false, err);
    json_decref(o);
    out->has_kv = rc == 0;
    return rc ? -1 : 0;
}

int cli_act_attach(const cli_act_args *a, gq_model *m, const char *model_path, cli_act *out,
                   gq_error *err)
{
    memset(out, 0, sizeof *out);
    char file[sizeof out->file];
    gq_act_file_path(model_path, file, sizeof file);
    bool exists = gq_file_exists(file);
    if (cli_act_given(a)) {
        if (exists)
            return gq_fail(err, "--act-*/--kv-*: %s holds this checkpoint's activation settings; "
                                "drop the options (or move the file) to choose others", file);
        if (a->act_scales && strcmp(a->act_scales, "static") == 0)
            return gq_fail(err, "--act-scales static: scales are calibrated by gq-bench quantize "
                                "(saved beside its --out checkpoint); evaluate that checkpoint");
        if (cli_act_build(a, &m->cfg, false, out, err) ||
            gq_act_model_init(&out->am, &m->cfg, out->has_acts ? &out->acts : NULL,
                              out->has_kv ? &out->kv : NULL, err))
            return -1;
    } else if (exists) {
        if (gq_act_load(file, m, model_path, &out->acts, &out->has_acts, &out->kv,
                        &out->has_kv, &out->am, err))
            return -1;
        snprintf(out->file, sizeof out->file, "%s", file);
    } else
        return 0;
    m->act = &out->am.hook;
    return 0;
}

void cli_act_describe(const cli_act *s, char *buf, size_t n)
{
    char f[96], g[32], sc[32];
    buf[0] = '\0';
    if (s->has_acts) {
        gq_act_spec_format(&s->acts.def, f, sizeof f);
        gq_act_spec_granularity(&s->acts.def, g, sizeof g);
        gq_act_spec_scales(&s->acts.def, sc, sizeof sc);
        snprintf(buf, n, "activations %s per %s, %s scales%s", f, g, sc,
                 s->acts.n_rules ? " (with overrides)" : "");
    }
    if (s->has_kv) {
        size_t len = strlen(buf);
        gq_act_spec_format(&s->kv.def, f, sizeof f);
        gq_act_spec_granularity(&s->kv.def, g, sizeof g);
        snprintf(buf + len, n - len, "%sKV cache %s per %s", len ? "; " : "", f, g);
    }
    if (buf[0] && s->file[0]) {
        size_t len = strlen(buf);
        snprintf(buf + len, n - len, " (from %s)", s->file);
    }
}

void cli_act_free(cli_act *s, cli_act_args *a)
{
    gq_act_model_free(&s->am);
    gq_act_cfg_free(&s->acts);
    gq_act_cfg_free(&s->kv);
    json_decref(a->act_params);
    json_decref(a->kv_params);
    a->act_params = a->kv_params = NULL;
}
