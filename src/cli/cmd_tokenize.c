/* gq-bench tokenize: tokenize a text file (the tokenizer's BOS at the start, as the evaluation
 * does), report the count and speed, optionally write the ids as int32; or write the tokenizer
 * as tokenizer.json (--export-json). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_decl.h"
#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "core/gq_fileio.h"
#include "core/gq_sha256.h"
#include "core/gq_time.h"
#include "gguf/gq_gguf_model.h"
#include "text/gq_tokenizer.h"

static const char *CMD = "tokenize";

/* What one tokenization measured, for the report. */
typedef struct tok_run {
    const char *tok_path, *data_path, *out_path; /* out_path: NULL when not written */
    int vocab;
    const char *kind; /* gq_tokenizer_describe */
    char sha[65];    /* of the text */
    size_t len, n;   /* bytes of text, ids (special tokens included) */
    const int *ids;  /* n ids */
    size_t nh;       /* leading ids to print */
    double secs, tps; /* encode time (s), ids per second */
} tok_run;

/* All ids as little-endian int32, written atomically. */
static int write_ids(const char *path, const int *ids, size_t n, gq_error *err)
{
    int32_t *buf = malloc(n * sizeof *buf + 1);
    if (!buf)
        return gq_fail(err, "out of memory for %zu ids", n);
    for (size_t i = 0; i < n; i++)
        buf[i] = ids[i];
    int rc = gq_write_file_atomic(path, buf, n * sizeof *buf, err);
    free(buf);
    return rc;
}

static void print_json(const tok_run *r)
{
    json_t *o = json_object(), *h = json_array();
    for (size_t i = 0; i < r->nh; i++)
        json_array_append_new(h, json_integer(r->ids[i]));
    json_object_set_new(o, "tokenizer", json_string(r->tok_path));
    json_object_set_new(o, "tokenizer_kind", json_string(r->kind));
    json_object_set_new(o, "vocab_size", json_integer(r->vocab));
    json_object_set_new(o, "data", json_string(r->data_path));
    json_object_set_new(o, "data_sha256", json_string(r->sha));
    json_object_set_new(o, "bytes", json_integer((json_int_t)r->len));
    json_object_set_new(o, "tokens", json_integer((json_int_t)r->n));
    json_object_set_new(o, "bos", json_true());
    json_object_set_new(o, "seconds", json_real(r->secs));
    json_object_set_new(o, "tokens_per_s", json_real(r->tps));
    json_object_set_new(o, "head", h);
    if (r->out_path)
        json_object_set_new(o, "out", json_string(r->out_path));
    char *s = json_dumps(o, JSON_COMPACT);
    printf("%s\n", s);
    free(s);
    json_decref(o);
}

static void print_text(const tok_run *r)
{
    size_t len = r->len, n = r->n;
    double secs = r->secs;
    printf("tokenizer   %s (%s, %d tokens)\n", r->tok_path, r->kind, r->vocab);
    printf("data        %s\n", r->data_path);
    printf("sha256      %s\n", r->sha);
    printf("bytes       %zu\n", len);
    printf("tokens      %zu (%s included; %.3f bytes/token)\n", n,
           strncmp(r->kind, "llama2.c", 8) == 0 ? "BOS at the start" : "its special tokens",
           n ? (double)len / n : 0.0);
    printf("time        %.3f s encode only, %.0f tokens/s, %.2f MB/s\n", secs, r->tps,
           secs > 0 ? len / secs / 1e6 : 0.0);
    printf("first ids  ");
    for (size_t i = 0; i < r->nh; i++)
        printf(" %d", r->ids[i]);
    printf("\n");
    if (r->out_path)
        printf("wrote       %s (%zu int32)\n", r->out_path, n);
}

