/* codec/capwriter.c - streaming pcap and pcapng writers.
 *
 * Written by hand rather than with pcap_dump: the bytes must go to a callback
 * (the daemon streams them as HTTP chunks) and pcapng needs per-packet
 * comments (the pcapml label convention), which libpcap cannot write. */
#include "codec/codec.h"

#include <stdlib.h>
#include <string.h>

struct nd_capwriter {
    nd_capfmt fmt;
    nd_write_fn fn;
    void *ctx;
    uint8_t *buf;   /* one record, or the records held since nd_capwriter_hold */
    size_t cap;
    size_t used;    /* bytes of held records at the start of buf */
    bool held;
};

/* Held records go to the sink in writes of about this size rather than
 * one per packet (a FILE sink then passes them to write(2) without
 * copying them into its own buffer); small enough that the buffer stays
 * in a core's L2 (with a whole flow's 400 KB held, copying into it cost
 * more than the sink calls it saved). */
#define ND_CAP_HOLD_BYTES ((size_t)64 << 10)

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

static nd_status file_write(void *ctx, const void *buf, size_t n, nd_err *err)
{
    if (fwrite(buf, 1, n, (FILE *)ctx) != n)
        return nd_fail(err, ND_EIO, "write failed");
    return ND_OK;
}

/* Room for an n-byte record after the held ones: *at is where it goes. */
static nd_status reserve(nd_capwriter *w, size_t n, uint8_t **at, nd_err *err)
{
    if (w->used && w->used + n > ND_CAP_HOLD_BYTES) {
        /* pass the held records on, and go on holding */
        nd_status st = w->fn(w->ctx, w->buf, w->used, err);
        w->used = 0;
        if (st)
            return st;
    }
    *at = w->buf + w->used;
    n += w->used;
    if (n <= w->cap)
        return ND_OK;
    size_t nc = n < 4096 ? 4096 : n * 2;
    uint8_t *b = realloc(w->buf, nc);
    if (!b)
        return nd_fail(err, ND_ENOMEM, "out of memory for a %zu-byte record", n - w->used);
    w->buf = b;
    w->cap = nc;
    *at = w->buf + w->used;
    return ND_OK;
}

/* A finished record of n bytes at buf + used: held, or passed on now. */
static nd_status emit(nd_capwriter *w, size_t n, nd_err *err)
{
    if (w->held) {
        w->used += n;
        return ND_OK;
    }
    return w->fn(w->ctx, w->buf, n, err);
}

void nd_capwriter_hold(nd_capwriter *w) { w->held = true; }

nd_status nd_capwriter_flush(nd_capwriter *w, nd_err *err)
{
    size_t n = w->used;
    w->used = 0;
    w->held = false;
    return n ? w->fn(w->ctx, w->buf, n, err) : ND_OK;
}

/* Host byte order throughout: both formats declare it with their magic. */
nd_status nd_capwriter_open(nd_capfmt fmt, int linktype, nd_write_fn fn, void *ctx,
                            nd_capwriter **out, nd_err *err)
{
    *out = NULL;
    if (fmt != ND_CAP_PCAP && fmt != ND_CAP_PCAPNG)
        return nd_fail(err, ND_EINVAL, "unknown capture format %d", (int)fmt);
    if (linktype < 0 || linktype > 0xffff)
        return nd_fail(err, ND_EINVAL, "bad link type %d", linktype);
    nd_capwriter *w = calloc(1, sizeof *w);
    if (!w)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    w->fmt = fmt;
    w->fn = fn;
    w->ctx = ctx;
    nd_status st;
    if (fmt == ND_CAP_PCAP) {
        uint8_t h[24];
        put32(h, 0xa1b2c3d4);        /* microsecond magic */
        put16(h + 4, 2);
        put16(h + 6, 4);
        put32(h + 8, 0);
        put32(h + 12, 0);
        put32(h + 16, 262144);       /* snaplen */
        put32(h + 20, (uint32_t)linktype);
        st = fn(ctx, h, sizeof h, err);
    } else {
        uint8_t h[28 + 32];
        /* Section Header Block */
        put32(h, 0x0A0D0D0A);
        put32(h + 4, 28);
        put32(h + 8, 0x1A2B3C4D);
        put16(h + 12, 1);
        put16(h + 14, 0);
        uint32_t m1 = 0xffffffffu;
        put32(h + 16, m1);            /* section length unknown (-1) */
        put32(h + 20, m1);
        put32(h + 24, 28);
        /* Interface Description Block with if_tsresol = 9 (nanoseconds) */
        uint8_t *i = h + 28;
        put32(i, 1);
        put32(i + 4, 32);
        put16(i + 8, (uint16_t)linktype);
        put16(i + 10, 0);
        put32(i + 12, 262144);
        put16(i + 16, 9);             /* if_tsresol */
        put16(i + 18, 1);
        i[20] = 9;
        i[21] = i[22] = i[23] = 0;
        put16(i + 24, 0);             /* opt_endofopt */
        put16(i + 26, 0);
        put32(i + 28, 32);
        st = fn(ctx, h, sizeof h, err);
    }
    if (st != ND_OK) {
        free(w);
        return st;
    }
    *out = w;
    return ND_OK;
}

