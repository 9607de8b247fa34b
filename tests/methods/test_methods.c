/* Methods and the pipeline on the real stories260K model with a small calibration set
 * (2 windows x 32 tokens of the TinyStories validation text), plus the linear algebra and the
 * GPTQ solver on synthetic matrices. */
#include "test_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gq_gemm.h"
#include "core/gq_rng.h"
#include "core/gq_threads.h"
#include "methods/awq_grid.h"
#include "methods/gq_awq.h"
#include "methods/gq_gptq.h"
#include "methods/gq_linalg.h"
#include "methods/gq_pipeline.h"
#include "model/gq_forward.h"
#include "qmodel/gq_qmodel.h"

#define N_CALIB 2
#define CALIB_CTX 32

/* The JSON of INT`bits`, asymmetric, groups of `group`. */
static const char *int_format(char *js, size_t n, int bits, int group)
{
    snprintf(js, n, "{\"name\": \"int\", \"bits\": %d, \"granularity\": \"group\", "
                    "\"group_size\": %d, \"zero\": \"asym\"}", bits, group);
    return js;
}

static void int_quantizer(gq_quantizer *q, int bits, int group)
{
    char js[160];
    json_t *j = json_loads(int_format(js, sizeof js, bits, group), 0, NULL);
    gq_error err;
    assert_int_equal(gq_quantizer_from_json(j, NULL, q, &err), 0);
    json_decref(j);
}

/* ---- linear algebra and the GPTQ solver --------------------------------------------------- */

/* h (n, n) = a a^T / n + I with a standard normal: SPD, well conditioned. */
static double *spd_matrix(int n, uint64_t seed)
{
    gq_rng r;
    gq_rng_seed(&r, seed);
    double *a = malloc((size_t)n * n * sizeof *a), *h = malloc((size_t)n * n * sizeof *h);
    for (size_t i = 0; i < (size_t)n * n; i++)
        a[i] = gq_rng_normal(&r);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = i == j ? 1.0 : 0.0;
            for (int k = 0; k < n; k++)
                s += a[(size_t)i * n + k] * a[(size_t)j * n + k] / n;
            h[(size_t)i * n + j] = s;
        }
    free(a);
    return h;
}

/* Blocked Cholesky across several diagonal blocks and column tiles: U^T U = h, the lower
 * triangle untouched; a non-positive pivot is named. */
static void test_cholesky_upper(void **state)
{
    (void)state;
    const int n = GQ_LINALG_BLOCK + 44;
    double *h = spd_matrix(n, 3), *u = malloc((size_t)n * n * sizeof *u);
    memcpy(u, h, (size_t)n * n * sizeof *u);
    int bad = -1;
    assert_int_equal(gq_cholesky_upper(u, n, &bad), 0);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            if (j < i) {
                assert_true(u[(size_t)i * n + j] == h[(size_t)i * n + j]);
                continue;
            }
            double s = 0.0;
            for (int k = 0; k <= i; k++)
                s += u[(size_t)k * n + i] * u[(size_t)k * n + j];
            assert_true(fabs(s - h[(size_t)i * n + j]) < 1e-12);
        }
    memcpy(u, h, (size_t)n * n * sizeof *u);
    u[(size_t)270 * n + 270] = -5.0;
    assert_int_equal(gq_cholesky_upper(u, n, &bad), -1);
    assert_int_equal(bad, 270);
    free(h), free(u);
}

/* GPTQ's Hinv with an order and damping: (u^T u) (P^T h P + d I) = I, u upper; bit-identical
 * for 1 and 2 threads; a matrix that is not SPD fails at its column in processing order and
 * is left unchanged. */
