/* codec/row.c - one IP packet <-> one nPrint row (nPrint 1.2.1's rules). */
#include "codec/codec.h"

#include <arpa/inet.h>
#include <string.h>

/* Copies want bytes from p (have of them captured) into the row at col and
 * leaves what was not captured vacant: the one place we differ from nPrint,
 * which reads past the end of short packets. */
static void copy_bounded(int8_t *row, int col, const uint8_t *p, int64_t have, uint32_t want)
{
    if (!row)
        return; /* parse only */
    uint32_t n = have <= 0 ? 0 : (have < (int64_t)want ? (uint32_t)have : want);
    nd_bits_from_bytes(row + col, p, n);
}

bool nd_row_encode(const uint8_t *l3, uint32_t caplen, int payload_bytes, int8_t *row,
                   nd_pktinfo *info)
{
    if (caplen < 1)
        return false;
    int ver = l3[0] >> 4;
    uint32_t l3hdr, total_len, proto;
    if (ver == 4) {
        /* nPrint reads proto and total length even from a short capture;
         * we need byte 9 and 2-3 to decide, else no row. */
        if (caplen < 10)
            return false;
        l3hdr = (uint32_t)(l3[0] & 0x0f) * 4;
        total_len = (uint32_t)l3[2] << 8 | l3[3];
        proto = l3[9];
    } else if (ver == 6) {
        if (caplen < 7)
            return false;
        l3hdr = 40;
        total_len = ((uint32_t)l3[4] << 8 | l3[5]) + 40;
        proto = l3[6];
    } else {
        return false;
    }
    /* IPv6 compares with IPPROTO_ICMP (1) like nPrint: ICMPv6 (58) gets no row. */
    if (proto != 6 && proto != 17 && proto != 1)
        return false;

    if (row)
        memset(row, ND_VACANT, (size_t)nd_row_width(payload_bytes));
    int64_t cap = caplen;
    if (ver == 4)
        copy_bounded(row, ND_COL_IPV4, l3, cap, l3hdr);
    else
        copy_bounded(row, ND_COL_IPV6, l3, cap, 40);

    const uint8_t *l4 = l3 + l3hdr;
    int64_t l4cap = cap - (int64_t)l3hdr;
    uint32_t l4hdr;
    int l4col;
    if (proto == 6) {
        /* data offset lives in byte 12 of the TCP header */
        l4hdr = l4cap > 12 ? (uint32_t)(l4[12] >> 4) * 4 : 0;
        l4col = ND_COL_TCP;
        if (l4cap <= 12) {
            copy_bounded(row, l4col, l4, l4cap, 20);
        } else {
            copy_bounded(row, l4col, l4, l4cap, l4hdr);
        }
    } else {
        l4hdr = 8;
        l4col = proto == 17 ? ND_COL_UDP : ND_COL_ICMP;
        copy_bounded(row, l4col, l4, l4cap, 8);
    }

    /* Payload length from the IP length field as nPrint computes it, in
     * unsigned 32-bit arithmetic: a lying length wraps to "very long". */
    uint32_t plen = total_len - (l3hdr + l4hdr);
    int64_t pcap_avail = l4cap - (int64_t)l4hdr;
    if (payload_bytes > 0 && plen != 0) {
        uint32_t want = plen < (uint32_t)payload_bytes ? plen : (uint32_t)payload_bytes;
        copy_bounded(row, ND_HDR_BITS, l4 + l4hdr, pcap_avail, want);
    }

    if (info) {
        memset(info, 0, sizeof *info);
        info->ipver = (uint8_t)ver;
        info->proto = (uint8_t)proto;
        if (ver == 4) {
            if (cap >= 20) {
                memcpy(info->src, l3 + 12, 4);
                memcpy(info->dst, l3 + 16, 4);
            }
        } else if (cap >= 40) {
            memcpy(info->src, l3 + 8, 16);
            memcpy(info->dst, l3 + 24, 16);
        }
        if (proto != 1 && l4cap >= 4) {
            info->sport = (uint16_t)(l4[0] << 8 | l4[1]);
            info->dport = (uint16_t)(l4[2] << 8 | l4[3]);
        }
        if (proto == 6 && l4cap >= 14)
            info->tcp_flags = l4[13];
        int64_t pl = (int64_t)total_len - (int64_t)(l3hdr + l4hdr);
        if (pl < 0)
            pl = 0;
        if (pcap_avail < pl)
            pl = pcap_avail < 0 ? 0 : pcap_avail;
        info->payload_len = (uint32_t)pl;
    }
    return true;
}

void nd_addr_text(uint8_t ipver, const uint8_t *addr, char *buf, size_t n)
{
    if (ipver == 4 && n >= 16) {
        /* inet_ntoa's format, without snprintf: this runs once a row */
        char *o = buf;
        for (int i = 0; i < 4; i++) {
            unsigned v = addr[i];
            if (v >= 100)
                *o++ = (char)('0' + v / 100);
            if (v >= 10)
                *o++ = (char)('0' + v / 10 % 10);
            *o++ = (char)('0' + v % 10);
            *o++ = i < 3 ? '.' : '\0';
        }
    } else if (ipver == 4) {
        snprintf(buf, n, "%u.%u.%u.%u", addr[0], addr[1], addr[2], addr[3]);
    } else if (ipver == 6) {
        char tmp[INET6_ADDRSTRLEN];
        if (!inet_ntop(AF_INET6, addr, tmp, sizeof tmp))
            snprintf(tmp, sizeof tmp, "::");
        snprintf(buf, n, "%s", tmp);
    } else {
        snprintf(buf, n, "NULL");
    }
}

size_t nd_row_to_bytes(const int8_t *row, int payload_bytes, uint8_t *out, size_t cap)
{
    int w = nd_row_width(payload_bytes);
    size_t nbits = 0;
    uint32_t acc = 0;
    size_t nbytes = 0;
    for (int c = 0; c < w; c++) {
        int8_t b = row[c];
        if (b != 0 && b != 1)
            continue;
        acc = (acc << 1) | (uint32_t)b;
        if ((++nbits & 7) == 0) {
            if (nbytes >= cap)
                return 0;
            out[nbytes++] = (uint8_t)acc;
            acc = 0;
        }
    }
    return nbytes;
}
