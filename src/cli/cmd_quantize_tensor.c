/* gq-bench quantize-tensor: one raw float32 matrix through one format.
 *
 * Reads X (rows, cols) row-major little-endian float32, quantizes it, optionally writes the
 * format's storage layout (--out) and the reconstruction (--dequant), and prints the error:
 * RMSE, max |error|, SQNR = 10 log10(sum x^2 / sum (x^ - x)^2) in dB, bits per weight
 * (8 * storage bytes / (rows * cols)), and whether dequantize(storage) reproduces the
 * reconstruction bit for bit. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "core/gq_fileio.h"
#include "formats/gq_format.h"
#include "formats/quant_error.h"

#define CMD "quantize-tensor"

static void usage(void)
{
    printf("usage: gq-bench quantize-tensor --format NAME [--set key=value ...] --rows R --cols C\n"
           "                                --in X.f32 [--imatrix W.f32] [--out Q.bin]\n"
           "                                [--dequant Y.f32] [--json]\n\n"
           "  --format NAME      a registered format (gq-bench list formats)\n"
           "  --set key=value    a format parameter (repeatable), e.g. --set bits=3\n"
           "  --rows, --cols     shape of X, row-major; groups run along a row\n"
           "  --in X.f32         rows*cols little-endian float32 values, all finite\n"
           "  --imatrix W.f32    cols float32 importance values (>= 0), for formats that use it\n"
           "  --out Q.bin        the storage layout (llama.cpp formats: ggml's block bytes)\n"
           "  --dequant Y.f32    the reconstruction, rows*cols float32\n"
           "  --json             print the result as one JSON object\n");
}

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
    const char *format, *in, *imatrix, *out, *dequant;
    long rows, cols;
    bool json;
    json_t *params;
} opts;

static int parse_args(int argc, char **argv, opts *o)
{
    static const struct option lopts[] = {
        {"format", required_argument, NULL, 'f'}, {"set", required_argument, NULL, 's'},
        {"rows", required_argument, NULL, 'r'},   {"cols", required_argument, NULL, 'c'},
        {"in", required_argument, NULL, 'i'},     {"imatrix", required_argument, NULL, 'm'},
        {"out", required_argument, NULL, 'o'},    {"dequant", required_argument, NULL, 'd'},
        {"json", no_argument, NULL, 'j'},         {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", lopts, NULL)) != -1) {
        gq_error err = {{0}};
        switch (c) {
        case 'f': o->format = optarg; break;
        case 'i': o->in = optarg; break;
        case 'm': o->imatrix = optarg; break;
        case 'o': o->out = optarg; break;
        case 'd': o->dequant = optarg; break;
        case 'j': o->json = true; break;
        case 'h': usage(); return 1;
        case 'r':
            if (cli_int(CMD, "--rows", optarg, 1, 1L << 30, &o->rows))
                return GQ_EXIT_USAGE;
            break;
        case 'c':
            if (cli_int(CMD, "--cols", optarg, 1, 1L << 30, &o->cols))
                return GQ_EXIT_USAGE;
            break;
        case 's':
            if (gq_params_apply_set(&o->params, optarg, &err))
                return cli_usage_error(CMD, "--set: %s", err.msg);
            break;
        case ':':
            return cli_usage_error(CMD, "%s needs a value", argv[optind - 1]);
        default:
            return cli_usage_error(CMD, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (!o->format)
        return cli_usage_error(CMD, "--format is required");
    if (!o->in)
        return cli_usage_error(CMD, "--in is required");
    if (!o->rows || !o->cols)
        return cli_usage_error(CMD, "--rows and --cols are required");
    if ((double)o->rows * (double)o->cols > 4e9)
        return cli_usage_error(CMD, "%ld x %ld is too large", o->rows, o->cols);
    return 0;
}

static void print_result(const opts *o, const char *label, size_t bytes, double bpw,
                         gq_quant_error e, bool roundtrip)
{
    if (o->json) {
        json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:b}", "format",
                              o->format, "label", label, "rows", (json_int_t)o->rows, "cols",
                              (json_int_t)o->cols, "bytes", (json_int_t)bytes, "bpw", bpw, "rmse",
                              e.rmse, "max_abs_err", e.max_abs, "roundtrip_exact", roundtrip);
        /* JSON has no Inf: a lossless result has a null SQNR. */
        json_object_set_new(j, "sqnr_db", isfinite(e.sqnr_db) ? json_real(e.sqnr_db) : json_null());
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
    printf("rmse            %.6g\n", e.rmse);
    printf("max abs error   %.6g\n", e.max_abs);
    printf("sqnr dB         %.3f\n", e.sqnr_db);
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
    /* Both outputs are checked first so that a bad second path cannot leave the first one
     * written alone. */
    if ((o->out && gq_check_writable("--out", o->out, &err)) ||
        (o->dequant && gq_check_writable("--dequant", o->dequant, &err))) {
        gq_quantizer_free(&q);
        return cli_report(CMD, &err, GQ_EXIT_USAGE);
    }
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
    if (o->imatrix && !(imp = read_f32("--imatrix", o->imatrix, (size_t)cols, shape, true, &err)))
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