static void test_inverse_cholesky(void **state)
{
    (void)state;
    const int n = GQ_LINALG_BLOCK + 44;
    const double damp = 0.25;
    double *h = spd_matrix(n, 4), *scratch = malloc((size_t)n * n * sizeof *scratch);
    float *u = malloc((size_t)n * n * sizeof *u), *u2 = malloc((size_t)n * n * sizeof *u2);
    int *perm = malloc((size_t)n * sizeof *perm);
    for (int i = 0; i < n; i++)
        perm[i] = (i * 7 + 3) % n; /* 7 is coprime to n = 300 */
    gq_error err;
    int threads = gq_threads_get();
    float *outs[2] = {u, u2};
    for (int t = 0; t < 2; t++) {
        gq_threads_set(t + 1);
        memcpy(scratch, h, (size_t)n * n * sizeof *scratch);
        assert_int_equal(gq_inverse_cholesky_upper(scratch, n, perm, damp, outs[t], NULL, &err), 0);
    }
    gq_threads_set(threads);
    assert_memory_equal(u, u2, (size_t)n * n * sizeof *u);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            if (j < i) {
                assert_true(u[(size_t)i * n + j] == 0.0f);
                continue;
            }
            double s = 0.0; /* ((u^T u) (P^T h P + d I))[i][j] */
            for (int k = 0; k < n; k++) {
                double hinv_ik = 0.0;
                for (int m = 0; m <= (i < k ? i : k); m++)
                    hinv_ik += (double)u[(size_t)m * n + i] * u[(size_t)m * n + k];
                s += hinv_ik * (h[(size_t)perm[k] * n + perm[j]] + (k == j ? damp : 0.0));
            }
            assert_true(fabs(s - (i == j)) < 1e-4);
        }
    memcpy(scratch, h, (size_t)n * n * sizeof *scratch);
    scratch[(size_t)perm[5] * n + perm[5]] = -5.0; /* not SPD at processing column 5 */
    int bad = -1;
    assert_int_equal(gq_inverse_cholesky_upper(scratch, n, perm, 0.0, u, &bad, &err), -1);
    assert_int_equal(bad, 5);
    assert_non_null(strstr(err.msg, "column 5"));
    scratch[(size_t)perm[5] * n + perm[5]] = h[(size_t)perm[5] * n + perm[5]];
    assert_memory_equal(scratch, h, (size_t)n * n * sizeof *h);
    free(h), free(scratch), free(u), free(u2), free(perm);
}

/* GPTQ with H = I has nothing to compensate: it must equal plain rounding, bit for bit. */
static void test_gptq_identity_equals_rtn(void **state)
{
    (void)state;
    const int rows = 24, cols = 96;
    gq_rng r;
    gq_rng_seed(&r, 5);
    float *w = malloc(rows * cols * sizeof *w), *q1 = malloc(rows * cols * sizeof *q1),
          *q2 = malloc(rows * cols * sizeof *q2);
    for (int i = 0; i < rows * cols; i++)
        w[i] = (float)gq_rng_normal(&r);
    double *h = calloc((size_t)cols * cols, sizeof *h);
    const int groups[3] = {32, 96, 20}; /* group, per-channel (= cols), a shorter last group */
    for (int gi = 0; gi < 3; gi++) {
        gq_quantizer q;
        int_quantizer(&q, 3, groups[gi]);
        for (int bs = 16; bs <= 128; bs *= 8) { /* groups inside and across lazy blocks */
            for (int i = 0; i < cols; i++)
                h[(size_t)i * cols + i] = 1.0;
            gq_gptq_opts o = {0.01, 0.01, 0, bs, false, false};
            gq_gptq_result res;
            gq_error err;
            assert_int_equal(gq_gptq_quantize(&q, w, rows, cols, h, &o, q1, &res, &err), 0);
            assert_int_equal(gq_quantizer_run(&q, w, rows, cols, NULL, NULL, q2, &err), 0);
            assert_memory_equal(q1, q2, rows * cols * sizeof *q1);
            memset(h, 0, (size_t)cols * cols * sizeof *h);
        }
        gq_quantizer_free(&q);
    }
    free(w), free(q1), free(q2), free(h);
}

/* Linears sharing an input share one factor of its H: each gets exactly what a factor of its
 * own gives (act_order off and on, a dead input included). */
static void test_gptq_shared_factor(void **state)
{
    (void)state;
    const int rows = 16, cols = 80;
    double *h = spd_matrix(cols, 6), *hw = malloc((size_t)cols * cols * sizeof *hw);
    for (int i = 0; i < cols; i++) /* input 9 never active */
        h[(size_t)9 * cols + i] = h[(size_t)i * cols + 9] = 0.0;
    gq_rng r;
    gq_rng_seed(&r, 8);
    float *w[2], *q_own = malloc(rows * cols * sizeof *q_own),
                 *q_shared = malloc(rows * cols * sizeof *q_shared);
    for (int m = 0; m < 2; m++) {
        w[m] = malloc(rows * cols * sizeof *w[m]);
        for (int i = 0; i < rows * cols; i++)
            w[m][i] = (float)gq_rng_normal(&r);
    }
    gq_quantizer q;
    int_quantizer(&q, 3, 16);
    gq_error err;
    for (int ao = 0; ao < 2; ao++) {
        gq_gptq_opts o = {0.01, 0.01, 0, 32, ao == 1, false};
        memcpy(hw, h, (size_t)cols * cols * sizeof *hw);
        gq_gptq_factor F;
        assert_int_equal(gq_gptq_factor_init(&F, hw, cols, &o, &err), 0);
        for (int m = 0; m < 2; m++) {
            gq_gptq_result own, shared;
            memcpy(hw, h, (size_t)cols * cols * sizeof *hw);
            assert_int_equal(gq_gptq_quantize(&q, w[m], rows, cols, hw, &o, q_own, &own, &err), 0);
            assert_int_equal(gq_gptq_quantize_factored(&q, w[m], rows, cols, &F, &o, q_shared, NULL,
                                                       &shared, &err), 0);
            assert_memory_equal(q_own, q_shared, rows * cols * sizeof *q_own);
            assert_true(own.loss == shared.loss);
            assert_int_equal(own.dead, 1);
            assert_int_equal(shared.dead, 1);
        }
        gq_gptq_factor_free(&F);
    }
    gq_quantizer_free(&q);
    free(h), free(hw), free(w[0]), free(w[1]), free(q_own), free(q_shared);
}

