/* A gq_model (and its method's codes) as a llama GGUF: llama.cpp's metadata keys, its
 * SentencePiece vocabulary keys and its tensor names, in the order llama.cpp's llama2.c
 * converter writes them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_half.h"
#include "gguf/gq_gguf_model.h"
#include "gguf/gq_gguf_write.h"
#include "model/gq_plan_linear.h"

/* llama.cpp's token types (llama_token_type) */
enum { TOK_NORMAL = 1, TOK_UNKNOWN = 2, TOK_CONTROL = 3, TOK_BYTE = 6 };

static int check_quantizer(const gq_quantizer *q, const char *tensor, int rows, int cols,
                           gq_error *err)
{
    char label[96];
    gq_quantizer_label(q, label, sizeof label);
    const gq_gguf_dtype *t = gq_gguf_dtype_by_format(q->fmt->name);
    if (!t)
        return gq_fail(err, "%s: format %s has no ggml type (GGUF holds q4_0, q4_1, q5_0, "
                       "q5_1, q8_0, q2_K..q6_K, mxfp4_ggml)", tensor, label);
    if (cols % t->block_elems != 0)
        return gq_fail(err, "%s: rows of %d columns are not whole %s blocks of %d (gq-bench "
                       "pads them, ggml cannot)", tensor, cols, label, t->block_elems);
    (void)rows;
    return 0;
}

/* The format of gq-bench tensor `name` in the export, or NULL. */
static const gq_quantizer *quant(const gq_gguf_export *x, const char *name)
{
    return x->quant_of(x->quant_ctx, &x->model->cfg, name);
}

/* The block linears' quantizers and codes, for the walker (model/gq_plan_linear.h). */
static gq_plan_linears plan_linears(const gq_gguf_export *x, const gq_config *c)
{
    return (gq_plan_linears){x->quant_of, x->quant_ctx, x->linear_codes, NULL,
                            x->linear_codes ? (size_t)c->n_layers * GQ_N_LINEAR : 0};
}

/* gq_plan_linear_fn: a quantized linear must have a ggml type for its rows. */
static int check_linear(void *ctx, const gq_plan_linear *b, gq_error *err)
{
    (void)ctx;
    return b->q ? check_quantizer(b->q, b->name, b->rows, b->cols, err) : 0;
}

int gq_gguf_check_plan(const gq_gguf_export *x, const gq_config *c, gq_error *err)
{
    /* the `llama` tensors and keys written here hold no biases, q/k norms, attention window,
     * RoPE scaling or separate head size */
    if (c->bias_mask || c->qk_norm || c->sliding_window ||
        c->rope_scaling.kind != GQ_ROPE_PLAIN || gq_head_size(c) * c->n_heads != c->dim)
        return gq_fail(err, "a %s model with biases, q/k norms, a sliding window, RoPE scaling "
                            "or its own head_dim cannot be written as a llama GGUF here",
                       gq_family_name(c->family));
    const gq_quantizer *q;
    if ((q = x->quant_of(x->quant_ctx, c, "tok_embeddings")) &&
        check_quantizer(q, "tok_embeddings", c->vocab_size, c->dim, err))
        return -1;
    if (!c->shared_classifier && (q = x->quant_of(x->quant_ctx, c, "classifier")) &&
        check_quantizer(q, "classifier", c->vocab_size, c->dim, err))
        return -1;
    gq_plan_linears src = plan_linears(x, c);
    return gq_plan_each_linear(c, &src, check_linear, NULL, err);
}

/* ---- vocabulary ---- */

typedef struct {
    const gq_tokenizer *tok;
    char *scratch; /* one piece with spaces as U+2581 */
} vocab_ctx;

static const char *piece_of(void *ctx, size_t i, size_t *len)
{
    vocab_ctx *v = ctx;
    static const char *const special[3] = {"<unk>", "<s>", "</s>"};
    if (i < 3) {
        *len = strlen(special[i]);
        return special[i];
    }
    const char *p = gq_tokenizer_piece(v->tok, (int)i);
    size_t o = 0;
    for (; *p; p++) {
        if (*p == ' ') {
            memcpy(v->scratch + o, "\xe2\x96\x81", 3);
            o += 3;
        } else {
            v->scratch[o++] = *p;
        }
    }
    *len = o;
    return v->scratch;
}

