/* AdamW with decoupled weight decay (torch.optim.AdamW semantics). */
#include <math.h>

#include "grad/gq_grad.h"

void gq_adamw_init(gq_adamw *opt, double lr, double weight_decay)
{
    opt->lr = lr;
    opt->beta1 = 0.9;
    opt->beta2 = 0.999;
    opt->eps = 1e-8;
    opt->weight_decay = weight_decay;
    opt->t = 0;
}

void gq_adamw_begin_step(gq_adamw *opt) { opt->t++; }

void gq_adamw_update(const gq_adamw *opt, float *p, const float *g, float *m, float *v, size_t n)
{
    const double b1 = opt->beta1, b2 = opt->beta2;
    const double c1 = 1.0 - pow(b1, opt->t), c2 = 1.0 - pow(b2, opt->t);
    const double decay = 1.0 - opt->lr * opt->weight_decay;
    for (size_t i = 0; i < n; i++) {
        double mi = b1 * m[i] + (1 - b1) * g[i];
        double vi = b2 * v[i] + (1 - b2) * (double)g[i] * g[i];
        m[i] = (float)mi;
        v[i] = (float)vi;
        double pi = p[i] * decay;
        p[i] = (float)(pi - opt->lr * (mi / c1) / (sqrt(vi / c2) + opt->eps));
    }
}