/* The column loop one row at a time, as written before rows were handled in tiles: dynamic
 * groups (g < cols) or per-channel parameters (g = cols), the factor's order and U, the lazy
 * update of the later columns through gq_sgemm after each block of bs. Returns the loss. */
static double gptq_rows_reference(const gq_quantizer *qz, const float *W0, int rows, int cols,
                                  const gq_gptq_factor *F, int bs, int g, float *Q)
{
    const gq_format *f = qz->fmt;
    float *W = malloc((size_t)rows * cols * sizeof *W);
    float *Err = malloc((size_t)rows * bs * sizeof *Err);
    unsigned char *st = malloc((size_t)rows * f->group_state_bytes);
    double *row_loss = calloc((size_t)rows, sizeof *row_loss), loss = 0.0;
    for (int r = 0; r < rows; r++) {
        const float *w0 = W0 + (size_t)r * cols;
        if (g == cols) /* per channel: fitted on W as given */
            f->fit_group(qz->params, w0, cols, NULL, st + (size_t)r * f->group_state_bytes);
        for (int i = 0; i < cols; i++)
            W[(size_t)r * cols + i] = F->dead[F->perm[i]] ? 0.0f : w0[F->perm[i]];
    }
    for (int i1 = 0; i1 < cols; i1 += bs) {
        int cnt = cols - i1 < bs ? cols - i1 : bs;
        for (int r = 0; r < rows; r++) {
            float w1[cnt], *wg = W + (size_t)r * cols;
            void *rst = st + (size_t)r * f->group_state_bytes;
            memcpy(w1, wg + i1, sizeof w1);
            for (int i = 0; i < cnt; i++) {
                int col = i1 + i;
                if (g < cols && col % g == 0)
                    f->fit_group(qz->params, wg + col, cols - col < g ? cols - col : g, NULL, rst);
                float w = w1[i], d = F->U[(size_t)col * cols + col];
                float q = f->quant_elem(qz->params, rst, g < cols ? col % g : F->perm[col], w);
                Q[(size_t)r * cols + F->perm[col]] = q;
                float e = (w - q) / d;
                row_loss[r] += (double)(w - q) * (w - q) / ((double)d * d) / 2.0;
                for (int j = i; j < cnt; j++)
                    w1[j] -= e * F->U[(size_t)col * cols + i1 + j];
                Err[(size_t)r * bs + i] = e;
            }
        }
        if (i1 + cnt < cols)
            gq_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols - i1 - cnt, cnt, -1.0f,
                     Err, bs, F->U + (size_t)i1 * cols + i1 + cnt, cols, 1.0f, W + i1 + cnt, cols);
    }
    for (int r = 0; r < rows; r++)
        loss += row_loss[r];
    free(W), free(Err), free(st), free(row_loss);
    return loss;
}

/* The solver (rows side by side in vector lanes, in parallel) gives the reference's weights and
 * loss bit for bit, for 1 and 2 threads: a row count that leaves a partial tile, dynamic groups
 * and per-channel parameters, act_order off and on, a dead input, blocks that split groups. */
static void test_gptq_matches_row_reference(void **state)
{
    (void)state;
    const int rows = 21, cols = 72, bs = 24;
    double *h = spd_matrix(cols, 12), *hw = malloc((size_t)cols * cols * sizeof *hw);
    for (int i = 0; i < cols; i++) /* input 5 never active */
        h[(size_t)5 * cols + i] = h[(size_t)i * cols + 5] = 0.0;
    gq_rng r;
    gq_rng_seed(&r, 13);
    float *w = malloc(rows * cols * sizeof *w), *q_ref = malloc(rows * cols * sizeof *q_ref),
          *q = malloc(rows * cols * sizeof *q);
    for (int i = 0; i < rows * cols; i++)
        w[i] = (float)gq_rng_normal(&r);
    const int saved = gq_threads_get();
    const int groups[2] = {16, cols};
    for (int gi = 0; gi < 2; gi++)
        for (int ao = 0; ao < 2; ao++) {
            gq_quantizer qz;
            int_quantizer(&qz, 3, groups[gi]);
            gq_gptq_opts o = {0.01, 0.01, 0, bs, ao == 1, false};
            gq_error err;
            gq_gptq_factor F;
            memcpy(hw, h, (size_t)cols * cols * sizeof *hw);
            assert_int_equal(gq_gptq_factor_init(&F, hw, cols, &o, &err), 0);
            double ref_loss = gptq_rows_reference(&qz, w, rows, cols, &F, bs, groups[gi], q_ref);
            for (int t = 1; t <= 2; t++) {
                gq_threads_set(t);
                gq_gptq_result res;
                memset(q, 0, rows * cols * sizeof *q);
                assert_int_equal(gq_gptq_quantize_factored(&qz, w, rows, cols, &F, &o, q, NULL,
                                                           &res, &err), 0);
                assert_memory_equal(q, q_ref, rows * cols * sizeof *q);
                assert_true(res.loss == ref_loss);
            }
            gq_gptq_factor_free(&F);
            gq_quantizer_free(&qz);
        }
    gq_threads_set(saved);
    free(h), free(hw), free(w), free(q_ref), free(q);
}