static int token_type(const gq_tokenizer *tok, int i)
{
    if (i == GQ_TOKEN_UNK)
        return TOK_UNKNOWN;
    if (i == GQ_TOKEN_BOS || i == GQ_TOKEN_EOS)
        return TOK_CONTROL;
    if (i >= 3 && i < 259) /* gq_tokenizer checks ids 3..258 are <0x00>..<0xFF> */
        return TOK_BYTE;
    (void)tok;
    return TOK_NORMAL;
}

/* A byte-level tokenizer.json as a `gpt2` vocabulary, anything else as a `llama` one. */
static int put_vocab(gq_gguf_writer *w, const gq_tokenizer *tok, gq_error *err)
{
    bool written;
    if (gq_gguf_put_bpe_vocab(w, tok, &written, err))
        return -1;
    if (written)
        return 0;
    int n = gq_tokenizer_vocab_size(tok);
    size_t longest = 0;
    for (int i = 0; i < n; i++)
        if (strlen(gq_tokenizer_piece(tok, i)) > longest)
            longest = strlen(gq_tokenizer_piece(tok, i));
    vocab_ctx v = {tok, malloc(3 * longest + 1)};
    float *scores = malloc((size_t)n * sizeof *scores);
    int32_t *types = malloc((size_t)n * sizeof *types);
    if (!v.scratch || !scores || !types) {
        free(v.scratch);
        free(scores);
        free(types);
        return gq_fail(err, "out of memory for the vocabulary");
    }
    for (int i = 0; i < n; i++) {
        scores[i] = gq_tokenizer_score(tok, i);
        types[i] = token_type(tok, i);
    }
    gq_gguf_put_str(w, "tokenizer.ggml.model", "llama");
    gq_gguf_put_str_array(w, "tokenizer.ggml.tokens", (size_t)n, piece_of, &v);
    gq_gguf_put_f32_array(w, "tokenizer.ggml.scores", scores, (size_t)n);
    gq_gguf_put_i32_array(w, "tokenizer.ggml.token_type", types, (size_t)n);
    gq_gguf_put_u32(w, "tokenizer.ggml.unknown_token_id", GQ_TOKEN_UNK);
    gq_gguf_put_u32(w, "tokenizer.ggml.bos_token_id", GQ_TOKEN_BOS);
    gq_gguf_put_u32(w, "tokenizer.ggml.eos_token_id", GQ_TOKEN_EOS);
    free(v.scratch);
    free(scores);
    free(types);
    return 0;
}

/* ---- metadata ---- */

