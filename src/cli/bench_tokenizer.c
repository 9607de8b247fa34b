/* gq-bench bench tokenizer: encode speed of each tokenizer on one text (a file as it is, or
 * repeated in memory up to a target size), the best of a few rounds, one row per tokenizer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cmd_decl.h"
#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "core/gq_assets.h"
#include "core/gq_fileio.h"
#include "core/gq_time.h"
#include "text/gq_tokenizer.h"

static const char *CMD = "bench tokenizer";
#define MAX_TOKENIZERS 8

/* The default rows: both llama2.c tokenizers and the three tokenizer.json families. */
static const char *const DEFAULT_TOKENIZERS[] = {
    "models/stories260K/tok512.bin", "tokenizers/llama2/tokenizer.bin",
    "tokenizers/hf/spm-bpe-32k/tokenizer.json", "tokenizers/hf/llama3/tokenizer.json",
    "tokenizers/hf/qwen3/tokenizer.json"};

/* CPU time of the process: with one thread encoding, the encode's own cost even when other
 * processes compete for the cores (wall time is reported beside it). */
static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The text: file D as it is (mb 0) or repeated in memory to mb MB. */
static int load_text(const char *path, long mb, char **text, size_t *len, gq_error *err)
{
    char *src = NULL;
    size_t src_len = 0;
    if (gq_read_file(path, &src, &src_len, err) != 0)
        return -1;
    if (src_len == 0) {
        free(src);
        return gq_fail(err, "%s: empty file", path);
    }
    if (mb == 0) {
        *text = src;
        *len = src_len;
        return 0;
    }
    *len = (size_t)mb * 1000000;
    if (!(*text = malloc(*len))) {
        free(src);
        return gq_fail(err, "out of memory for %ld MB of text", mb);
    }
    for (size_t off = 0; off < *len; off += src_len)
        memcpy(*text + off, src, *len - off < src_len ? *len - off : src_len);
    free(src);
    return 0;
}

/* One row: the fastest of `rounds` encodes (with the tokenizer's special tokens) by CPU time. */
static int bench_row(const char *name, const gq_tokenizer *tk, const char *text, size_t len,
                     long rounds, gq_error *err)
{
    double best_cpu = 0, best_wall = 0;
    size_t n = 0;
    for (long r = 0; r < rounds; r++) {
        int *ids = NULL;
        double t0 = gq_now(), c0 = cpu_seconds();
        int rc = gq_tokenizer_encode(tk, text, len, true, false, &ids, &n, err);
        double s = gq_now() - t0, cs = cpu_seconds() - c0;
        free(ids);
        if (rc != 0)
            return -1;
        if (r == 0 || cs < best_cpu) {
            best_cpu = cs;
            best_wall = s;
        }
    }
    printf("%-42s %7d %9zu %8.3f %8.3f %8.2f %11.0f  %s\n", name, gq_tokenizer_vocab_size(tk), n,
           best_wall, best_cpu, len / best_cpu / 1e6, n / best_cpu, gq_tokenizer_describe(tk));
    return 0;
}

/* Loads every tokenizer before the table starts (a bad one prints no half table). A default row
 * whose asset is missing is left out with a note; a missing -T is an error. */
static int load_tokenizers(cli_list *toks, bool defaults, gq_tokenizer **tk, gq_error *err)
{
    for (int k = 0; k < toks->n; k++) {
        char tp[4096];
        if (gq_asset_resolve(toks->v[k], tp, sizeof tp, err) != 0) {
            if (!defaults)
                return -1;
            fprintf(stderr, "bench tokenizer: %s is missing (scripts/fetch-assets.sh); row left "
                    "out\n", toks->v[k]);
            continue;
        }
        if (gq_tokenizer_load(tp, 0, &tk[k], err) != 0)
            return -1;
    }
    return 0;
}

int bench_tokenizer(int argc, char **argv)
{
    char path[CLI_PATH_MAX] = "";
    cli_list toks = {0};
    long mb, rounds;
    const cli_opt opts[] = {
        CLI_OPT("data", "D", CLI_ASSET, path, "the text", .def = "text/wikitext-2-raw/wiki.test.raw"),
        CLI_OPT("mb", "N", CLI_INT, &mb, "repeat D in memory to N MB (0: D as it is)", .def = "0",
                .min = 0, .max = 1024),
        CLI_OPT("rounds", "R", CLI_INT, &rounds, "encodes per tokenizer; the fastest is shown",
                .def = "3", .min = 1, .max = 100),
        CLI_OPT("tokenizer", "T", CLI_LIST, &toks,
                "llama2.c tokenizer.bin or tokenizer.json, one row each (default: tok512.bin,\n"
                "the Llama 2 tokenizer.bin and tokenizers/hf/{spm-bpe-32k,llama3,qwen3})",
                .max = MAX_TOKENIZERS),
    };
    const cli_spec spec = {
        .cmd = CMD,
        .about = "Times encodes (with the tokenizer's special tokens) of text D, single-threaded;\n"
                 "per tokenizer the fastest of R rounds by CPU time (wall time beside it).\n",
        CLI_OPTS(opts)};
    CLI_PARSE_OR_RETURN(&spec, argc, argv);
    bool defaults = toks.n == 0;
    for (int k = 0; defaults && k < (int)(sizeof DEFAULT_TOKENIZERS / sizeof *DEFAULT_TOKENIZERS);
         k++)
        toks.v[toks.n++] = DEFAULT_TOKENIZERS[k];
    gq_error err = {{0}};
    char *text = NULL;
    size_t len = 0;
    gq_tokenizer *tk[MAX_TOKENIZERS] = {0};
    int status = GQ_EXIT_OK;
    if (load_text(path, mb, &text, &len, &err) != 0 ||
        load_tokenizers(&toks, defaults, tk, &err) != 0)
        status = cli_report(CMD, &err, GQ_EXIT_USAGE);
    if (status == GQ_EXIT_OK) {
        printf("tokenizer encode speed: %s%s, %zu bytes, one encode with the special tokens, "
               "1 thread, best of %ld by CPU time\n\n", path, mb ? " repeated" : "", len, rounds);
        printf("%-42s %7s %9s %8s %8s %8s %11s  %s\n", "tokenizer", "vocab", "tokens", "wall s",
               "cpu s", "MB/s", "tokens/s", "kind");
    }
    for (int k = 0; k < toks.n && status == GQ_EXIT_OK; k++)
        if (tk[k] && bench_row(toks.v[k], tk[k], text, len, rounds, &err) != 0)
            status = cli_report(CMD, &err, GQ_EXIT_FAIL);
    for (int k = 0; k < toks.n; k++)
        gq_tokenizer_free(tk[k]);
    free(text);
    return status;
}
