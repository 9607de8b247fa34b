#ifndef GQ_CLI_EXPORT_H
#define GQ_CLI_EXPORT_H
/* The writers of `gq-bench export --format F` (cmd_export.c dispatches on F); each takes the
 * command's whole argv. */
int export_gguf(int argc, char **argv);
int export_hf(int argc, char **argv);
int export_gptq(int argc, char **argv);

#endif
