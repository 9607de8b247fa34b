/* The activation file saved beside a quantized checkpoint: its sections, the checkpoint's
 * sha256 and the static ranges, so that a reload quantizes with the same numbers.
 *
 *   {"gq_act": 1, "checkpoint_sha256": "...", "activations": {...} | null,
 *    "kv_cache": {...} | null, "static": {"layers.0.attn.q_proj": [lo, hi, ...], ...}}
 * Ranges are written as doubles with 17 significant digits: each float reads back exactly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act/gq_act.h"
#include "core/gq_fileio.h"
#include "core/gq_sha256.h"

void gq_act_file_path(const char *checkpoint, char *buf, size_t n)
{
    snprintf(buf, n, "%s.act.json", checkpoint);
}

static json_t *static_ranges(const gq_act_model *am)
{
    json_t *o = json_object();
    for (int l = 0; o && l < am->cfg.n_layers; l++)
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            int nr = gq_act_n_ranges(am, l, (gq_linear_kind)k);
            const float *r = am->ranges[(size_t)l * GQ_N_LINEAR + k];
            if (!nr || !r)
                continue;
            char name[96];
            gq_tensor_name(l, (gq_linear_kind)k, name, sizeof name);
            json_t *a = json_array();
            for (int i = 0; a && i < 2 * nr; i++)
                json_array_append_new(a, json_real(r[i]));
            json_object_set_new(o, name, a);
        }
    return o;
}

int gq_act_save(const gq_act_model *am, const gq_act_cfg *acts, const gq_act_cfg *kv,
                const char *checkpoint, const char *path, gq_error *err)
{
    char sha[65];
    if (gq_sha256_file(checkpoint, sha, err))
        return -1;
    json_t *o = json_pack("{s:i, s:s, s:O?, s:O?, s:o}", "gq_act", 1, "checkpoint_sha256", sha,
                          "activations", acts ? acts->canonical : NULL, "kv_cache",
                          kv ? kv->canonical : NULL, "static", static_ranges(am));
    return gq_write_json_atomic(path, o, JSON_INDENT(1) | JSON_REAL_PRECISION(17), err);
}

/* Every static linear of am gets its ranges from `st`, which names no other tensor. */
static int load_ranges(gq_act_model *am, json_t *st, const char *path, gq_error *err)
{
    if (!json_is_object(st))
        return gq_fail(err, "%s: $.static: expected an object", path);
    size_t used = 0;
    for (int l = 0; l < am->cfg.n_layers; l++)
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            int nr = gq_act_n_ranges(am, l, (gq_linear_kind)k);
            if (!nr)
                continue;
            char name[96];
            gq_tensor_name(l, (gq_linear_kind)k, name, sizeof name);
            json_t *a = json_object_get(st, name);
            if (!json_is_array(a) || json_array_size(a) != (size_t)(2 * nr))
                return gq_fail(err, "%s: $.static.%s: expected %d numbers (lo, hi per segment)",
                               path, name, 2 * nr);
            float *r = malloc(sizeof(float) * 2 * (size_t)nr);
            for (int i = 0; r && i < 2 * nr; i++) {
                json_t *v = json_array_get(a, (size_t)i);
                r[i] = (float)json_number_value(v);
                if (!json_is_number(v) || !(r[i] == r[i]) || r[i] - r[i] != 0) {
                    free(r);
                    return gq_fail(err, "%s: $.static.%s[%d]: expected a finite number", path,
                                   name, i);
                }
            }
            int rc = r ? gq_act_set_ranges(am, l, (gq_linear_kind)k, r, err)
                       : gq_fail(err, "%s: out of memory", path);
            free(r);
            if (rc)
                return -1;
            used++;
        }
    if (used != json_object_size(st))
        return gq_fail(err, "%s: $.static: names tensors without static scales", path);
    return 0;
}

static int load_section(json_t *root, const char *key, bool kv, const gq_config *c,
                        const char *path, gq_act_cfg *out, bool *has, gq_error *err)
{
    json_t *v = json_object_get(root, key);
    *has = v && !json_is_null(v);
    memset(out, 0, sizeof *out);
    if (!*has)
        return 0;
    char p[64];
    snprintf(p, sizeof p, "$.%s", key);
    if (gq_act_cfg_parse(v, p, kv, out, err) || gq_act_cfg_check(out, c, p, true, err))
        return gq_fail_prefix(err, "%s", path);
    return 0;
}

int gq_act_load(const char *path, const gq_model *m, const char *checkpoint, gq_act_cfg *acts,
                bool *has_acts, gq_act_cfg *kv, bool *has_kv, gq_act_model *am, gq_error *err)
{
    memset(am, 0, sizeof *am);
    *has_acts = *has_kv = false;
    memset(acts, 0, sizeof *acts);
    memset(kv, 0, sizeof *kv);
    char *text = NULL, sha[65];
    size_t len;
    if (gq_read_file(path, &text, &len, err) || gq_sha256_file(checkpoint, sha, err)) {
        free(text);
        return -1;
    }
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    int rc = -1;
    const char *rec = json_string_value(json_object_get(root, "checkpoint_sha256"));
    if (!root || json_integer_value(json_object_get(root, "gq_act")) != 1)
        gq_fail(err, "%s: not an activation file (line %d: %s)", path, root ? 1 : je.line,
                root ? "\"gq_act\": 1 missing" : je.text);
    else if (!rec || strcmp(rec, sha) != 0)
        gq_fail(err, "%s: $.checkpoint_sha256: made for another checkpoint than %s", path,
                checkpoint);
    else if (load_section(root, "activations", false, &m->cfg, path, acts, has_acts, err) ||
             load_section(root, "kv_cache", true, &m->cfg, path, kv, has_kv, err) ||
             gq_act_model_init(am, &m->cfg, *has_acts ? acts : NULL, *has_kv ? kv : NULL, err) ||
             load_ranges(am, json_object_get(root, "static"), path, err))
        ;
    else
        rc = 0;
    json_decref(root);
    if (rc) {
        gq_act_model_free(am);
        gq_act_cfg_free(acts);
        gq_act_cfg_free(kv);
        *has_acts = *has_kv = false;
    }
    return rc;
}