/* ---- the pipeline on stories260K ---------------------------------------------------------- */

static int setup(void **state)
{
    const test_stories_opts o = {.n_calib = N_CALIB, .calib_ctx = CALIB_CTX, .calib_seed = 7};
    return test_stories_setup(state, &o);
}

/* Quantizes with method `name` and the given "key=value" method settings. */
static void run(const test_stories *f, const char *name, const char *const *sets, int bits,
                int group, gq_propagate prop, gq_model *out, gq_quant_report *rep)
{
    char js[160];
    gq_error err;
    int rc = test_quantize(f, name, sets, int_format(js, sizeof js, bits, group), NULL, prop, out,
                           rep, &err);
    if (rc)
        fprintf(stderr, "%s: %s\n", name, err.msg);
    assert_int_equal(rc, 0);
}

/* AWQ whose grid is only alpha = 0 and without clipping is RTN, bit for bit. */
static void test_awq_alpha0_equals_rtn(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    static const char *const awq_sets[] = {"n_grid=1", "clip=false", NULL};
    gq_model a, r;
    gq_quant_report ra, rr;
    run(f, "awq", awq_sets, 4, 32, GQ_PROPAGATE_METHOD_DEFAULT, &a, &ra);
    run(f, "rtn", NULL, 4, 32, GQ_PROPAGATE_METHOD_DEFAULT, &r, &rr);
    test_assert_linears_equal(&a, &r);
    /* and the search did report its alpha */
    assert_non_null(json_object_get(ra.tensors[1].extra, "awq_alpha"));
    gq_model_free(&a), gq_model_free(&r);
    gq_quant_report_free(&ra), gq_quant_report_free(&rr);
}

/* AWQ's and PRAQ's scale searches through stacked products (every grid point of a group,
 * q/k/v included, in a few products) choose the scales of the per-point forwards
 * (gq_awq_stacked_grid = false, the reference), with the same losses up to the rounding of
 * differently shaped BLAS products, so the quantized models are equal; and the stacked search
 * gives the same bits at 1 and 2 threads. */
static void test_awq_stacked_grid_equals_per_point(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    static const char *const duo[] = {"duo_scaling=true", "clip=false", NULL};
    static const struct { const char *method; const char *const *sets; int bits; } cases[] = {
        {"awq", NULL, 4}, {"awq", duo, 3}, {"praq", NULL, 3}};
    static const char *const alpha[] = {"awq_alpha", NULL};
    static const char *const losses[] = {"awq_loss", "awq_loss_alpha0", NULL};
    static const char *const all[] = {"awq_alpha", "awq_loss", "awq_loss_alpha0", NULL};
    const int saved = gq_threads_get();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gq_model stacked[2];
        gq_quant_report rs[2];
        for (int threads = 1; threads <= 2; threads++) {
            gq_threads_set(threads);
            gq_model a;
            gq_quant_report ra;
            gq_awq_stacked_grid = false;
            run(f, cases[i].method, cases[i].sets, cases[i].bits, 16,
                GQ_PROPAGATE_METHOD_DEFAULT, &a, &ra);
            gq_awq_stacked_grid = true;
            run(f, cases[i].method, cases[i].sets, cases[i].bits, 16,
                GQ_PROPAGATE_METHOD_DEFAULT, &stacked[threads - 1], &rs[threads - 1]);
            test_assert_linears_equal(&a, &stacked[threads - 1]);
            assert_true(test_assert_search_close(&ra, &rs[threads - 1], alpha, 0.0,
                                                 cases[i].method) > 0);
            test_assert_search_close(&ra, &rs[threads - 1], losses, 1e-6, cases[i].method);
            gq_model_free(&a);
            gq_quant_report_free(&ra);
        }
        test_assert_linears_equal(&stacked[0], &stacked[1]);
        test_assert_search_close(&rs[0], &rs[1], all, 0.0, "stacked, 1 vs 2 threads");
        for (int k = 0; k < 2; k++)
            gq_model_free(&stacked[k]), gq_quant_report_free(&rs[k]);
    }
    gq_threads_set(saved);
}

