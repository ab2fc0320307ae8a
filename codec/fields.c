/* codec/fields.c - nPrint's field table and bit access on rows. */
#include "codec/codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F(name, blk, col, w) {name, blk, col, w}
const nd_field nd_fields[ND_F_COUNT] = {
    [ND_F_IPV4_VER] = F("ipv4_ver", ND_BLK_IPV4, 0, 4),
    [ND_F_IPV4_HL] = F("ipv4_hl", ND_BLK_IPV4, 4, 4),
    [ND_F_IPV4_TOS] = F("ipv4_tos", ND_BLK_IPV4, 8, 8),
    [ND_F_IPV4_TL] = F("ipv4_tl", ND_BLK_IPV4, 16, 16),
    [ND_F_IPV4_ID] = F("ipv4_id", ND_BLK_IPV4, 32, 16),
    [ND_F_IPV4_RBIT] = F("ipv4_rbit", ND_BLK_IPV4, 48, 1),
    [ND_F_IPV4_DFBIT] = F("ipv4_dfbit", ND_BLK_IPV4, 49, 1),
    [ND_F_IPV4_MFBIT] = F("ipv4_mfbit", ND_BLK_IPV4, 50, 1),
    [ND_F_IPV4_FOFF] = F("ipv4_foff", ND_BLK_IPV4, 51, 13),
    [ND_F_IPV4_TTL] = F("ipv4_ttl", ND_BLK_IPV4, 64, 8),
    [ND_F_IPV4_PROTO] = F("ipv4_proto", ND_BLK_IPV4, 72, 8),
    [ND_F_IPV4_CKSUM] = F("ipv4_cksum", ND_BLK_IPV4, 80, 16),
    [ND_F_IPV4_SRC] = F("ipv4_src", ND_BLK_IPV4, 96, 32),
    [ND_F_IPV4_DST] = F("ipv4_dst", ND_BLK_IPV4, 128, 32),
    [ND_F_IPV4_OPT] = F("ipv4_opt", ND_BLK_IPV4, 160, 320),
    [ND_F_IPV6_VER] = F("ipv6_ver", ND_BLK_IPV6, ND_COL_IPV6 + 0, 4),
    [ND_F_IPV6_TC] = F("ipv6_tc", ND_BLK_IPV6, ND_COL_IPV6 + 4, 8),
    [ND_F_IPV6_FL] = F("ipv6_fl", ND_BLK_IPV6, ND_COL_IPV6 + 12, 20),
    [ND_F_IPV6_LEN] = F("ipv6_len", ND_BLK_IPV6, ND_COL_IPV6 + 32, 16),
    [ND_F_IPV6_NH] = F("ipv6_nh", ND_BLK_IPV6, ND_COL_IPV6 + 48, 8),
    [ND_F_IPV6_HL] = F("ipv6_hl", ND_BLK_IPV6, ND_COL_IPV6 + 56, 8),
    [ND_F_IPV6_SRC] = F("ipv6_src", ND_BLK_IPV6, ND_COL_IPV6 + 64, 128),
    [ND_F_IPV6_DST] = F("ipv6_dst", ND_BLK_IPV6, ND_COL_IPV6 + 192, 128),
    [ND_F_TCP_SPRT] = F("tcp_sprt", ND_BLK_TCP, ND_COL_TCP + 0, 16),
    [ND_F_TCP_DPRT] = F("tcp_dprt", ND_BLK_TCP, ND_COL_TCP + 16, 16),
    [ND_F_TCP_SEQ] = F("tcp_seq", ND_BLK_TCP, ND_COL_TCP + 32, 32),
    [ND_F_TCP_ACKN] = F("tcp_ackn", ND_BLK_TCP, ND_COL_TCP + 64, 32),
    [ND_F_TCP_DOFF] = F("tcp_doff", ND_BLK_TCP, ND_COL_TCP + 96, 4),
    [ND_F_TCP_RES] = F("tcp_res", ND_BLK_TCP, ND_COL_TCP + 100, 3),
    [ND_F_TCP_NS] = F("tcp_ns", ND_BLK_TCP, ND_COL_TCP + 103, 1),
    [ND_F_TCP_CWR] = F("tcp_cwr", ND_BLK_TCP, ND_COL_TCP + 104, 1),
    [ND_F_TCP_ECE] = F("tcp_ece", ND_BLK_TCP, ND_COL_TCP + 105, 1),
    [ND_F_TCP_URG] = F("tcp_urg", ND_BLK_TCP, ND_COL_TCP + 106, 1),
    [ND_F_TCP_ACKF] = F("tcp_ackf", ND_BLK_TCP, ND_COL_TCP + 107, 1),
    [ND_F_TCP_PSH] = F("tcp_psh", ND_BLK_TCP, ND_COL_TCP + 108, 1),
    [ND_F_TCP_RST] = F("tcp_rst", ND_BLK_TCP, ND_COL_TCP + 109, 1),
    [ND_F_TCP_SYN] = F("tcp_syn", ND_BLK_TCP, ND_COL_TCP + 110, 1),
    [ND_F_TCP_FIN] = F("tcp_fin", ND_BLK_TCP, ND_COL_TCP + 111, 1),
    [ND_F_TCP_WSIZE] = F("tcp_wsize", ND_BLK_TCP, ND_COL_TCP + 112, 16),
    [ND_F_TCP_CKSUM] = F("tcp_cksum", ND_BLK_TCP, ND_COL_TCP + 128, 16),
    [ND_F_TCP_URP] = F("tcp_urp", ND_BLK_TCP, ND_COL_TCP + 144, 16),
    [ND_F_TCP_OPT] = F("tcp_opt", ND_BLK_TCP, ND_COL_TCP + 160, 320),
    [ND_F_UDP_SPORT] = F("udp_sport", ND_BLK_UDP, ND_COL_UDP + 0, 16),
    [ND_F_UDP_DPORT] = F("udp_dport", ND_BLK_UDP, ND_COL_UDP + 16, 16),
    [ND_F_UDP_LEN] = F("udp_len", ND_BLK_UDP, ND_COL_UDP + 32, 16),
    [ND_F_UDP_CKSUM] = F("udp_cksum", ND_BLK_UDP, ND_COL_UDP + 48, 16),
    [ND_F_ICMP_TYPE] = F("icmp_type", ND_BLK_ICMP, ND_COL_ICMP + 0, 8),
    [ND_F_ICMP_CODE] = F("icmp_code", ND_BLK_ICMP, ND_COL_ICMP + 8, 8),
    [ND_F_ICMP_CKSUM] = F("icmp_cksum", ND_BLK_ICMP, ND_COL_ICMP + 16, 16),
    [ND_F_ICMP_ROH] = F("icmp_roh", ND_BLK_ICMP, ND_COL_ICMP + 32, 32),
};
#undef F
_Static_assert(ND_HDR_BITS == 1408, "nPrint -4 -6 -t -u -i has 1408 bit columns");

