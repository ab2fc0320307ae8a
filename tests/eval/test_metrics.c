/* tests/eval/test_metrics.c - JSD/TVD/Hellinger against hand-computed values,
 * and the documented binning. */
#include "eval/eval.h"
#include "eval/internal.h"
#include "tests/harness.h"

#define NEAR(a, b) (fabs((a) - (b)) < 1e-6)
#define CHECK_NEAR(a, b) CHECKF(NEAR(a, b), "%s = %.9f, want %.9f", #a, (double)(a), (double)(b))

static void test_identical_is_zero(void)
{
    double p[] = {1, 2, 3, 0}, q[] = {2, 4, 6, 0};  /* same after normalising */
    nd_eval_metric m = nd_eval_distances(p, q, 4);
    CHECK_NEAR(m.jsd, 0);
    CHECK_NEAR(m.tvd, 0);
    CHECK_NEAR(m.hel, 0);
}

static void test_disjoint_is_one(void)
{
    double p[] = {3, 0}, q[] = {0, 5};
    nd_eval_metric m = nd_eval_distances(p, q, 2);
    CHECK_NEAR(m.jsd, 1);
    CHECK_NEAR(m.tvd, 1);
    CHECK_NEAR(m.hel, 1);
}

/* p = (1/2, 1/2), q = (1, 0); m = (3/4, 1/4).
 * KL(p||m) = 1/2 log2(2/3) + 1/2 log2 2 = 0.2075187496; KL(q||m) = log2(4/3) =
 * 0.4150374993; JSD = 0.3112781245. TVD = 1/2. BC = sqrt(1/2); HEL =
 * sqrt(1 - 0.7071067812) = 0.5411961001. */
static void test_half_vs_point(void)
{
    double p[] = {2, 2}, q[] = {7, 0};
    nd_eval_metric m = nd_eval_distances(p, q, 2);
    CHECK_NEAR(m.jsd, 0.3112781245);
    CHECK_NEAR(m.tvd, 0.5);
    CHECK_NEAR(m.hel, 0.5411961001);
    nd_eval_metric r = nd_eval_distances(q, p, 2);  /* symmetric */
    CHECK_NEAR(r.jsd, m.jsd);
    CHECK_NEAR(r.hel, m.hel);
}

/* p = (1, 0), q = (2/3, 1/3): JSD = 0.1908745, TVD = 1/3, HEL = 0.4283720. */
static void test_thirds(void)
{
    double p[] = {3, 0}, q[] = {2, 1};
    nd_eval_metric m = nd_eval_distances(p, q, 2);
    CHECK_NEAR(m.jsd, 0.5 * (log2(6.0 / 5) + 2.0 / 3 * log2(0.8) + 1.0 / 3));
    CHECK_NEAR(m.jsd, 0.1908745);
    CHECK_NEAR(m.tvd, 1.0 / 3);
    CHECK_NEAR(m.hel, sqrt(1 - sqrt(2.0 / 3)));
}

static void test_empty_sides(void)
{
    double z[] = {0, 0}, p[] = {1, 1};
    nd_eval_metric m = nd_eval_distances(z, z, 2);
    CHECK(m.jsd == 0 && m.tvd == 0 && m.hel == 0);
    m = nd_eval_distances(z, p, 2);
    CHECK(m.jsd == 1 && m.tvd == 1 && m.hel == 1);
    m = nd_eval_distances(p, z, 0 + 2);
    CHECK(m.jsd == 1);
}

static void test_sparse_merge(void)
{
    /* a = {1:1, 5:1}, b = {5:1, 9:1}: p = (1/2,1/2,0), q = (0,1/2,1/2) */
    uint64_t ka[] = {1, 5}, ca[] = {1, 1}, kb[] = {5, 9}, cb[] = {1, 1};
    double sp[4], sq[4];
    nd_eval_metric m = nd_eval_distances_sparse(ka, ca, 2, kb, cb, 2, sp, sq);
    CHECK_NEAR(m.tvd, 0.5);
    CHECK_NEAR(m.jsd, 0.5);  /* 1/2 (1/2 log2 2 + 1/2 log2 1) * 2 */
    CHECK_NEAR(m.hel, sqrt(0.5));
}

