/* Writing a model as a Hugging Face directory (gq_hf.h): model.safetensors (tensors in
 * transformers' names, q/k rows back in rotate-half order, converted to the chosen dtype) and
 * config.json, each written to a temporary and renamed into place. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gq_fileio.h"
#include "core/gq_half.h"
#include "model/gq_hf.h"
#include "model/gq_st_write.h"
#include "model/hf_internal.h"

/* The safetensors header: {"name": {"dtype", "shape", "data_offsets"}, ...,
 * "__metadata__": {"format": "pt"}}, in the order of refs, padded with spaces to 8 bytes. */
static char *st_header(const hf_tensor_ref *refs, int n, gq_st_dtype dtype, size_t *len)
{
    json_t *root = json_object();
    size_t off = 0, es = gq_st_dtype_size(dtype);
    for (int i = 0; root && i < n; i++) {
        size_t bytes = (size_t)refs[i].rows * (size_t)refs[i].cols * es;
        json_t *shape = refs[i].ndim == 1 ? json_pack("[i]", refs[i].rows)
                                          : json_pack("[i,i]", refs[i].rows, refs[i].cols);
        json_t *e = json_pack("{s:s,s:o,s:[I,I]}", "dtype", gq_st_dtype_name(dtype), "shape",
                              shape, "data_offsets", (json_int_t)off,
                              (json_int_t)(off + bytes));
        if (!e || json_object_set_new(root, refs[i].name, e)) {
            json_decref(root);
            return NULL;
        }
        off += bytes;
    }
    if (root && json_object_set_new(root, "__metadata__", json_pack("{s:s}", "format", "pt"))) {
        json_decref(root);
        return NULL;
    }
    return gq_st_header_text(root, len);
}

/* Row `row` of a tensor (in transformers' order) converted to dtype into buf. */
static void convert_row(const hf_tensor_ref *r, int row, gq_st_dtype dtype, unsigned char *buf)
{
    int src = row;
    if (r->head_size)
        src = row - row % r->head_size + hf_rope_row(row % r->head_size, r->head_size);
    const float *x = r->data + (size_t)src * r->cols;
    for (int j = 0; j < r->cols; j++) {
        if (dtype == GQ_ST_F32) {
            memcpy(buf + 4 * (size_t)j, &x[j], 4);
        } else {
            uint16_t h = dtype == GQ_ST_F16 ? gq_fp32_to_fp16(x[j]) : gq_fp32_to_bf16(x[j]);
            memcpy(buf + 2 * (size_t)j, &h, 2);
        }
    }
}

static int write_tensors(FILE *f, const hf_tensor_ref *refs, int n, gq_st_dtype dtype)
{
    size_t es = gq_st_dtype_size(dtype), widest = 1;
    for (int i = 0; i < n; i++)
        widest = (size_t)refs[i].cols > widest ? (size_t)refs[i].cols : widest;
    unsigned char *buf = malloc(widest * es);
    if (!buf)
        return ENOMEM;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++)
        for (int row = 0; row < refs[i].rows && !rc; row++) {
            convert_row(&refs[i], row, dtype, buf);
            if (fwrite(buf, es, (size_t)refs[i].cols, f) != (size_t)refs[i].cols)
                rc = errno ? errno : EIO;
        }
    free(buf);
    return rc;
}

static int save_safetensors(const gq_model *m, const char *path, gq_st_dtype dtype,
                            gq_error *err)
{
    hf_tensor_ref *refs;
    int n = hf_tensor_refs(m, &refs);
    size_t hlen = 0;
    char *header = n < 0 ? NULL : st_header(refs, n, dtype, &hlen);
    if (!header) {
        free(refs);
        return gq_fail(err, "%s: out of memory", path);
    }
    char tmp[4300];
    int fd = gq_tmp_create(path, tmp, sizeof tmp, err);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "wb");
    int rc = fd < 0 ? -1 : 0;
    if (fd >= 0 && !f) {
        rc = errno;
        close(fd);
    }
    if (f) {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++)
            len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
        errno = 0;
        if (fwrite(len8, 1, 8, f) != 8 || fwrite(header, 1, hlen, f) != hlen)
            rc = errno ? errno : EIO;
        if (!rc)
            rc = write_tensors(f, refs, n, dtype);
        if (!rc && (fflush(f) != 0 || fsync(fileno(f)) != 0))
            rc = errno ? errno : EIO;
        if (fclose(f) != 0 && !rc)
            rc = errno ? errno : EIO;
    }
    free(header);
    free(refs);
    if (rc > 0) {
        unlink(tmp);
        return gq_fail(err, "%s: write failed: %s", path, strerror(rc));
    }
    return rc ? -1 : gq_tmp_commit(tmp, path, err);
}

