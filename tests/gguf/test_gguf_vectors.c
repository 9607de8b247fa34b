/* GGUF against llama.cpp's own files (assets testvectors/gguf, written by llama.cpp's tools
 * from tinystories-3M: see ../shared/testvectors/gguf/README.md):
 *   - the f32 file reads as exactly the llama2.c checkpoint's weights, its vocabulary as
 *     exactly the llama2.c tokenizer (apart from the renamed <s> and </s>);
 *   - every quantized tensor of the quantized files is byte for byte what gq-bench's format of
 *     that ggml type writes from the checkpoint's floats, and reads as its dequantization;
 *   - exporting tinystories-3M with the same types gives those files' tensor data byte for
 *     byte, and the export reads back as the in-memory quantized model bit for bit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gguf/gq_gguf_model.h"
#include "methods/gq_pipeline.h"
#include "core/gq_fileio.h"
#include "test_quant.h"
#include "test_support.h"

static const char *const QUANTIZED[] = {
    "tinystories-3M-Q4_0-pure.gguf",      "tinystories-3M-Q4_1-default.gguf",
    "tinystories-3M-Q4_K-pure.gguf",      "tinystories-3M-Q4_K_M-default.gguf",
    "tinystories-3M-Q4_K_S-mix-f32eo.gguf", "tinystories-3M-Q6_K-pure.gguf",
    "tinystories-3M-Q8_0-pure-f32eo.gguf"};
#define N_QUANTIZED (sizeof QUANTIZED / sizeof QUANTIZED[0])

typedef struct {
    gq_model ckpt;       /* tinystories-3M.bin */
    gq_tokenizer *tok;   /* its tok512.bin */
    char dir[4096];      /* the test vectors */
} fixture;

static int setup(void **state)
{
    char model[4096], tok[4096], vec[4096];
    *state = NULL;
    if (!test_asset("models/tinystories-3M/tinystories-3M.bin", model, sizeof model) ||
        !test_asset("models/tinystories-3M/tok512.bin", tok, sizeof tok) ||
        !test_asset("testvectors/gguf/tinystories-3M-f32.gguf", vec, sizeof vec))
        return 0;
    fixture *f = calloc(1, sizeof *f);
    gq_error err = {{0}};
    if (gq_model_load(model, &f->ckpt, &err) || gq_tokenizer_load(tok, 0, &f->tok, &err)) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return -1;
    }
    snprintf(f->dir, sizeof f->dir, "%s", vec);
    *strrchr(f->dir, '/') = '\0';
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f) {
        gq_model_free(&f->ckpt);
        gq_tokenizer_free(f->tok);
        free(f);
    }
    return 0;
}

#define FIXTURE_OR_SKIP(f) \
    fixture *f = *state;   \
    if (!f) {              \
        skip();            \
        return;            \
    }

static const char *vec(const fixture *f, const char *name)
{
    static char p[4200];
    snprintf(p, sizeof p, "%s/%s", f->dir, name);
    return p;
}

static void assert_floats_equal(const char *what, const float *a, const float *b, size_t n)
{
    if (memcmp(a, b, n * sizeof *a) != 0)
        fail_msg("%s: values differ", what);
}

/* The checkpoint floats of a GGUF tensor name, with its (rows, cols); rows 1 for vectors. */
static const float *ckpt_tensor(const gq_model *m, const char *name, int *rows, int *cols)
{
    const gq_config *c = &m->cfg;
    int l;
    char part[64];
    *rows = 1;
    *cols = c->dim;
    if (strcmp(name, "token_embd.weight") == 0 || strcmp(name, "output.weight") == 0) {
        *rows = c->vocab_size;
        return strcmp(name, "output.weight") == 0 ? m->wcls : m->tok_embeddings;
    }
    if (strcmp(name, "output_norm.weight") == 0)
        return m->rms_final;
    assert_int_equal(sscanf(name, "blk.%d.%63[a-z_].weight", &l, part), 2);
    if (strcmp(part, "attn_norm") == 0)
        return m->layers[l].rms_att;
    if (strcmp(part, "ffn_norm") == 0)
        return m->layers[l].rms_ffn;
    for (int k = 0; k < GQ_N_LINEAR; k++)
        if (strcmp(part, gq_gguf_linear_name((gq_linear_kind)k)) == 0) {
            gq_linear_shape(&m->cfg, (gq_linear_kind)k, rows, cols);
            return m->layers[l].w[k];
        }
    fail_msg("unexpected tensor %s", name);
    return NULL;
}