/* Folding scales into the norms and linears leaves the FP function unchanged. */
static void test_awq_fold_preserves_logits(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    const gq_config *c = &f->fp.cfg;
    gq_model m;
    gq_error err;
    assert_int_equal(gq_model_clone(&f->fp, &m, &err), 0);
    gq_rng r;
    gq_rng_seed(&r, 11);
    float *s = malloc((size_t)c->hidden_dim * sizeof *s);
    for (int l = 0; l < c->n_layers; l++) {
        gq_block_ctx ctx;
        memset(&ctx, 0, sizeof ctx);
        ctx.cfg = c;
        ctx.layer = l;
        ctx.w = m.layers[l]; /* fold straight into the clone */
        for (int g = 0; g < GQ_AWQ_N_GROUPS; g++) {
            if (g == GQ_AWQ_VO && gq_kv_dim(c) != c->dim)
                continue;
            int n = g == GQ_AWQ_DOWN ? c->hidden_dim : c->dim;
            for (int j = 0; j < n; j++)
                s[j] = (float)exp2(2.0 * gq_rng_uniform(&r) - 1.0); /* 0.5 .. 2 */
            gq_awq_fold(&ctx, (gq_awq_group)g, s);
        }
    }
    const int T = 32;
    int *tokens = f->calib;
    float *l0 = malloc((size_t)T * c->vocab_size * sizeof *l0);
    float *l1 = malloc((size_t)T * c->vocab_size * sizeof *l1);
    gq_forward_ws *ws = gq_forward_ws_new(c, T, &err);
    assert_int_equal(gq_forward_prefill(&f->fp, tokens, 1, T, ws, l0, &err), 0);
    assert_int_equal(gq_forward_prefill(&m, tokens, 1, T, ws, l1, &err), 0);
    double maxd = 0.0;
    for (int i = 0; i < T * c->vocab_size; i++)
        maxd = fmax(maxd, fabs((double)l0[i] - l1[i]));
    assert_true(maxd < 1e-5 * 10); /* logits are O(10): 1e-5 relative */
    /* the weights did change */
    assert_true(memcmp(m.layers[0].w[GQ_LIN_Q], f->fp.layers[0].w[GQ_LIN_Q],
                       (size_t)c->dim * c->dim * 4) != 0);
    gq_forward_ws_free(ws);
    free(l0), free(l1), free(s);
    gq_model_free(&m);
}

/* GPTQ's reconstruction error is below RTN's for every linear (same inputs: FP propagation). */
static void test_gptq_beats_rtn_per_layer(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    gq_model g, r;
    gq_quant_report rg, rr;
    run(f, "gptq", NULL, 3, 32, GQ_PROPAGATE_FP, &g, &rg);
    run(f, "rtn", NULL, 3, 32, GQ_PROPAGATE_FP, &r, &rr);
    assert_int_equal(rg.n_tensors, rr.n_tensors);
    int compared = 0;
    for (int i = 0; i < rg.n_tensors; i++) {
        if (!rg.tensors[i].quantized)
            continue;
        assert_string_equal(rg.tensors[i].name, rr.tensors[i].name);
        if (!(rg.tensors[i].recon_err < rr.tensors[i].recon_err))
            fprintf(stderr, "%s: gptq %g rtn %g\n", rg.tensors[i].name, rg.tensors[i].recon_err,
                    rr.tensors[i].recon_err);
        assert_true(rg.tensors[i].recon_err < rr.tensors[i].recon_err);
        assert_non_null(json_object_get(rg.tensors[i].extra, "gptq_loss"));
        compared++;
    }
    assert_int_equal(compared, f->fp.cfg.n_layers * GQ_N_LINEAR);
    gq_model_free(&g), gq_model_free(&r);
    gq_quant_report_free(&rg), gq_quant_report_free(&rr);
}

