#include "test_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_params.h"
#include "model/gq_forward.h"
#include "packed/gq_packed.h"

float *test_logits(const gq_model *m, const int *tok, int T)
{
    gq_error err;
    float *l = malloc((size_t)T * m->cfg.vocab_size * sizeof *l);
    gq_forward_ws *ws = gq_forward_ws_new(&m->cfg, T, &err);
    assert_non_null(l);
    assert_non_null(ws);
    assert_int_equal(gq_forward_prefill(m, tok, 1, T, ws, l, &err), 0);
    gq_forward_ws_free(ws);
    return l;
}

void test_plan_init(const char *method, const char *const *sets, const char *format_json,
                    gq_quant_plan *plan)
{
    gq_error err = {{0}};
    json_t *params = NULL;
    for (int i = 0; sets && sets[i]; i++)
        assert_int_equal(gq_params_apply_set(&params, sets[i], &err), 0);
    memset(plan, 0, sizeof *plan);
    if (gq_method_cfg_init(&plan->method, method, params, NULL, &err))
        fail_msg("%s: %s", method, err.msg);
    json_decref(params);
    json_t *fmt = json_loads(format_json, 0, NULL);
    assert_non_null(fmt);
    if (gq_quantizer_from_json(fmt, NULL, &plan->quantizer, &err))
        fail_msg("%s: %s", format_json, err.msg);
    json_decref(fmt);
}

int test_quantize(const test_stories *f, const char *method, const char *const *sets,
                  const char *format_json, const gq_tensor_rule *rule, gq_propagate prop,
                  gq_model *out, gq_quant_report *rep, gq_error *err)
{
    return test_quantize_act(f, method, sets, format_json, rule, prop, NULL, out, rep, err);
}

void test_quantize_keep_fp(const test_stories *f, const char *method, const char *const *sets,
                           const char *format_json, const char *keep_glob, gq_model *out,
                           gq_quant_report *rep)
{
    gq_tensor_rule keep;
    memset(&keep, 0, sizeof keep);
    keep.pattern = (char *)keep_glob;
    keep.keep_fp = true;
    gq_error err = {{0}};
    if (test_quantize(f, method, sets, format_json, &keep, GQ_PROPAGATE_METHOD_DEFAULT, out, rep,
                      &err))
        fail_msg("%s keeping %s FP: %s", method, keep_glob, err.msg);
}

int test_quantize_act(const test_stories *f, const char *method, const char *const *sets,
                      const char *format_json, const gq_tensor_rule *rule, gq_propagate prop,
                      gq_act_hook *act, gq_model *out, gq_quant_report *rep, gq_error *err)
{
    gq_quant_plan plan;
    test_plan_init(method, sets, format_json, &plan);
    plan.rules = rule;
    plan.n_rules = rule ? 1 : 0;
    plan.calib_tokens = f->calib;
    plan.n_calib = f->n_calib;
    plan.calib_ctx = f->calib_ctx;
    plan.propagate = prop;
    plan.act = act;
    int rc = gq_quantize_model(&f->fp, &plan, out, rep, err);
    gq_quantizer_free(&plan.quantizer);
    gq_method_cfg_free(&plan.method);
    return rc;
}

void test_assert_linears_equal(const gq_model *a, const gq_model *b)
{
    for (int l = 0; l < a->cfg.n_layers; l++)
        for (int k = 0; k < GQ_N_LINEAR; k++) {
            int rows, cols;
            gq_linear_shape(&a->cfg, (gq_linear_kind)k, &rows, &cols);
            assert_memory_equal(a->layers[l].w[k],
                                b->layers[l].w[k],
                                (size_t)rows * cols * sizeof(float));
        }
}

void test_assert_packed_equals(const gq_packed_model *pm, const gq_model *m)
{
    for (int i = 0; i < m->cfg.n_layers * GQ_N_LINEAR; i++) {
        int rows, cols;
        gq_linear_shape(&m->cfg, (gq_linear_kind)(i % GQ_N_LINEAR), &rows, &cols);
        float *w = malloc((size_t)rows * cols * sizeof *w);
        assert_non_null(w);
        gq_packed_linear_dequantize(pm->lin[i], w, false);
        if (memcmp(w, m->layers[i / GQ_N_LINEAR].w[i % GQ_N_LINEAR],
                   (size_t)rows * cols * sizeof *w) != 0)
            fail_msg("packed linear %d does not dequantize to the model's weights", i);
        free(w);
    }
}

int test_assert_search_close(const gq_quant_report *a, const gq_quant_report *b,
                             const char *const *keys, double rel_tol, const char *what)
{
    assert_int_equal(a->n_tensors, b->n_tensors);
    int compared = 0;
    for (int t = 0; t < a->n_tensors; t++)
        for (const char *const *k = keys; *k; k++) {
            json_t *x = json_object_get(a->tensors[t].extra, *k);
            json_t *y = json_object_get(b->tensors[t].extra, *k);
            assert_true((x == NULL) == (y == NULL));
            if (!x)
                continue;
            const double u = json_number_value(x), v = json_number_value(y);
            if (rel_tol == 0.0 ? u != v : !(fabs(u - v) <= rel_tol * fmax(fabs(u), fabs(v))))
                fail_msg("%s: tensor %d %s: %.17g vs %.17g", what, t, *k, u, v);
            compared++;
        }
    return compared;
}
