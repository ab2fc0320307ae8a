/* tests/heuristics/helpers.h - shared by the repair tests, the sample
 * writer, the fuzz target and the bench: real flows as rows, random row
 * sets, and an independent packet validator (written from the RFCs, not
 * from repair.c, so that it can disagree with it). */
#ifndef ND_TESTS_HEURISTICS_HELPERS_H
#define ND_TESTS_HEURISTICS_HELPERS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"
#include "heuristics/repair.h"

/* ---- a tiny RNG for the tests (splitmix64) */
static inline uint64_t th_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- real flows: rows as `netdiff encode` + the NetDiffusion image see them */
typedef struct {
    nd_rows *v;
    int n, cap;
    int max_flows;
    int max_packets;
    bool image;          /* through the 1088-column image: addresses zero, no gaps */
    nd_class_stats stats;
} th_flows;

static nd_status th_flow_sink(void *ctx, const nd_flow *f, nd_err *err)
{
    th_flows *t = ctx;
    if (t->n >= t->max_flows || f->n < 1)
        return ND_OK;
    nd_class_stats_add_flow(&t->stats, f);
    nd_rows r;
    nd_status st = nd_flow_rows(f, 0, &r, err);
    if (st)
        return st;
    if (r.n == 0) {
        nd_rows_free(&r);
        return ND_OK;
    }
    if (t->image) {
        nd_layout l;
        nd_layout_netdiffusion(&l, t->max_packets);
        uint8_t *rgb = malloc((size_t)l.width * l.packets * 3);
        int8_t *bits = malloc((size_t)l.width * l.packets);
        nd_image_from_rows(&l, &r, rgb);
        nd_snap_u8(ND_SNAP_NEAREST, rgb, (size_t)l.width * l.packets, bits, NULL);
        nd_rows r2;
        st = nd_rows_from_bits(&l, bits, &r2, err);
        free(rgb);
        free(bits);
        nd_rows_free(&r);
        if (st)
            return st;
        r = r2;
    }
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->v = realloc(t->v, (size_t)t->cap * sizeof *t->v);
    }
    t->v[t->n++] = r;
    return ND_OK;
}

/* Loads up to max_flows flows (first max_packets packets each) of the given
 * captures (paths relative to the test-data folder). */
static int th_load(th_flows *t, const char *dir, const char *const *files, int nfiles, int max_flows, int max_packets, bool image) __attribute__((unused));
static int th_load(th_flows *t, const char *dir, const char *const *files, int nfiles,
                   int max_flows, int max_packets, bool image)
{
    memset(t, 0, sizeof *t);
    t->max_flows = max_flows;
    t->max_packets = max_packets;
    t->image = image;
    nd_class_stats_clear(&t->stats);
    for (int i = 0; i < nfiles; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        nd_flow_opts o;
        nd_flow_opts_init(&o);
        o.max_packets = max_packets;
        nd_err err = {{0}};
        if (nd_flows_from_capture(path, &o, th_flow_sink, t, NULL, &err)) {
            fprintf(stderr, "th_load %s: %s\n", path, err.msg);
            return -1;
        }
    }
    return t->n;
}
static void th_free(th_flows *t) __attribute__((unused));
static void th_free(th_flows *t)
{
    for (int i = 0; i < t->n; i++)
        nd_rows_free(&t->v[i]);
    free(t->v);
}

static const char *const th_real_files[] = {
    "apps/netflix/ndpi_netflix__netflix.pcap",
    "apps/reddit/ndpi_reddit__reddit.pcap",          /* IPv6 TCP */
    "apps/meet/ndpi_stun_google_meet__meet.pcapng",  /* IPv4 + IPv6 UDP */
    "apps/telegram/ndpi_telegram__telegram.pcap",    /* UDP */
    "protocols/dns/dpkt_examples_data_dns_icmp.pcap",/* ICMP errors */
    "protocols/ssh/tcpdump_ssh.pcap",
    "protocols/http/zeek_http_methods.pcap",
    "protocols/ntp/zeek_ntp.pcap",                   /* 123 <-> 123 */
};

/* ---- random row sets */
enum { TH_UNIFORM, TH_FLIPPED, TH_VACANT, TH_SINGLE, TH_KINDS };