/* Every method's options run end to end; rules keep tensors FP; stage times are measured. */
static void test_methods_and_rules(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    static const char *const gptq_sets[] = {"act_order=true", "true_sequential=true",
                                            "static_groups=true", NULL};
    static const char *const awq_sets[] = {"duo_scaling=true", NULL};
    static const char *const rtn_sets[] = {"imatrix=true", NULL};
    struct {
        const char *name;
        const char *const *sets;
    } cases[] = {{"gptq", gptq_sets}, {"awq", awq_sets}, {"praq", NULL}, {"rtn", rtn_sets}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gq_model m;
        gq_quant_report rep;
        run(f, cases[i].name, cases[i].sets, 4, 16, GQ_PROPAGATE_METHOD_DEFAULT, &m, &rep);
        int q = 0;
        for (int t = 0; t < rep.n_tensors; t++) {
            q += rep.tensors[t].quantized;
            if (rep.tensors[t].quantized)
                assert_true(rep.tensors[t].recon_err > 0 && rep.tensors[t].recon_err < 0.5);
        }
        assert_int_equal(q, f->fp.cfg.n_layers * GQ_N_LINEAR);
        assert_true(rep.t_stats > 0.0);
        if (strcmp(cases[i].name, "rtn") != 0)
            assert_true(rep.t_quant > 0.0);
        if (strcmp(cases[i].name, "awq") == 0 || strcmp(cases[i].name, "praq") == 0)
            assert_true(rep.t_search > 0.0);
        gq_model_free(&m);
        gq_quant_report_free(&rep);
    }
    /* a rule keeps the attention FP: those weights are untouched */
    gq_quant_plan plan;
    memset(&plan, 0, sizeof plan);
    gq_error err;
    assert_int_equal(gq_method_cfg_init(&plan.method, "rtn", NULL, NULL, &err), 0);
    int_quantizer(&plan.quantizer, 4, 32);
    gq_tensor_rule rule;
    memset(&rule, 0, sizeof rule);
    rule.pattern = (char *)"layers.*.attn.*";
    rule.keep_fp = true;
    plan.rules = &rule;
    plan.n_rules = 1;
    gq_model m;
    gq_quant_report rep;
    assert_int_equal(gq_quantize_model(&f->fp, &plan, &m, &rep, &err), 0);
    const gq_config *c = &f->fp.cfg;
    assert_memory_equal(m.layers[1].w[GQ_LIN_Q], f->fp.layers[1].w[GQ_LIN_Q],
                        (size_t)c->dim * c->dim * 4);
    assert_true(memcmp(m.layers[1].w[GQ_LIN_GATE], f->fp.layers[1].w[GQ_LIN_GATE],
                       (size_t)c->dim * c->hidden_dim * 4) != 0);
    assert_true(rep.linear_weights == (size_t)c->n_layers * 3 * c->dim * c->hidden_dim);
    gq_model_free(&m);
    gq_quant_report_free(&rep);
    /* a method that needs calibration fails clearly without it */
    gq_method_cfg_free(&plan.method);
    assert_int_equal(gq_method_cfg_init(&plan.method, "gptq", NULL, NULL, &err), 0);
    assert_int_equal(gq_quantize_model(&f->fp, &plan, &m, &rep, &err), -1);
    assert_non_null(strstr(err.msg, "calibration"));
    gq_method_cfg_free(&plan.method);
    gq_quantizer_free(&plan.quantizer);
    /* unknown method and parameter names are rejected with their path */
    assert_int_equal(gq_method_cfg_init(&plan.method, "nope", NULL, "$.m", &err), -1);
    assert_non_null(strstr(err.msg, "$.m.name"));
}

/* Block buffers the caller owns, shared by runs of different methods, change no result: GPTQ
 * after AWQ (which rescales its working copy and adds scales to the norms) on one
 * gq_block_buffers equals GPTQ on buffers of its own. */
static void test_block_buffers_shared(void **state)
{
    TEST_STORIES_OR_SKIP(f);
    gq_block_buffers *bufs = gq_block_buffers_new();
    assert_non_null(bufs);
    char js[160];
    int_format(js, sizeof js, 4, 16);
    static const char *const methods[] = {"awq", "gptq"};
    gq_model m;
    gq_quant_report rep;
    for (int i = 0; i < 2; i++) {
        if (i)
            gq_model_free(&m), gq_quant_report_free(&rep);
        gq_quant_plan plan;
        test_plan_init(methods[i], NULL, js, &plan);
        plan.calib_tokens = f->calib;
        plan.n_calib = f->n_calib;
        plan.calib_ctx = f->calib_ctx;
        plan.buffers = bufs;
        gq_error err;
        assert_int_equal(gq_quantize_model(&f->fp, &plan, &m, &rep, &err), 0);
        gq_quantizer_free(&plan.quantizer);
        gq_method_cfg_free(&plan.method);
    }
    gq_model ref;
    gq_quant_report rr;
    run(f, "gptq", NULL, 4, 16, GQ_PROPAGATE_METHOD_DEFAULT, &ref, &rr);
    test_assert_linears_equal(&ref, &m);
    for (int l = 0; l < m.cfg.n_layers; l++)
        assert_memory_equal(ref.layers[l].rms_ffn, m.layers[l].rms_ffn,
                            (size_t)m.cfg.dim * sizeof(float));
    gq_model_free(&m), gq_model_free(&ref);
    gq_quant_report_free(&rep), gq_quant_report_free(&rr);
    gq_block_buffers_free(bufs);
}

/* ---- the quantize command -------------------------------------------------------------- */

