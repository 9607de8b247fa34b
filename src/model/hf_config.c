/* config.json of Hugging Face models: the fields the four supported families use. Defaults are
 * those of transformers' configuration classes when config.json omits a field. */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "model/gq_hf.h"

typedef struct {
    const char *path;
    const json_t *root;
    gq_error *err;
} cfg_reader;

/* Integer field in 1..max; def < 0: required. */
static int get_int(const cfg_reader *r, const char *key, int def, int max, int *out)
{
    const json_t *v = json_object_get(r->root, key);
    if (!v || json_is_null(v)) {
        if (def < 0)
            return gq_fail(r->err, "%s: missing field \"%s\"", r->path, key);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max)
        return gq_fail(r->err, "%s: field \"%s\" must be an integer in 1..%d", r->path, key,
                       max);
    *out = (int)json_integer_value(v);
    return 0;
}

static int get_real(const cfg_reader *r, const json_t *obj, const char *key, double def,
                    double lo, double hi, float *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (isnan(def))
            return gq_fail(r->err, "%s: missing field \"%s\"", r->path, key);
        *out = (float)def;
        return 0;
    }
    double x = json_number_value(v);
    if (!json_is_number(v) || !(x >= lo && x <= hi))
        return gq_fail(r->err, "%s: field \"%s\" must be a number in %g..%g", r->path, key, lo,
                       hi);
    *out = (float)x;
    return 0;
}

static int get_bool(const cfg_reader *r, const char *key, bool def, bool *out)
{
    const json_t *v = json_object_get(r->root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v))
        return gq_fail(r->err, "%s: field \"%s\" must be true or false", r->path, key);
    *out = json_is_true(v);
    return 0;
}

static int parse_family(const cfg_reader *r, gq_config *c)
{
    const json_t *a = json_object_get(r->root, "architectures");
    if (!json_is_array(a) || json_array_size(a) != 1 || !json_is_string(json_array_get(a, 0)))
        return gq_fail(r->err, "%s: field \"architectures\" must be an array of one name",
                       r->path);
    const char *name = json_string_value(json_array_get(a, 0));
    for (int f = GQ_FAMILY_LLAMA; f < GQ_N_FAMILY; f++)
        if (strcmp(name, gq_family_name((gq_family)f)) == 0) {
            c->family = (gq_family)f;
            return 0;
        }
    return gq_fail(r->err, "%s: architecture %.64s is not supported (LlamaForCausalLM, "
                           "MistralForCausalLM, Qwen2ForCausalLM or Qwen3ForCausalLM)",
                   r->path, name);
}

static int parse_rope_scaling(const cfg_reader *r, gq_config *c)
{
    const json_t *s = json_object_get(r->root, "rope_scaling");
    if (!s || json_is_null(s))
        return 0;
    const json_t *t = json_object_get(s, "rope_type");
    if (!t)
        t = json_object_get(s, "type");
    if (!json_is_object(s) || !json_is_string(t))
        return gq_fail(r->err, "%s: field \"rope_scaling\" must be null or an object with "
                               "\"rope_type\"", r->path);
    const char *type = json_string_value(t);
    gq_rope_scaling *rs = &c->rope_scaling;
    cfg_reader sub = {r->path, s, r->err};
    if (strcmp(type, "default") == 0)
        return 0;
    if (strcmp(type, "linear") == 0)
        rs->kind = GQ_ROPE_LINEAR;
    else if (strcmp(type, "dynamic") == 0)
        rs->kind = GQ_ROPE_DYNAMIC;
    else if (strcmp(type, "llama3") == 0)
        rs->kind = GQ_ROPE_LLAMA3;
    else
        return gq_fail(r->err, "%s: rope_scaling type %.32s is not supported (linear, dynamic "
                               "or llama3)", r->path, type);
    if (get_real(&sub, s, "factor", NAN, 1.0, 1e6, &rs->factor))
        return gq_fail_prefix(r->err, "rope_scaling");
    if (rs->kind != GQ_ROPE_LLAMA3)
        return 0;
    if (get_real(&sub, s, "low_freq_factor", NAN, 1e-6, 1e6, &rs->low_freq_factor) ||
        get_real(&sub, s, "high_freq_factor", NAN, 1e-6, 1e6, &rs->high_freq_factor) ||
        get_int(&sub, "original_max_position_embeddings", -1, 1 << 24,
                &rs->original_max_positions))
        return gq_fail_prefix(r->err, "rope_scaling");
    if (!(rs->high_freq_factor > rs->low_freq_factor))
        return gq_fail(r->err, "%s: rope_scaling: high_freq_factor must exceed low_freq_factor",
                       r->path);
    return 0;
}

