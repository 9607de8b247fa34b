/* gq-bench bench tokenizer: encode speed on a large text (a file repeated in memory up to a
 * target size), one row per tokenizer. */
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

/* CPU time of the process: with one thread encoding, the encode's own cost even when other
 * processes compete for the cores (wall time is reported beside it). */
static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int bench_tokenizer(int argc, char **argv)
{
    char path[CLI_PATH_MAX] = "";
    cli_list toks = {0};
    long mb;
    const cli_opt opts[] = {
        CLI_OPT("data", "D", CLI_ASSET, path, "text repeated in memory to N MB",
                .def = "text/tinystories-train/train.txt"),
        CLI_OPT("mb", "N", CLI_INT, &mb, "size of the text in MB", .def = "10", .min = 1,
                .max = 1024),
        CLI_OPT("tokenizer", "T", CLI_LIST, &toks,
                "llama2.c tokenizer.bin, one row each (default: models/stories260K/tok512.bin\n"
                "and tokenizers/llama2/tokenizer.bin)", .max = 8),
    };
    const cli_spec spec = {
        .cmd = CMD,
        .about = "Times one encode (with BOS) of a text of N MB, built by repeating file D in\n"
                 "memory, per tokenizer. Single-threaded.\n",
        CLI_OPTS(opts)};
    CLI_PARSE_OR_RETURN(&spec, argc, argv);
    if (toks.n == 0) {
        toks.v[toks.n++] = "models/stories260K/tok512.bin";
        toks.v[toks.n++] = "tokenizers/llama2/tokenizer.bin";
    }
    gq_error err = {{0}};
    char *src = NULL;
    size_t src_len = 0;
    if (gq_read_file(path, &src, &src_len, &err) != 0)
        return cli_report(CMD, &err, GQ_EXIT_USAGE);
    if (src_len == 0) {
        free(src);
        gq_fail(&err, "%s: empty file", path);
        return cli_report(CMD, &err, GQ_EXIT_USAGE);
    }
    size_t len = (size_t)mb * 1000000;
    char *text = malloc(len);
    if (!text) {
        free(src);
        gq_fail(&err, "out of memory for %ld MB of text", mb);
        return cli_report(CMD, &err, GQ_EXIT_FAIL);
    }
    for (size_t off = 0; off < len; off += src_len)
        memcpy(text + off, src, len - off < src_len ? len - off : src_len);
    free(src);

    /* Every tokenizer is loaded before the table starts, so a bad one prints no half table. */
    gq_tokenizer *tk[8] = {0};
    int status = GQ_EXIT_OK;
    for (int k = 0; k < toks.n && status == GQ_EXIT_OK; k++) {
        char tp[4096];
        if (gq_asset_resolve(toks.v[k], tp, sizeof tp, &err) != 0 ||
            gq_tokenizer_load(tp, 0, &tk[k], &err) != 0)
            status = cli_report(CMD, &err, GQ_EXIT_USAGE);
    }
    if (status == GQ_EXIT_OK) {
        printf("tokenizer encode speed: %s repeated to %zu bytes, one encode with BOS, 1 thread\n\n",
               path, len);
        printf("%-36s %6s %10s %8s %8s %8s %11s\n", "tokenizer", "vocab", "tokens", "wall s",
               "cpu s", "MB/s", "tokens/s");
    }
    for (int k = 0; k < toks.n && status == GQ_EXIT_OK; k++) {
        int *ids = NULL;
        size_t n = 0;
        double t0 = gq_now(), c0 = cpu_seconds();
        int rc = gq_tokenizer_encode(tk[k], text, len, true, false, &ids, &n, &err);
        double s = gq_now() - t0, cs = cpu_seconds() - c0;
        free(ids);
        if (rc != 0) {
            status = cli_report(CMD, &err, GQ_EXIT_FAIL);
            break;
        }
        printf("%-36s %6d %10zu %8.3f %8.3f %8.2f %11.0f\n", toks.v[k],
               gq_tokenizer_vocab_size(tk[k]), n, s, cs, len / s / 1e6, n / s);
    }
    for (int k = 0; k < toks.n; k++)
        gq_tokenizer_free(tk[k]);
    free(text);
    return status;
}
