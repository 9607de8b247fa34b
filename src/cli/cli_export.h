#ifndef GQ_CLI_EXPORT_H
#define GQ_CLI_EXPORT_H
/* The writers of `gq-bench export --format F` (cmd_export.c dispatches on F); each takes the
 * command's whole argv. */
int export_gguf(int argc, char **argv);
int export_hf(int argc, char **argv);
int export_gptq(int argc, char **argv);
int export_awq(int argc, char **argv);

/* GQ_EXIT_USAGE after one line when argv has --float-type, which a packed checkpoint of
 * `target` ("GPTQ") does not take (its float tensors are fp16); else 0. */
int cli_export_no_float_type(int argc, char **argv, const char *cmd, const char *target);

#endif
