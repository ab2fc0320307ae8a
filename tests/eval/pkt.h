/* tests/eval/pkt.h - hand-built IPv4 packets and flows for the eval tests.
 * The checksum here is written independently of eval/valid.c (64-bit
 * accumulator, one fold at the end). */
#ifndef ND_TESTS_EVAL_PKT_H
#define ND_TESTS_EVAL_PKT_H

#include <stdint.h>
#include <string.h>

#include "codec/codec.h"

static uint16_t tp_cksum(const uint8_t *pseudo, size_t np, const uint8_t *p, size_t n)
    __attribute__((unused));
static uint16_t tp_cksum(const uint8_t *pseudo, size_t np, const uint8_t *p, size_t n)
{
    uint64_t s = 0;
    for (size_t i = 0; i < np; i += 2)
        s += (uint64_t)(pseudo[i] << 8 | pseudo[i + 1]);
    for (size_t i = 0; i < n; i++)
        s += i % 2 ? p[i] : (uint64_t)p[i] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

/* IPv4 + TCP (20-byte header, no options) + plen payload bytes into buf;
 * returns the length. Checksums correct. */
static uint32_t tp_tcp4(uint8_t *buf, uint8_t ttl, uint8_t flags, uint16_t sport, uint16_t dport,
                        uint32_t seq, uint16_t win, uint32_t plen) __attribute__((unused));
static uint32_t tp_tcp4(uint8_t *buf, uint8_t ttl, uint8_t flags, uint16_t sport, uint16_t dport,
                        uint32_t seq, uint16_t win, uint32_t plen)
{
    uint32_t tl = 40 + plen;
    memset(buf, 0, tl);
    uint8_t *ip = buf, *t = buf + 20;
    ip[0] = 0x45;
    ip[2] = (uint8_t)(tl >> 8), ip[3] = (uint8_t)tl;
    ip[4] = 0x12, ip[5] = 0x34;
    ip[6] = 0x40;  /* DF */
    ip[8] = ttl;
    ip[9] = 6;
    uint8_t a[4] = {10, 0, 0, 1}, b[4] = {10, 0, 0, 2};
    memcpy(ip + 12, sport < dport ? b : a, 4);
    memcpy(ip + 16, sport < dport ? a : b, 4);
    uint16_t c = tp_cksum(NULL, 0, ip, 20);
    ip[10] = (uint8_t)(c >> 8), ip[11] = (uint8_t)c;
    t[0] = (uint8_t)(sport >> 8), t[1] = (uint8_t)sport;
    t[2] = (uint8_t)(dport >> 8), t[3] = (uint8_t)dport;
    t[4] = (uint8_t)(seq >> 24), t[5] = (uint8_t)(seq >> 16), t[6] = (uint8_t)(seq >> 8),
    t[7] = (uint8_t)seq;
    t[12] = 5 << 4;
    t[13] = flags;
    t[14] = (uint8_t)(win >> 8), t[15] = (uint8_t)win;
    for (uint32_t i = 0; i < plen; i++)
        t[20 + i] = (uint8_t)(i * 7 + 1);
    uint8_t ps[12];
    memcpy(ps, ip + 12, 8);
    ps[8] = 0, ps[9] = 6, ps[10] = (uint8_t)((tl - 20) >> 8), ps[11] = (uint8_t)(tl - 20);
    c = tp_cksum(ps, 12, t, tl - 20);
    t[16] = (uint8_t)(c >> 8), t[17] = (uint8_t)c;
    return tl;
}

/* A flow of n TCP packets kept in static storage (one flow at a time per
 * slot): handshake then data, dirs alternating 0,1,0,1..., 1 ms apart. */
#define TP_MAXP 32
typedef struct tp_flow {
    nd_flow f;
    nd_flow_pkt p[TP_MAXP];
    uint8_t buf[TP_MAXP][1600];
} tp_flow;

static void tp_make(tp_flow *tf, int n, uint8_t ttl, uint32_t plen, const char *label)
    __attribute__((unused));
static void tp_make(tp_flow *tf, int n, uint8_t ttl, uint32_t plen, const char *label)
{
    memset(&tf->f, 0, sizeof tf->f);
    snprintf(tf->f.label, sizeof tf->f.label, "%s", label);
    tf->f.ipver = 4, tf->f.proto = 6, tf->f.n = n, tf->f.n_total = (uint64_t)n;
    tf->f.pkts = tf->p;
    for (int i = 0; i < n; i++) {
        int dir = i % 2;
        uint8_t fl = i == 0 ? 0x02 : i == 1 ? 0x12 : 0x10 | (i > 2 ? 0x08 : 0);
        uint32_t len = tp_tcp4(tf->buf[i], ttl, fl, dir ? 443 : 50000, dir ? 50000 : 443,
                               1000u + (uint32_t)i, 65535, i > 2 ? plen : 0);
        tf->p[i] = (nd_flow_pkt){.ts_sec = 1700000000, .ts_nsec = (uint32_t)i * 1000000,
                                 .wirelen = len, .len = len, .dir = (uint8_t)dir,
                                 .data = tf->buf[i]};
    }
}

#endif