nd_status nd_capwriter_open_file(nd_capfmt fmt, int linktype, FILE *f, nd_capwriter **out,
                                 nd_err *err)
{
    return nd_capwriter_open(fmt, linktype, file_write, f, out, err);
}

nd_status nd_capwriter_packet(nd_capwriter *w, int64_t ts_sec, uint32_t ts_nsec,
                              const uint8_t *data, uint32_t len, uint32_t wirelen,
                              const char *comment, nd_err *err)
{
    if (wirelen < len)
        wirelen = len;
    if (ts_nsec >= 1000000000u)
        return nd_fail(err, ND_EINVAL, "nanoseconds %u out of range", ts_nsec);
    if (w->fmt == ND_CAP_PCAP) {
        if (ts_sec < 0 || ts_sec > 0xffffffffLL)
            return nd_fail(err, ND_EINVAL, "timestamp %lld does not fit a pcap record",
                           (long long)ts_sec);
        uint8_t *b;
        nd_status st = reserve(w, 16 + (size_t)len, &b, err);
        if (st)
            return st;
        put32(b, (uint32_t)ts_sec);
        put32(b + 4, ts_nsec / 1000);
        put32(b + 8, len);
        put32(b + 12, wirelen);
        memcpy(b + 16, data, len);
        return emit(w, 16 + (size_t)len, err);
    }
    if (ts_sec < 0)
        return nd_fail(err, ND_EINVAL, "negative timestamp");
    size_t clen = comment ? strlen(comment) : 0;
    if (clen > 65535)
        clen = 65535;
    size_t dpad = ((size_t)len + 3) & ~(size_t)3;
    size_t opts = clen ? 4 + ((clen + 3) & ~(size_t)3) + 4 : 0;
    size_t total = 28 + dpad + opts + 4;
    uint8_t *b;
    nd_status st = reserve(w, total, &b, err);
    if (st)
        return st;
    memset(b, 0, total);
    uint64_t t = (uint64_t)ts_sec * 1000000000u + ts_nsec;
    put32(b, 6);
    put32(b + 4, (uint32_t)total);
    put32(b + 8, 0);                  /* interface 0 */
    put32(b + 12, (uint32_t)(t >> 32));
    put32(b + 16, (uint32_t)t);
    put32(b + 20, len);
    put32(b + 24, wirelen);
    memcpy(b + 28, data, len);
    uint8_t *o = b + 28 + dpad;
    if (clen) {
        put16(o, 1);                  /* opt_comment */
        put16(o + 2, (uint16_t)clen);
        memcpy(o + 4, comment, clen);
        o += 4 + ((clen + 3) & ~(size_t)3);
        put16(o, 0);                  /* opt_endofopt */
        put16(o + 2, 0);
        o += 4;
    }
    put32(o, (uint32_t)total);
    return emit(w, total, err);
}

void nd_capwriter_free(nd_capwriter *w)
{
    if (!w)
        return;
    free(w->buf);
    free(w);
}
