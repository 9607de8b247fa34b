/* The shared checks of the checkpoint export tests (ckpt_check.h). */
#include "ckpt_check.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "model/gq_hf_packed.h"
#include "qmodel/gq_qmodel.h"
#include "test_support.h"

static char out[65536], errb[16384];

const gq_st_tensor *ckpt_part(const gq_st_file *f, const char *prefix, const char *part)
{
    char name[160];
    snprintf(name, sizeof name, "%s.%s", prefix, part);
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0)
            return &f->t[i];
    fail_msg("%s: missing tensor %s", f->path, name);
    return NULL;
}

void ckpt_assert_config(const char *dir, const char *key, const char *want)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *root = json_load_file(path, 0, NULL), *v = json_loads(want, JSON_DECODE_ANY, NULL);
    assert_non_null(root);
    json_t *got = json_object_get(json_object_get(root, "quantization_config"), key);
    if (!json_equal(got, v))
        fail_msg("%s: quantization_config.%s is not %s", path, key, want);
    json_decref(root);
    json_decref(v);
}

/* Every block linear of the checkpoint in dir equals the fake-quantized model's bit for bit. */
static void assert_equals(const char *dir, const gq_model *m, int bits, ckpt_weight_fn weight)
{
    static const char *const hf[GQ_N_LINEAR] = {
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    char path[4300];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    gq_st_file f;
    gq_error err = {{0}};
    if (gq_st_open(path, &f, &err))
        fail_msg("%s", err.msg);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            char prefix[96];
            int rows, cols, hs = k == GQ_LIN_Q || k == GQ_LIN_K ? gq_head_size(&m->cfg) : 0;
            snprintf(prefix, sizeof prefix, "model.layers.%d.%s", l, hf[k]);
            gq_linear_shape(&m->cfg, (gq_linear_kind)k, &rows, &cols);
            assert_int_equal(ckpt_part(&f, prefix, "qweight")->dtype, GQ_ST_I32);
            for (int c = 0; c < rows; c++)
                for (int j = 0; j < cols; j++) {
                    float w = weight(&f, prefix, bits, rows, cols, c, j);
                    float want = m->layers[l].w[k][(size_t)gq_hf_model_row(c, hs) * cols + j];
                    if (memcmp(&w, &want, sizeof w) != 0)
                        fail_msg("%s (%d, %d): %.9g, fake-quantized %.9g", prefix, c, j, w,
                                 want);
                }
        }
    gq_st_close(&f);
}

/* `--model dir` (the checkpoint loader, qmodel/gq_qmodel.h) gives every block linear of the
 * fake-quantized model bit for bit. */
static void assert_loads_back(const char *dir, const gq_model *m)
{
    gq_model back;
    gq_error err = {{0}};
    if (gq_model_open_any(dir, &back, NULL, &err))
        fail_msg("loading %s back: %s", dir, err.msg);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            int rows, cols;
            gq_linear_shape(&m->cfg, (gq_linear_kind)k, &rows, &cols);
            if (memcmp(back.layers[l].w[k], m->layers[l].w[k], (size_t)rows * cols * 4) != 0)
                fail_msg("%s: layer %d linear %s differs after loading", dir, l,
                         gq_linear_name((gq_linear_kind)k));
        }
    gq_model_free(&back);
}

char *ckpt_round_trip(const char *target, const char *model, const char *settings, int bits,
                      ckpt_weight_fn weight)
{
    char *dir = test_tmpdir("ckpt-export"), *ck = dir; /* the checkpoint and q.bin beside it */
    char q[4200], text[4200];
    snprintf(q, sizeof q, "%s/q.bin", dir);
    /* a short calibration text keeps the runs quick: 2 windows of 32 tokens */
    snprintf(text, sizeof text, "%s/calib.txt", dir);
    char story[4096] = "";
    for (int i = 0; i < 40; i++)
        strcat(story, "Once upon a time, a little cat found a red ball in the park. ");
    test_write_text(text, story);
    char common[10240];
    snprintf(common, sizeof common,
             "--model assets:models/%s/%s.bin --tokenizer assets:models/%s/tok512.bin %s "
             "--calib-data '%s' --n-calib 2 --calib-ctx 32", model, model, model, settings, text);
    if (test_run_clif(out, sizeof out, errb, sizeof errb,
                      "export --format %s %s --quant int --out '%s'", target, common, ck) != 0 ||
        test_run_clif(out, sizeof out, errb, sizeof errb, "quantize %s --format int --out '%s'",
                      common, q) != 0)
        fail_msg("%s: %s", settings, errb);
    gq_model m;
    gq_error err = {{0}};
    if (gq_model_open_any(q, &m, NULL, &err))
        fail_msg("%s", err.msg);
    assert_equals(ck, &m, bits, weight);
    assert_loads_back(ck, &m);
    gq_model_free(&m);
    unlink(q);
    unlink(text);
    return dir;
}

void ckpt_assert_refused(const char *target, const char *args, const char *want)
{
    char *dir = test_tmpdir("ckpt-refuse");
    char ck[4200];
    snprintf(ck, sizeof ck, "%s/ckpt", dir);
    const char *model = "--model assets:models/stories260K/stories260K.bin --tokenizer "
                        "assets:models/stories260K/tok512.bin --eval-windows 4";
    int rc = test_run_clif(out, sizeof out, errb, sizeof errb,
                           "export --format %s %s %s --out '%s'", target, model, args, ck);
    if (rc != 2 || !strstr(errb, want))
        fail_msg("%s: exit %d, stderr: %s", args, rc, errb);
    assert_int_equal(access(ck, F_OK), -1);
    test_remove_dir(dir);
}
