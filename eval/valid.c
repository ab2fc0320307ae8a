/* eval/valid.c - what tools reject in one IP packet (bytes from the IP
 * header on). Used by the report and usable by any test that wants "would
 * Wireshark/Zeek/the kernel accept this?". Never reads past caplen. */
#include "eval/eval.h"

#include <string.h>

const char *const nd_valid_check_names[ND_V_COUNT] = {
    [ND_V_SHORT] = "short",         [ND_V_VERSION] = "ip_version",
    [ND_V_IHL] = "ipv4_ihl",        [ND_V_IP_LEN] = "ip_length",
    [ND_V_IP_CKSUM] = "ipv4_cksum", [ND_V_IP_FLAGS] = "ipv4_flags",
    [ND_V_TTL0] = "ttl_zero",       [ND_V_TCP_DOFF] = "tcp_doff",
    [ND_V_TCP_FLAGS] = "tcp_flags", [ND_V_TCP_CKSUM] = "tcp_cksum",
    [ND_V_UDP_LEN] = "udp_length",  [ND_V_UDP_CKSUM] = "udp_cksum",
    [ND_V_ICMP_CKSUM] = "icmp_cksum", [ND_V_PORT0] = "port_zero",
};

#define BAD(r, c) ((r).bad |= 1u << (c))
#define UNV(r, c) ((r).unverified |= 1u << (c))

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t acc)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        acc += (uint32_t)p[i] << 8 | p[i + 1];
    if (n & 1)
        acc += (uint32_t)p[n - 1] << 8;
    return acc;
}
static uint16_t fold(uint32_t acc)
{
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)acc;
}

/* One's-complement sum of the pseudo-header (RFC 793 / RFC 8200 8.1). */
static uint32_t pseudo(const uint8_t *ip, int ver, uint32_t proto, uint32_t l4len)
{
    uint32_t acc = 0;
    if (ver == 4)
        acc = sum16(ip + 12, 8, 0);
    else
        acc = sum16(ip + 8, 32, 0);
    acc += proto;
    acc += l4len & 0xffff;
    acc += l4len >> 16;
    return acc;
}

