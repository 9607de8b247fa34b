/* Block-sized buffers (core/gq_alloc.h): alignment, zero fill, sizes that overflow, and the
 * huge-page advice on the buffer's mapping. */
#include "test_support.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gq_alloc.h"

static void test_alignment(void **state)
{
    (void)state;
    const size_t sizes[] = {1, 100, GQ_ALLOC_HUGE - 1, GQ_ALLOC_HUGE, 3 * GQ_ALLOC_HUGE + 5};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        unsigned char *p = gq_alloc_big(sizes[i]);
        assert_non_null(p);
        const uintptr_t align = sizes[i] >= GQ_ALLOC_HUGE ? GQ_ALLOC_HUGE : 64;
        assert_int_equal((uintptr_t)p % align, 0);
        memset(p, 0x5a, sizes[i]); /* every byte asked for is writable (ASan checks the end) */
        free(p);
    }
}

/* Memory handed back dirty must come back zeroed, small (heap) and big alike. */
static void test_zero_fill(void **state)
{
    (void)state;
    const size_t sizes[] = {96, 5000, 2 * GQ_ALLOC_HUGE + 64};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        unsigned char *dirty = gq_alloc_big(sizes[i]);
        assert_non_null(dirty);
        memset(dirty, 0xab, sizes[i]);
        free(dirty);
        gq_error err = {{0}};
        unsigned char *a = gq_calloc_big(sizes[i] / 4, 4);
        unsigned char *b = gq_alloc_zero(sizes[i], "a zeroed buffer", &err);
        assert_non_null(a);
        assert_non_null(b);
        for (size_t j = 0; j < sizes[i]; j++) {
            assert_int_equal(a[j], 0);
            assert_int_equal(b[j], 0);
        }
        free(a);
        free(b);
    }
}

static void test_sizes_that_overflow(void **state)
{
    (void)state;
    assert_null(gq_alloc_big(SIZE_MAX));
    assert_null(gq_alloc_big(SIZE_MAX - GQ_ALLOC_HUGE + 2));
    assert_null(gq_calloc_big(SIZE_MAX / 2 + 1, 2));
    assert_null(gq_calloc_big(4, SIZE_MAX / 3));
    gq_error err = {{0}};
    assert_null(gq_alloc_zero(SIZE_MAX, "the test's tensor", &err));
    assert_non_null(strstr(err.msg, "out of memory"));
    assert_non_null(strstr(err.msg, "the test's tensor"));
}

/* VmFlags of the mapping holding p (/proc/self/smaps), or "" when none is found. */
static void vm_flags_of(const void *p, char *flags, size_t cap)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    bool in = false;
    flags[0] = '\0';
    while (f && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
            in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(flags, cap, "%s", line + 8);
            break;
        }
    }
    if (f)
        fclose(f);
}

/* A big buffer's mapping carries the huge-page advice ("hg" in VmFlags);
 * skipped on kernels without transparent huge pages. */
static void test_huge_page_advice(void **state)
{
    (void)state;
    if (access("/sys/kernel/mm/transparent_hugepage/enabled", R_OK) != 0)
        skip();
    char flags[512];
    float *big = gq_alloc_big(8 * GQ_ALLOC_HUGE);
    assert_non_null(big);
    big[0] = 1.0f;
    vm_flags_of(big, flags, sizeof flags);
    assert_non_null(strstr(flags, " hg"));
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alignment),
        cmocka_unit_test(test_zero_fill),
        cmocka_unit_test(test_sizes_that_overflow),
        cmocka_unit_test(test_huge_page_advice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
