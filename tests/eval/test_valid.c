/* tests/eval/test_valid.c - the packet checker on known-good and broken packets. */
#include "eval/eval.h"
#include "tests/eval/pkt.h"
#include "tests/harness.h"

#define HAS(r, c) (((r).bad >> (c)) & 1)
#define UNV(r, c) (((r).unverified >> (c)) & 1)

/* Wikipedia's IPv4 header checksum example (checksum b861 is correct), made
 * into a whole UDP datagram with checksum 0 (allowed over IPv4). */
static uint32_t wiki_udp(uint8_t *p)
{
    static const uint8_t hdr[20] = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                                    0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
    memset(p, 0, 0x73);
    memcpy(p, hdr, 20);
    p[20] = 0x30, p[21] = 0x39, p[22] = 0x00, p[23] = 0x35;  /* 12345 -> 53 */
    p[24] = 0, p[25] = 0x73 - 20;
    return 0x73;
}

static void test_wikipedia_packet_valid(void)
{
    uint8_t p[200];
    uint32_t n = wiki_udp(p);
    nd_valid_result r = nd_valid_check(p, n, n);
    CHECK_EQ_INT(r.bad, 0);
    CHECK_EQ_INT(r.unverified, 0);
    p[11] ^= 1;
    r = nd_valid_check(p, n, n);
    CHECK_EQ_INT(r.bad, 1u << ND_V_IP_CKSUM);
}

static void test_ip_breakage(void)
{
    uint8_t p[200];
    uint32_t n = wiki_udp(p);
    p[8] = 0;  /* TTL 0 (and the checksum no longer matches) */
    nd_valid_result r = nd_valid_check(p, n, n);
    CHECK(HAS(r, ND_V_TTL0) && HAS(r, ND_V_IP_CKSUM));
    n = wiki_udp(p);
    r = nd_valid_check(p, n - 1, n - 1);  /* IP length beyond the packet */
    CHECK(HAS(r, ND_V_IP_LEN));
    r = nd_valid_check(p, n, n + 6);       /* Ethernet padding is fine */
    CHECK_EQ_INT(r.bad, 0);
    p[0] = 0x44;
    r = nd_valid_check(p, n, n);
    CHECK_EQ_INT(r.bad, 1u << ND_V_IHL);
    p[0] = 0x55;
    r = nd_valid_check(p, n, n);
    CHECK_EQ_INT(r.bad, 1u << ND_V_VERSION);
    n = wiki_udp(p);
    p[25] = 50;  /* UDP length != IP payload */
    r = nd_valid_check(p, n, n);
    CHECK_EQ_INT(r.bad, 1u << ND_V_UDP_LEN);
    r = nd_valid_check(p, 10, 10);
    CHECK_EQ_INT(r.bad, 1u << ND_V_SHORT);
}

static void test_tcp_checks(void)
{
    uint8_t p[1600];
    uint32_t n = tp_tcp4(p, 64, 0x18, 50000, 443, 1, 1000, 100);
    nd_valid_result r = nd_valid_check(p, n, n);
    CHECK_EQ_INT(r.bad, 0);
    CHECK_EQ_INT(r.unverified, 0);
    p[n - 1] ^= 0x40;  /* payload damage: only the TCP checksum notices */
    r = nd_valid_check(p, n, n);
    CHECK_EQ_INT(r.bad, 1u << ND_V_TCP_CKSUM);
    /* truncated capture: not verifiable, not invalid */
    r = nd_valid_check(p, n - 30, n);
    CHECK_EQ_INT(r.bad, 0);
    CHECK(UNV(r, ND_V_TCP_CKSUM));
    static const uint8_t bad_flags[] = {0x00, 0x03, 0x06, 0x01, 0x08, 0x29};
    for (size_t i = 0; i < ND_ARRAY_LEN(bad_flags); i++) {
        n = tp_tcp4(p, 64, bad_flags[i], 50000, 443, 1, 1000, 0);
        r = nd_valid_check(p, n, n);
        CHECKF(r.bad == 1u << ND_V_TCP_FLAGS, "flags %#x: bad %#x", bad_flags[i], r.bad);
    }
    static const uint8_t good_flags[] = {0x02, 0x12, 0x10, 0x11, 0x14, 0x04, 0x18, 0xc2};
    for (size_t i = 0; i < ND_ARRAY_LEN(good_flags); i++) {
        n = tp_tcp4(p, 64, good_flags[i], 50000, 443, 1, 1000, 0);
        r = nd_valid_check(p, n, n);
        CHECKF(r.bad == 0, "flags %#x: bad %#x", good_flags[i], r.bad);
    }
    n = tp_tcp4(p, 64, 0x10, 0, 443, 1, 1000, 0);
    r = nd_valid_check(p, n, n);
    CHECK_EQ_INT(r.bad, 1u << ND_V_PORT0);
    n = tp_tcp4(p, 64, 0x10, 5, 443, 1, 1000, 0);
    p[32] = 4 << 4;  /* doff 4 */
    r = nd_valid_check(p, n, n);
    CHECK(HAS(r, ND_V_TCP_DOFF));
    n = tp_tcp4(p, 64, 0x10, 5, 443, 1, 1000, 0);
    p[6] = 0xc0;  /* reserved + DF */
    r = nd_valid_check(p, n, n);
    CHECK(HAS(r, ND_V_IP_FLAGS));
}

/* Every byte string of random content and length: no crash, no read past
 * caplen (ASan), and a verdict. */
static void test_random_bytes_safe(void)
{
    uint64_t s = nd_test_seed();
    for (int it = 0; it < 20000; it++) {
        uint32_t n = (uint32_t)(s >> 40) % 120;
        uint8_t *p = malloc(n ? n : 1);
        for (uint32_t i = 0; i < n; i++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            p[i] = (uint8_t)(s >> 56);
        }
        if (n && it % 2)
            p[0] = (uint8_t)(it % 4 ? 0x45 : 0x60);
        nd_valid_result r = nd_valid_check(p, n, n + (uint32_t)(it % 3));
        CHECK(r.bad || r.unverified || n >= 20);
        free(p);
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    }
}

ND_TEST_MAIN(ND_TEST(test_wikipedia_packet_valid), ND_TEST(test_ip_breakage),
             ND_TEST(test_tcp_checks), ND_TEST(test_random_bytes_safe))
