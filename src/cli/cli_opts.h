#ifndef GQ_CLI_OPTS_H
#define GQ_CLI_OPTS_H
/* Table-driven option parsing for the subcommands.
 *
 * A command declares its options once, as a table of cli_opt; cli_parse fills the fields,
 * reports every error as one usage line ("gq-bench CMD: ..." through cli_usage_error, exit
 * status 2) and prints --help from the same table, so the help text and the behaviour cannot
 * diverge. Options are written --name VALUE or --name=VALUE, in any order, mixed with at most
 * one positional argument when the command declares one. */
#include <stdbool.h>

#include "core/gq_error.h"

#define CLI_PATH_MAX 4096
#define CLI_LIST_MAX 64

typedef enum cli_kind {
    CLI_FLAG,   /* bool: true when given (takes no value) */
    CLI_INT,    /* long, in [min, max] */
    CLI_NUM,    /* double, finite, in [min, max] */
    CLI_STR,    /* const char *: the value as given */
    CLI_CHOICE, /* const char *: one of `choices` ("fp|quantized") */
    CLI_IN,     /* char[CLI_PATH_MAX]: an existing regular file, as given */
    CLI_ASSET,  /* char[CLI_PATH_MAX]: an existing regular file after gq_asset_resolve */
    CLI_MODEL,  /* char[CLI_PATH_MAX]: like CLI_ASSET, or a Hugging Face model directory (one
                   holding config.json) */
    CLI_OUT,    /* const char *: an output file, checked writable (gq_check_writable) */
    CLI_LIST,   /* cli_list: repeatable string, at most `max` values (<= CLI_LIST_MAX) */
    CLI_CALL,   /* `parse(field, value, err)` decides; its message follows "--name: " */
    CLI_SEED,   /* uint64_t: a decimal integer 0..UINT64_MAX (seeds are 64-bit unsigned) */
} cli_kind;

typedef struct cli_list {
    const char *v[CLI_LIST_MAX];
    int n;
} cli_list;

typedef struct cli_opt {
    const char *name; /* without the dashes: "model" */
    const char *meta; /* value placeholder in the help ("M"); NULL for flags */
    cli_kind kind;
    void *field;
    const char *help; /* "\n" starts a continuation line */
    const char *def;  /* parsed into the field before the arguments and shown in the help as
                         "(default DEF)"; NULL: the field keeps its value, the help says why */
    double min, max;  /* CLI_INT/CLI_NUM range; CLI_LIST count limit (max) */
    const char *choices;
    bool required; /* given means "not zero/empty": a required number needs min > 0, and
                      required options take no default */
    bool repeat; /* CLI_CALL: may be given more than once (shown as such in the help) */
    int (*parse)(void *field, const char *value, gq_error *err);
} cli_opt;

typedef struct cli_spec {
    const char *cmd;   /* "eval", "bench formats": the prefix of every message */
    const char *about; /* text between the usage lines and the option list; may be NULL */
    const cli_opt *opts;
    int n_opts;
    /* Optional positional argument: placeholder in the usage line, what it is (for
     * "missing the ...", "more than one ..."), where it goes and whether it is required. */
    const char *pos_meta, *pos_what;
    const char **pos;
    bool pos_required;
    const char *epilog; /* text after the option list; may be NULL */
} cli_spec;

/* One table row: CLI_OPT("head", "N", CLI_INT, &head, "help", .def = "16", .max = 1e6). */
#define CLI_OPT(name_, meta_, kind_, field_, help_, ...)                                         \
    {.name = (name_), .meta = (meta_), .kind = (kind_), .field = (field_), .help = (help_),       \
     __VA_ARGS__}
/* In a cli_spec initializer: .opts and .n_opts from an array. */
#define CLI_OPTS(a) .opts = (a), .n_opts = (int)(sizeof(a) / sizeof((a)[0]))

/* Parses argv[1..argc-1] (argv[0] is the command name). Returns 0 when the fields are filled,
 * 1 after printing --help (the command then exits 0), GQ_EXIT_USAGE after printing the
 * error. */
int cli_parse(const cli_spec *s, int argc, char **argv);

/* Prints the help of `s` to stdout: usage lines, about, options with defaults, epilog. */
void cli_help(const cli_spec *s);

/* cli_parse in a command: returns from the command with its exit status unless parsing
 * succeeded. */
#define CLI_PARSE_OR_RETURN(spec, argc, argv)                                                    \
    do {                                                                                         \
        int cli_rc_ = cli_parse((spec), (argc), (argv));                                         \
        if (cli_rc_ != 0)                                                                        \
            return cli_rc_ == 1 ? 0 : cli_rc_;                                                   \
    } while (0)

#endif