/* llama.cpp's general.file_type (llama_ftype) for a model whose matrices are mostly `t`. */
static uint32_t file_type_of(const gq_gguf_dtype *t)
{
    static const struct { int type; uint32_t ftype; } map[] = {
        {GQ_GGML_F32, 0},   {GQ_GGML_F16, 1},   {GQ_GGML_Q4_0, 2},  {GQ_GGML_Q4_1, 3},
        {GQ_GGML_Q8_0, 7},  {GQ_GGML_Q5_0, 8},  {GQ_GGML_Q5_1, 9},  {GQ_GGML_Q2_K, 10},
        {GQ_GGML_Q3_K, 12}, {GQ_GGML_Q4_K, 15}, {GQ_GGML_Q5_K, 17}, {GQ_GGML_Q6_K, 18},
        {GQ_GGML_BF16, 32}, {GQ_GGML_MXFP4, 38}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (map[i].type == t->id)
            return map[i].ftype;
    return 0;
}

/* Block linears per format, for the most common one. */
typedef struct {
    const gq_format *fmt[GQ_N_LINEAR * 4];
    int count[GQ_N_LINEAR * 4], n;
} format_tally;

static int tally_linear(void *ctx, const gq_plan_linear *b, gq_error *err)
{
    (void)err;
    format_tally *t = ctx;
    if (!b->q)
        return 0;
    int i = 0;
    while (i < t->n && t->fmt[i] != b->q->fmt)
        i++;
    if (i == t->n) {
        if (t->n == (int)(sizeof t->fmt / sizeof t->fmt[0]))
            return 0; /* more distinct formats than ggml has types: cannot happen */
        t->fmt[t->n++] = b->q->fmt;
    }
    t->count[i]++;
    return 0;
}

/* The type most block linears have (the float type when none is quantized; the first seen
 * on ties). */
static const gq_gguf_dtype *dominant_type(const gq_gguf_export *x)
{
    const gq_config *c = &x->model->cfg;
    format_tally t = {.n = 0};
    gq_plan_linears src = plan_linears(x, c);
    gq_plan_each_linear(c, &src, tally_linear, &t, NULL);
    const gq_gguf_dtype *bt = gq_gguf_dtype_by_id(x->float_type);
    for (int i = 0, best = 0; i < t.n; i++)
        if (t.count[i] > best) {
            best = t.count[i];
            bt = gq_gguf_dtype_by_format(t.fmt[i]->name);
        }
    return bt;
}

static void put_metadata(gq_gguf_writer *w, const gq_gguf_export *x)
{
    const gq_config *c = &x->model->cfg;
    gq_gguf_put_str(w, "general.architecture", "llama");
    gq_gguf_put_str(w, "general.name", x->name && x->name[0] ? x->name : "llama");
    gq_gguf_put_u32(w, "general.file_type", file_type_of(dominant_type(x)));
    gq_gguf_put_u32(w, "general.quantization_version", 2);
    gq_gguf_put_u32(w, "llama.context_length", (uint32_t)c->seq_len);
    gq_gguf_put_u32(w, "llama.embedding_length", (uint32_t)c->dim);
    gq_gguf_put_u32(w, "llama.feed_forward_length", (uint32_t)c->hidden_dim);
    gq_gguf_put_u32(w, "llama.block_count", (uint32_t)c->n_layers);
    gq_gguf_put_u32(w, "llama.attention.head_count", (uint32_t)c->n_heads);
    gq_gguf_put_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads);
    gq_gguf_put_u32(w, "llama.rope.dimension_count", (uint32_t)gq_head_size(c));
    gq_gguf_put_f32(w, "llama.rope.freq_base", gq_rope_theta(c));
    gq_gguf_put_f32(w, "llama.attention.layer_norm_rms_epsilon", gq_norm_eps(c));
}

/* ---- tensors ---- */

/* A matrix (rows 0: 1-D) kept in floats, as F32 (borrowed) or converted to F16/BF16. */
static int add_float(gq_gguf_writer *w, const char *name, const float *v, int rows, int cols,
                     uint32_t type, gq_error *err)
{
    size_t n = (size_t)(rows ? rows : 1) * (size_t)cols;
    if (type == GQ_GGML_F32)
        return gq_gguf_add_tensor(w, name, cols, rows, type, v, 4 * n, false, err);
    uint16_t *h = malloc(2 * n);
    if (!h)
        return gq_fail(err, "out of memory for tensor %s", name);
    for (size_t i = 0; i < n; i++)
        h[i] = type == GQ_GGML_F16 ? gq_fp32_to_fp16(v[i]) : gq_fp32_to_bf16(v[i]);
    return gq_gguf_add_tensor(w, name, cols, rows, type, h, 2 * n, true, err);
}

/* A matrix in floats or, when q is set, as its codes of q's ggml type. */
static int add_matrix(gq_gguf_writer *w, const char *name, const float *v, int rows, int cols,
                      const gq_quantizer *q, const uint8_t *codes, uint32_t float_type,
                      gq_error *err)
{
    if (!q)
        return add_float(w, name, v, rows, cols, float_type, err);
    const gq_gguf_dtype *t = gq_gguf_dtype_by_format(q->fmt->name);
    return gq_gguf_add_tensor(w, name, cols, rows, (uint32_t)t->id, codes,
                              gq_quantizer_bytes(q, rows, cols), false, err);
}