static void test_bins(void)
{
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_LOG2Q, 64, 0), 0);
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_LOG2Q, 64, 1), 1);
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_LOG2Q, 64, 2), 5);
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_LOG2Q, 64, 3), 7);   /* 1.5 >= 2^(2/4) */
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_LOG2Q, 64, 4), 9);
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_LOG2Q, 64, 1500), 43);
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_LOG2Q, 64, UINT64_MAX), 1 + 4 * 63 + 3);
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_LIN32, 16, 40), 1);
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_LIN32, 16, 1500), 46);
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_LIN32, 16, 2047), 63);
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_LIN32, 16, 2048), 64);
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_LIN32, 16, 4096), 68);
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_UNI16, 16, 0), 0);
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_UNI16, 16, 1), 1);
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_UNI16, 16, 4095), 1);
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_UNI16, 16, 4096), 2);
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_UNI16, 16, 65535), 16);
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_UNI16, 32, 0xffffffffu), 16);
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_PORT, 16, 443), 443);
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_PORT, 16, 1024), 1024);
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_PORT, 16, 50000), 1071);
    CHECK_EQ_INT(nd_eval_bin(ND_BIN_EXACT, 8, 77), 77);
}

/* Every value falls in the bin whose lower edge is <= it and the next
 * bin's lower edge is > it. */
static void test_bin_edges_consistent(void)
{
    const nd_eval_binning bs[] = {ND_BIN_LOG2Q, ND_BIN_LIN32, ND_BIN_UNI16, ND_BIN_PORT};
    for (size_t b = 0; b < ND_ARRAY_LEN(bs); b++)
        for (uint64_t v = 0; v < 70000; v += (v < 5000 ? 1 : 7)) {
            uint64_t k = nd_eval_bin(bs[b], 16, v);
            uint64_t lo = nd_eval_bin_lo(bs[b], 16, k), hi = nd_eval_bin_lo(bs[b], 16, k + 1);
            if (bs[b] == ND_BIN_UNI16 && v > 65535)
                break;
            CHECKF(lo <= v && v < hi, "binning %d value %llu key %llu [%llu,%llu)", (int)bs[b],
                   (unsigned long long)v, (unsigned long long)k, (unsigned long long)lo,
                   (unsigned long long)hi);
        }
}

static void test_bin_text(void)
{
    char b[64];
    nd_eval_bin_text(ND_EF_TRANSPORT, 4 << 8 | 6, b, sizeof b);
    CHECK(!strcmp(b, "v4/tcp"));
    nd_eval_bin_text(ND_EF_TCP_FLAGS, 0x12, b, sizeof b);
    CHECK(!strcmp(b, "AS"));
    nd_eval_bin_text(ND_EF_DIR_PATTERN, 3 << 8 | 2, b, sizeof b);
    CHECK(!strcmp(b, "010"));
    nd_eval_bin_text(ND_F_IPV4_TL, nd_eval_bin(ND_BIN_LIN32, 16, 1500), b, sizeof b);
    CHECK(!strcmp(b, "1472-1503"));
    nd_eval_bin_text(ND_F_IPV4_TTL, 64, b, sizeof b);
    CHECK(!strcmp(b, "64"));
}

static void test_feature_table(void)
{
    for (int f = 0; f < ND_EVAL_NFEAT; f++) {
        CHECKF(nd_eval_features[f].name && nd_eval_features[f].doc, "feature %d undocumented", f);
        if (f < ND_F_COUNT && nd_fields[f].width <= 64 &&
            nd_eval_features[f].binning != ND_BIN_HASH && f != ND_F_IPV4_OPT && f != ND_F_TCP_OPT)
            CHECKF(!strcmp(nd_eval_features[f].name, nd_fields[f].name) &&
                       nd_eval_features[f].width == nd_fields[f].width,
                   "feature %d is not codec field %s", f, nd_fields[f].name);
    }
}

ND_TEST_MAIN(ND_TEST(test_identical_is_zero), ND_TEST(test_disjoint_is_one),
             ND_TEST(test_half_vs_point), ND_TEST(test_thirds), ND_TEST(test_empty_sides),
             ND_TEST(test_sparse_merge), ND_TEST(test_bins), ND_TEST(test_bin_edges_consistent),
             ND_TEST(test_bin_text), ND_TEST(test_feature_table))