static const char *model_type(gq_family f)
{
    switch (f) {
    case GQ_FAMILY_MISTRAL: return "mistral";
    case GQ_FAMILY_QWEN2: return "qwen2";
    case GQ_FAMILY_QWEN3: return "qwen3";
    default: return "llama";
    }
}

static const char *const dtype_torch[] = {"float32", "float16", "bfloat16"};

static json_t *rope_scaling_json(const gq_rope_scaling *r)
{
    static const char *const kinds[] = {NULL, "linear", "dynamic", "llama3"};
    if (r->kind == GQ_ROPE_PLAIN)
        return json_null();
    json_t *o = json_pack("{s:s,s:f}", "rope_type", kinds[r->kind], "factor", (double)r->factor);
    if (o && r->kind == GQ_ROPE_LLAMA3 &&
        json_object_update_new(o, json_pack("{s:f,s:f,s:i}", "low_freq_factor",
                                        (double)r->low_freq_factor, "high_freq_factor",
                                        (double)r->high_freq_factor,
                                        "original_max_position_embeddings",
                                        r->original_max_positions)))
        return NULL;
    return o;
}

/* The family's own fields: biases, sliding window. */
static int family_fields(json_t *o, const gq_config *c)
{
    bool attn_bias = gq_has_bias(c, GQ_LIN_O), mlp_bias = gq_has_bias(c, GQ_LIN_DOWN);
    int rc = 0;
    if (c->family != GQ_FAMILY_QWEN2)
        rc |= json_object_set_new(o, "attention_bias", json_boolean(attn_bias));
    else
        rc |= json_object_set_new(o, "use_sliding_window", json_false());
    if (c->family == GQ_FAMILY_LLAMA || c->family == GQ_FAMILY_LLAMA2C)
        rc |= json_object_set_new(o, "mlp_bias", json_boolean(mlp_bias));
    if (c->family == GQ_FAMILY_MISTRAL)
        rc |= json_object_set_new(o, "sliding_window", c->sliding_window
                                                           ? json_integer(c->sliding_window)
                                                           : json_null());
    return rc;
}

static char *config_text(const gq_config *c, gq_st_dtype dtype, const char *quant_config,
                         gq_error *err)
{
    gq_family fam = c->family == GQ_FAMILY_LLAMA2C ? GQ_FAMILY_LLAMA : c->family;
    json_t *o = json_pack(
        "{s:[s],s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:f,s:f,s:o,s:b,s:s,s:s}", "architectures",
        gq_family_name(fam), "model_type", model_type(fam), "hidden_size", c->dim,
        "intermediate_size", c->hidden_dim, "num_hidden_layers", c->n_layers,
        "num_attention_heads", c->n_heads, "num_key_value_heads", c->n_kv_heads, "head_dim",
        gq_head_size(c), "vocab_size", c->vocab_size, "max_position_embeddings", c->seq_len,
        "rms_norm_eps", (double)gq_norm_eps(c), "rope_theta", (double)gq_rope_theta(c),
        "rope_scaling", rope_scaling_json(&c->rope_scaling), "tie_word_embeddings",
        c->shared_classifier, "hidden_act", "silu", "torch_dtype", dtype_torch[dtype]);
    if (!o || family_fields(o, c)) {
        json_decref(o);
        return gq_fail(err, "config.json: out of memory"), NULL;
    }
    if (quant_config) {
        json_error_t je;
        json_t *q = json_loads(quant_config, 0, &je);
        if (!json_is_object(q) || json_object_set_new(o, "quantization_config", q)) {
            json_decref(o);
            return gq_fail(err, "config.json: quantization_config is not a JSON object: %s",
                           je.text), NULL;
        }
    }
    char *text = json_dumps(o, JSON_INDENT(2));
    json_decref(o);
    if (!text)
        gq_fail(err, "config.json: out of memory");
    return text;
}

int gq_model_save_hf(const gq_model *m, const char *dir, gq_st_dtype dtype,
                     const char *quant_config, gq_error *err)
{
    if (gq_model_has_transforms(m))
        return gq_fail(err, "%s: the model has %s, which an HF directory cannot hold", dir,
                       gq_model_transforms_what(m));
    if (gq_check_real_dir(dir, err) || gq_mkdir_p(dir, err))
        return -1;
    char path[4200], *text = config_text(&m->cfg, dtype, quant_config, err);
    if (!text)
        return -1;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int rc = save_safetensors(m, path, dtype, err);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!rc)
        rc = gq_write_file_atomic(path, text, strlen(text), err);
    free(text);
    return rc;
}

/* For writers of packed HF directories (hf_packed.c). */
char *hf_config_json(const gq_config *c, gq_st_dtype dtype, const char *quant_config,
                     gq_error *err)
{
    return config_text(c, dtype, quant_config, err);
}

void hf_tensor_row(const hf_tensor_ref *r, int row, gq_st_dtype dtype, unsigned char *buf)
{
    convert_row(r, row, dtype, buf);
}
