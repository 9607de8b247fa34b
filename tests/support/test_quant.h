#ifndef GQ_TEST_QUANT_H
#define GQ_TEST_QUANT_H
/* Quantizing the stories260K fixture through the methods pipeline, and comparing the result. */
#include "test_stories.h"

#include "methods/gq_pipeline.h"

/* Quantizes f->fp with method `method` configured by the "key=value" strings of `sets`
 * (NULL-terminated, or NULL for the method's defaults), block linears in the format given as
 * JSON text, an optional tensor rule, the fixture's calibration windows and propagation `prop`.
 * A bad setting, method name or format JSON fails the test; returns the pipeline's 0 / -1
 * (with err) so callers can also check its refusals. */
int test_quantize(const test_stories *f, const char *method, const char *const *sets,
                  const char *format_json, const gq_tensor_rule *rule, gq_propagate prop,
                  gq_model *out, gq_quant_report *rep, gq_error *err);

/* test_quantize with the tensors matching the glob `keep_glob` kept FP (one keep_fp rule) and
 * the method's default propagation; a refusal fails the test. */
void test_quantize_keep_fp(const test_stories *f, const char *method, const char *const *sets,
                           const char *format_json, const char *keep_glob, gq_model *out,
                           gq_quant_report *rep);

/* The same with the activation quantizers the model will be evaluated with (plan.act). */
int test_quantize_act(const test_stories *f, const char *method, const char *const *sets,
                      const char *format_json, const gq_tensor_rule *rule, gq_propagate prop,
                      gq_act_hook *act, gq_model *out, gq_quant_report *rep, gq_error *err);

/* A plan with method `method` (parameters `sets`, "key=value", NULL-terminated or NULL) and
 * default format `format_json`; no rules, calibration or propagation set. Fails the test on a
 * bad setting. The caller frees plan->quantizer and plan->method. */
void test_plan_init(const char *method, const char *const *sets, const char *format_json,
                    gq_quant_plan *plan);

/* The logits (T, vocab) of m on one sequence of T tokens (malloc'd; the test frees them). */
float *test_logits(const gq_model *m, const int *tok, int T);

/* Asserts that every packed linear of pm dequantizes to exactly m's block linear. */
struct gq_packed_model;
void test_assert_packed_equals(const struct gq_packed_model *pm, const gq_model *m);

/* Asserts that the block linears of two models of one shape are equal bit for bit. */
void test_assert_linears_equal(const gq_model *a, const gq_model *b);

/* The per-tensor search values `keys` (NULL-terminated: "awq_alpha", "awq_loss", ...) of two
 * reports: present in the same tensors and equal, bit for bit when rel_tol is 0, else within
 * rel_tol of the larger magnitude (one loss through differently shaped BLAS products: the
 * kernel the BLAS picks may round each shape's elements differently). Fails naming `what`;
 * returns how many values were compared. */
int test_assert_search_close(const gq_quant_report *a, const gq_quant_report *b,
                             const char *const *keys, double rel_tol, const char *what);

#endif
