#ifndef GQ_CLI_MODEL_H
#define GQ_CLI_MODEL_H
/* The --model / --tokenizer pair every model command takes: both names resolved (as given,
 * then under the assets directory), the model loaded (a llama2.c checkpoint or a GGUF file)
 * and the tokenizer loaded against the model's vocabulary size (a tokenizer.bin or a GGUF
 * file's vocabulary; without --tokenizer, a GGUF model's own). */
#include <stddef.h>

#include "core/gq_error.h"
#include "model/gq_model.h"
#include "text/gq_tokenizer.h"

/* Fills m, *tok and the resolved paths (buffers of path_n bytes). On failure nothing stays
 * loaded (m zeroed, *tok NULL) and err names the file. */
int cli_load_model(const char *model_arg, const char *tok_arg, gq_model *m, gq_tokenizer **tok,
                   char *model_path, char *tok_path, size_t path_n, gq_error *err);

#endif
