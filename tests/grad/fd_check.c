#include "fd_check.h"

#include <math.h>
#include <stdlib.h>

#include "test_support.h"

double fd_rel_error(fd_loss_fn f, void *ctx, double *p, const double *g, size_t n, double h)
{
    double num = 0, na = 0, nf = 0;
    for (size_t i = 0; i < n; i++) {
        double keep = p[i];
        p[i] = keep + h;
        double lp = f(ctx);
        p[i] = keep - h;
        double lm = f(ctx);
        p[i] = keep;
        double gf = (lp - lm) / (2 * h);
        num += (g[i] - gf) * (g[i] - gf);
        na += g[i] * g[i];
        nf += gf * gf;
    }
    double den = fmax(fmax(sqrt(na), sqrt(nf)), 1e-30);
    return sqrt(num) / den;
}

void fd_randn(gq_rng *r, double *p, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++) p[i] = scale * gq_rng_normal(r);
}

double fd_dot(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

double *fd_zeros(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}
