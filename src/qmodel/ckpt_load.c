/* Loading GPTQ and AWQ checkpoints (gq_qmodel.h): the quantization_config read and checked,
 * then the HF loader with every block linear unpacked into int-format storage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/gq_fileio.h"
#include "gguf/gq_gguf_model.h"
#include "model/gq_hf.h"
#include "qmodel/ckpt_internal.h"
#include "qmodel/gq_qmodel.h"

static json_t *quant_config(const char *dir, char *path, size_t n)
{
    snprintf(path, n, "%s/config.json", dir);
    if (!gq_hf_is_dir(dir) || !gq_file_exists(path))
        return NULL;
    json_t *root = json_load_file(path, 0, NULL);
    json_t *q = json_incref(json_object_get(root, "quantization_config"));
    json_decref(root);
    return q;
}

void gq_hf_quant_method(const char *dir, char *out, size_t n)
{
    char path[4200];
    json_t *q = quant_config(dir, path, sizeof path);
    const char *m = json_string_value(json_object_get(q, "quant_method"));
    snprintf(out, n, "%s", m ? m : "");
    json_decref(q);
}

/* An integer key (the first of two spellings present), or a refusal. */
static int get_int(const json_t *q, const char *key, const char *alt, const char *path,
                   int *out, gq_error *err)
{
    const json_t *v = json_object_get(q, key);
    if (!v && alt)
        v = json_object_get(q, alt);
    if (!json_is_integer(v) || json_integer_value(v) < -1 || json_integer_value(v) > 1 << 20)
        return gq_fail(err, "%s: quantization_config.%s must be an integer", path, key);
    *out = (int)json_integer_value(v);
    return 0;
}

static int gptq_spec(const json_t *q, const char *path, ckpt_spec *s, gq_error *err)
{
    const json_t *sym = json_object_get(q, "sym");
    const char *fmt = json_string_value(json_object_get(q, "checkpoint_format"));
    if (get_int(q, "bits", NULL, path, &s->bits, err) ||
        get_int(q, "group_size", NULL, path, &s->group_size, err))
        return -1;
    if (s->bits != 2 && s->bits != 3 && s->bits != 4 && s->bits != 8)
        return gq_fail(err, "%s: quantization_config.bits %d: GPTQ packs 2, 3, 4 or 8 bits",
                       path, s->bits);
    if (s->group_size == 0)
        return gq_fail(err, "%s: quantization_config.group_size 0 (use -1 per channel)", path);
    if (sym && !json_is_boolean(sym))
        return gq_fail(err, "%s: quantization_config.sym must be a boolean", path);
    s->sym = !sym || json_is_true(sym);
    if (fmt && strcmp(fmt, "gptq") != 0 && strcmp(fmt, "gptq_v2") != 0)
        return gq_fail(err, "%s: quantization_config.checkpoint_format \"%s\" is not gptq (v1) "
                            "or gptq_v2", path, fmt);
    s->v2 = fmt && strcmp(fmt, "gptq_v2") == 0;
    return 0;
}

static int awq_spec(const json_t *q, const char *path, ckpt_spec *s, gq_error *err)
{
    const char *ver = json_string_value(json_object_get(q, "version"));
    const json_t *zp = json_object_get(q, "zero_point");
    s->awq = true;
    if (get_int(q, "bits", "w_bit", path, &s->bits, err) ||
        get_int(q, "group_size", "q_group_size", path, &s->group_size, err))
        return -1;
    if (s->bits != 4)
        return gq_fail(err, "%s: quantization_config.bits %d: AWQ's GEMM layout holds 4 bits",
                       path, s->bits);
    if (!ver || strcasecmp(ver, "gemm") != 0)
        return gq_fail(err, "%s: quantization_config.version \"%s\": only AWQ's \"gemm\" layout "
                            "is read", path, ver ? ver : "(missing)");
    if (!json_is_true(zp))
        return gq_fail(err, "%s: quantization_config.zero_point must be true (the GEMM layout "
                            "with zero points)", path);
    if (s->group_size == 0)
        return gq_fail(err, "%s: quantization_config.group_size 0 (use -1 per channel)", path);
    return 0;
}