nd_valid_result nd_valid_check(const uint8_t *ip, uint32_t caplen, uint32_t wirelen)
{
    nd_valid_result r = {0, 0};
    if (wirelen < caplen)
        wirelen = caplen;
    if (caplen < 1) {
        BAD(r, ND_V_SHORT);
        return r;
    }
    int ver = ip[0] >> 4;
    uint32_t hl, total, proto;
    bool later_frag = false, first_frag = false;
    if (ver == 4) {
        if (caplen < 20) {
            BAD(r, ND_V_SHORT);
            return r;
        }
        hl = (uint32_t)(ip[0] & 15) * 4;
        total = (uint32_t)ip[2] << 8 | ip[3];
        proto = ip[9];
        if (hl < 20) {
            BAD(r, ND_V_IHL);
            return r;  /* nothing after it can be located */
        }
        if (total < hl || total > wirelen)
            BAD(r, ND_V_IP_LEN);
        if (hl > caplen)
            UNV(r, ND_V_IP_CKSUM);
        else if (fold(sum16(ip, hl, 0)) != 0xffff)
            BAD(r, ND_V_IP_CKSUM);
        uint32_t fl = (uint32_t)ip[6] << 8 | ip[7];
        bool rb = fl & 0x8000, df = fl & 0x4000, mf = fl & 0x2000;
        uint32_t off = fl & 0x1fff;
        if (rb || (df && (mf || off)))
            BAD(r, ND_V_IP_FLAGS);
        if (ip[8] == 0)
            BAD(r, ND_V_TTL0);
        later_frag = off != 0;
        first_frag = mf && !off;
    } else if (ver == 6) {
        if (caplen < 40) {
            BAD(r, ND_V_SHORT);
            return r;
        }
        hl = 40;
        total = ((uint32_t)ip[4] << 8 | ip[5]) + 40;
        proto = ip[6];
        if (total > wirelen)
            BAD(r, ND_V_IP_LEN);
        if (ip[7] == 0)
            BAD(r, ND_V_TTL0);
        /* extension headers are not walked: their L4 is not checked */
        if (proto == 44)
            later_frag = true;
    } else {
        BAD(r, ND_V_VERSION);
        return r;
    }
    if (r.bad & (1u << ND_V_IP_LEN) || later_frag)
        return r;  /* the L4 header cannot be trusted or is not here */

    const uint8_t *l4 = ip + hl;
    uint32_t l4len = total - hl;              /* from the IP header */
    uint32_t l4cap = caplen > hl ? caplen - hl : 0;
    if (l4cap > l4len)
        l4cap = l4len;                         /* padding is not L4 */
    bool whole = !first_frag && l4cap == l4len;
    if (proto == 6) {
        if (l4len < 20) {
            BAD(r, ND_V_SHORT);
            return r;
        }
        if (l4cap < 20) {
            UNV(r, ND_V_TCP_DOFF);
            UNV(r, ND_V_TCP_FLAGS);
            UNV(r, ND_V_TCP_CKSUM);
            UNV(r, ND_V_PORT0);
            return r;
        }
        uint32_t doff = (uint32_t)(l4[12] >> 4) * 4;
        if (doff < 20 || doff > l4len)
            BAD(r, ND_V_TCP_DOFF);
        uint8_t fl = l4[13];
        bool fin = fl & 1, syn = fl & 2, rst = fl & 4, psh = fl & 8, ack = fl & 16, urg = fl & 32;
        if ((fl & 0x3f) == 0 || (syn && fin) || (syn && rst) || (!ack && (fin || psh || urg)))
            BAD(r, ND_V_TCP_FLAGS);
        if (!(l4[0] | l4[1]) || !(l4[2] | l4[3]))
            BAD(r, ND_V_PORT0);
        if (!whole)
            UNV(r, ND_V_TCP_CKSUM);
        else if (fold(sum16(l4, l4len, pseudo(ip, ver, 6, l4len))) != 0xffff)
            BAD(r, ND_V_TCP_CKSUM);
    } else if (proto == 17) {
        if (l4len < 8) {
            BAD(r, ND_V_SHORT);
            return r;
        }
        if (l4cap < 8) {
            UNV(r, ND_V_UDP_LEN);
            UNV(r, ND_V_UDP_CKSUM);
            UNV(r, ND_V_PORT0);
            return r;
        }
        uint32_t ulen = (uint32_t)l4[4] << 8 | l4[5];
        /* a first fragment carries only part of the datagram */
        if (ulen < 8 || (!first_frag && ulen != l4len))
            BAD(r, ND_V_UDP_LEN);
        if (!(l4[0] | l4[1]) || !(l4[2] | l4[3]))
            BAD(r, ND_V_PORT0);
        uint16_t ck = (uint16_t)(l4[6] << 8 | l4[7]);
        if (ck == 0) {
            if (ver == 6)
                BAD(r, ND_V_UDP_CKSUM);  /* optional in IPv4 only */
        } else if (!whole || ulen != l4len) {
            UNV(r, ND_V_UDP_CKSUM);
        } else if (fold(sum16(l4, l4len, pseudo(ip, ver, 17, l4len))) != 0xffff) {
            BAD(r, ND_V_UDP_CKSUM);
        }
    } else if ((ver == 4 && proto == 1) || (ver == 6 && proto == 58)) {
        if (l4len < 4) {
            BAD(r, ND_V_SHORT);
            return r;
        }
        uint32_t acc = ver == 6 ? pseudo(ip, 6, 58, l4len) : 0;
        if (!whole)
            UNV(r, ND_V_ICMP_CKSUM);
        else if (fold(sum16(l4, l4len, acc)) != 0xffff)
            BAD(r, ND_V_ICMP_CKSUM);
    }
    return r;
}
