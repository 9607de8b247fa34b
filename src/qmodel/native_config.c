/* The model configuration in the native format's metadata (native_internal.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "qmodel/native_internal.h"

/* The integer fields of gq_config, by name. */
typedef struct {
    const char *key;
    size_t offset;
    long long min, max;
} int_field;

#define INT_FIELD(f, lo, hi) {#f, offsetof(gq_config, f), lo, hi}
static const int_field int_fields[] = {
    INT_FIELD(dim, 1, 1 << 20),          INT_FIELD(hidden_dim, 1, 1 << 22),
    INT_FIELD(n_layers, 1, 1 << 12),     INT_FIELD(n_heads, 1, 1 << 12),
    INT_FIELD(n_kv_heads, 1, 1 << 12),   INT_FIELD(vocab_size, 1, 1 << 24),
    INT_FIELD(seq_len, 1, 1 << 24),      INT_FIELD(head_dim, 0, 1 << 16),
    INT_FIELD(sliding_window, 0, 1 << 24), INT_FIELD(family, 0, GQ_N_FAMILY - 1),
    INT_FIELD(bias_mask, 0, (1 << GQ_N_LINEAR) - 1),
};
#define N_INT_FIELDS (sizeof int_fields / sizeof int_fields[0])

json_t *native_config_to_json(const gq_config *c)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < N_INT_FIELDS; i++) {
        int v;
        memcpy(&v, (const char *)c + int_fields[i].offset, sizeof v);
        json_object_set_new(o, int_fields[i].key, json_integer(v));
    }
    const gq_rope_scaling *r = &c->rope_scaling;
    json_t *rope = json_pack("{s:i,s:f,s:f,s:f,s:i}", "kind", (int)r->kind, "factor",
                             (double)r->factor, "low_freq_factor", (double)r->low_freq_factor,
                             "high_freq_factor", (double)r->high_freq_factor,
                             "original_max_positions", r->original_max_positions);
    if (!o || !rope ||
        json_object_set_new(o, "shared_classifier", json_boolean(c->shared_classifier)) ||
        json_object_set_new(o, "qk_norm", json_boolean(c->qk_norm)) ||
        json_object_set_new(o, "norm_eps", json_real(c->norm_eps)) ||
        json_object_set_new(o, "rope_theta", json_real(c->rope_theta)) ||
        json_object_set_new(o, "rope_scaling", rope)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* A finite float value at o[key] into *out. */
static int get_float(const json_t *o, const char *key, const char *what, float *out,
                     gq_error *err)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return gq_fail(err, "%s: config.%s must be a finite number", what, key);
    *out = (float)json_number_value(v);
    return 0;
}

static int get_rope(const json_t *o, const char *what, gq_rope_scaling *r, gq_error *err)
{
    const json_t *kind = json_object_get(o, "kind"), *orig =
        json_object_get(o, "original_max_positions");
    if (!json_is_object(o) || !json_is_integer(kind) || json_integer_value(kind) < 0 ||
        json_integer_value(kind) > GQ_ROPE_LLAMA3 || !json_is_integer(orig) ||
        json_integer_value(orig) < 0 || json_integer_value(orig) > (1 << 24))
        return gq_fail(err, "%s: config.rope_scaling must hold kind 0..%d and "
                            "original_max_positions", what, GQ_ROPE_LLAMA3);
    r->kind = (gq_rope_kind)json_integer_value(kind);
    r->original_max_positions = (int)json_integer_value(orig);
    return get_float(o, "factor", what, &r->factor, err) ||
                   get_float(o, "low_freq_factor", what, &r->low_freq_factor, err) ||
                   get_float(o, "high_freq_factor", what, &r->high_freq_factor, err)
               ? -1
               : 0;
}

int native_config_from_json(const json_t *o, const char *what, gq_config *c, gq_error *err)
{
    memset(c, 0, sizeof *c);
    if (!json_is_object(o))
        return gq_fail(err, "%s: \"config\" must be an object", what);
    for (size_t i = 0; i < N_INT_FIELDS; i++) {
        const json_t *v = json_object_get(o, int_fields[i].key);
        if (!json_is_integer(v) || json_integer_value(v) < int_fields[i].min ||
            json_integer_value(v) > int_fields[i].max)
            return gq_fail(err, "%s: config.%s must be an integer in [%lld, %lld]", what,
                           int_fields[i].key, int_fields[i].min, int_fields[i].max);
        int x = (int)json_integer_value(v);
        memcpy((char *)c + int_fields[i].offset, &x, sizeof x);
    }
    const json_t *shared = json_object_get(o, "shared_classifier"),
                 *qkn = json_object_get(o, "qk_norm");
    if (!json_is_boolean(shared) || !json_is_boolean(qkn))
        return gq_fail(err, "%s: config.shared_classifier and config.qk_norm must be booleans",
                       what);
    c->shared_classifier = json_is_true(shared);
    c->qk_norm = json_is_true(qkn);
    if (get_float(o, "norm_eps", what, &c->norm_eps, err) ||
        get_float(o, "rope_theta", what, &c->rope_theta, err) ||
        get_rope(json_object_get(o, "rope_scaling"), what, &c->rope_scaling, err))
        return -1;
    if (json_object_size(o) != N_INT_FIELDS + 5)
        return gq_fail(err, "%s: config has keys beyond gq-bench's configuration fields", what);
    return gq_config_check(c, what, err);
}