/* Field containing column c (c < ND_HDR_BITS); a small binary search. */
static int field_of_col(int c)
{
    int lo = 0, hi = ND_F_COUNT - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (nd_fields[mid].col <= c)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

void nd_col_name(int c, char *buf, size_t n)
{
    if (c < 0) {
        snprintf(buf, n, "?");
    } else if (c >= ND_HDR_BITS) {
        snprintf(buf, n, "payload_bit_%d", c - ND_HDR_BITS);
    } else {
        int f = field_of_col(c);
        snprintf(buf, n, "%s_%d", nd_fields[f].name, c - nd_fields[f].col);
    }
}

int nd_col_find(const char *name)
{
    const char *us = strrchr(name, '_');
    if (!us || !us[1])
        return -1;
    char *end;
    long k = strtol(us + 1, &end, 10);
    if (*end || k < 0 || us[1] == '+' || us[1] == '-' || (us[1] == '0' && us[2]))
        return -1;
    size_t plen = (size_t)(us - name);
    if (plen == 11 && !memcmp(name, "payload_bit", 11))
        return k < 8L * ND_MAX_PAYLOAD_BYTES ? ND_HDR_BITS + (int)k : -1;
    for (int f = 0; f < ND_F_COUNT; f++)
        if (strlen(nd_fields[f].name) == plen && !memcmp(nd_fields[f].name, name, plen))
            return k < nd_fields[f].width ? nd_fields[f].col + (int)k : -1;
    return -1;
}

bool nd_row_get(const int8_t *row, nd_field_id f, uint64_t *value)
{
    const nd_field *fd = &nd_fields[f];
    int w = fd->width > 64 ? 64 : fd->width;
    uint64_t v = 0;
    bool complete = true;
    for (int i = 0; i < w; i++) {
        int8_t b = row[fd->col + i];
        v = (v << 1) | (uint64_t)(b == 1);
        complete &= (b == 0 || b == 1);
    }
    *value = v;
    return complete;
}

void nd_row_set(int8_t *row, nd_field_id f, uint64_t value)
{
    const nd_field *fd = &nd_fields[f];
    int w = fd->width > 64 ? 64 : fd->width;
    for (int i = 0; i < w; i++)
        row[fd->col + i] = (int8_t)((value >> (w - 1 - i)) & 1);
}

void nd_row_vacate(int8_t *row, nd_field_id f)
{
    memset(row + nd_fields[f].col, ND_VACANT, nd_fields[f].width);
}

void nd_row_vacate_block(int8_t *row, enum nd_block b)
{
    static const uint16_t start[ND_BLK_COUNT] = {ND_COL_IPV4, ND_COL_IPV6, ND_COL_TCP,
                                                 ND_COL_UDP, ND_COL_ICMP};
    static const uint16_t width[ND_BLK_COUNT] = {ND_BITS_IPV4, ND_BITS_IPV6, ND_BITS_TCP,
                                                 ND_BITS_UDP, ND_BITS_ICMP};
    memset(row + start[b], ND_VACANT, width[b]);
}

void nd_bits_from_bytes(int8_t *row_at_col, const uint8_t *bytes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        /* byte k of x keeps bit 7-k of v; adding 0x7f to each byte carries
         * into its top bit exactly when that bit was set (never across
         * bytes), so the top bits are the 8 bits MSB first */
        uint64_t x = (bytes[i] * 0x0101010101010101ull) & 0x0102040810204080ull;
        x = ((x + 0x7f7f7f7f7f7f7f7full) >> 7) & 0x0101010101010101ull;
        memcpy(row_at_col + 8 * i, &x, 8); /* little-endian: byte k is column k */
    }
}
