#ifndef TEST_MODEL_UTIL_H
#define TEST_MODEL_UTIL_H
/* Shared by the model tests: comparisons and test registration lists. */
#include "test_support.h"

#include <math.h>

/* max |a - b| / (1 + |b|) over n floats. */
static inline double max_rel_diff(const float *a, const float *b, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / (1.0 + fabs((double)b[i]));
        if (!(d <= worst)) /* catches NaN */
            worst = isnan(d) ? INFINITY : d;
    }
    return worst;
}

extern const struct CMUnitTest model_io_tests[];
extern const size_t model_io_tests_n;

#endif
