#include "cli/cli_model.h"

#include <stdio.h>
#include <string.h>

#include "core/gq_assets.h"
#include "gguf/gq_gguf_model.h"
#include "core/gq_sha256.h"
#include "model/gq_hf.h"
#include "qmodel/gq_qmodel.h"

int cli_load_model(const char *model_arg, const char *tok_arg, gq_model *m, gq_tokenizer **tok,
                   char *model_path, char *tok_path, size_t path_n, gq_error *err)
{
    return cli_load_model_stream(model_arg, tok_arg, GQ_STREAM_OFF, m, tok, model_path,
                                 tok_path, path_n, err);
}

int cli_load_model_stream(const char *model_arg, const char *tok_arg, gq_stream_mode mode,
                          gq_model *m, gq_tokenizer **tok, char *model_path, char *tok_path,
                          size_t path_n, gq_error *err)
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
        gq_model_open_mode(model_path, mode, m, NULL, err) != 0)
        return -1;
    if (gq_tokenizer_open(tok_path, m->cfg.vocab_size, tok, err) != 0) {
        gq_model_free(m);
        return -1;
    }
    return 0;
}

int cli_model_provenance(const char *model_path, const char *tok_path, cli_model_prov *p,
                         gq_error *err)
{
    memset(p, 0, sizeof *p);
    return gq_model_hashes(model_path, p->config_sha, p->weights_sha, err) ||
                   gq_sha256_file(tok_path, p->tok_sha, err)
               ? -1
               : 0;
}

void cli_print_model_lines(const gq_model *m, const char *model_path, const char *tok_path,
                           const cli_model_prov *p)
{
    printf("model       %s (%s)\n", model_path, gq_family_name(m->cfg.family));
    if (p->config_sha[0])
        printf("            config.json sha256 %s\n", p->config_sha);
    printf("            weights sha256 %s\n", p->weights_sha);
    printf("tokenizer   %s (sha256 %s)\n", tok_path, p->tok_sha);
}

void cli_model_prov_json(json_t *o, const cli_model_prov *p)
{
    json_object_set_new(o, "model_sha256", json_string(p->weights_sha));
    json_object_set_new(o, "model_config_sha256", json_string(p->config_sha));
    json_object_set_new(o, "tokenizer_sha256", json_string(p->tok_sha));
}
