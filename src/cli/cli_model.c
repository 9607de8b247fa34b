#include "cli/cli_model.h"

#include <string.h>

#include "core/gq_assets.h"

int cli_load_model(const char *model_arg, const char *tok_arg, gq_model *m, gq_tokenizer **tok,
                   char *model_path, char *tok_path, size_t path_n, gq_error *err)
{
    memset(m, 0, sizeof *m);
    *tok = NULL;
    if (gq_asset_resolve(model_arg, model_path, path_n, err) != 0 ||
        gq_asset_resolve(tok_arg, tok_path, path_n, err) != 0 ||
        gq_model_load(model_path, m, err) != 0)
        return -1;
    if (gq_tokenizer_load(tok_path, m->cfg.vocab_size, tok, err) != 0) {
        gq_model_free(m);
        return -1;
    }
    return 0;
}
