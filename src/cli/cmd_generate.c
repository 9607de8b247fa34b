/* gq-bench generate: text generation with llama2.c run.c semantics (greedy by default).
 *
 * steps counts positions including the prompt tokens (0 means seq_len; an explicit value above
 * seq_len is refused, the default 256 is cut to seq_len for shorter models);
 * the prompt is encoded with BOS first; generation stops at a BOS token; pieces are printed
 * with the tokenizer's decode rules, skipping unprintable single bytes; a final newline. */
#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_model.h"
#include "core/gq_threads.h"
#include "core/gq_time.h"
#include "model/gq_forward.h"
#include "model/gq_model.h"
#include "model/gq_sample.h"
#include "text/gq_tokenizer.h"

static const char *const CMD = "generate";

static void help(void)
{
    printf("usage: gq-bench generate --model M --tokenizer T [--prompt P] [--steps N]\n"
           "                         [--temperature X] [--topp P] [--seed S] [--threads N]\n\n"
           "  --model M        llama2.c checkpoint (legacy or version 1); assets: paths work\n"
           "  --tokenizer T    llama2.c tokenizer.bin matching the model's vocabulary\n"
           "  --prompt P       prompt text (default: empty, BOS only)\n"
           "  --steps N        positions to run, prompt included, at most seq_len\n"
           "                   (default 256, or seq_len if smaller; 0 = seq_len)\n"
           "  --temperature X  0 = greedy argmax (default 0)\n"
           "  --topp P         nucleus sampling cut when temperature > 0 (default 0.9)\n"
           "  --seed S         sampling seed (default 1)\n"
           "  --threads N      threads (default: OMP_NUM_THREADS or all cores)\n");
}

/* Prints a piece unless it is a single unprintable byte (as llama2.c's safe_printf). */
static void print_piece(const char *piece)
{
    if (!piece || !piece[0])
        return;
    if (!piece[1]) {
        unsigned char b = (unsigned char)piece[0];
        if (!(isprint(b) || isspace(b)))
            return;
    }
    fputs(piece, stdout);
}

typedef struct {
    const char *model, *tokenizer, *prompt;
    long steps, seed, threads;
    double temperature, topp;
} gen_opts;

static int parse(int argc, char **argv, gen_opts *o)
{
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},     {"tokenizer", required_argument, 0, 'z'},
        {"prompt", required_argument, 0, 'i'},    {"steps", required_argument, 0, 'n'},
        {"temperature", required_argument, 0, 't'}, {"topp", required_argument, 0, 'p'},
        {"seed", required_argument, 0, 's'},      {"threads", required_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
    *o = (gen_opts){NULL, NULL, "", -1, 1, 0, 0.0, 0.9}; /* steps -1: default */
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int bad = 0;
        switch (ch) {
        case 'm': o->model = optarg; break;
        case 'z': o->tokenizer = optarg; break;
        case 'i': o->prompt = optarg; break;
        case 'n': bad = cli_int(CMD, "--steps", optarg, 0, 1L << 30, &o->steps); break;
        case 't': bad = cli_double(CMD, "--temperature", optarg, 0, 100, &o->temperature); break;
        case 'p': bad = cli_double(CMD, "--topp", optarg, 0, 1, &o->topp); break;
        case 's': bad = cli_int(CMD, "--seed", optarg, 0, 1L << 62, &o->seed); break;
        case 'j': bad = cli_int(CMD, "--threads", optarg, 1, 4096, &o->threads); break;
        case 'h': help(); return 1;
        default:
            return cli_usage_error(CMD, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
        if (bad)
            return GQ_EXIT_USAGE;
    }
    if (optind < argc)
        return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (!o->model || !o->tokenizer)
        return cli_usage_error(CMD, "--model and --tokenizer are required");
    return 0;
}

int cmd_generate(int argc, char **argv)
{
    gen_opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc == 1 ? GQ_EXIT_OK : rc;
    if (o.threads > 0)
        gq_threads_set((int)o.threads);
    gq_error err = {{0}};
    char mpath[4096], tpath[4096];
    gq_model m;
    gq_tokenizer *tok = NULL;
    if (cli_load_model(o.model, o.tokenizer, &m, &tok, mpath, tpath, sizeof mpath, &err) != 0)
        return cli_report(CMD, &err, GQ_EXIT_USAGE);
    if (o.steps > m.cfg.seq_len) {
        cli_usage_error(CMD, "--steps %ld exceeds the model's seq_len %d (%s)", o.steps,
                        m.cfg.seq_len, mpath);
        gq_model_free(&m);
        gq_tokenizer_free(tok);
        return GQ_EXIT_USAGE;
    }
    int steps = o.steps < 0 ? (m.cfg.seq_len < 256 ? m.cfg.seq_len : 256)
                : o.steps == 0 ? m.cfg.seq_len : (int)o.steps;
    int *prompt = NULL;
    size_t n_prompt = 0;
    float *logits = malloc((size_t)m.cfg.vocab_size * sizeof(float));
    gq_sample_pair *scratch = malloc((size_t)m.cfg.vocab_size * sizeof *scratch);
    gq_decode *dec = gq_decode_new(&m, &err);
    rc = GQ_EXIT_FAIL;
    if (!logits || !scratch || !dec) {
        if (!err.msg[0])
            gq_fail(&err, "out of memory");
        goto done;
    }
    if (gq_tokenizer_encode(tok, o.prompt, strlen(o.prompt), true, false, &prompt, &n_prompt,
                            &err) != 0)
        goto done;
    gq_rng rng;
    gq_rng_seed(&rng, (uint64_t)o.seed);
    int token = prompt[0], pos = 0;
    double t0 = 0;
    while (pos < steps) {
        if (gq_decode_step(dec, token, pos, logits, &err) != 0)
            goto done;
        int next = (size_t)pos + 1 < n_prompt
                       ? prompt[pos + 1]
                       : gq_sample(logits, m.cfg.vocab_size, o.temperature, o.topp, &rng,
                                   scratch);
        pos++;
        if (next == GQ_TOKEN_BOS)
            break;
        char buf[2];
        print_piece(gq_tokenizer_decode(tok, token, next, buf));
        fflush(stdout);
        token = next;
        if (t0 == 0)
            t0 = gq_now(); /* timing starts after the first position, as run.c */
    }
    printf("\n");
    if (pos > 1)
        fprintf(stderr, "achieved tok/s: %.1f (decode, %d positions after the first, %d threads)\n",
                (pos - 1) / (gq_now() - t0), pos - 1, gq_threads_get());
    rc = GQ_EXIT_OK;
done:
    if (rc != GQ_EXIT_OK)
        cli_report(CMD, &err, rc);
    gq_decode_free(dec);
    free(scratch);
    free(logits);
    free(prompt);
    gq_tokenizer_free(tok);
    gq_model_free(&m);
    return rc;
}