/* --export-json: a tokenizer that has no tokenizer.json equivalent is bad input (exit 2). */
static int export_json(gq_tokenizer *tok, const char *tok_path, const char *out)
{
    gq_error err = {{0}};
    int rc = gq_tokenizer_save_json(tok, out, &err);
    gq_tokenizer_free(tok);
    if (rc != 0)
        return cli_report(CMD, &err, GQ_EXIT_USAGE);
    printf("wrote       %s (tokenizer.json of %s)\n", out, tok_path);
    return GQ_EXIT_OK;
}

int cmd_tokenize(int argc, char **argv)
{
    char tok_path[CLI_PATH_MAX] = "", data_path[CLI_PATH_MAX] = "";
    const char *out_path = NULL, *export_path = NULL;
    bool json = false;
    long head = 0;
    const cli_opt opts[] = {
        CLI_OPT("tokenizer", "T", CLI_ASSET, tok_path,
                "llama2.c tokenizer.bin or tokenizer.json; assets: paths work", .required = true),
        CLI_OPT("data", "D", CLI_ASSET, data_path, "text file (UTF-8; required unless\n"
                "--export-json)"),
        CLI_OPT("export-json", "FILE", CLI_OUT, &export_path,
                "write T as an equivalent tokenizer.json (atomically) instead of tokenizing"),
        CLI_OPT("head", "N", CLI_INT, &head, "how many leading ids to print", .def = "16",
                .max = 1000000),
        CLI_OPT("out", "FILE", CLI_OUT, &out_path,
                "write all ids as little-endian int32 (atomically)"),
        CLI_OPT("json", NULL, CLI_FLAG, &json, "print one JSON object instead of text"),
    };
    const cli_spec spec = {
        .cmd = CMD,
        .about = "Tokenizes the whole file D with tokenizer T (llama2.c tokenizer.bin or\n"
                 "tokenizer.json) with its special tokens (llama2.c: one BOS at the start, as the\n"
                 "perplexity protocols do), and prints bytes, tokens, time, tokens/s and the first\n"
                 "N ids. --export-json writes T as tokenizer.json instead (a llama2.c tokenizer\n"
                 "becomes the SentencePiece-style BPE that gives the same ids).\n",
        CLI_OPTS(opts)};
    CLI_PARSE_OR_RETURN(&spec, argc, argv);

    gq_error err = {{0}};
    if (!export_path && !data_path[0]) {
        gq_fail(&err, "missing --data (or --export-json)");
        return cli_report(CMD, &err, GQ_EXIT_USAGE);
    }
    gq_tokenizer *tok = NULL;
    if (gq_tokenizer_open(tok_path, 0, &tok, &err) != 0)
        return cli_report(CMD, &err, GQ_EXIT_USAGE);
    if (export_path)
        return export_json(tok, tok_path, export_path);
    char *text = NULL;
    size_t len = 0;
    if (gq_read_file(data_path, &text, &len, &err) != 0) {
        gq_tokenizer_free(tok);
        return cli_report(CMD, &err, GQ_EXIT_USAGE);
    }
    tok_run r = {.tok_path = tok_path, .data_path = data_path, .out_path = out_path,
                 .vocab = gq_tokenizer_vocab_size(tok), .kind = gq_tokenizer_describe(tok),
                 .len = len};
    gq_sha256_hex(text, len, r.sha);
    int *ids = NULL;
    double t0 = gq_now();
    int rc = gq_tokenizer_encode(tok, text, len, true, false, &ids, &r.n, &err);
    r.secs = gq_now() - t0;
    free(text);
    int status = GQ_EXIT_OK;
    if (rc != 0 || (out_path && write_ids(out_path, ids, r.n, &err) != 0)) {
        status = cli_report(CMD, &err, GQ_EXIT_FAIL);
        goto done;
    }
    r.ids = ids;
    r.nh = (size_t)head < r.n ? (size_t)head : r.n;
    r.tps = r.secs > 0 ? (double)r.n / r.secs : 0.0;
    if (json)
        print_json(&r);
    else
        print_text(&r);
done:
    free(ids);
    gq_tokenizer_free(tok);
    return status;
}