/* Fills t (initialised, payload_bytes set) with one row set of a kind. */
static void th_random_rows(nd_rows *t, int kind, const nd_rows *real, double flip, int nrows, uint64_t *rs) __attribute__((unused));
static void th_random_rows(nd_rows *t, int kind, const nd_rows *real, double flip, int nrows,
                           uint64_t *rs)
{
    int w = nd_row_width(t->payload_bytes);
    t->n = 0;
    if (kind == TH_FLIPPED && real) {
        int rw = nd_row_width(real->payload_bytes);
        for (int i = 0; i < real->n; i++) {
            int8_t *row = nd_rows_push(t, NULL);
            int m = rw < w ? rw : w;
            memcpy(row, nd_rows_at(real, i), (size_t)m);
            t->gap_us[i] = (th_next(rs) & 1) ? real->gap_us[i] : -1;
            uint64_t thr = (uint64_t)(flip * 18446744073709551615.0);
            for (int c = 0; c < w; c++)
                if (th_next(rs) < thr) {
                    /* a flip: to one of the two other values */
                    int8_t v = row[c];
                    int8_t a = v == 1 ? 0 : 1, b = v == ND_VACANT ? 0 : ND_VACANT;
                    row[c] = (th_next(rs) & 1) ? a : b;
                }
        }
        return;
    }
    int n = kind == TH_SINGLE ? 1 : nrows;
    for (int i = 0; i < n; i++) {
        int8_t *row = nd_rows_push(t, NULL);
        if (kind == TH_VACANT)
            continue;
        for (int c = 0; c < w; c++) {
            uint64_t r = th_next(rs) % 3;
            row[c] = r == 2 ? ND_VACANT : (int8_t)r;
        }
        t->gap_us[i] = (th_next(rs) & 3) == 0 ? (int64_t)(th_next(rs) % 100000) : -1;
    }
}

/* ---- the validator */
static uint16_t th_cksum(uint32_t s, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        s += (uint32_t)p[i] << 8 | p[i + 1];
    if (n & 1)
        s += (uint32_t)p[n - 1] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)s;
}
static uint32_t th_rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint16_t th_rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* Returns NULL when the frame is a valid packet, else what is wrong. */
static const char *th_check_packet(const uint8_t *fr, uint32_t len, int linktype) __attribute__((unused));
static const char *th_check_packet(const uint8_t *fr, uint32_t len, int linktype)
{
    if (linktype == ND_LINKTYPE_ETHERNET) {
        if (len < 14)
            return "short ethernet";
        uint16_t et = th_rd16(fr + 12);
        if (et != 0x0800 && et != 0x86dd)
            return "ethertype";
        if (fr[0] & 1 || fr[6] & 1)
            return "multicast mac";
        fr += 14;
        len -= 14;
    }
    if (len < 20)
        return "short ip";
    int ver = fr[0] >> 4, proto;
    const uint8_t *l4;
    uint32_t l4len, ps;
    if (ver == 4) {
        int ihl = (fr[0] & 15) * 4;
        if (ihl < 20 || (uint32_t)ihl > len)
            return "ihl";
        if (th_rd16(fr + 2) != len)
            return "ipv4 total length";
        if (th_cksum(0, fr, (size_t)ihl) != 0xffff)
            return "ipv4 checksum";
        if (fr[6] & 0xa0 || (th_rd16(fr + 6) & 0x1fff))
            return "ipv4 fragment fields";
        if (fr[8] == 0)
            return "ttl 0";
        for (int i = 20; i < ihl;) { /* options: well-formed to the end */
            if (fr[i] == 0) {
                for (; i < ihl; i++)
                    if (fr[i])
                        return "ipv4 bytes after EOL";
                break;
            }
            if (fr[i] == 1) { i++; continue; }
            if (i + 1 >= ihl || fr[i + 1] < 2 || i + fr[i + 1] > ihl)
                return "ipv4 option length";
            i += fr[i + 1];
        }
        proto = fr[9];
        l4 = fr + ihl;
        l4len = len - (uint32_t)ihl;
        ps = th_cksum(0, fr + 12, 8) + (uint32_t)proto + l4len;
    } else if (ver == 6) {
        if (len < 40)
            return "short ipv6";
        if (th_rd16(fr + 4) != len - 40)
            return "ipv6 payload length";
        if (fr[7] == 0)
            return "hop limit 0";
        proto = fr[6];
        l4 = fr + 40;
        l4len = len - 40;
        ps = th_cksum(0, fr + 8, 32) + (uint32_t)proto + l4len;
    } else {
        return "ip version";
    }
    if (proto == 6) {
        if (l4len < 20)
            return "short tcp";
        int doff = (l4[12] >> 4) * 4;
        if (doff < 20 || (uint32_t)doff > l4len)
            return "tcp data offset";
        if (l4[12] & 0x0e)
            return "tcp reserved bits";
        uint8_t f = l4[13];
        if ((f & 2) && (f & 1))
            return "SYN+FIN";
        if ((f & 2) && (f & 4))
            return "SYN+RST";
        if (!(f & 0x17))
            return "no SYN/ACK/RST/FIN flag";
        if (!(f & 4) && th_rd16(l4 + 14) == 0)
            return "zero window";
        if (th_cksum(ps, l4, l4len) != 0xffff)
            return "tcp checksum";
        for (int i = 20; i < doff;) {
            uint8_t k = l4[i];
            if (k == 0) {
                for (; i < doff; i++)
                    if (l4[i])
                        return "tcp bytes after EOL";
                break;
            }
            if (k == 1) { i++; continue; }
            if (i + 1 >= doff || l4[i + 1] < 2 || i + l4[i + 1] > doff)
                return "tcp option length";
            int ol = l4[i + 1];
            if ((k == 2 && ol != 4) || (k == 3 && ol != 3) || (k == 4 && ol != 2) ||
                (k == 8 && ol != 10) || (k == 5 && (ol - 2) % 8))
                return "tcp option size";
            if ((k == 2 || k == 3 || k == 4) && !(f & 2))
                return "SYN-only option without SYN";
            if (k == 3 && l4[i + 2] > 14)
                return "window scale > 14";
            i += ol;
        }
    } else if (proto == 17) {
        if (l4len < 8 || th_rd16(l4 + 4) != l4len)
            return "udp length";
        if (th_rd16(l4 + 6) == 0 && ver == 6)
            return "udp zero checksum over ipv6";
        if (th_rd16(l4 + 6) != 0 && th_cksum(ps, l4, l4len) != 0xffff)
            return "udp checksum";
    } else if (proto == 1 && ver == 4) {
        if (l4len < 8)
            return "short icmp";
        if (th_cksum(0, l4, l4len) != 0xffff)
            return "icmp checksum";
        int t = l4[0], c = l4[1];
        if (!((t == 0 || t == 8) ? c == 0 : t == 3 ? c <= 15 : t == 11 ? c <= 1 : 0))
            return "icmp type/code";
    } else if (proto == 58 && ver == 6) {
        if (l4len < 8)
            return "short icmpv6";
        if (th_cksum(ps, l4, l4len) != 0xffff)
            return "icmpv6 checksum";
        int t = l4[0], c = l4[1];
        if (!((t == 128 || t == 129) ? c == 0 : t == 1 ? c <= 6 : t == 3 ? c <= 1 : 0))
            return "icmpv6 type/code";
    } else {
        return "transport protocol";
    }
    return NULL;
}