typedef struct {
    ckpt_spec spec;
    gq_qcodes *q;
} ckpt_ctx;

/* gq_hf_unpack_fn: one linear unpacked, converted to int storage, dequantized into w. */
static int unpack(void *pv, const gq_hf_files *f, const gq_hf_linear_site *s, float *w,
                  gq_error *err)
{
    ckpt_ctx *x = pv;
    ckpt_linear l = {0};
    int rc = x->spec.awq ? ckpt_awq_unpack(f, s, &x->spec, &l, err)
                         : ckpt_gptq_unpack(f, s, &x->spec, &l, err);
    if (rc) {
        ckpt_linear_free(&l);
        return -1;
    }
    gq_quantizer qz = {0};
    uint8_t *storage = NULL;
    rc = ckpt_to_int(&l, &x->spec, s->head_size, s->prefix, &qz, &storage, w, err);
    size_t i = (size_t)s->layer * GQ_N_LINEAR + s->kind;
    if (!rc && x->q) {
        x->q->quant[i] = qz, x->q->codes[i] = storage, x->q->perm[i] = l.perm;
        l.perm = NULL;
    } else if (!rc) {
        gq_quantizer_free(&qz);
        free(storage);
    }
    ckpt_linear_free(&l);
    return rc;
}

int gq_packed_ckpt_load(const char *dir, gq_model *m, gq_qcodes *q, gq_error *err)
{
    memset(m, 0, sizeof *m);
    char path[4200];
    json_t *qc = quant_config(dir, path, sizeof path);
    const char *method = json_string_value(json_object_get(qc, "quant_method"));
    ckpt_ctx x = {{0}, NULL};
    int rc = !method                      ? gq_fail(err, "%s: no quantization_config.quant_method", path)
             : strcmp(method, "gptq") == 0 ? gptq_spec(qc, path, &x.spec, err)
             : strcmp(method, "awq") == 0  ? awq_spec(qc, path, &x.spec, err)
                                           : gq_fail(err, "%s: quantization_config.quant_method "
                                                          "\"%s\" is not gptq or awq", path, method);
    json_decref(qc);
    if (rc)
        return -1;
    gq_config c;
    if (q) {
        /* the layer count sizes the codes before the loader reads the weights */
        char *text;
        size_t n;
        if (gq_read_file(path, &text, &n, err))
            return -1;
        rc = gq_hf_config_parse(path, text, n, &c, err) ||
             gq_qcodes_alloc(q, c.n_layers, x.spec.awq ? "awq" : "gptq", err);
        free(text);
        if (rc)
            return -1;
        x.q = q;
    }
    rc = gq_model_load_hf_packed(dir, m, unpack, &x, err);
    if (rc && q)
        gq_qcodes_free(q);
    return rc;
}

int gq_model_open_any(const char *path, gq_model *m, gq_qcodes *q, gq_error *err)
{
    return gq_model_open_mode(path, GQ_STREAM_OFF, m, q, err);
}

int gq_model_open_mode(const char *path, gq_stream_mode mode, gq_model *m, gq_qcodes *q,
                       gq_error *err)
{
    if (q)
        memset(q, 0, sizeof *q);
    char file[4200];
    if (gq_model_path_resolve(path, file, sizeof file, err))
        return -1;
    if (gq_native_is(file))
        return gq_native_load(file, m, q, NULL, err);
    char method[64];
    gq_hf_quant_method(path, method, sizeof method);
    if (strcmp(method, "gptq") == 0 || strcmp(method, "awq") == 0)
        return gq_packed_ckpt_load(path, m, q, err);
    if (method[0] && strcmp(method, "gq-bench") != 0)
        return gq_fail(err, "%s/config.json: quantization_config.quant_method \"%s\" cannot be "
                            "loaded (gptq, awq, or gq-bench's fake-quant gq-bench)", path, method);
    if (mode == GQ_STREAM_OFF || gq_gguf_is_gguf(path))
        return gq_model_open(path, m, err);
    return gq_model_load_mode(path, mode, m, err);
}
