/* gq-bench info: what a model path holds: family, architecture fields, sizes and hashes. */
#include <stdio.h>
#include <string.h>

#include "cli/cmd_decl.h"
#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "model/gq_hf.h"
#include "model/gq_model.h"
#include "qmodel/gq_qmodel.h"

static const char *const CMD = "info";

static const char *rope_name(gq_rope_kind k)
{
    static const char *const n[] = {"none", "linear", "dynamic", "llama3"};
    return (unsigned)k < 4 ? n[k] : "?";
}

static void print_config(const gq_config *c)
{
    printf("family      %s\n", gq_family_name(c->family));
    printf("shape       dim %d, hidden %d, %d layers, %d heads / %d kv heads of %d, vocab %d, "
           "context %d\n", c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
           gq_head_size(c), c->vocab_size, c->seq_len);
    printf("norms       RMSNorm eps %g%s\n", (double)gq_norm_eps(c),
           c->qk_norm ? ", per-head q/k norms" : "");
    printf("rope        theta %g, scaling %s", (double)gq_rope_theta(c),
           rope_name(c->rope_scaling.kind));
    if (c->rope_scaling.kind != GQ_ROPE_PLAIN)
        printf(" (factor %g)", (double)c->rope_scaling.factor);
    printf("\nattention   %s\n", c->sliding_window ? "sliding window" : "full causal");
    if (c->sliding_window)
        printf("            window %d: position t attends to t-%d..t\n", c->sliding_window,
               c->sliding_window - 1);
    printf("biases      ");
    for (int k = 0, n = 0; k < GQ_N_LINEAR; k++)
        if (gq_has_bias(c, k))
            printf("%s%s", n++ ? ", " : "", gq_linear_name((gq_linear_kind)k));
    printf("%s\n", c->bias_mask ? "" : "none");
    printf("classifier  %s\n", c->shared_classifier ? "tied to the embeddings" : "separate");
    printf("parameters  %zu (%zu bytes in fp32)\n", gq_model_param_count(c),
           gq_model_param_count(c) * sizeof(float));
}

int cmd_info(int argc, char **argv)
{
    char model[CLI_PATH_MAX] = "";
    const cli_opt opts[] = {
        CLI_OPT("model", "M", CLI_MODEL, model,
                "llama2.c checkpoint, GGUF, Hugging Face model directory, GPTQ/AWQ\n"
                "checkpoint or native file", .required = true),
    };
    const cli_spec spec = {.cmd = CMD,
                           .about = "Loads the model (every check of a real load) and prints "
                                    "its configuration\nand the sha256 of its files.\n",
                           CLI_OPTS(opts)};
    CLI_PARSE_OR_RETURN(&spec, argc, argv);
    gq_error err = {{0}};
    gq_model m;
    if (gq_model_open_any(model, &m, NULL, &err))
        return cli_report(CMD, &err, GQ_EXIT_USAGE);
    char cfg_sha[65], w_sha[65];
    int rc = gq_model_hashes(model, cfg_sha, w_sha, &err);
    if (!rc) {
        printf("model       %s\n", model);
        if (cfg_sha[0])
            printf("config.json sha256 %s\n", cfg_sha);
        printf("weights     sha256 %s\n", w_sha);
        print_config(&m.cfg);
    }
    gq_model_free(&m);
    return rc ? cli_report(CMD, &err, GQ_EXIT_FAIL) : GQ_EXIT_OK;
}
