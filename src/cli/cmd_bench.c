/* gq-bench bench WHAT [options]: performance tables. Each benchmark is one entry of the table
 * below, implemented in its own src/cli/bench_<what>.c. */
#include <stdio.h>
#include <string.h>

#include "cli/cmd_decl.h"
#include "cli/cli.h"


typedef struct bench_entry {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the benchmark name */
    const char *summary;
} bench_entry;

static const bench_entry benches[] = {
    {"formats", bench_formats, "quantize/dequantize throughput, SQNR and bpw of every format"},
    {"forward", bench_forward, "prefill tokens/s and GFLOP/s vs sgemm, decode tokens/s"},
    {"decode", bench_decode, "decode tokens/s of packed formats vs fp32, bytes/token, GB/s vs bandwidth"},
    {"matvec", bench_matvec, "decode kernels on one matrix: GB/s per format, 1 and all threads"},
    {"prefill", bench_prefill, "prefill tokens/s of packed formats vs fp32"},
    {"quantize", bench_quantize, "stages of one method on one block: FLOPs, time, rate vs sgemm/dgemm/triad, memory"},
    {"tokenizer", bench_tokenizer, "encode speed on a 10 MB text, one row per tokenizer"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: gq-bench bench WHAT [options]   (gq-bench bench WHAT --help)\n\n");
    for (size_t i = 0; i < sizeof benches / sizeof benches[0]; i++)
        fprintf(f, "  %-12s %s\n", benches[i].name, benches[i].summary);
}

int cmd_bench(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return GQ_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return GQ_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof benches / sizeof benches[0]; i++)
        if (strcmp(argv[1], benches[i].name) == 0)
            return benches[i].run(argc - 1, argv + 1);
    return cli_usage_error("bench", "unknown benchmark '%s'", argv[1]);
}