static int parse_dtype_and_act(const cfg_reader *r)
{
    const json_t *d = json_object_get(r->root, "torch_dtype");
    if (d && !json_is_null(d)) {
        const char *s = json_is_string(d) ? json_string_value(d) : "";
        if (strcmp(s, "float32") && strcmp(s, "float16") && strcmp(s, "bfloat16"))
            return gq_fail(r->err, "%s: field \"torch_dtype\": %.32s is not supported "
                                   "(float32, float16 or bfloat16)", r->path, s);
    }
    const json_t *a = json_object_get(r->root, "hidden_act");
    if (a && !(json_is_string(a) && strcmp(json_string_value(a), "silu") == 0))
        return gq_fail(r->err, "%s: field \"hidden_act\" must be \"silu\"", r->path);
    return 0;
}

/* Family-specific fields: biases, q/k norms, sliding window. */
static int parse_family_fields(const cfg_reader *r, gq_config *c)
{
    bool attn_bias = false, mlp_bias = false;
    if (get_bool(r, "attention_bias", false, &attn_bias) || get_bool(r, "mlp_bias", false,
                                                                      &mlp_bias))
        return -1;
    unsigned qkv = 1u << GQ_LIN_Q | 1u << GQ_LIN_K | 1u << GQ_LIN_V;
    if (c->family == GQ_FAMILY_QWEN2) {
        bool sw = false;
        if (get_bool(r, "use_sliding_window", false, &sw))
            return -1;
        if (sw)
            return gq_fail(r->err, "%s: field \"use_sliding_window\": Qwen2's per-layer "
                                   "sliding window is not supported", r->path);
        c->bias_mask = qkv; /* always q, k, v; never o */
    } else if (attn_bias) {
        c->bias_mask = qkv | 1u << GQ_LIN_O; /* Llama, Mistral, Qwen3: all four */
    }
    if (mlp_bias && c->family == GQ_FAMILY_LLAMA)
        c->bias_mask |= 1u << GQ_LIN_GATE | 1u << GQ_LIN_UP | 1u << GQ_LIN_DOWN;
    c->qk_norm = c->family == GQ_FAMILY_QWEN3;
    /* MistralConfig's default window is 4096 when the key is absent; null means none */
    bool absent = !json_object_get(r->root, "sliding_window");
    if (c->family == GQ_FAMILY_MISTRAL &&
        get_int(r, "sliding_window", absent ? 4096 : 0, 1 << 24, &c->sliding_window))
        return -1;
    return 0;
}

static int parse_root(const cfg_reader *r, gq_config *c)
{
    int kv = 0, head_dim = 0;
    bool tie = false;
    if (parse_family(r, c) || parse_dtype_and_act(r) ||
        get_int(r, "hidden_size", -1, 1 << 16, &c->dim) ||
        get_int(r, "intermediate_size", -1, 1 << 18, &c->hidden_dim) ||
        get_int(r, "num_hidden_layers", -1, 1 << 10, &c->n_layers) ||
        get_int(r, "num_attention_heads", -1, 1 << 12, &c->n_heads) ||
        get_int(r, "num_key_value_heads", c->n_heads, 1 << 12, &kv) ||
        get_int(r, "vocab_size", -1, 1 << 22, &c->vocab_size) ||
        get_int(r, "max_position_embeddings", -1, 1 << 20, &c->seq_len) ||
        get_int(r, "head_dim", c->family == GQ_FAMILY_QWEN3 ? 128 : 0, 1 << 12, &head_dim) ||
        get_real(r, r->root, "rms_norm_eps", 1e-6, 1e-12, 0.5, &c->norm_eps) ||
        get_real(r, r->root, "rope_theta", 10000.0, 1.0, 1e12, &c->rope_theta) ||
        get_bool(r, "tie_word_embeddings", false, &tie) || parse_rope_scaling(r, c) ||
        parse_family_fields(r, c))
        return -1;
    c->n_kv_heads = kv;
    c->head_dim = head_dim;
    c->shared_classifier = tie;
    return 0;
}

int gq_hf_config_parse(const char *path, const char *text, size_t n, gq_config *c,
                       gq_error *err)
{
    memset(c, 0, sizeof *c);
    json_error_t je;
    json_t *root = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return gq_fail(err, "%s: not valid JSON: %s (line %d, column %d)", path, je.text,
                       je.line, je.column);
    cfg_reader r = {path, root, err};
    int rc = json_is_object(root) ? parse_root(&r, c)
                                  : gq_fail(err, "%s: expected a JSON object", path);
    json_decref(root);
    if (rc == 0 && c->head_dim * c->n_heads == c->dim)
        c->head_dim = 0; /* the default: one representation per shape */
    return rc ? rc : gq_config_check(c, path, err);
}