static int add_layer(gq_gguf_writer *w, const gq_gguf_export *x, int l, gq_error *err)
{
    const gq_config *c = &x->model->cfg;
    const gq_layer *L = &x->model->layers[l];
    char name[GQ_GGUF_MAX_NAME];
    static const gq_linear_kind order[GQ_N_LINEAR] = {GQ_LIN_Q, GQ_LIN_K, GQ_LIN_V, GQ_LIN_O,
                                                      GQ_LIN_GATE, GQ_LIN_DOWN, GQ_LIN_UP};
    gq_plan_linears src = plan_linears(x, c);
    for (int j = 0; j < GQ_N_LINEAR; j++) {
        gq_linear_kind k = order[j];
        gq_plan_linear b;
        gq_plan_linear_at(c, &src, (size_t)l * GQ_N_LINEAR + (size_t)k, &b);
        gq_gguf_tensor_name(l, k, name, sizeof name);
        if (add_matrix(w, name, L->w[k], b.rows, b.cols, b.q, b.codes, x->float_type, err))
            return -1;
        if (k == GQ_LIN_O || k == GQ_LIN_UP) { /* the converter writes each norm after them */
            snprintf(name, sizeof name, "blk.%d.%s_norm.weight", l,
                     k == GQ_LIN_O ? "attn" : "ffn");
            if (add_float(w, name, k == GQ_LIN_O ? L->rms_att : L->rms_ffn, 0, c->dim,
                          GQ_GGML_F32, err))
                return -1;
        }
    }
    return 0;
}

/* gq_plan_linear_fn: a quantized linear needs the codes the method chose. */
static int check_codes(void *ctx, const gq_plan_linear *b, gq_error *err)
{
    (void)ctx;
    if (b->q && !b->codes)
        return gq_fail(err, "%s: the method handed over reconstructions only, not the codes it "
                            "chose (GPTQ on K-quants or with act_order's dynamic groups); "
                            "writing re-quantized codes would not be the evaluated model",
                       b->name);
    return 0;
}

/* Refusals before anything is written: every quantized tensor needs a ggml type and codes. */
static int check_export(const gq_gguf_export *x, gq_error *err)
{
    const gq_config *c = &x->model->cfg;
    if (gq_model_has_transforms(x->model))
        return gq_fail(err, "the model has %s, which GGUF cannot hold",
                       gq_model_transforms_what(x->model));
    if (x->float_type != GQ_GGML_F32 && x->float_type != GQ_GGML_F16 &&
        x->float_type != GQ_GGML_BF16)
        return gq_fail(err, "unquantized tensors must be f32, f16 or bf16");
    if (gq_gguf_check_plan(x, c, err))
        return -1;
    if ((quant(x, "tok_embeddings") && !x->embd_codes) ||
        (!c->shared_classifier && quant(x, "classifier") && !x->cls_codes))
        return gq_fail(err, "the codes of the quantized embeddings or classifier are missing");
    gq_plan_linears src = plan_linears(x, c);
    return gq_plan_each_linear(c, &src, check_codes, NULL, err);
}

int gq_gguf_write_model(const char *path, const gq_gguf_export *x, gq_error *err)
{
    const gq_model *m = x->model;
    const gq_config *c = &m->cfg;
    if (check_export(x, err))
        return gq_fail_prefix(err, "%s", path);
    gq_gguf_writer *w = gq_gguf_writer_new(err);
    if (!w)
        return -1;
    int rc = -1;
    put_metadata(w, x);
    if (put_vocab(w, x->tok, err) ||
        add_matrix(w, "token_embd.weight", m->tok_embeddings, c->vocab_size, c->dim,
                   quant(x, "tok_embeddings"), x->embd_codes, x->float_type, err) ||
        add_float(w, "output_norm.weight", m->rms_final, 0, c->dim, GQ_GGML_F32, err) ||
        (!c->shared_classifier &&
         add_matrix(w, "output.weight", m->wcls, c->vocab_size, c->dim,
                    quant(x, "classifier"), x->cls_codes, x->float_type, err)))
        goto done;
    for (int l = 0; l < c->n_layers; l++)
        if (add_layer(w, x, l, err))
            goto done;
    rc = gq_gguf_writer_commit(w, path, err);
done:
    gq_gguf_writer_free(w);
    return rc;
}