static void test_f32_file_is_the_checkpoint(void **state)
{
    FIXTURE_OR_SKIP(f);
    gq_model g;
    gq_error err = {{0}};
    assert_int_equal(gq_gguf_load_model(vec(f, "tinystories-3M-f32.gguf"), &g, NULL, &err), 0);
    gq_config a = g.cfg, b = f->ckpt.cfg;
    assert_int_equal(a.seq_len, 128); /* llama.cpp's converter writes 128 */
    a.seq_len = b.seq_len;
    assert_memory_equal(&a, &b, sizeof a);
    assert_floats_equal("tok_embeddings", g.tok_embeddings, f->ckpt.tok_embeddings,
                        (size_t)b.vocab_size * b.dim);
    assert_floats_equal("final_norm", g.rms_final, f->ckpt.rms_final, (size_t)b.dim);
    for (int l = 0; l < b.n_layers; l++) {
        assert_floats_equal("attn_norm", g.layers[l].rms_att, f->ckpt.layers[l].rms_att, b.dim);
        assert_floats_equal("ffn_norm", g.layers[l].rms_ffn, f->ckpt.layers[l].rms_ffn, b.dim);
    }
    test_assert_linears_equal(&g, &f->ckpt);
    gq_model_free(&g);
}

static void test_vocabulary_is_the_llama2c_tokenizer(void **state)
{
    FIXTURE_OR_SKIP(f);
    gq_tokenizer *t;
    gq_error err = {{0}};
    assert_int_equal(gq_gguf_load_tokenizer(vec(f, "tinystories-3M-f32.gguf"), 512, &t, &err), 0);
    assert_int_equal(gq_tokenizer_vocab_size(t), gq_tokenizer_vocab_size(f->tok));
    for (int i = 0; i < gq_tokenizer_vocab_size(t); i++) {
        assert_true(gq_tokenizer_score(t, i) == gq_tokenizer_score(f->tok, i));
        if (i > GQ_TOKEN_EOS) /* llama.cpp renames "\n<s>\n" and "\n</s>\n" */
            assert_string_equal(gq_tokenizer_piece(t, i), gq_tokenizer_piece(f->tok, i));
    }
    char text[4096];
    size_t len;
    assert_true(test_asset("text/tinystories/tinystories_val.txt", text, sizeof text));
    char *data = test_read_file(text, &len);
    int *ia, *ib;
    size_t na, nb;
    assert_int_equal(gq_tokenizer_encode(t, data, len, true, false, &ia, &na, &err), 0);
    assert_int_equal(gq_tokenizer_encode(f->tok, data, len, true, false, &ib, &nb, &err), 0);
    assert_int_equal(na, nb);
    assert_memory_equal(ia, ib, na * sizeof *ia);
    free(ia);
    free(ib);
    free(data);
    gq_tokenizer_free(t);
}

/* One quantized tensor of a llama.cpp file: its bytes are the gq format's codes of the
 * checkpoint's floats, and the loaded model holds their dequantization. */
static void check_tensor(const gq_model *ckpt, const gq_model *loaded, const gq_gguf_tensor *t)
{
    int rows, cols;
    const float *src = ckpt_tensor(ckpt, t->name, &rows, &cols);
    const float *got = ckpt_tensor(loaded, t->name, &rows, &cols);
    size_t n = (size_t)rows * cols;
    float *deq = malloc(n * sizeof *deq);
    if (!t->type->format) {
        assert_int_equal(t->type->id, GQ_GGML_F32);
        assert_floats_equal(t->name, got, src, n);
        free(deq);
        return;
    }
    gq_quantizer q;
    gq_error err = {{0}};
    assert_int_equal(gq_quantizer_init(&q, t->type->format, NULL, NULL, &err), 0);
    size_t bytes = gq_quantizer_bytes(&q, rows, cols);
    assert_int_equal(bytes, t->nbytes);
    uint8_t *codes = malloc(bytes);
    assert_int_equal(gq_quantizer_run(&q, src, rows, cols, NULL, codes, deq, &err), 0);
    if (memcmp(codes, t->data, bytes) != 0)
        fail_msg("%s (%s): gq-bench's codes differ from llama.cpp's", t->name, t->type->name);
    if (strcmp(t->name, "output.weight") != 0 || !loaded->cfg.shared_classifier)
        assert_floats_equal(t->name, got, deq, n);
    gq_quantizer_free(&q);
    free(codes);
    free(deq);
}

static void test_quantized_files_are_gq_quantizers(void **state)
{
    FIXTURE_OR_SKIP(f);
    for (size_t i = 0; i < N_QUANTIZED; i++) {
        gq_gguf g;
        gq_model m;
        gq_error err = {{0}};
        assert_int_equal(gq_gguf_open(vec(f, QUANTIZED[i]), &g, &err), 0);
        assert_int_equal(gq_gguf_model_from(&g, &m, NULL, &err), 0);
        for (size_t t = 0; t < g.n_tensors; t++)
            check_tensor(&f->ckpt, &m, &g.tensors[t]);
        gq_model_free(&m);
        gq_gguf_close(&g);
    }
}

/* ---- export ---- */

/* A rule giving tensor `name` (gq-bench's name) the format of llama.cpp's type. */
static void add_rule(gq_tensor_rule *r, int *n, const char *name, const gq_gguf_tensor *t)
{
    if (!t || !t->type->format)
        return;
    memset(&r[*n], 0, sizeof r[*n]);
    r[*n].pattern = strdup(name);
    gq_error err = {{0}};
    assert_int_equal(gq_quantizer_init(&r[*n].quantizer, t->type->format, NULL, NULL, &err), 0);
    (*n)++;
}

