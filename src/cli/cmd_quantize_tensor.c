/* gq-bench quantize-tensor: one raw float32 matrix through one format.
 *
 * Reads X (rows, cols) row-major little-endian float32, quantizes it, optionally writes the
 * format's storage layout (--out) and the reconstruction (--dequant), and prints the error:
 * RMSE, max |error|, SQNR = 10 log10(sum x^2 / sum (x^ - x)^2) in dB, bits per weight
 * (8 * storage bytes / (rows * cols)), and whether dequantize(storage) reproduces the
 * reconstruction bit for bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cmd_decl.h"
#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "core/gq_alloc.h"
#include "core/gq_fileio.h"
#include "formats/gq_format.h"
#include "formats/quant_error.h"

#define CMD "quantize-tensor"

/* Reads exactly n finite float32 values from path; `nonneg` also rejects negatives. */
static float *read_f32(const char *opt, const char *path, size_t n, const char *shape, bool nonneg,
                       gq_error *err)
{
    char *data;
    size_t len;
    if (gq_read_file(path, &data, &len, err)) {
        gq_fail_prefix(err, "%s", opt);
        return NULL;
    }
    if (len != n * sizeof(float)) {
        gq_fail(err, "%s %s: %zu bytes, expected %zu (%s float32 values)", opt, path, len,
                n * sizeof(float), shape);
        free(data);
        return NULL;
    }
    float *v = malloc(n * sizeof *v + 1);
    if (!v) {
        gq_fail(err, "%s %s: out of memory", opt, path);
        free(data);
        return NULL;
    }
    memcpy(v, data, n * sizeof *v);
    free(data);
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i]) || (nonneg && v[i] < 0.0f)) {
            gq_fail(err, "%s %s: value %zu is %g (expected a finite%s number)", opt, path, i,
                    (double)v[i], nonneg ? ", non-negative" : "");
            free(v);
            return NULL;
        }
    }
    return v;
}

typedef struct opts {
    const char *format, *out, *dequant;
    char in[CLI_PATH_MAX], imatrix[CLI_PATH_MAX];
    long rows, cols;
    bool json;
    json_t *params;
} opts;

/* Returns 0, 1 after --help, or GQ_EXIT_USAGE after printing the error. */
static int parse_args(int argc, char **argv, opts *o)
{
    const cli_opt table[] = {
        CLI_OPT("format", "NAME", CLI_STR, &o->format, "a registered format (gq-bench list formats)",
                .required = true),
        CLI_OPT("set", "key=value", CLI_CALL, &o->params,
                "a format parameter, e.g. --set bits=3",
                .parse = cli_set_param, .repeat = true),
        CLI_OPT("rows", "R", CLI_INT, &o->rows, "rows of X (row-major)", .required = true,
                .min = 1, .max = 0x1p30),
        CLI_OPT("cols", "C", CLI_INT, &o->cols, "columns of X; groups run along a row",
                .required = true, .min = 1, .max = 0x1p30),
        CLI_OPT("in", "X.f32", CLI_IN, o->in, "rows*cols little-endian float32 values, all finite",
                .required = true),
        CLI_OPT("imatrix", "W.f32", CLI_IN, o->imatrix,
                "cols float32 importance values (>= 0), for formats that use it"),
        CLI_OPT("out", "Q.bin", CLI_OUT, &o->out,
                "the storage layout (llama.cpp formats: ggml's block bytes)"),
        CLI_OPT("dequant", "Y.f32", CLI_OUT, &o->dequant, "the reconstruction, rows*cols float32"),
        CLI_OPT("json", NULL, CLI_FLAG, &o->json, "print the result as one JSON object"),
    };
    const cli_spec spec = {.cmd = CMD, CLI_OPTS(table)};
    int rc = cli_parse(&spec, argc, argv);
    if (rc)
        return rc;
    if ((double)o->rows * (double)o->cols > 4e9)
        return cli_usage_error(CMD, "%ld x %ld is too large", o->rows, o->cols);
    return 0;
}

