/* Next-token sampling (see gq_sample.h). */
#include "model/gq_sample.h"

#include <math.h>
#include <stdlib.h>

int gq_sample_argmax(const float *logits, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best])
            best = i;
    return best;
}

/* Descending probability, then ascending id: a total order, so the sort is deterministic. */
static int by_prob_desc(const void *a, const void *b)
{
    const gq_sample_pair *x = a, *y = b;
    return x->p < y->p ? 1 : x->p > y->p ? -1 : (x->id - y->id);
}

int gq_sample(float *logits, int n, double temperature, double topp, gq_rng *rng,
              gq_sample_pair *scratch)
{
    if (temperature <= 0)
        return gq_sample_argmax(logits, n);
    float mx = logits[gq_sample_argmax(logits, n)];
    double sum = 0;
    for (int i = 0; i < n; i++) {
        logits[i] = expf((float)((logits[i] - mx) / temperature));
        sum += logits[i];
    }
    for (int i = 0; i < n; i++)
        logits[i] = (float)(logits[i] / sum);
    double coin = gq_rng_uniform(rng);
    if (topp <= 0 || topp >= 1) {
        double cdf = 0;
        for (int i = 0; i < n; i++) {
            cdf += logits[i];
            if (coin < cdf)
                return i;
        }
        return n - 1;
    }
    /* nucleus: tokens below (1 - topp) / (n - 1) cannot be in it, so sort only the rest */
    float cutoff = (float)((1.0 - topp) / (n > 1 ? n - 1 : 1));
    int m = 0;
    for (int i = 0; i < n; i++)
        if (logits[i] >= cutoff)
            scratch[m++] = (gq_sample_pair){logits[i], i};
    qsort(scratch, (size_t)m, sizeof *scratch, by_prob_desc);
    double cum = 0;
    int last = m - 1;
    for (int i = 0; i < m; i++) {
        cum += scratch[i].p;
        if (cum > topp) {
            last = i;
            break;
        }
    }
    double r = coin * cum, cdf = 0;
    for (int i = 0; i <= last; i++) {
        cdf += scratch[i].p;
        if (r < cdf)
            return scratch[i].id;
    }
    return scratch[last].id;
}
