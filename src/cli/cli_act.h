#ifndef GQ_CLI_ACT_H
#define GQ_CLI_ACT_H
/* The activation and KV-cache options of eval, generate and quantize (act/gq_act.h):
 * --act-format NAME, --act-set k=v (the format's parameters), --act-granularity,
 * --act-group-size, --act-scales, --act-calibration, --act-percentile, --act-keep-fp GLOB,
 * --kv-format NAME, --kv-set k=v, --kv-granularity, --kv-group-size. They build the same
 * sections an experiment's "activations" / "kv_cache" hold (JSON paths "activations.*"). */
#include <stdbool.h>

#include <jansson.h>

#include "act/gq_act.h"
#include "cli/cli_opts.h"

typedef struct cli_act_args {
    const char *act_format, *act_granularity, *act_scales, *act_calibration, *kv_format,
        *kv_granularity;
    long act_group_size, kv_group_size;
    double act_percentile;
    json_t *act_params, *kv_params;
    cli_list act_keep_fp;
} cli_act_args;

/* The options, inside a command's `const cli_opt opts[] = {...}`. */
#define CLI_ACT_OPTS(a)                                                                          \
    CLI_OPT("act-format", "NAME", CLI_STR, &(a)->act_format,                                    \
            "fake-quantize every block linear's input with this format\n"                       \
            "(int, fp, mx, q8_0; its parameters by --act-set)"),                                \
    CLI_OPT("act-set", "k=v", CLI_CALL, &(a)->act_params,                                       \
            "an activation format parameter, e.g. --act-set bits=8", .parse = cli_set_param,    \
            .repeat = true),                                                                    \
    CLI_OPT("act-granularity", "G", CLI_CHOICE, &(a)->act_granularity,                          \
            "activation scales per tensor (window), token or group\n(default token)",           \
            .choices = "tensor|token|group"),                                                   \
    CLI_OPT("act-group-size", "N", CLI_INT, &(a)->act_group_size,                               \
            "input channels per activation group (default 128)", .min = 1, .max = 1 << 20),     \
    CLI_OPT("act-scales", "S", CLI_CHOICE, &(a)->act_scales,                                    \
            "dynamic, or static (calibrated by quantize and saved beside\n"                     \
            "its --out as Q.bin.act.json)", .choices = "dynamic|static"),                       \
    CLI_OPT("act-calibration", "C", CLI_CHOICE, &(a)->act_calibration,                          \
            "static range: max, percentile or mse (default max)",                               \
            .choices = "max|percentile|mse"),                                                   \
    CLI_OPT("act-percentile", "Q", CLI_NUM, &(a)->act_percentile,                               \
            "percentile of --act-calibration percentile (default 99.99)", .min = 50,            \
            .max = 100),                                                                        \
    CLI_OPT("act-keep-fp", "GLOB", CLI_LIST, &(a)->act_keep_fp,                                 \
            "leave the inputs of the linears matching GLOB unquantized\n"                       \
            "(\"layers.*.mlp.down_proj\")", .max = CLI_LIST_MAX),                               \
    CLI_OPT("kv-format", "NAME", CLI_STR, &(a)->kv_format,                                      \
            "quantize keys (after RoPE) and values as they enter the\n"                         \
            "cache with this format (parameters by --kv-set)"),                                 \
    CLI_OPT("kv-set", "k=v", CLI_CALL, &(a)->kv_params,                                         \
            "a KV-cache format parameter, e.g. --kv-set bits=4", .parse = cli_set_param,        \
            .repeat = true),                                                                    \
    CLI_OPT("kv-granularity", "G", CLI_CHOICE, &(a)->kv_granularity,                            \
            "KV scales per token, head or group of a head (default head)",                      \
            .choices = "token|head|group"),                                                     \
    CLI_OPT("kv-group-size", "N", CLI_INT, &(a)->kv_group_size,                                 \
            "channels per KV group (default 32)", .min = 1, .max = 1 << 20)

/* The quantizers a command runs with. */
typedef struct cli_act {
    gq_act_cfg acts, kv;
    bool has_acts, has_kv;
    gq_act_model am;
    char file[4200]; /* the activation file they came from ("" : the options) */
} cli_act;

/* Whether any activation or KV option was given. */
bool cli_act_given(const cli_act_args *a);
/* The sections from the options, checked against config c (static scales need has_calib). */
int cli_act_build(const cli_act_args *a, const gq_config *c, bool has_calib, cli_act *out,
                  gq_error *err);
/* For eval and generate: the options (dynamic scales only), or else the activation file
 * beside the checkpoint when there is one; attaches the hook to m. Giving options while the
 * file exists is refused. */
int cli_act_attach(const cli_act_args *a, gq_model *m, const char *model_path, cli_act *out,
                   gq_error *err);
/* One line describing the quantizers ("" when none). */
void cli_act_describe(const cli_act *s, char *buf, size_t n);
void cli_act_free(cli_act *s, cli_act_args *a);

#endif
