/* gq-bench generate: text generation with llama2.c run.c semantics (greedy by default).
 *
 * steps counts positions including the prompt tokens (0 means seq_len; an explicit value above
 * seq_len is refused, the default 256 is cut to seq_len for shorter models);
 * the prompt is encoded with BOS first; generation stops at a BOS token; pieces are printed
 * with the tokenizer's decode rules, skipping unprintable single bytes; a final newline. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_decl.h"
#include "cli/cli.h"
#include "cli/cli_act.h"
#include "cli/cli_model.h"
#include "cli/cli_opts.h"
#include "core/gq_threads.h"
#include "core/gq_time.h"
#include "model/gq_forward.h"
#include "model/gq_model.h"
#include "model/gq_sample.h"
#include "text/gq_tokenizer.h"

static const char *const CMD = "generate";

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

typedef struct gen_opts {
    char model[CLI_PATH_MAX], tokenizer[CLI_PATH_MAX];
    const char *prompt;
    long steps, threads;
    uint64_t seed;
    double temperature, topp;
    cli_act_args act;
} gen_opts;

/* Runs `steps` positions from the prompt's ids (forced while they last, then sampled),
 * printing each piece as it comes and the decode speed on stderr; stops early at BOS.
 * logits and scratch hold vocab_size entries. */
static int generate(const gq_model *m, const gq_tokenizer *tok, gq_decode *dec,
                    const gen_opts *o, const int *prompt, size_t n_prompt, int steps,
                    float *logits, gq_sample_pair *scratch, gq_error *err)
{
    gq_rng rng;
    gq_rng_seed(&rng, o->seed);
    int token = prompt[0], pos = 0;
    double t0 = 0;
    while (pos < steps) {
        if (gq_decode_step(dec, token, pos, logits, err) != 0)
            return -1;
        int next = (size_t)pos + 1 < n_prompt
                       ? prompt[pos + 1]
                       : gq_sample(logits, m->cfg.vocab_size, o->temperature, o->topp, &rng,
                                   scratch);
        pos++;
        if (next == gq_tokenizer_bos_id(tok)) /* run.c: a sampled BOS ends the text */
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
    return 0;
}

/* What a generation holds between loading and the end. */
typedef struct gen_state {
    gq_model m;
    gq_tokenizer *tok;
    cli_act acts;
    char mpath[CLI_PATH_MAX], tpath[CLI_PATH_MAX];
    int steps; /* positions to run, prompt included */
} gen_state;

static void gen_release(gen_state *s, gen_opts *o)
{
    cli_act_free(&s->acts, &o->act);
    gq_model_free(&s->m);
    gq_tokenizer_free(s->tok);
    s->tok = NULL;
}

/* Loads the model, its tokenizer and activation quantizers and fixes the number of steps;
 * on failure nothing stays held and the exit status is returned (0 on success). */
static int gen_load(gen_opts *o, gen_state *s, gq_error *err)
{
    memset(s, 0, sizeof *s);
    if (cli_load_model(o->model, o->tokenizer, &s->m, &s->tok, s->mpath, s->tpath,
                       sizeof s->mpath, err) != 0) {
        cli_act_free(&s->acts, &o->act);
        return GQ_EXIT_USAGE;
    }
    const gq_config *c = &s->m.cfg;
    if (cli_act_attach(&o->act, &s->m, s->mpath, &s->acts, err))
        goto refused;
    if (o->steps > c->seq_len) {
        gq_fail(err, "--steps %ld exceeds the model's seq_len %d (%s)", o->steps, c->seq_len,
                s->mpath);
        goto refused;
    }
    s->steps = o->steps < 0    ? (c->seq_len < 256 ? c->seq_len : 256)
               : o->steps == 0 ? c->seq_len
                               : (int)o->steps;
    /* the KV cache holds the positions asked for, not the header's seq_len; refused up front
     * when even that does not fit the machine */
    if (gq_decode_check(c, s->steps, err)) {
        gq_fail_prefix(err, "%s (%d layers, seq_len %d)", s->mpath, c->n_layers, c->seq_len);
        goto refused;
    }
    return 0;
refused:
    gen_release(s, o);
    return GQ_EXIT_USAGE;
}

/* Encodes the prompt and generates; returns the exit status. */
static int gen_run(gen_state *s, const gen_opts *o, gq_error *err)
{
    const int V = s->m.cfg.vocab_size;
    int *prompt = NULL;
    size_t n_prompt = 0;
    float *logits = malloc((size_t)V * sizeof(float));
    gq_sample_pair *scratch = malloc((size_t)V * sizeof *scratch);
    gq_decode *dec = gq_decode_new_n(&s->m, s->steps, err);
    int rc = GQ_EXIT_FAIL;
    if (!logits || !scratch || !dec) {
        if (!err->msg[0])
            gq_fail(err, "out of memory");
    } else if (gq_tokenizer_encode(s->tok, o->prompt, strlen(o->prompt), true, false, &prompt,
                                   &n_prompt, err) == 0 &&
               generate(&s->m, s->tok, dec, o, prompt, n_prompt, s->steps, logits, scratch,
                        err) == 0)
        rc = GQ_EXIT_OK;
    gq_decode_free(dec);
    free(scratch);
    free(logits);
    free(prompt);
    return rc;
}

int cmd_generate(int argc, char **argv)
{
    gen_opts o = {.prompt = "", .steps = -1}; /* steps -1: the default, 256 or seq_len if smaller */
    const cli_opt opts[] = {
        CLI_MODEL_OPTS(o.model, o.tokenizer),
        CLI_OPT("prompt", "P", CLI_STR, &o.prompt, "prompt text (default: empty, BOS only)"),
        CLI_OPT("steps", "N", CLI_INT, &o.steps,
                "positions to run, prompt included, at most seq_len\n"
                "(default 256, or seq_len if smaller; 0 = seq_len)", .max = 0x1p30),
        CLI_OPT("temperature", "X", CLI_NUM, &o.temperature, "0 = greedy argmax", .def = "0",
                .max = 100),
        CLI_OPT("topp", "P", CLI_NUM, &o.topp, "nucleus sampling cut when temperature > 0",
                .def = "0.9", .max = 1),
        CLI_OPT("seed", "S", CLI_SEED, &o.seed, "sampling seed", .def = "1"),
        CLI_OPT("threads", "N", CLI_INT, &o.threads,
                "threads (default: OMP_NUM_THREADS or all cores)", .min = 1, .max = 4096),
        CLI_ACT_OPTS(&o.act),
    };
    const cli_spec spec = {
        .cmd = CMD, CLI_OPTS(opts),
        .epilog = "Activation / KV-cache quantizers: the --act-* / --kv-* options (dynamic\n"
                  "scales), or M.act.json beside M (written by gq-bench quantize) when it exists.\n"};
    CLI_PARSE_OR_RETURN(&spec, argc, argv);
    if (o.threads > 0)
        gq_threads_set((int)o.threads);
    gq_error err = {{0}};
    gen_state s;
    int rc = gen_load(&o, &s, &err);
    if (rc == 0) {
        rc = gen_run(&s, &o, &err);
        gen_release(&s, &o);
    }
    if (rc != GQ_EXIT_OK)
        cli_report(CMD, &err, rc);
    return rc;
}
