/* Loader and saver: bad files are rejected with a message naming the file and the sizes,
 * save/load round trips are bit-exact, the versioned format loads, stories260K re-saves as a
 * valid llama2.c checkpoint. */
#include "test_model_util.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/gq_model.h"
#include "model/gq_synth.h"

/* Loads `path` expecting failure; the message must contain every needle. */
static void expect_reject(const char *path, const char *n1, const char *n2, const char *n3)
{
    gq_model m;
    gq_error err = {{0}};
    assert_int_equal(gq_model_load(path, &m, &err), -1);
    const char *needles[] = {path, n1, n2, n3};
    for (int i = 0; i < 4; i++)
        if (needles[i] && !strstr(err.msg, needles[i]))
            fail_msg("message '%s' lacks '%s'", err.msg, needles[i]);
}

static void test_loader_rejects_bad_files(void **state)
{
    (void)state;
    gq_model m;
    gq_error err = {{0}};
    assert_int_equal(gq_model_synth("tiny", 3, &m, &err), 0);
    char *dir = test_tmpdir("model_io");
    char good[4200], bad[4200];
    snprintf(good, sizeof good, "%s/good.bin", dir);
    snprintf(bad, sizeof bad, "%s/bad.bin", dir);
    assert_int_equal(gq_model_save(&m, good, &err), 0);
    size_t n;
    unsigned char *bytes = test_read_file(good, &n);
    char want[64], got[64];
    snprintf(want, sizeof want, "%zu bytes its header", n);

    test_write_file(bad, bytes, n - 4); /* truncated */
    snprintf(got, sizeof got, "size %zu bytes", n - 4);
    expect_reject(bad, want, got, "truncated");
    test_write_file(bad, bytes, 100); /* truncated far into the body */
    expect_reject(bad, want, "size 100 bytes", "truncated");
    unsigned char *padded = calloc(n + 8, 1);
    memcpy(padded, bytes, n);
    test_write_file(bad, padded, n + 8); /* padded */
    snprintf(got, sizeof got, "size %zu bytes", n + 8);
    expect_reject(bad, want, got, "trailing");
    test_write_file(bad, bytes, 0); /* zero length */
    expect_reject(bad, "0 bytes", "at least 28 bytes", NULL);
    const char *text = "This is a text file, not a model checkpoint at all, clearly.\n";
    test_write_file(bad, text, strlen(text)); /* foreign file */
    expect_reject(bad, "header field", "outside", NULL);
    uint32_t v1[64] = {0x616b3432u, 2}; /* right magic, unknown version */
    test_write_file(bad, v1, sizeof v1);
    expect_reject(bad, "version 2", NULL, NULL);
    int32_t hdr[7] = {64, 172, 2, 6, 3, 512, 128}; /* dim not a multiple of n_heads */
    test_write_file(bad, hdr, sizeof hdr);
    expect_reject(bad, "n_heads 6", NULL, NULL);
    int32_t odd[7] = {66, 172, 2, 6, 3, 512, 128}; /* head size 11 */
    test_write_file(bad, odd, sizeof odd);
    expect_reject(bad, "odd", NULL, NULL);
    snprintf(bad, sizeof bad, "%s/missing.bin", dir);
    expect_reject(bad, "cannot open", NULL, NULL);
    expect_reject(dir, "no config.json", NULL, NULL); /* a directory that is no HF model */
    assert_int_equal(gq_model_save(&m, dir, &err), -1);
    assert_non_null(strstr(err.msg, "is a directory"));
    /* a NaN or infinity in the weights: the tensor and index are named */
    snprintf(bad, sizeof bad, "%s/bad.bin", dir);
    float keep = m.layers[1].w[GQ_LIN_Q][7];
    m.layers[1].w[GQ_LIN_Q][7] = NAN;
    assert_int_equal(gq_model_save(&m, bad, &err), 0);
    expect_reject(bad, "layers.1.attn.q_proj", "non-finite", "index 7");
    m.layers[1].w[GQ_LIN_Q][7] = keep;
    m.rms_final[2] = INFINITY;
    assert_int_equal(gq_model_save(&m, bad, &err), 0);
    expect_reject(bad, "final_norm", "inf", "index 2");

    free(padded);
    free(bytes);
    unlink(good);
    snprintf(bad, sizeof bad, "%s/bad.bin", dir);
    unlink(bad);
    rmdir(dir);
    free(dir);
    gq_model_free(&m);
}