/* RTN with each tensor in the type the llama.cpp file gives it (the tied classifier is one
 * tensor in gq-bench: it takes token_embd's type), exported to `out`. */
static void export_like(const fixture *f, const gq_gguf *ref, const char *out, gq_model *q)
{
    const gq_config *c = &f->ckpt.cfg;
    gq_tensor_rule rules[64];
    int n = 0;
    char name[96], gname[64];
    add_rule(rules, &n, "tok_embeddings", gq_gguf_find_tensor(ref, "token_embd.weight"));
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            gq_tensor_name(l, (gq_linear_kind)k, name, sizeof name);
            gq_gguf_tensor_name(l, (gq_linear_kind)k, gname, sizeof gname);
            add_rule(rules, &n, name, gq_gguf_find_tensor(ref, gname));
        }
    gq_quant_plan plan = {0};
    gq_error err = {{0}};
    assert_int_equal(gq_method_cfg_init(&plan.method, "rtn", NULL, NULL, &err), 0);
    assert_int_equal(gq_quantizer_init(&plan.quantizer, "q8_0", NULL, NULL, &err), 0);
    plan.rules = rules;
    plan.n_rules = n;
    gq_quant_report rep = {0};
    if (gq_quantize_model(&f->ckpt, &plan, q, &rep, &err))
        fail_msg("%s", err.msg);
    gq_gguf_export x = {.model = q, .tok = f->tok, .name = "t",
                        .quant_of = gq_plan_tensor_quantizer, .quant_ctx = &plan,
                        .linear_codes = (const uint8_t *const *)rep.linear_codes,
                        .embd_codes = rep.embd_codes, .float_type = GQ_GGML_F32};
    if (gq_gguf_write_model(out, &x, &err))
        fail_msg("%s", err.msg);
    gq_quant_report_free(&rep);
    for (int i = 0; i < n; i++)
        gq_tensor_rule_free(&rules[i]);
    gq_quantizer_free(&plan.quantizer);
    gq_method_cfg_free(&plan.method);
}

/* Every tensor of `ours` has llama.cpp's type, shape and bytes; the llama.cpp file's output
 * (the tied classifier written twice) matches our token_embd when it has the same type. */
static size_t compare_tensors(const gq_gguf *ours, const gq_gguf *ref)
{
    size_t same = 0;
    for (size_t i = 0; i < ref->n_tensors; i++) {
        const gq_gguf_tensor *r = &ref->tensors[i];
        const gq_gguf_tensor *o = gq_gguf_find_tensor(ours, r->name);
        if (!o && strcmp(r->name, "output.weight") == 0) {
            o = gq_gguf_find_tensor(ours, "token_embd.weight");
            if (o->type != r->type)
                continue;
        }
        assert_non_null(o);
        if (o->type != r->type || memcmp(o->ne, r->ne, sizeof o->ne) != 0 ||
            o->nbytes != r->nbytes || memcmp(o->data, r->data, o->nbytes) != 0)
            fail_msg("%s: %s tensor differs from llama.cpp's %s", r->name, o->type->name,
                     r->type->name);
        same++;
    }
    return same;
}

static void test_export_matches_llamacpp(void **state)
{
    FIXTURE_OR_SKIP(f);
    char *dir = test_tmpdir("gguf-export");
    for (size_t i = 0; i < N_QUANTIZED; i++) {
        char out[4200];
        snprintf(out, sizeof out, "%s/%s", dir, QUANTIZED[i]);
        gq_gguf ref, ours;
        gq_model q, back;
        gq_error err = {{0}};
        assert_int_equal(gq_gguf_open(vec(f, QUANTIZED[i]), &ref, &err), 0);
        export_like(f, &ref, out, &q);
        assert_int_equal(gq_gguf_open(out, &ours, &err), 0);
        size_t same = compare_tensors(&ours, &ref);
        fprintf(stderr, "%s: %zu of %zu tensors byte-identical (%lld bytes exported)\n",
                QUANTIZED[i], same, ref.n_tensors, gq_file_size(out, &err));
        assert_true(same + 1 >= ref.n_tensors); /* at most output.weight of another type */
        /* round trip: the export reads back as the quantized model */
        assert_int_equal(gq_gguf_model_from(&ours, &back, NULL, &err), 0);
        test_assert_linears_equal(&back, &q);
        assert_floats_equal("tok_embeddings", back.tok_embeddings, q.tok_embeddings,
                            (size_t)q.cfg.vocab_size * q.cfg.dim);
        assert_memory_equal(&back.cfg, &q.cfg, sizeof q.cfg);
        gq_model_free(&back);
        gq_model_free(&q);
        gq_gguf_close(&ours);
        gq_gguf_close(&ref);
        unlink(out);
    }
    test_remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32_file_is_the_checkpoint),
        cmocka_unit_test(test_vocabulary_is_the_llama2c_tokenizer),
        cmocka_unit_test(test_quantized_files_are_gq_quantizers),
        cmocka_unit_test(test_export_matches_llamacpp),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