/* Flow-level checks: one 5-tuple, timestamps monotonic, directions agree
 * with the addresses, TCP seq/ack inside what each side sent. */
static const char *th_check_flow(const nd_repair_out *o) __attribute__((unused));
static const char *th_check_flow(const nd_repair_out *o)
{
    int off = o->linktype == ND_LINKTYPE_ETHERNET ? 14 : 0;
    int64_t prev = -1;
    uint8_t a0[16] = {0};
    uint32_t nxt[2] = {0, 0};
    bool started[2] = {false, false};
    for (int i = 0; i < o->n; i++) {
        const nd_repair_pkt *p = &o->pkts[i];
        const char *e = th_check_packet(p->data, p->len, o->linktype);
        if (e)
            return e;
        int64_t t = p->ts_sec * 1000000 + p->ts_nsec / 1000;
        if (t < prev)
            return "timestamps go back";
        if (p->ts_nsec % 1000)
            return "timestamp below a microsecond";
        prev = t;
        const uint8_t *ip = p->data + off;
        int v = ip[0] >> 4, al = v == 4 ? 4 : 16;
        const uint8_t *src = ip + (v == 4 ? 12 : 8);
        if (i == 0)
            memcpy(a0, src, (size_t)al);
        if ((memcmp(src, a0, (size_t)al) == 0) != (p->dir == 0))
            return "direction disagrees with the source address";
        if (v != o->ipver)
            return "ip version changes within the flow";
        int ihl = v == 4 ? (ip[0] & 15) * 4 : 40;
        if ((v == 4 ? ip[9] : ip[6]) == 6) {
            const uint8_t *tcp = ip + ihl;
            uint32_t len = p->len - (uint32_t)off - (uint32_t)ihl - (uint32_t)(tcp[12] >> 4) * 4;
            uint32_t seq = th_rd32(tcp + 4);
            uint8_t f = tcp[13];
            int d = p->dir;
            if (!started[d]) {
                started[d] = true;
                nxt[d] = seq;
            }
            if ((int32_t)(seq + len - nxt[d]) > 0 && seq != nxt[d])
                return "tcp seq skips data";
            uint32_t end = seq + len + ((f & 2) ? 1 : 0) + ((f & 1) ? 1 : 0);
            if ((int32_t)(end - nxt[d]) > 0)
                nxt[d] = end;
            if ((f & 0x10) && started[1 - d] && (int32_t)(th_rd32(tcp + 8) - nxt[1 - d]) > 0)
                return "tcp ack beyond what the peer sent";
        }
    }
    return NULL;
}

#endif