static void test_save_load_round_trip(void **state)
{
    (void)state;
    gq_model m, back, cl;
    gq_error err = {{0}};
    assert_int_equal(gq_model_synth("tiny", 8, &m, &err), 0);
    assert_false(m.cfg.shared_classifier); /* tiny exercises the separate classifier */
    char *dir = test_tmpdir("model_rt");
    char p1[4200], p2[4200];
    snprintf(p1, sizeof p1, "%s/a.bin", dir);
    snprintf(p2, sizeof p2, "%s/b.bin", dir);
    assert_int_equal(gq_model_save(&m, p1, &err), 0);
    assert_int_equal(gq_model_load(p1, &back, &err), 0);
    assert_string_equal(back.path, p1);
    assert_same_weights(&m, &back);
    assert_int_equal(gq_model_save(&back, p2, &err), 0);
    size_t n1, n2;
    void *b1 = test_read_file(p1, &n1), *b2 = test_read_file(p2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    assert_int_equal(n1, 28 + 4 * (gq_model_param_count(&m.cfg) +
                                   (size_t)m.cfg.seq_len * gq_head_size(&m.cfg)));
    /* copy-on-write: writing to a loaded model leaves the file unchanged */
    back.layers[0].w[GQ_LIN_Q][0] += 1.0f;
    assert_int_equal(gq_model_clone(&back, &cl, &err), 0);
    free(b2);
    b2 = test_read_file(p1, &n2);
    assert_memory_equal(b1, b2, n1);
    /* the clone is a deep copy */
    assert_true(cl.layers[0].w[GQ_LIN_Q][0] != m.layers[0].w[GQ_LIN_Q][0]);
    free(b1);
    free(b2);
    unlink(p1);
    unlink(p2);
    rmdir(dir);
    free(dir);
    gq_model_free(&cl);
    gq_model_free(&back);
    gq_model_free(&m);
}

/* Writes m in the versioned fp32 layout (magic, version 1, 256-byte header). */
static void write_v1(const gq_model *m, const char *path)
{
    const gq_config *c = &m->cfg;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    unsigned char hdr[256] = {0};
    uint32_t magic = 0x616b3432u;
    int32_t ver = 1, p[7] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                             c->vocab_size, c->seq_len};
    memcpy(hdr, &magic, 4);
    memcpy(hdr + 4, &ver, 4);
    memcpy(hdr + 8, p, sizeof p);
    hdr[36] = c->shared_classifier;
    fwrite(hdr, 1, sizeof hdr, f);
    size_t d = (size_t)c->dim;
    for (int l = 0; l < c->n_layers; l++)
        fwrite(m->layers[l].rms_att, 4, d, f);
    for (int l = 0; l < c->n_layers; l++)
        fwrite(m->layers[l].rms_ffn, 4, d, f);
    fwrite(m->rms_final, 4, d, f);
    fwrite(m->tok_embeddings, 4, (size_t)c->vocab_size * d, f);
    static const gq_linear_kind order[] = {GQ_LIN_Q, GQ_LIN_K, GQ_LIN_V, GQ_LIN_O,
                                           GQ_LIN_GATE, GQ_LIN_DOWN, GQ_LIN_UP};
    for (int k = 0; k < 7; k++)
        for (int l = 0; l < c->n_layers; l++) {
            int r, co;
            gq_linear_shape(c, order[k], &r, &co);
            fwrite(m->layers[l].w[order[k]], 4, (size_t)r * co, f);
        }
    if (!c->shared_classifier)
        fwrite(m->wcls, 4, (size_t)c->vocab_size * d, f);
    fclose(f);
}