static void print_result(const opts *o, const char *label, size_t bytes, double bpw,
                         gq_quant_error e, bool roundtrip)
{
    if (o->json) {
        json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:I}", "format", o->format, "label", label,
                              "rows", (json_int_t)o->rows, "cols", (json_int_t)o->cols, "bytes",
                              (json_int_t)bytes);
        /* JSON has no NaN or Inf: a non-finite statistic is null (a lossless result has a null
         * SQNR; a reconstruction that overflowed has null rmse and max_abs_err and a count of
         * its non-finite values) */
        const struct { const char *key; double v; } stats[] = {
            {"bpw", bpw}, {"rmse", e.rmse}, {"max_abs_err", e.max_abs}, {"sqnr_db", e.sqnr_db}};
        for (size_t i = 0; i < sizeof stats / sizeof stats[0]; i++)
            json_object_set_new(j, stats[i].key,
                                isfinite(stats[i].v) ? json_real(stats[i].v) : json_null());
        json_object_set_new(j, "nonfinite_values", json_integer((json_int_t)e.nonfinite));
        json_object_set_new(j, "roundtrip_exact", json_boolean(roundtrip));
        char *s = json_dumps(j, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
        printf("%s\n", s);
        free(s);
        json_decref(j);
        return;
    }
    printf("format          %s\n", label);
    printf("shape           %ld x %ld\n", o->rows, o->cols);
    printf("storage bytes   %zu\n", bytes);
    printf("bits/weight     %.5f\n", bpw);
    /* NaN without a sign ("-nan" is no more informative) */
    printf("rmse            %.6g\n", isnan(e.rmse) ? NAN : e.rmse);
    printf("max abs error   %.6g\n", isnan(e.max_abs) ? NAN : e.max_abs);
    printf("sqnr dB         %.3f\n", isnan(e.sqnr_db) ? NAN : e.sqnr_db);
    if (e.nonfinite)
        printf("non-finite      %zu reconstructed values (the format's range is exceeded)\n",
               e.nonfinite);
    printf("dequant(codes)  %s\n", roundtrip ? "matches the reconstruction bit for bit"
                                             : "DIFFERS from the reconstruction");
}

static int run(opts *o)
{
    gq_error err = {{0}};
    gq_quantizer q;
    const char *where = gq_format_find(o->format) ? "--set" : "--format";
    if (gq_quantizer_init(&q, o->format, o->params, where, &err))
        return cli_report(CMD, &err, GQ_EXIT_USAGE);
    /* Both outputs were checked writable by the parser, so that a bad second path cannot
     * leave the first one written alone. */
    int rows = (int)o->rows, cols = (int)o->cols;
    size_t n = (size_t)rows * (size_t)cols;
    char shape[64];
    snprintf(shape, sizeof shape, "%d x %d", rows, cols);
    int status = GQ_EXIT_USAGE;
    float *x = read_f32("--in", o->in, n, shape, false, &err), *imp = NULL, *y = NULL, *y2 = NULL;
    uint8_t *codes = NULL;
    if (!x)
        goto done;
    snprintf(shape, sizeof shape, "%d", cols);
    if (o->imatrix[0] && !(imp = read_f32("--imatrix", o->imatrix, (size_t)cols, shape, true, &err)))
        goto done;
    status = GQ_EXIT_FAIL;
    size_t bytes = gq_quantizer_bytes(&q, rows, cols);
    codes = gq_alloc_zero(bytes ? bytes : 1, "codes", &err);
    y = gq_alloc_zero(n * sizeof *y, "reconstruction", &err);
    y2 = gq_alloc_zero(n * sizeof *y2, "dequantized codes", &err);
    if (!codes || !y || !y2)
        goto done;
    if (gq_quantizer_run(&q, x, rows, cols, imp, codes, y, &err) ||
        q.fmt->dequantize(q.params, codes, rows, cols, y2, &err))
        goto done;
    if (o->out && gq_write_file_atomic(o->out, codes, bytes, &err))
        goto done;
    if (o->dequant && gq_write_file_atomic(o->dequant, y, n * sizeof *y, &err))
        goto done;
    char label[128];
    gq_quantizer_label(&q, label, sizeof label);
    print_result(o, label, bytes, gq_quantizer_bpw(&q, rows, cols),
                 gq_quant_error_compute(x, y, n), memcmp(y, y2, n * sizeof *y) == 0);
    /* A storage layout that does not decode to the reconstruction is a format bug. */
    status = memcmp(y, y2, n * sizeof *y) == 0 ? GQ_EXIT_OK : GQ_EXIT_FAIL;
    if (status != GQ_EXIT_OK)
        gq_fail(&err, "%s: dequantize(storage) differs from the reconstruction", label);
done:
    if (status != GQ_EXIT_OK)
        cli_report(CMD, &err, status);
    free(x);
    free(imp);
    free(codes);
    free(y);
    free(y2);
    gq_quantizer_free(&q);
    return status;
}

int cmd_quantize_tensor(int argc, char **argv)
{
    opts o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc == 0)
        rc = run(&o);
    else if (rc == 1)
        rc = GQ_EXIT_OK;
    json_decref(o.params);
    return rc;
}
