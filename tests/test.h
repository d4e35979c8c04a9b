/* A tiny test harness: checks print file:line and both values, and each
 * test program ends with "N passed, N failed" (tests/run.sh sums them). */
#ifndef SDM_TEST_H
#define SDM_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_passed, test_failed;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (cond)                                                                    \
            test_passed++;                                                           \
        else {                                                                       \
            test_failed++;                                                           \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

#define CHECK_INT(a, b)                                                                             \
    do {                                                                                            \
        long long a_ = (long long)(a), b_ = (long long)(b);                                         \
        if (a_ == b_)                                                                               \
            test_passed++;                                                                          \
        else {                                                                                      \
            test_failed++;                                                                          \
            fprintf(stderr, "%s:%d: %s == %s: %lld != %lld\n", __FILE__, __LINE__, #a, #b, a_, b_); \
        }                                                                                           \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                              \
    do {                                                                                                   \
        double a_ = (double)(a), b_ = (double)(b);                                                         \
        if (fabs(a_ - b_) <= (tol))                                                                        \
            test_passed++;                                                                                 \
        else {                                                                                             \
            test_failed++;                                                                                 \
            fprintf(stderr, "%s:%d: %s ~ %s: %.9g vs %.9g (tol %g)\n", __FILE__, __LINE__, #a, #b, a_, b_, \
                    (double)(tol));                                                                        \
        }                                                                                                  \
    } while (0)

#define CHECK_STR(a, b)                                                                                            \
    do {                                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                                           \
        if (a_ && b_ && strcmp(a_, b_) == 0)                                                                       \
            test_passed++;                                                                                         \
        else {                                                                                                     \
            test_failed++;                                                                                         \
            fprintf(stderr, "%s:%d: %s == %s: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a, #b, a_ ? a_ : "(null)", \
                    b_ ? b_ : "(null)");                                                                           \
        }                                                                                                          \
    } while (0)

/* Substring check, for error messages. */
#define CHECK_CONTAINS(hay, needle)                                                                                 \
    do {                                                                                                            \
        const char *h_ = (hay), *n_ = (needle);                                                                     \
        if (h_ && n_ && strstr(h_, n_))                                                                             \
            test_passed++;                                                                                          \
        else {                                                                                                      \
            test_failed++;                                                                                          \
            fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, h_ ? h_ : "(null)", n_); \
        }                                                                                                           \
    } while (0)

/* A test that cannot run here says why and counts as skipped, not passed. */
#define SKIP(why)                     \
    do {                              \
        printf("skipped: %s\n", why); \
    } while (0)

/* Built by `make test-asan`: the tests and ./sdmorph run under
 * AddressSanitizer (a test may skip what runs none of our code). */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static inline int test_report(void)
{
    printf("%d passed, %d failed\n", test_passed, test_failed);
    return test_failed ? 1 : 0;
}

/* Paths the tests share: the analytic bundle made by `make`, ../shared. */
static inline const char *test_build_dir(void)
{
    const char *b = getenv("SDM_BUILD");
    return b && *b ? b : "build";
}

/* The sdmorph binary the command tests run: $SDM_BIN (make test-asan's
 * sanitized one), else ./sdmorph. */
static inline const char *test_sdmorph(void)
{
    const char *b = getenv("SDM_BIN");
    return b && *b ? b : "./sdmorph";
}

#endif
