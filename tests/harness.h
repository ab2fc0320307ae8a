/* tests/harness.h - the tiny unit-test harness every C test uses.
 *
 *   static void test_something(void) { CHECK(1 + 1 == 2); }
 *   ND_TEST_MAIN(ND_TEST(test_something), ...)
 *
 * Each test program prints one line per test and ends with the line
 * "N passed, M failed" that tests/run.sh adds up. Exit status 0 only when
 * every test passed. `prog NAME` runs the tests whose names contain NAME. */
#ifndef ND_TESTS_HARNESS_H
#define ND_TESTS_HARNESS_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const char *name;
    void (*fn)(void);
} nd_test_case;

static int nd_test_cur_failed;
static int nd_test_checks;

static void nd_test_fail_(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), unused));
static void nd_test_fail_(const char *file, int line, const char *fmt, ...)
{
    if (nd_test_cur_failed < 10) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stdout, "    %s:%d: ", file, line);
        vfprintf(stdout, fmt, ap);
        fputc('\n', stdout);
        va_end(ap);
    }
    nd_test_cur_failed++;
}

#define CHECK(c)                                                              \
    do {                                                                      \
        nd_test_checks++;                                                     \
        if (!(c))                                                             \
            nd_test_fail_(__FILE__, __LINE__, "CHECK(%s) failed", #c);        \
    } while (0)
#define CHECKF(c, ...)                                                        \
    do {                                                                      \
        nd_test_checks++;                                                     \
        if (!(c))                                                             \
            nd_test_fail_(__FILE__, __LINE__, __VA_ARGS__);                   \
    } while (0)
#define CHECK_EQ_INT(a, b)                                                    \
    do {                                                                      \
        long long a_ = (long long)(a), b_ = (long long)(b);                   \
        CHECKF(a_ == b_, "%s == %s failed: %lld != %lld", #a, #b, a_, b_);    \
    } while (0)
#define CHECK_OK(expr, errp)                                                  \
    do {                                                                      \
        int st_ = (int)(expr);                                                \
        CHECKF(st_ == 0, "%s failed (%d): %s", #expr, st_, (errp)->msg);      \
    } while (0)

#define ND_TEST(fn) {#fn, fn}

/* Directory of the shared real captures: $ND_TESTDATA or ../shared/testdata. */
static const char *nd_testdata(void) __attribute__((unused));
static const char *nd_testdata(void)
{
    const char *d = getenv("ND_TESTDATA");
    return d && *d ? d : "../shared/testdata";
}

/* rel under nd_testdata(), in a buffer the next call overwrites. */
static const char *nd_td(const char *rel) __attribute__((unused));
static const char *nd_td(const char *rel)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", nd_testdata(), rel);
    return buf;
}

/* splitmix64 over nd_rng_state: seed it (from nd_test_seed()) per test. */
static uint64_t nd_rng_state __attribute__((unused));
static uint64_t nd_rnd(void) __attribute__((unused));
static uint64_t nd_rnd(void)
{
    uint64_t z = (nd_rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A seed for randomized tests: $ND_SEED if set, else the clock. Printed. */
static uint64_t nd_test_seed(void) __attribute__((unused));
static uint64_t nd_test_seed(void)
{
    static uint64_t seed;
    static int done;
    if (!done) {
        const char *s = getenv("ND_SEED");
        seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)clock();
        printf("  seed %llu (replay with ND_SEED=%llu)\n", (unsigned long long)seed,
               (unsigned long long)seed);
        done = 1;
    }
    return seed;
}

static int nd_test_run(const nd_test_case *cases, size_t n, int argc, char **argv)
{
    int passed = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (argc > 1 && !strstr(cases[i].name, argv[1]))
            continue;
        nd_test_cur_failed = 0;
        cases[i].fn();
        if (nd_test_cur_failed) {
            printf("FAIL %s\n", cases[i].name);
            failed++;
        } else {
            printf("ok   %s\n", cases[i].name);
            passed++;
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#define ND_TEST_MAIN(...)                                                     \
    int main(int argc, char **argv)                                           \
    {                                                                         \
        static const nd_test_case cases_[] = {__VA_ARGS__};                   \
        return nd_test_run(cases_, sizeof cases_ / sizeof cases_[0], argc,    \
                           argv);                                             \
    }

#endif
