/* gq-bench tokenize: tokenize a text file (one BOS at the start, as the evaluation does),
 * report the count and speed, optionally write the ids as int32. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/gq_assets.h"
#include "core/gq_fileio.h"
#include "core/gq_sha256.h"
#include "core/gq_time.h"
#include "text/gq_tokenizer.h"

static const char *CMD = "tokenize";

static void help(void)
{
    printf("usage: gq-bench tokenize --tokenizer T --data D [--json] [--out ids.bin] [--head N]\n\n"
           "Tokenizes the whole file D with tokenizer T (llama2.c tokenizer.bin), with one BOS\n"
           "at the start (as the perplexity protocols do), and prints bytes, tokens, time,\n"
           "tokens/s and the first N ids (default 16).\n\n"
           "  --tokenizer T  llama2.c tokenizer.bin; assets: paths work\n"
           "  --data D       text file (UTF-8)\n"
           "  --head N       how many leading ids to print (default 16)\n"
           "  --out FILE     write all ids as little-endian int32 (atomically)\n"
           "  --json         print one JSON object instead of text\n");
}

int cmd_tokenize(int argc, char **argv)
{
    const char *tok_arg = NULL, *data_arg = NULL, *out_path = NULL;
    bool json = false;
    long head = 16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            help();
            return GQ_EXIT_OK;
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--tokenizer") == 0 && has_val) {
            tok_arg = argv[++i];
        } else if (strcmp(a, "--data") == 0 && has_val) {
            data_arg = argv[++i];
        } else if (strcmp(a, "--out") == 0 && has_val) {
            out_path = argv[++i];
        } else if (strcmp(a, "--head") == 0 && has_val) {
            if (cli_int(CMD, a, argv[++i], 0, 1000000, &head) != 0)
                return GQ_EXIT_USAGE;
        } else {
            return cli_usage_error(CMD, "unknown option or missing value: '%s'", a);
        }
    }
    if (!tok_arg || !data_arg)
        return cli_usage_error(CMD, "--tokenizer and --data are required");

    gq_error err = {{0}};
    char tok_path[4096], data_path[4096];
    if (gq_asset_resolve(tok_arg, tok_path, sizeof tok_path, &err) != 0 ||
        gq_asset_resolve(data_arg, data_path, sizeof data_path, &err) != 0 ||
        (out_path && gq_check_writable("--out", out_path, &err) != 0))
        return cli_report(CMD, &err, GQ_EXIT_USAGE);
    gq_tokenizer *tok = NULL;
    if (gq_tokenizer_load(tok_path, 0, &tok, &err) != 0)
        return cli_report(CMD, &err, GQ_EXIT_USAGE);
    char *text = NULL;
    size_t len = 0;
    if (gq_read_file(data_path, &text, &len, &err) != 0) {
        gq_tokenizer_free(tok);
        return cli_report(CMD, &err, GQ_EXIT_USAGE);
    }
    char sha[65];
    gq_sha256_hex(text, len, sha);
    int *ids = NULL;
    size_t n = 0;
    double t0 = gq_now();
    int rc = gq_tokenizer_encode(tok, text, len, true, false, &ids, &n, &err);
    double secs = gq_now() - t0;
    free(text);
    int status = GQ_EXIT_OK;
    if (rc != 0) {
        status = cli_report(CMD, &err, GQ_EXIT_FAIL);
        goto done;
    }
    if (out_path) {
        int32_t *buf = malloc(n * sizeof *buf + 1);
        if (!buf) {
            gq_fail(&err, "out of memory for %zu ids", n);
            status = cli_report(CMD, &err, GQ_EXIT_FAIL);
            goto done;
        }
        for (size_t i = 0; i < n; i++)
            buf[i] = ids[i];
        rc = gq_write_file_atomic(out_path, buf, n * sizeof *buf, &err);
        free(buf);
        if (rc != 0) {
            status = cli_report(CMD, &err, GQ_EXIT_FAIL);
            goto done;
        }
    }
    size_t nh = (size_t)head < n ? (size_t)head : n;
    double tps = secs > 0 ? (double)n / secs : 0.0;
    if (json) {
        json_t *o = json_object(), *h = json_array();
        for (size_t i = 0; i < nh; i++)
            json_array_append_new(h, json_integer(ids[i]));
        json_object_set_new(o, "tokenizer", json_string(tok_path));
        json_object_set_new(o, "vocab_size", json_integer(gq_tokenizer_vocab_size(tok)));
        json_object_set_new(o, "data", json_string(data_path));
        json_object_set_new(o, "data_sha256", json_string(sha));
        json_object_set_new(o, "bytes", json_integer((json_int_t)len));
        json_object_set_new(o, "tokens", json_integer((json_int_t)n));
        json_object_set_new(o, "bos", json_true());
        json_object_set_new(o, "seconds", json_real(secs));
        json_object_set_new(o, "tokens_per_s", json_real(tps));
        json_object_set_new(o, "head", h);
        if (out_path)
            json_object_set_new(o, "out", json_string(out_path));
        char *s = json_dumps(o, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        printf("tokenizer   %s (%d tokens)\n", tok_path, gq_tokenizer_vocab_size(tok));
        printf("data        %s\n", data_path);
        printf("sha256      %s\n", sha);
        printf("bytes       %zu\n", len);
        printf("tokens      %zu (BOS at the start included; %.3f bytes/token)\n", n,
               n ? (double)len / n : 0.0);
        printf("time        %.3f s encode only, %.0f tokens/s, %.2f MB/s\n", secs, tps,
               secs > 0 ? len / secs / 1e6 : 0.0);
        printf("first ids  ");
        for (size_t i = 0; i < nh; i++)
            printf(" %d", ids[i]);
        printf("\n");
        if (out_path)
            printf("wrote       %s (%zu int32)\n", out_path, n);
    }
done:
    free(ids);
    gq_tokenizer_free(tok);
    return status;
}
