#ifndef GQ_CLI_MODEL_H
#define GQ_CLI_MODEL_H
/* The --model / --tokenizer pair every model command takes: both names resolved (as given,
 * then under the assets directory), the model loaded (a llama2.c checkpoint or a GGUF file)
 * and the tokenizer loaded against the model's vocabulary size (a tokenizer.bin or a GGUF
 * file's vocabulary; without --tokenizer, a GGUF model's own). */
#include <stddef.h>

#include <jansson.h>

#include "cli/cli_opts.h"
#include "core/gq_error.h"
#include "model/gq_model.h"
#include "model/gq_stream.h"
#include "text/gq_tokenizer.h"

/* The --model and --tokenizer entries of a command's option table (cli_opts.h), the paths going
 * to the fields model and tokenizer. */
#define CLI_MODEL_OPTS(model, tokenizer)                                                          \
    CLI_OPT("model", "M", CLI_MODEL, (model),                                                    \
            "llama2.c checkpoint (legacy or version 1), llama GGUF, Hugging Face\n"               \
            "model directory (config.json + safetensors; GPTQ/AWQ checkpoints too)\n"             \
            "or gq-bench native file; assets: paths work",                                       \
            .required = true),                                                                   \
        CLI_OPT("tokenizer", "T", CLI_ASSET, (tokenizer),                                        \
                "llama2.c tokenizer.bin matching the model's vocabulary, or a GGUF\n"             \
                "file's (default for a GGUF model: its own)")

/* Fills m, *tok and the resolved paths (buffers of path_n bytes). On failure nothing stays
 * loaded (m zeroed, *tok NULL) and err names the file. */
int cli_load_model(const char *model_arg, const char *tok_arg, gq_model *m, gq_tokenizer **tok,
                   char *model_path, char *tok_path, size_t path_n, gq_error *err);

/* The same under a streaming mode (model/gq_stream.h: --stream auto|on|off); a GGUF model
 * always loads in memory. */
int cli_load_model_stream(const char *model_arg, const char *tok_arg, gq_stream_mode mode,
                          gq_model *m, gq_tokenizer **tok, char *model_path, char *tok_path,
                          size_t path_n, gq_error *err);

/* Provenance of a loaded model: sha256 of an HF directory's config.json ("" for a llama2.c
 * file), of the weights (the file, or one hash over the weight files in index order) and of
 * the tokenizer file. */
typedef struct cli_model_prov {
    char config_sha[65], weights_sha[65], tok_sha[65];
} cli_model_prov;
int cli_model_provenance(const char *model_path, const char *tok_path, cli_model_prov *p,
                         gq_error *err);
/* The "model" and "tokenizer" lines of a printed header, with the family and the hashes. */
void cli_print_model_lines(const gq_model *m, const char *model_path, const char *tok_path,
                           const cli_model_prov *p);
/* model_sha256, model_config_sha256 and tokenizer_sha256 members of a JSON report. */
void cli_model_prov_json(json_t *o, const cli_model_prov *p);

#endif
