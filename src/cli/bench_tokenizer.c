/* gq-bench bench tokenizer: encode speed on a large text (a file repeated in memory up to a
 * target size), one row per tokenizer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
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

static void help(void)
{
    printf("usage: gq-bench bench tokenizer [--data D] [--mb N] [--tokenizer T]...\n\n"
           "Builds a text of N MB (default 10) by repeating file D (default\n"
           "text/tinystories-train/train.txt) in memory, then times one encode (with BOS)\n"
           "of the whole text per tokenizer (default: models/stories260K/tok512.bin and\n"
           "tokenizers/llama2/tokenizer.bin). Single-threaded.\n");
}

int bench_tokenizer(int argc, char **argv)
{
    const char *data_arg = "text/tinystories-train/train.txt";
    const char *toks[8];
    int n_toks = 0;
    long mb = 10;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            help();
            return GQ_EXIT_OK;
        } else if (strcmp(a, "--data") == 0 && has_val) {
            data_arg = argv[++i];
        } else if (strcmp(a, "--mb") == 0 && has_val) {
            if (cli_int(CMD, a, argv[++i], 1, 1024, &mb) != 0)
                return GQ_EXIT_USAGE;
        } else if (strcmp(a, "--tokenizer") == 0 && has_val) {
            if (n_toks == 8)
                return cli_usage_error(CMD, "at most 8 --tokenizer options");
            toks[n_toks++] = argv[++i];
        } else {
            return cli_usage_error(CMD, "unknown option or missing value: '%s'", a);
        }
    }
    if (n_toks == 0) {
        toks[n_toks++] = "models/stories260K/tok512.bin";
        toks[n_toks++] = "tokenizers/llama2/tokenizer.bin";
    }
    gq_error err = {{0}};
    char path[4096];
    if (gq_asset_resolve(data_arg, path, sizeof path, &err) != 0)
        return cli_report(CMD, &err, GQ_EXIT_USAGE);
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
    for (int k = 0; k < n_toks && status == GQ_EXIT_OK; k++) {
        char tp[4096];
        if (gq_asset_resolve(toks[k], tp, sizeof tp, &err) != 0 ||
            gq_tokenizer_load(tp, 0, &tk[k], &err) != 0)
            status = cli_report(CMD, &err, GQ_EXIT_USAGE);
    }
    if (status == GQ_EXIT_OK) {
        printf("tokenizer encode speed: %s repeated to %zu bytes, one encode with BOS, 1 thread\n\n",
               path, len);
        printf("%-36s %6s %10s %8s %8s %8s %11s\n", "tokenizer", "vocab", "tokens", "wall s",
               "cpu s", "MB/s", "tokens/s");
    }
    for (int k = 0; k < n_toks && status == GQ_EXIT_OK; k++) {
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
        printf("%-36s %6d %10zu %8.3f %8.3f %8.2f %11.0f\n", toks[k],
               gq_tokenizer_vocab_size(tk[k]), n, s, cs, len / s / 1e6, n / s);
    }
    for (int k = 0; k < n_toks; k++)
        gq_tokenizer_free(tk[k]);
    free(text);
    return status;
}
