#ifndef GQ_CLI_CMD_DECL_H
#define GQ_CLI_CMD_DECL_H
/* Declarations of the subcommands listed in commands.h and of the `bench` subcommands; each
 * takes (argc, argv) with argv[0] its own name and returns a GQ_EXIT_* status. */

#define GQ_COMMAND(name, fn, summary) int fn(int argc, char **argv);
#include "cli/commands.h"
#undef GQ_COMMAND

int bench_formats(int argc, char **argv);
int bench_forward(int argc, char **argv);
int bench_decode(int argc, char **argv);
int bench_prefill(int argc, char **argv);
int bench_matvec(int argc, char **argv);
int bench_tokenizer(int argc, char **argv);
int bench_quantize(int argc, char **argv);

#endif
