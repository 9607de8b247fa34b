/* libFuzzer target: the resume journal's readers. The first byte chooses: even, the rest is a
 * cell record (gq_journal_parse_record for cell c001 of FUZZ_KEY); odd, the rest is a baseline
 * file (gq_eval_baseline_load, as a resume reads .journal/baseline.logp). */
#include <stddef.h>
#include <stdint.h>

#include "eval/eval_baseline.h"
#include "fuzz_util.h"
#include "runner/gq_journal.h"

/* The key of the seed records (tests/fuzz/corpus/journal). */
#define FUZZ_KEY "77dbd09c9bc679454e2ef493ccd5df0fa4c6b4124539f4560f87e7c94f2e29db"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return -1;
    if (data[0] % 2 == 0) {
        char why[256];
        json_decref(gq_journal_parse_record((const char *)data + 1, size - 1, "c001", FUZZ_KEY,
                                            why));
        return 0;
    }
    gq_eval_baseline *b = NULL;
    gq_error err = {{0}};
    if (gq_eval_baseline_load(fuzz_write_file("baseline.logp", data + 1, size - 1), &b, &err))
        return 0;
    volatile double sum = gq_eval_baseline_ppl(b);
    for (uint64_t i = 0; i < b->hdr->scored; i++)
        sum += b->nll[i] + b->argmax[i] + b->logp[i * (uint64_t)b->hdr->vocab];
    (void)sum;
    gq_eval_baseline_free(b);
    return 0;
}