static int quantize_cli(const char *model, const char *tok, const char *extra, char *out,
                        size_t out_n, char *errb, size_t err_n)
{
    char args[20480];
    snprintf(args, sizeof args, "quantize --model '%s' --tokenizer '%s' --n-calib 2 "
             "--calib-ctx 32 --eval-windows 4 --eval-ctx 64 --threads 1 %s", model, tok, extra);
    return test_run_cli(args, out, out_n, errb, err_n);
}

static void expect_quantize_error(const char *model, const char *tok, const char *extra,
                                  const char *needle)
{
    char out[4096], errb[4096];
    int st = quantize_cli(model, tok, extra, out, sizeof out, errb, sizeof errb);
    if (st != 2 || !strstr(errb, needle))
        fail_msg("quantize %s: exit %d, stderr '%s' (expected 2 and '%s')", extra, st, errb,
                 needle);
    if (strstr(errb, "quantize ") && strstr(errb, "ETA"))
        fail_msg("quantize %s: refused only after the work: '%s'", extra, errb);
}

/* `quantize` writes the same checkpoint bytes and report numbers with 1, 2 and 3 threads (GPTQ
 * and AWQ: calibration forward passes, Hessians, searches), and names the BLAS kernel. */
static void test_quantize_cli_threads(void **state)
{
    (void)state;
    char model[4096], tok[4096], text[4096];
    test_stories_files_or_skip(model, tok, text, sizeof model);
    char *dir = test_tmpdir("quantize_threads");
    static const char *const methods[] = {"gptq", "awq"};
    for (int m = 0; m < 2; m++) {
        char *ref = NULL, *ref_report = NULL;
        size_t ref_len = 0;
        for (int t = 1; t <= 3; t++) {
            char q[4200], args[16384], out[65536], errb[8192];
            snprintf(q, sizeof q, "%s/%s-%d.bin", dir, methods[m], t);
            snprintf(args, sizeof args, "quantize --model '%s' --tokenizer '%s' --n-calib 8 "
                     "--calib-ctx 64 --eval-windows 4 --eval-ctx 64 --threads %d --method %s "
                     "--format int --set bits=3 "
                     "--set group_size=32 --out '%s' --json", model, tok, t, methods[m], q);
            if (test_run_cli(args, out, sizeof out, errb, sizeof errb) != 0)
                fail_msg("%s: %s", args, errb);
            json_t *j = json_loads(out, 0, NULL);
            assert_non_null(j);
            assert_string_equal(json_string_value(json_object_get(j, "blas_kernel")),
                                gq_blas_kernel());
            const char *timing[] = {"threads", "t_stats", "t_search", "t_quant", "seconds", "out"};
            for (size_t k = 0; k < sizeof timing / sizeof timing[0]; k++)
                json_object_del(j, timing[k]);
            char *report = json_dumps(j, JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
            json_decref(j);
            size_t len;
            char *bytes = test_read_file(q, &len);
            unlink(q);
            if (t == 1) {
                ref = bytes, ref_len = len, ref_report = report;
                continue;
            }
            assert_int_equal(len, ref_len);
            if (memcmp(bytes, ref, len) != 0)
                fail_msg("%s: the checkpoint of %d threads differs from 1 thread's", methods[m], t);
            assert_string_equal(report, ref_report);
            free(bytes);
            free(report);
        }
        free(ref);
        free(ref_report);
    }
    rmdir(dir);
    free(dir);
}

/* bench quantize on the tiny preset: every stage of the method has its row (the stage timer
 * reaches the pipeline and the method: GPTQ, AWQ, PRAQ, AffineQuant), and a bad preset or
 * method is a usage error. */
static void test_bench_quantize_cli(void **state)
{
    (void)state;
    static char out[65536], errb[8192];
    const char *base = "bench quantize --preset tiny --ctx 32 --windows 2 --reps 1 "
                       "--stream-mib 16";
    assert_int_equal(test_run_clif(out, sizeof out, errb, sizeof errb, "%s --method gptq", base),
                     0);
    test_contains_all(out, "\nforward ", "\nhessian ", "\nfactor ", "\ncolumns ",
                      "\nrecon error ", "\ntotal ", "limits (best sample): sgemm ",
                      "GB/s (3 x 16 MiB arrays; last-level cache ", "projection: 2 blocks", NULL);
    assert_int_equal(test_run_clif(out, sizeof out, errb, sizeof errb, "%s --method awq", base), 0);
    test_contains_all(out, "\nstats ", "\nsearch ", "\nclip ", "\nround ", NULL);
    /* PRAQ's unit importance is its own stage (products, once per block) */
    assert_int_equal(test_run_clif(out, sizeof out, errb, sizeof errb, "%s --method praq", base),
                     0);
    test_contains_all(out, "\nsalience     sgemm      1 ", "\nsearch ", "\nclip ", NULL);
    assert_int_equal(test_run_clif(out, sizeof out, errb, sizeof errb, "%s --method affinequant "
                                   "--method-set epochs=1", base), 0);
    test_contains_all(out, "\naq forward ", "\naq backward ", "\naq invert ", "\nround ",
                      "\ntotal ", NULL);
    assert_int_equal(test_run_clif(out, sizeof out, errb, sizeof errb, "%s --method rtn "
                                   "--preset nope", base), 2);
    assert_non_null(strstr(errb, "unknown preset 'nope'"));
    assert_int_equal(test_run_clif(out, sizeof out, errb, sizeof errb, "%s --method nope", base),
                     2);
    assert_non_null(strstr(errb, "unknown method \"nope\""));
}

static void test_quantize_cli(void **state)
{
    (void)state;
    char model[4096], tok[4096], extra[8192];
    /* the default calibration text must be there (extra holds its path until reused) */
    test_stories_files_or_skip(model, tok, extra, sizeof model);
    char *dir = test_tmpdir("quantize_cli");
    char q[4200], out[65536], errb[8192];
    snprintf(q, sizeof q, "%s/q.bin", dir);
    snprintf(extra, sizeof extra, "--method rtn --format int --set bits=3 --set group_size=32 "
             "--out '%s' --json", q);
    int st = quantize_cli(model, tok, extra, out, sizeof out, errb, sizeof errb);
    if (st != 0)
        fail_msg("quantize failed: %s", errb);
    /* the report states its protocol; calibration is held out from the 4 x 64 evaluated
     * tokens, and says where it drew */
    test_contains_all(out, "\"calib_sha256\":\"", "\"n_calib\":2", "\"calib_ctx\":32",
                      "\"calib_first_token\":256", NULL);
    const char *offs = strstr(out, "\"calib_offsets\":[");
    assert_non_null(offs);
    assert_true(strtol(offs + strlen("\"calib_offsets\":["), NULL, 10) >= 256);
    assert_non_null(strstr(out, "\"propagate\":\"fp\""));
    assert_non_null(strstr(out, "\"tokenizer\":"));
    gq_model back;
    gq_error err;
    assert_true(gq_native_is(q)); /* the default output is the native file */
    assert_int_equal(gq_model_open_any(q, &back, NULL, &err), 0);
    gq_model_free(&back);

    /* the default calibration text is the evaluation text: refused without a hold-out */
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "quantize --model '%s' --tokenizer '%s' --method rtn "
             "--format int --out '%s'", model, tok, q);
    assert_int_equal(test_run_cli(cmd, out, sizeof out, errb, sizeof errb), 2);
    assert_non_null(strstr(errb, "--calib-data: the default calibration text is the evaluation"));

    /* invalid input exits 2 before any work, naming the culprit */
    expect_quantize_error(model, tok, "--method rtn --format int --out /nonexistent/q.bin",
                          "--out /nonexistent/q.bin");
    snprintf(extra, sizeof extra, "--method rtn --format int --out '%s'", dir);
    expect_quantize_error(model, tok, extra, "is a directory");
    snprintf(extra, sizeof extra,
             "--method affinequant --format int --out-format llama2c --out '%s/a.bin'", dir);
    expect_quantize_error(model, tok, extra, "explicit input transforms");
    snprintf(extra, sizeof extra, "--method rtn --format int --rule 'layers.*={bad' --out '%s'", q);
    expect_quantize_error(model, tok, extra, "--rule 'layers.*={bad': format is not JSON");
    snprintf(extra, sizeof extra, "--method nope --format int --out '%s'", q);
    expect_quantize_error(model, tok, extra, "--method.name: unknown method");
    snprintf(extra, sizeof extra, "--method rtn --format int --set bits --out '%s'", q);
    expect_quantize_error(model, tok, extra, "--set: 'bits': expected key=value");
    snprintf(extra, sizeof extra, "--method rtn --format int --calib-data '%s' --out '%s'", dir,
             q);
    expect_quantize_error(model, tok, extra, "not a regular file");
    unlink(q);
    rmdir(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cholesky_upper),
        cmocka_unit_test(test_inverse_cholesky),
        cmocka_unit_test(test_gptq_shared_factor),
        cmocka_unit_test(test_gptq_matches_row_reference),
        cmocka_unit_test(test_gptq_identity_equals_rtn),
        cmocka_unit_test(test_awq_alpha0_equals_rtn),
        cmocka_unit_test(test_awq_stacked_grid_equals_per_point),
        cmocka_unit_test(test_awq_fold_preserves_logits),
        cmocka_unit_test(test_gptq_beats_rtn_per_layer),
        cmocka_unit_test(test_methods_and_rules),
        cmocka_unit_test(test_block_buffers_shared),
        cmocka_unit_test(test_bench_quantize_cli),
        cmocka_unit_test(test_quantize_cli),
        cmocka_unit_test(test_quantize_cli_threads),
    };
    return cmocka_run_group_tests(tests, setup, test_stories_teardown);
}