static void test_load_v1(void **state)
{
    (void)state;
    gq_model m, back;
    gq_error err = {{0}};
    char *dir = test_tmpdir("model_v1");
    char p[4200];
    snprintf(p, sizeof p, "%s/v1.bin", dir);
    assert_int_equal(gq_model_synth("tiny", 9, &m, &err), 0);
    write_v1(&m, p);
    assert_int_equal(gq_model_load(p, &back, &err), 0);
    assert_same_weights(&m, &back);
    gq_model_free(&back);
    /* a shared classifier in v1 */
    m.cfg.shared_classifier = true;
    m.wcls = m.tok_embeddings;
    write_v1(&m, p);
    assert_int_equal(gq_model_load(p, &back, &err), 0);
    assert_true(back.cfg.shared_classifier);
    assert_ptr_equal(back.wcls, back.tok_embeddings);
    assert_same_weights(&m, &back);
    gq_model_free(&back);
    unlink(p);
    rmdir(dir);
    free(dir);
    gq_model_free(&m);
}

/* stories260K re-saved: the same bytes, freq_cis tables included (to float rounding). */
static void test_resave_260k(void **state)
{
    (void)state;
    char path[4096];
    TEST_ASSET_OR_SKIP("models/stories260K/stories260K.bin", path);
    gq_model m;
    gq_error err = {{0}};
    assert_int_equal(gq_model_load(path, &m, &err), 0);
    const gq_config *c = &m.cfg;
    assert_int_equal(c->dim, 64);
    assert_int_equal(c->n_kv_heads, 4);
    assert_true(c->shared_classifier);
    assert_int_equal(gq_model_param_count(c), 260032);
    char *dir = test_tmpdir("model_260k");
    char out[4200];
    snprintf(out, sizeof out, "%s/s.bin", dir);
    assert_int_equal(gq_model_save(&m, out, &err), 0);
    size_t n0, n1;
    unsigned char *a = test_read_file(path, &n0), *b = test_read_file(out, &n1);
    assert_int_equal(n0, n1);
    size_t fc = 28 + 4 * (gq_model_param_count(c));
    size_t fc_end = fc + 4 * (size_t)c->seq_len * gq_head_size(c);
    assert_memory_equal(a, b, fc);
    float *fa = (float *)(a + fc), *fb = (float *)(b + fc);
    double worst = 0;
    for (size_t i = 0; i < (fc_end - fc) / 4; i++) {
        double dd = fabs((double)fa[i] - fb[i]);
        worst = dd > worst ? dd : worst;
    }
    printf("stories260K freq_cis: max |diff| %.3g\n", worst);
    assert_true(worst < 1e-4);
    free(a);
    free(b);
    unlink(out);
    rmdir(dir);
    free(dir);
    gq_model_free(&m);
}

static void test_names_and_shapes(void **state)
{
    (void)state;
    char buf[64];
    gq_tensor_name(3, GQ_LIN_DOWN, buf, sizeof buf);
    assert_string_equal(buf, "layers.3.mlp.down_proj");
    assert_string_equal(gq_linear_name(GQ_LIN_GATE), "mlp.gate_proj");
    gq_config c;
    gq_error err = {{0}};
    assert_int_equal(gq_synth_preset("stories110M", &c, &err), 0);
    int r, co;
    gq_linear_shape(&c, GQ_LIN_DOWN, &r, &co);
    assert_int_equal(r, 768);
    assert_int_equal(co, 2048);
    gq_linear_shape(&c, GQ_LIN_K, &r, &co);
    assert_int_equal(r, 768);
    /* the published stories110M count: 110M params with tied embeddings, plus norms */
    assert_int_equal(gq_model_param_count(&c), 32000 * 768 + 12 * (2 * 768 + 4 * 768 * 768 +
                                                                   3 * 768 * 2048) + 768);
}

const struct CMUnitTest model_io_tests[] = {
    cmocka_unit_test(test_loader_rejects_bad_files),
    cmocka_unit_test(test_save_load_round_trip),
    cmocka_unit_test(test_load_v1),
    cmocka_unit_test(test_resave_260k),
    cmocka_unit_test(test_names_and_shapes),
};
const size_t model_io_tests_n = sizeof model_io_tests / sizeof model_io_tests[0];
