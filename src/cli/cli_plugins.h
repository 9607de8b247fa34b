#ifndef GQ_CLI_PLUGINS_H
#define GQ_CLI_PLUGINS_H
/* Loads the plugins of GQ_PLUGINS (':'-separated) and of the leading global options
 * `--plugin PATH` (repeatable) and removes those options from argc/argv, so that argv[1] is
 * the subcommand. Prints one error line and returns GQ_EXIT_USAGE on failure. */
int cli_load_plugins(int *argc, char ***argv);

#endif
