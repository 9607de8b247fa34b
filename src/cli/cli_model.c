#include "cli/cli_model.h"

#include <string.h>

#include "core/gq_assets.h"
#include "gguf/gq_gguf_model.h"

int cli_load_model(const char *model_arg, const char *tok_arg, gq_model *m, gq_tokenizer **tok,
                   char *model_path, char *tok_path, size_t path_n, gq_error *err)
{
    memset(m, 0, sizeof *m);
    *tok = NULL;
    if (gq_asset_resolve(model_arg, model_path, path_n, err) != 0)
        return -1;
    bool gguf = gq_gguf_is_gguf(model_path);
    if (!tok_arg || !tok_arg[0]) {
        if (!gguf)
            return gq_fail(err, "--tokenizer is required (only a GGUF model carries its own "
                                "vocabulary)");
        tok_arg = model_path;
    }
    if (gq_asset_resolve(tok_arg, tok_path, path_n, err) != 0 ||
        gq_model_open(model_path, m, err) != 0)
        return -1;
    if (gq_tokenizer_open(tok_path, m->cfg.vocab_size, tok, err) != 0) {
        gq_model_free(m);
        return -1;
    }
    return 0;
}
