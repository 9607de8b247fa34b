/* gq-bench export --format hf: writes any loadable model (llama2.c checkpoint, fake-quantized or
 * not, or an HF directory) as a Hugging Face directory (model/gq_hf.h). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_export.h"
#include "cli/cli_opts.h"
#include "core/gq_assets.h"
#include "core/gq_fileio.h"
#include "gguf/gq_gguf_model.h"
#include "model/gq_hf.h"
#include "model/gq_model.h"
#include "qmodel/gq_qmodel.h"

static const char *const CMD = "export";

/* The dtype an HF source stores (config.json torch_dtype), "f32" for llama2.c files. */
static const char *source_dtype(const char *model)
{
    char cfg[CLI_PATH_MAX + 16];
    snprintf(cfg, sizeof cfg, "%s/config.json", model);
    json_t *root = gq_hf_is_dir(model) ? json_load_file(cfg, 0, NULL) : NULL;
    const char *t = json_string_value(json_object_get(root, "torch_dtype"));
    const char *d = !t ? "f32" : strcmp(t, "bfloat16") == 0 ? "bf16"
                            : strcmp(t, "float16") == 0    ? "f16" : "f32";
    json_decref(root);
    return d;
}

/* Tokenizer files of an HF source, copied as they are (a llama2.c source has none; see
 * write_tokenizer). */
static int export_tokenizer(const char *model, const char *out, int *copied, gq_error *err)
{
    static const char *const names[] = {"tokenizer.json", "tokenizer_config.json",
                                        "special_tokens_map.json"};
    *copied = 0;
    for (size_t i = 0; gq_hf_is_dir(model) && i < sizeof names / sizeof names[0]; i++) {
        char src[CLI_PATH_MAX + 32], dst[CLI_PATH_MAX + 32];
        snprintf(src, sizeof src, "%s/%s", model, names[i]);
        snprintf(dst, sizeof dst, "%s/%s", out, names[i]);
        if (!gq_file_exists(src))
            continue;
        char *data;
        size_t n;
        if (gq_read_file(src, &data, &n, err))
            return -1;
        int rc = gq_write_file_atomic(dst, data, n, err);
        free(data);
        if (rc)
            return -1;
        (*copied)++;
    }
    return 0;
}

/* tok_path (a llama2.c tokenizer.bin, a tokenizer.json or a GGUF vocabulary) written as
 * out/tokenizer.json, the equivalent SentencePiece-style BPE for a llama2.c vocabulary. */
static int write_tokenizer(const char *tok_path, const gq_model *m, const char *out,
                           gq_error *err)
{
    gq_tokenizer *t;
    if (gq_tokenizer_open(tok_path, m->cfg.vocab_size, &t, err))
        return -1;
    char dst[CLI_PATH_MAX + 32];
    snprintf(dst, sizeof dst, "%s/tokenizer.json", out);
    int rc = gq_tokenizer_save_json(t, dst, err);
    gq_tokenizer_free(t);
    return rc;
}

int export_hf(int argc, char **argv)
{
    char tokenizer[CLI_PATH_MAX] = "";
    char model[CLI_PATH_MAX] = "";
    const char *out = NULL, *format = NULL, *dtype = NULL;
    const cli_opt opts[] = {
        CLI_OPT("model", "M", CLI_MODEL, model,
                "llama2.c checkpoint (e.g. gq-bench quantize's output) or Hugging\n"
                "Face model directory, or llama GGUF; assets: paths work", .required = true),
        CLI_OPT("tokenizer", "T", CLI_ASSET, tokenizer,
                "also write this tokenizer (llama2.c tokenizer.bin, tokenizer.json or\n"
                "a GGUF file's) as DIR/tokenizer.json, instead of the source's files"),
        CLI_OPT("format", "F", CLI_CHOICE, &format, "output layout", .def = "hf",
                .choices = "hf"),
        CLI_OPT("out", "DIR", CLI_STR, &out, "output directory (created; files written\n"
                "atomically)", .required = true),
        CLI_OPT("dtype", "D", CLI_CHOICE, &dtype,
                "f32, f16 or bf16 (default: the source's dtype; f32 for llama2.c)",
                .choices = "f32|f16|bf16"),
    };
    const cli_spec spec = {
        .cmd = CMD,
        .about = "Writes the model as an HF directory: config.json (LlamaForCausalLM for\n"
                 "llama2.c checkpoints) and model.safetensors in transformers' names and RoPE\n"
                 "layout; an HF source's tokenizer.json, tokenizer_config.json and\n"
                 "special_tokens_map.json are copied, or --tokenizer T is written as\n"
                 "tokenizer.json (a llama2.c vocabulary as the equivalent BPE).\n"
                 "`gq-bench quantize --out-format hf`\n"
                 "writes a quantized model with its quantization_config directly.\n",
        CLI_OPTS(opts)};
    CLI_PARSE_OR_RETURN(&spec, argc, argv);
    gq_error err = {{0}};
    if (gq_check_dir_writable("--out", out, &err))
        return cli_report(CMD, &err, GQ_EXIT_USAGE);
    gq_model m;
    if (gq_model_open_any(model, &m, NULL, &err))
        return cli_report(CMD, &err, GQ_EXIT_USAGE);
    const char *dt = dtype ? dtype : source_dtype(model);
    int copied = 0;
    int rc = gq_model_save_hf(&m, out, gq_st_dtype_parse(dt), NULL, &err) ||
             (tokenizer[0] ? write_tokenizer(tokenizer, &m, out, &err)
                           : export_tokenizer(model, out, &copied, &err));
    copied += tokenizer[0] && !rc;
    if (!rc)
        printf("%s: %s, %d layers, dim %d, %zu parameters, %s safetensors, %d tokenizer "
               "file(s) written\n", out, gq_family_name(m.cfg.family == GQ_FAMILY_LLAMA2C
                                                           ? GQ_FAMILY_LLAMA : m.cfg.family),
               m.cfg.n_layers, m.cfg.dim, gq_model_param_count(&m.cfg), dt, copied);
    gq_model_free(&m);
    return rc ? cli_report(CMD, &err, GQ_EXIT_FAIL) : GQ_EXIT_OK;
}
