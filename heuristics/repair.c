/* heuristics/repair.c - one flow's rows -> valid packets.
 *
 * Two passes over the packets analyse.c found. Pass A fixes what later
 * packets depend on: timestamps, payload lengths, where each side's data
 * ends (FIN legality). Pass B walks the packets in order with per-direction
 * state (seq, ack, IP ID, TCP timestamps, handshake phase) and writes each
 * packet's bytes straight into the context's buffer, counting every field
 * whose value differs from what the model drew. */
#include "heuristics/flow.h"
#include "heuristics/opts.h"
#include "heuristics/shape.h"

#include <stdlib.h>
#include <string.h>

void nd_repair_opts_init(nd_repair_opts *o)
{
    memset(o, 0, sizeof *o);
    o->linktype = ND_LINKTYPE_ETHERNET;
    o->mtu = 1500;
    o->start_us = 1704067200LL * 1000000; /* 2024-01-01T00:00:00Z */
    o->flow_spacing_us = 1000000;
    static const uint8_t v4c[4] = {10, 0, 0, 0}, v4s[4] = {198, 18, 0, 0};
    memcpy(o->v4_net[0], v4c, 4);
    memcpy(o->v4_net[1], v4s, 4);
    o->v4_prefix[0] = 8;
    o->v4_prefix[1] = 15;
    static const uint8_t v6c[4] = {0xfd, 0x00, 0x00, 0x0a}, v6s[4] = {0xfd, 0x00, 0x00, 0x0b};
    memcpy(o->v6_net[0], v6c, 4);
    memcpy(o->v6_net[1], v6s, 4);
    o->v6_prefix[0] = o->v6_prefix[1] = 32;
    static const uint8_t m0[3] = {0x02, 0x00, 0x0a}, m1[3] = {0x02, 0x00, 0x0b};
    memcpy(o->mac_oui[0], m0, 3);
    memcpy(o->mac_oui[1], m1, 3);
}

nd_status nd_repair_ctx_new(const nd_repair_opts *opts, nd_repair_ctx **out, nd_err *err)
{
    *out = NULL;
    nd_repair_opts o;
    if (opts)
        o = *opts;
    else
        nd_repair_opts_init(&o);
    if (o.linktype != ND_LINKTYPE_ETHERNET && o.linktype != ND_LINKTYPE_RAW)
        return nd_fail(err, ND_EINVAL, "repair: link type %d (want 1 or 101)", o.linktype);
    if (o.mtu < 576 || o.mtu > 65535)
        return nd_fail(err, ND_EINVAL, "repair: mtu %d outside 576..65535", o.mtu);
    if (o.start_us < 0 || o.start_us > 3000000000LL * 1000000)
        return nd_fail(err, ND_EINVAL, "repair: start time outside 1970..2065");
    if (o.flow_spacing_us < 0 || o.flow_spacing_us > 1000000000LL)
        return nd_fail(err, ND_EINVAL, "repair: flow spacing outside 0..1000 s");
    for (int s = 0; s < 2; s++)
        if (o.v4_prefix[s] > 30 || o.v6_prefix[s] > 126)
            return nd_fail(err, ND_EINVAL, "repair: address pool prefix too long");
    nd_repair_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return nd_fail(err, ND_ENOMEM, "repair: out of memory");
    c->f.o = o;
    *out = c;
    return ND_OK;
}

void nd_repair_set_start(nd_repair_ctx *c, int64_t start_us)
{
    if (start_us >= 0 && start_us <= 3000000000LL * 1000000)
        c->f.o.start_us = start_us;
}

void nd_repair_ctx_free(nd_repair_ctx *c)
{
    if (!c)
        return;
    nd_flowctx *f = &c->f;
    free(f->pk);
    free(f->pres);
    free(f->prow);
    free(f->out);
    free(f->buf);
    free(f->hkey);
    free(f->hcnt);
    free(f->hstamp);
    free(c);
}

/* Grows the per-row arrays to n rows (per flow, never per packet). */
static nd_status reserve_rows(nd_flowctx *f, int n, nd_err *err)
{
    if (n <= f->cap)
        return ND_OK;
    int cap = 1024;
    while (cap < n)
        cap *= 2;
    free(f->pk);
    free(f->pres);
    free(f->prow);
    free(f->out);
    free(f->hkey);
    free(f->hcnt);
    free(f->hstamp);
    f->pk = malloc((size_t)cap * sizeof *f->pk);
    f->pres = malloc((size_t)cap * ND_BLK_COUNT * sizeof *f->pres);
    f->prow = malloc((size_t)cap * sizeof *f->prow);
    f->out = malloc((size_t)cap * sizeof *f->out);
    f->hcap = 2 * cap;
    f->hkey = malloc((size_t)f->hcap * sizeof *f->hkey);
    f->hcnt = malloc((size_t)f->hcap * sizeof *f->hcnt);
    f->hstamp = calloc((size_t)f->hcap, sizeof *f->hstamp);
    f->hgen = 0;
    if (!f->pk || !f->pres || !f->prow || !f->out || !f->hkey || !f->hcnt || !f->hstamp) {
        f->cap = 0;
        return nd_fail(err, ND_ENOMEM, "repair: out of memory for %d rows", n);
    }
    f->cap = cap;
    return ND_OK;
}

static nd_status reserve_buf(nd_flowctx *f, size_t n, nd_err *err)
{
    if (n <= f->buf_cap)
        return ND_OK;
    size_t cap = f->buf_cap ? f->buf_cap : 1 << 20;
    while (cap < n)
        cap *= 2;
    uint8_t *b = realloc(f->buf, cap);
    if (!b)
        return nd_fail(err, ND_ENOMEM, "repair: out of memory for %zu bytes", n);
    f->buf = b;
    f->buf_cap = cap;
    return ND_OK;
}

/* ---- endpoints, per flow from the pools */

static void draw_endpoints(nd_flowctx *f, uint8_t addr[2][16], uint8_t mac[2][6])
{
    const nd_repair_opts *o = &f->o;
    for (int s = 0; s < 2; s++) {
        uint64_t r = nd_rand(f->key, 0xadd0 + (uint64_t)s);
        uint64_t r2 = nd_rand(f->key, 0xadd8 + (uint64_t)s);
        memset(addr[s], 0, 16);
        if (f->ipver == 4) {
            uint32_t net = (uint32_t)o->v4_net[s][0] << 24 | (uint32_t)o->v4_net[s][1] << 16 |
                           (uint32_t)o->v4_net[s][2] << 8 | o->v4_net[s][3];
            int pl = o->v4_prefix[s];
            uint32_t hmask = pl ? (uint32_t)(0xffffffffu >> pl) : 0xffffffffu;
            uint32_t host = (uint32_t)r & hmask;
            /* neither the network nor the broadcast address of the pool */
            if (host == 0 || host == hmask)
                host = 1 + (host == hmask);
            nd_put32(addr[s], (net & ~hmask) | host);
        } else {
            memcpy(addr[s], o->v6_net[s], 16);
            int pl = o->v6_prefix[s];
            uint8_t rnd[16];
            memcpy(rnd, &r, 8);
            memcpy(rnd + 8, &r2, 8);
            for (int i = 0; i < 16; i++) {
                int keep = pl - 8 * i; /* network bits in this byte */
                uint8_t m = keep >= 8 ? 0xff : keep <= 0 ? 0 : (uint8_t)(0xff << (8 - keep));
                addr[s][i] = (uint8_t)((addr[s][i] & m) | (rnd[i] & ~m));
            }
            if (addr[s][15] == 0)
                addr[s][15] = 1; /* not the subnet-router anycast address */
        }
        memcpy(mac[s], o->mac_oui[s], 3);
        mac[s][0] = (uint8_t)((mac[s][0] & 0xfe)); /* unicast */
        mac[s][3] = (uint8_t)(r2 >> 40);
        mac[s][4] = (uint8_t)(r2 >> 48);
        mac[s][5] = (uint8_t)(r2 >> 56);
    }
    if (!memcmp(addr[0], addr[1], 16))
        addr[1][f->ipver == 4 ? 3 : 15] ^= 2; /* overlapping pools drew the same host */
    if (!memcmp(mac[0], mac[1], 6))
        mac[1][5] ^= 1;
}

/* ---- timestamps */

#define ND_MAX_GAP_US (60LL * 1000000) /* keeps 32-bit pcap seconds far away */

/* A gap histogram to draw from and its total, found once per flow (the
 * class's, or the default's where the class has none of a kind). */
typedef struct {
    const uint64_t *h;
    uint64_t tot;
} gap_hist;

static gap_hist gap_hist_of(const nd_class_stats *cls, const nd_class_stats *def, int change)
{
    gap_hist g = {cls->gap_hist[change], 0};
    for (int b = 0; b < ND_GAP_BINS; b++)
        g.tot += g.h[b];
    if (!g.tot) {
        g.h = def->gap_hist[change];
        for (int b = 0; b < ND_GAP_BINS; b++)
            g.tot += g.h[b];
    }
    return g;
}

static int64_t draw_gap(const gap_hist *gh, uint64_t key, uint64_t k)
{
    const uint64_t *h = gh->h;
    uint64_t u = (uint64_t)(nd_rand01(key, 2 * k) * (double)gh->tot);
    int b = 0;
    for (; b < ND_GAP_BINS - 1; b++) {
        if (u < h[b])
            break;
        u -= h[b];
    }
    if (b == 0)
        return 0;
    /* log-uniform inside [2^(b-1), 2^b) */
    double lo = (double)(1ULL << (b - 1));
    double v = lo * __builtin_exp2(nd_rand01(key, 2 * k + 1));
    int64_t g = (int64_t)v;
    return g > ND_MAX_GAP_US ? ND_MAX_GAP_US : g;
}

/* ---- per-field counting */

typedef struct {
    const nd_prow *row;
    nd_repair_counts *cnt;
} counter;

/* Counts field f as emitted with value v; changed when the drawn field is
 * incomplete or different. */
static inline void cnt_field(counter *c, nd_field_id f, uint64_t v)
{
    bool ok = true;
    uint64_t d = nd_prow_get(c->row, nd_fields[f].col, nd_fields[f].width, &ok);
    c->cnt->seen[f]++;
    c->cnt->changed[f] += !ok || d != v;
}
/* An option area: changed unless the drawn bytes are exactly opt[0..n) with
 * vacant cells after them. */
static void cnt_opts(counter *c, nd_field_id f, const uint8_t *opt, int n)
{
    uint8_t drawn[40];
    int dn = nd_prow_lead_bytes(c->row, nd_fields[f].col, 40, drawn);
    bool same = dn == n && !memcmp(drawn, opt, (size_t)n);
    if (same && dn < 40)
        same = nd_prow_vacant(c->row, nd_fields[f].col + 8 * dn, 40 - dn);
    c->cnt->seen[f]++;
    c->cnt->changed[f] += !same;
}

/* ---- payload: drawn bytes where the row has them, else seeded bytes */

/* Payload bytes are a function of (flow, direction, stream offset): a TCP
 * retransmission repeats exactly the bytes it resends (reassembly in tshark
 * flags overlapping segments whose bytes differ as malformed). UDP/ICMP use
 * the packet index as their "stream". Drawn bytes (payload columns) win,
 * except on retransmissions (use_drawn false). */
static bool fill_payload(const nd_flowctx *f, const int8_t *row, int payload_cols, int dir,
                         uint64_t off, bool use_drawn, uint8_t *dst, uint32_t n, bool avx2)
{
    uint32_t drawn = 0;
    uint32_t have = payload_cols < 0 || !use_drawn ? 0 : (uint32_t)payload_cols;
    if (have > n)
        have = n;
    const int8_t *pc = row + ND_HDR_BITS;
    bool all = true;
    uint64_t pkey = nd_mix64(f->key ^ 0x9a110adULL ^ (uint64_t)dir);
    uint32_t i = 0;
    /* head up to 8-byte stream alignment, then whole words */
    if (off & 7) {
        uint64_t r = nd_stream_word(pkey, off >> 3);
        for (; i < n && ((off + i) & 7); i++)
            dst[i] = (uint8_t)(r >> (8 * ((off + i) & 7)));
    }
    nd_stream_words(pkey, (off + i) >> 3, dst + i, (n - i) / 8, avx2);
    i += (n - i) / 8 * 8;
    if (i < n) {
        uint64_t r = nd_stream_word(pkey, (off + i) >> 3);
        for (int b = 0; i < n; i++, b++)
            dst[i] = (uint8_t)(r >> (8 * b));
    }
    for (uint32_t k = 0; k < have; k++) {
        uint8_t vac;
        uint8_t b = nd_cells_byte(pc + 8 * k, &vac);
        if (!vac) {
            dst[k] = b;
            drawn++;
        } else {
            all = false;
        }
    }
    return all && drawn == n;
}

/* ---- the per-direction TCP state of pass B */

typedef struct {
    bool started;            /* sent anything                        */
    uint32_t syn;            /* 1 when its first packet was a SYN     */
    uint32_t isn, nxt;       /* first seq, next seq                   */
    bool fin;                /* sent its FIN                          */
    uint32_t fin_seq;
    bool acked;              /* sent an ACK (last_ack valid)          */
    uint32_t last_ack;
    bool pend;               /* the peer acked before we spoke: our isn */
    uint32_t pend_seq;
    bool ts;                 /* sent a TS option                      */
    uint32_t ts_first, ts_last;
    int64_t ts_us;           /* time of that TS option                */
    uint16_t win;            /* last non-zero window                  */
    bool id_set;
    uint16_t id;
    int last_data;           /* last packet index with payload        */
    int fin_at;              /* first packet that may carry our FIN   */
    uint32_t echo_seq;       /* ICMP: last echo seq of this side      */
    bool echo_set;
} side;

/* The IP ID only matters for reassembly, and repair never emits a
 * fragment (MF 0, offset 0): any complete drawn ID is kept. Real stacks send
 * per-connection counters, global counters, random IDs (some BSDs) and a
 * constant 0, with and without DF (the test captures have all of these),
 * so none is "wrong". A partly vacant ID continues the side's last one. */
static uint16_t next_id(side *s, uint16_t drawn, bool ok)
{
    uint16_t v = ok || !s->id_set ? drawn : (uint16_t)(s->id + 1);
    s->id = v;
    s->id_set = true;
    return v;
}

nd_status nd_repair_flow(nd_repair_ctx *c, const nd_rows *rows, const nd_conf *conf,
                         const nd_class_stats *cls, uint64_t flow_id, nd_repair_out *out,
                         nd_repair_counts *counts, nd_err *err)
{
    memset(out, 0, sizeof *out);
    nd_flowctx *f = &c->f;
    out->linktype = f->o.linktype;
    out->pkts = f->out;
    if (!rows || rows->n < 0 || rows->payload_bytes < 0 ||
        rows->payload_bytes > ND_MAX_PAYLOAD_BYTES || (rows->n > 0 && !rows->bits))
        return nd_fail(err, ND_EINVAL, "repair: bad rows");
    nd_repair_counts local;
    nd_repair_counts *cnt = counts ? counts : &local;
    memset(&local, 0, sizeof local);
    nd_status st = reserve_rows(f, rows->n, err);
    if (st)
        return st;
    nd_class_stats def;
    nd_class_stats_default(&def);
    if (!cls)
        cls = &def;
    f->key = nd_mix64(f->o.seed ^ nd_mix64(flow_id ^ 0x6e64ULL));
    cnt->flows++;
    int np = nd_flow_analyse(f, rows, conf, cnt);
    out->pkts = f->out;
    if (np == 0)
        return ND_OK;
    /* Port 0 is no port (tools flag it, stacks refuse it): a drawn 0 on the
     * server side becomes the class's most common server port of this
     * transport, else a registered port drawn from the seed; on the client
     * side an ephemeral port drawn from the seed. The packets' port fields
     * then differ from the drawn ones and are counted as changed. */
    if (f->proto == 6 || f->proto == 17) {
        if (f->port[1] == 0) {
            for (int i = 0; i < cls->n_server_ports && i < 8 && !f->port[1]; i++)
                if (cls->server_proto[i] == f->proto && cls->server_port[i])
                    f->port[1] = cls->server_port[i];
            if (!f->port[1])
                f->port[1] = (uint16_t)(1024 + nd_rand(f->key, 0x706f7274ULL) % (49152 - 1024));
        }
        if (f->port[0] == 0)
            f->port[0] = (uint16_t)(49152 + nd_rand(f->key, 0x65706800ULL) % 16384);
        /* One pass over the class's server ports of this transport:
         *  - a server port one or two bits from one of them (and not one
         *    itself) is that port drawn with a bit wrong: 33211 or 447 for
         *    443 (a flipped high bit also hides it among the ephemeral
         *    ports). A random port is that close to one of 8 table ports 1
         *    time in 60.
         *  - else a drawn system port (below 1024) the class never serves
         *    on, where its table has server ports: a bit the model got
         *    wrong (513 for telegram's 521, 256 for ntp's 123) lands on
         *    another protocol's dissector, which finds the payload
         *    malformed. It becomes the class's most common port.
         * Real flows of the class on its own ports never change. */
        uint16_t top = 0, near = 0;
        bool known = false;
        int near_d = 3;
        for (int i = 0; i < cls->n_server_ports && i < 8; i++) {
            uint16_t sp = cls->server_port[i];
            if (cls->server_proto[i] != f->proto || !sp)
                continue;
            if (!top)
                top = sp;
            int dist = __builtin_popcount((unsigned)(sp ^ f->port[1]));
            known |= dist == 0;
            if (dist > 0 && dist < near_d)
                near_d = dist, near = sp;
        }
        if (!known && near)
            f->port[1] = near;
        else if (!known && top && f->port[1] < 1024)
            f->port[1] = top;
    }
    out->ipver = f->ipver;
    out->proto = f->proto;
    cnt->packets += (uint64_t)np;

    const int w = nd_row_width(rows->payload_bytes);
    const bool v4 = f->ipver == 4;
    const int proto = f->proto;
    const int link = f->o.linktype == ND_LINKTYPE_ETHERNET ? 14 : 0;
    const int ipmin = v4 ? 20 : 40;
    /* TTL per side: the drawn mode, else the class's, else the default's */
    for (int d = 0; d < 2; d++) {
        if (!f->ttl[d]) {
            const uint64_t *h = cls->ttl_hist[d];
            int best = 0;
            for (int t = 1; t < 256; t++)
                if (h[t] > h[best])
                    best = t;
            f->ttl[d] = (uint8_t)(best ? best : (d ? 56 : 64));
        }
    }

    /* ---- pass A: timestamps, payload lengths, where data ends */
    side sd[2];
    memset(sd, 0, sizeof sd);
    sd[0].last_data = sd[1].last_data = -1;
    sd[0].fin_at = sd[1].fin_at = -1;
    int64_t t = f->o.start_us + (int64_t)(flow_id % (1u << 20)) * f->o.flow_spacing_us;
    size_t bytes = 0;
    const int maxpay = f->o.mtu - ipmin - (proto == 6 ? 20 : 8);
    const gap_hist gh[2] = {gap_hist_of(cls, &def, 0), gap_hist_of(cls, &def, 1)};
    for (int k = 0; k < np; k++) {
        nd_pkt *p = &f->pk[k];
        const nd_prow *r = &f->prow[p->row];
        if (k > 0) {
            int64_t g = rows->gap_us ? rows->gap_us[p->row] : -1;
            bool drawn = g >= 0;
            if (!drawn)
                g = draw_gap(&gh[p->dir != f->pk[k - 1].dir], f->key ^ 0x7177, (uint64_t)k);
            if (g > ND_MAX_GAP_US) {
                g = ND_MAX_GAP_US;
                drawn = false;
            }
            t += g;
            cnt->seen[ND_RP_GAP]++;
            cnt->changed[ND_RP_GAP] += !drawn;
        }
        p->ts_us = t;
        /* payload = drawn length minus the header bytes the row carries */
        bool ok = true;
        int64_t len;
        uint8_t tmp[40];
        if (v4)
            len = (int64_t)nd_prow_get(r, nd_fields[ND_F_IPV4_TL].col, 16, &ok) - 20 -
                  nd_prow_lead_bytes(r, nd_fields[ND_F_IPV4_OPT].col, 40, tmp);
        else
            len = (int64_t)nd_prow_get(r, nd_fields[ND_F_IPV6_LEN].col, 16, &ok);
        if (proto == 6)
            len -= 20 + nd_prow_lead_bytes(r, nd_fields[ND_F_TCP_OPT].col, 40, tmp);
        else
            len -= 8;
        if (len < 0)
            len = 0;
        if (len > maxpay)
            len = maxpay;
        if (proto == 1 && p->icmp_kind == ND_ICMP_ERR)
            len = v4 ? 28 : 48; /* the quoted header, built below */
        /* NTP (UDP 123): no message is shorter than its 48-byte header; a
         * shorter drawn one (40 and 44 from the default model) would stay
         * random bytes tshark calls malformed */
        if (proto == 17 && (f->port[0] == 123 || f->port[1] == 123) && len > 0 && len < 48 &&
            48 <= maxpay)
            len = 48;
        p->payload = (uint32_t)len;
        /* where each side's new data ends: a TCP segment whose drawn seq
         * lies inside what its side already sent is a retransmission,
         * which may follow that side's FIN */
        bool sok = true;
        uint32_t dseq = (uint32_t)nd_prow_get(r, nd_fields[ND_F_TCP_SEQ].col, 32, &sok);
        side *ps = &sd[p->dir];
        bool fresh = proto != 6 || !sok || !ps->started ||
                     nd_sdiff32(dseq + (uint32_t)len, ps->nxt) > 0;
        if (proto == 6 && sok && (!ps->started || fresh)) {
            ps->started = true; /* pass A's own use of the side state, reset below */
            ps->nxt = dseq + (uint32_t)len;
        }
        if (len > 0 && fresh)
            ps->last_data = k;
        bytes += (size_t)link + 60 + 60 + (size_t)len;
    }
    for (int d = 0; d < 2; d++) {
        sd[d].started = false;
        sd[d].nxt = 0;
    }
    if (proto == 6) {
        /* FIN legality: a side may close once its data is done. The other
         * side may go on sending and never close (a half-close, RFC 9293
         * 3.6; captures end mid-connection too). */
        for (int k = 0; k < np; k++) {
            nd_pkt *p = &f->pk[k];
            const nd_prow *r = &f->prow[p->row];
            bool fin = nd_prow_one(r, nd_fields[ND_F_TCP_FIN].col),
                 rst = nd_prow_one(r, nd_fields[ND_F_TCP_RST].col);
            if (fin && !rst && k >= sd[p->dir].last_data && sd[p->dir].fin_at < 0 && k > 0)
                sd[p->dir].fin_at = k;
        }
    }
    st = reserve_buf(f, bytes, err);
    if (st)
        return st;

    uint8_t addr[2][16], mac[2][6];
    draw_endpoints(f, addr, mac);

    /* ---- pass B */
    const bool hs = proto == 6 && nd_prow_one(&f->prow[f->pk[0].row], nd_fields[ND_F_TCP_SYN].col);
    int phase = hs ? 0 : 2; /* 0 SYN sent, 1 SYN-ACK sent, 2 established */
    unsigned syn_opts = ND_OPT_ALL, est_opts = ND_OPT_ALL;
    bool synack_seen = false; /* the first SYN-ACK settles the timestamps */
    const bool avx2 = nd_words_avx2();
    uint8_t *o = f->buf;
    for (int k = 0; k < np; k++) {
        nd_pkt *p = &f->pk[k];
        const int8_t *cells = rows->bits + (size_t)p->row * w; /* payload columns */
        const nd_prow *r = &f->prow[p->row];
        counter cn = {r, cnt};
        const int d = p->dir;
        side *me = &sd[d], *peer = &sd[1 - d];
        uint8_t *frame = o;
        if (link) {
            memcpy(o, mac[1 - d], 6);
            memcpy(o + 6, mac[d], 6);
            nd_put16(o + 12, v4 ? 0x0800 : 0x86dd);
            o += 14;
        }
        uint8_t *ip = o;
        bool ok;
#define GET(fid) (ok = true, nd_prow_get(r, nd_fields[fid].col, nd_fields[fid].width, &ok))
        /* TTL / hop limit: the drawn one when complete and not 0 (a path
         * can change within a flow), else the side's steady value. One or
         * two bits from that value yet 32 or more hops away is that value
         * drawn with a bit wrong (64 drawn as 4, 16, 1, 96 or 192): paths
         * differ by a few hops, not 32 (real flow sides keep one TTL, 883 of
         * 897 in the held-out flows; the others move by 16 or 17 at most) */
        uint8_t ttl = (uint8_t)GET(v4 ? ND_F_IPV4_TTL : ND_F_IPV6_HL);
        if (!ok || ttl == 0 ||
            (__builtin_popcount((unsigned)(ttl ^ f->ttl[d])) <= 2 && abs(ttl - f->ttl[d]) >= 32))
            ttl = f->ttl[d];
        /* -- network header (lengths and checksum patched below) */
        int iph;
        uint8_t ipopt[44];
        int ipopt_n = 0;
        if (v4) {
            uint8_t drawn_opt[40];
            int dn = nd_prow_lead_bytes(r, nd_fields[ND_F_IPV4_OPT].col, 40, drawn_opt);
            ipopt_n = nd_ip4_opts_repair(drawn_opt, dn, ipopt);
            iph = 20 + ipopt_n;
            uint8_t tos = (uint8_t)GET(ND_F_IPV4_TOS);
            cnt_field(&cn, ND_F_IPV4_TOS, tos);
            bool df = GET(ND_F_IPV4_DFBIT) == 1;
            cnt_field(&cn, ND_F_IPV4_DFBIT, df);
            uint16_t id = (uint16_t)GET(ND_F_IPV4_ID);
            id = next_id(me, id, ok);
            ip[0] = (uint8_t)(0x40 | (iph / 4));
            ip[1] = tos;
            nd_put16(ip + 4, id);
            nd_put16(ip + 6, df ? 0x4000 : 0);
            ip[8] = ttl;
            ip[9] = (uint8_t)proto;
            memcpy(ip + 12, addr[d], 4);
            memcpy(ip + 16, addr[1 - d], 4);
            memcpy(ip + 20, ipopt, (size_t)ipopt_n);
            cnt_field(&cn, ND_F_IPV4_VER, 4);
            cnt_field(&cn, ND_F_IPV4_HL, (uint64_t)iph / 4);
            cnt_field(&cn, ND_F_IPV4_ID, id);
            cnt_field(&cn, ND_F_IPV4_RBIT, 0);
            cnt_field(&cn, ND_F_IPV4_MFBIT, 0);
            cnt_field(&cn, ND_F_IPV4_FOFF, 0);
            cnt_field(&cn, ND_F_IPV4_TTL, ttl);
            cnt_field(&cn, ND_F_IPV4_PROTO, (uint64_t)proto);
            cnt_field(&cn, ND_F_IPV4_SRC, (uint64_t)ip[12] << 24 | (uint64_t)ip[13] << 16 |
                                              (uint64_t)ip[14] << 8 | ip[15]);
            cnt_field(&cn, ND_F_IPV4_DST, (uint64_t)ip[16] << 24 | (uint64_t)ip[17] << 16 |
                                              (uint64_t)ip[18] << 8 | ip[19]);
            cnt_opts(&cn, ND_F_IPV4_OPT, ipopt, ipopt_n);
        } else {
            iph = 40;
            uint8_t tc = (uint8_t)GET(ND_F_IPV6_TC);
            cnt_field(&cn, ND_F_IPV6_TC, tc);
            /* flow label: drawn when complete (stacks re-draw it when a
             * path fails, RFC 6437), else the side's most common one */
            uint32_t fl = (uint32_t)GET(ND_F_IPV6_FL);
            if (!ok)
                fl = f->flow_label[d];
            nd_put32(ip, 0x60000000u | (uint32_t)tc << 20 | fl);
            ip[6] = (uint8_t)(proto == 1 ? 58 : proto);
            ip[7] = ttl;
            memcpy(ip + 8, addr[d], 16);
            memcpy(ip + 24, addr[1 - d], 16);
            cnt_field(&cn, ND_F_IPV6_VER, 6);
            cnt_field(&cn, ND_F_IPV6_FL, fl);
            cnt_field(&cn, ND_F_IPV6_NH, ip[6]);
            cnt_field(&cn, ND_F_IPV6_HL, ttl);
            /* addresses: 128-bit fields, counted as changed unless all drawn
             * bits already match (they never do: the image omits them) */
            for (int a = 0; a < 2; a++) {
                nd_field_id fid = a ? ND_F_IPV6_DST : ND_F_IPV6_SRC;
                uint8_t drawn[16];
                int dn = nd_prow_lead_bytes(r, nd_fields[fid].col, 16, drawn);
                cnt->seen[fid]++;
                cnt->changed[fid] += dn != 16 || memcmp(drawn, ip + 8 + 16 * a, 16);
            }
        }
        uint8_t *l4 = ip + iph;
        uint32_t pay = p->payload;
        uint64_t stream_off = 0; /* TCP: this segment's offset in its side's stream */
        bool retrans = false;
        int l4h;
        /* -- transport */
        if (proto == 6) {
            /* CWR ECE URG ACK PSH RST SYN FIN: eight adjacent columns */
            bool fok = true;
            uint8_t fl = (uint8_t)nd_prow_get(r, nd_fields[ND_F_TCP_CWR].col, 8, &fok);
            bool ns = GET(ND_F_TCP_NS) == 1;
            enum { FIN = 1, SYN = 2, RST = 4, PSH = 8, ACK = 16, URG = 32, ECE = 64, CWR = 128 };
            bool rst_reply = false, rtx = false;
            /* flags by handshake phase */
            if (phase == 0 && d == 0) {
                fl = (uint8_t)(SYN | (fl & (ECE | CWR))); /* SYN (retransmissions) */
                pay = 0;
            } else if (phase == 0 && (fl & RST)) {
                fl = RST | ACK; /* connection refused */
                pay = 0;
                rst_reply = true;
                phase = 2;
            } else if (phase <= 1 && d == 1) {
                fl = (uint8_t)(SYN | ACK | (fl & ECE));
                pay = 0;
                phase = 1;
            } else {
                if (phase == 1)
                    phase = 2; /* the initiator's answer to the SYN-ACK */
                fl &= (uint8_t)~SYN;
                if (fl & RST)
                    fl &= RST | ACK; /* a reset carries nothing else */
                else
                    fl |= ACK;
                if ((fl & FIN) && (k < me->fin_at || me->fin_at < 0))
                    fl &= (uint8_t)~FIN;
                /* a drawn retransmission: data this side already sent,
                 * ending where its data ends (with the FIN again once it
                 * closed). Only such a tail copy is one to tshark whatever
                 * the timing: a copy that ends earlier and comes soon is
                 * "out of order", goes to reassembly and is reported
                 * there as overlapping data. Its bytes are a function of
                 * the stream offset, so the copy is exact; not with
                 * payload columns, whose drawn bytes would differ. */
                uint32_t dseq = (uint32_t)GET(ND_F_TCP_SEQ);
                rtx = ok && pay > 0 && rows->payload_bytes == 0 && me->started && !(fl & RST) &&
                      nd_sdiff32(dseq, me->isn + me->syn) >= 0 &&
                      (me->fin ? (fl & FIN) && dseq + pay == me->fin_seq
                               : dseq + pay == me->nxt);
                if (me->fin && !rtx)
                    pay = 0; /* nothing after our FIN but ACKs (and FIN copies) */
                if ((fl & URG) && pay == 0)
                    fl &= (uint8_t)~URG;
            }
            if (fl & (SYN | RST))
                ns = false;
            /* options */
            uint8_t drawn_opt[40], opt[44];
            nd_tcp_opt_info oi;
            int dn = nd_prow_lead_bytes(r, nd_fields[ND_F_TCP_OPT].col, 40, drawn_opt);
            /* a SYN-ACK may only answer what the SYN offered (MSS always);
             * timestamps after the handshake only when both sides agreed */
            unsigned allow = (fl & SYN) && (fl & ACK) ? (syn_opts | ND_OPT_MSS)
                             : (fl & SYN)             ? ND_OPT_ALL
                                                      : est_opts;
            int on = nd_tcp_opts_repair(drawn_opt, dn, fl & SYN, fl & ACK, allow, opt, &oi);
            if ((fl & SYN) && !(fl & ACK))
                syn_opts = oi.present; /* what the initiator offered */
            if ((fl & SYN) && (fl & ACK) && !synack_seen) {
                synack_seen = true;
                if (!(oi.present & ND_OPT_TS))
                    est_opts &= ~(unsigned)ND_OPT_TS;
            }
            l4h = 20 + on;
            if ((uint32_t)(iph + l4h) + pay > (uint32_t)f->o.mtu) {
                pay = (uint32_t)(f->o.mtu - iph - l4h); /* before seq: it counts */
                if (rtx && (fl & FIN) && me->fin)
                    pay = 0; /* cut short, the copy no longer ends at the FIN */
            }
            /* seq */
            uint32_t dseq = (uint32_t)GET(ND_F_TCP_SEQ);
            bool seq_ok = ok;
            uint32_t seq;
            if (rst_reply) {
                seq = 0;
                if (!me->started) {
                    me->started = true;
                    me->isn = me->nxt = 0;
                }
            } else if (!me->started) {
                seq = me->pend ? me->pend_seq : dseq;
                me->started = true;
                me->isn = seq;
                me->nxt = seq;
                me->syn = (fl & SYN) != 0;
            } else if (fl & SYN) {
                seq = me->isn; /* SYN / SYN-ACK retransmission */
            } else if ((fl & FIN) && me->fin && !(rtx && pay > 0)) {
                seq = me->fin_seq;
            } else {
                seq = me->nxt;
                /* segments the capture missed: a forward jump, when allowed */
                if (f->o.keep_seq_gaps && seq_ok && nd_sdiff32(dseq, me->nxt) > 0 &&
                    nd_sdiff32(dseq, me->nxt) <= (1 << 20))
                    seq = dseq;
                /* a reset after our FIN may carry the FIN's own seq (the
                 * peer has not acked it): both are acceptable to the peer */
                if (seq_ok && (fl & RST) && me->fin && dseq == me->fin_seq)
                    seq = dseq;
                if (rtx && pay > 0)
                    seq = dseq;
            }
            stream_off = (uint32_t)(seq - me->isn);
            retrans = nd_sdiff32(seq + pay, me->nxt) <= 0 && pay > 0;
            uint32_t end = seq + pay + ((fl & SYN) ? 1 : 0) + ((fl & FIN) ? 1 : 0);
            if (nd_sdiff32(end, me->nxt) > 0)
                me->nxt = end;
            if ((fl & FIN) && !me->fin) {
                me->fin = true;
                me->fin_seq = seq + pay;
            }
            /* ack */
            uint32_t dack = (uint32_t)GET(ND_F_TCP_ACKN);
            bool ack_ok = ok;
            uint32_t ack = 0;
            if (fl & ACK) {
                if (peer->started) {
                    /* acks never go back and never pass what the peer sent */
                    uint32_t lo = me->acked ? me->last_ack : peer->isn + peer->syn;
                    ack = peer->nxt;
                    int32_t over = f->o.keep_seq_gaps ? (1 << 20) : 0;
                    if (ack_ok && !(fl & SYN) && nd_sdiff32(dack, lo) >= 0 &&
                        nd_sdiff32(dack, peer->nxt) <= over)
                        ack = dack;
                } else if (peer->pend) {
                    ack = peer->pend_seq; /* the peer is silent: nothing new to ack */
                } else {
                    ack = dack; /* the peer has not spoken: its seq will follow this */
                    peer->pend = true;
                    peer->pend_seq = dack;
                }
                me->acked = true;
                me->last_ack = ack;
            }
            /* window: non-zero unless RST */
            uint16_t win = (uint16_t)GET(ND_F_TCP_WSIZE);
            if (win)
                me->win = win;
            else if (!(fl & RST))
                win = me->win ? me->win : 65535;
            /* urgent pointer */
            uint16_t urp = (uint16_t)GET(ND_F_TCP_URP);
            if (!(fl & URG))
                urp = 0;
            else if (urp == 0 || urp > pay)
                urp = (uint16_t)pay;
            /* timestamps option: TSval steady per side, TSecr echoes the peer */
            if (oi.ts_off >= 0) {
                uint8_t *ts = opt + oi.ts_off + 2;
                uint32_t tv = (uint32_t)ts[0] << 24 | (uint32_t)ts[1] << 16 |
                              (uint32_t)ts[2] << 8 | ts[3];
                uint32_t te = (uint32_t)ts[4] << 24 | (uint32_t)ts[5] << 16 |
                              (uint32_t)ts[6] << 8 | ts[7];
                if (me->ts) {
                    int32_t dv = nd_sdiff32(tv, me->ts_last);
                    if (dv < 0 || dv > (1 << 20))
                        tv = me->ts_last + (uint32_t)((p->ts_us - me->ts_us) / 1000);
                } else {
                    me->ts_first = tv;
                }
                /* TSecr echoes a TSval the peer sent: with keep_seq_gaps
                 * also one of the segments the capture missed (ahead of the
                 * last one seen, as acks may be) */
                int32_t ahead = f->o.keep_seq_gaps ? (1 << 20) : 0;
                if (!(fl & ACK))
                    te = 0;
                else if (peer->ts && (nd_sdiff32(te, peer->ts_first) < 0 ||
                                      nd_sdiff32(te, peer->ts_last) > ahead))
                    te = peer->ts_last;
                me->ts = true;
                me->ts_last = tv;
                me->ts_us = p->ts_us;
                nd_put32(ts, tv);
                nd_put32(ts + 4, te);
            }
            uint16_t sport = f->port[d], dport = f->port[1 - d];
            nd_put16(l4, sport);
            nd_put16(l4 + 2, dport);
            nd_put32(l4 + 4, seq);
            nd_put32(l4 + 8, ack);
            l4[12] = (uint8_t)((l4h / 4) << 4 | ns);
            l4[13] = fl;
            nd_put16(l4 + 14, win);
            nd_put16(l4 + 16, 0);
            nd_put16(l4 + 18, urp);
            memcpy(l4 + 20, opt, (size_t)on);
            cnt_field(&cn, ND_F_TCP_SPRT, sport);
            cnt_field(&cn, ND_F_TCP_DPRT, dport);
            cnt_field(&cn, ND_F_TCP_SEQ, seq);
            cnt_field(&cn, ND_F_TCP_ACKN, ack);
            cnt_field(&cn, ND_F_TCP_DOFF, (uint64_t)l4h / 4);
            cnt_field(&cn, ND_F_TCP_RES, 0);
            cnt_field(&cn, ND_F_TCP_NS, ns);
            cnt_field(&cn, ND_F_TCP_CWR, fl >> 7 & 1);
            cnt_field(&cn, ND_F_TCP_ECE, fl >> 6 & 1);
            cnt_field(&cn, ND_F_TCP_URG, fl >> 5 & 1);
            cnt_field(&cn, ND_F_TCP_ACKF, fl >> 4 & 1);
            cnt_field(&cn, ND_F_TCP_PSH, fl >> 3 & 1);
            cnt_field(&cn, ND_F_TCP_RST, fl >> 2 & 1);
            cnt_field(&cn, ND_F_TCP_SYN, fl >> 1 & 1);
            cnt_field(&cn, ND_F_TCP_FIN, fl & 1);
            cnt_field(&cn, ND_F_TCP_WSIZE, win);
            cnt_field(&cn, ND_F_TCP_URP, urp);
            cnt_opts(&cn, ND_F_TCP_OPT, opt, on);
        } else if (proto == 17) {
            l4h = 8;
            nd_put16(l4, f->port[d]);
            nd_put16(l4 + 2, f->port[1 - d]);
            nd_put16(l4 + 4, (uint16_t)(8 + pay));
            nd_put16(l4 + 6, 0);
            cnt_field(&cn, ND_F_UDP_SPORT, f->port[d]);
            cnt_field(&cn, ND_F_UDP_DPORT, f->port[1 - d]);
            cnt_field(&cn, ND_F_UDP_LEN, 8 + pay);
        } else {
            l4h = 8;
            bool tok = true;
            int dtype = (int)nd_prow_get(r, ND_COL_ICMP, 8, &tok);
            int dcode = (int)GET(ND_F_ICMP_CODE);
            int type, code = 0;
            if (p->icmp_kind == ND_ICMP_REQ) {
                type = v4 ? 8 : 128;
            } else if (p->icmp_kind == ND_ICMP_REP) {
                type = v4 ? 0 : 129;
            } else if (v4) {
                type = dtype;
                code = dcode <= (type == 3 ? 15 : 1) ? dcode : 0;
            } else {
                type = dtype == 1 || dtype == 3 ? dtype : dtype == 11 ? 3 : 1;
                code = dcode <= (type == 1 ? 6 : 1) ? dcode : 0;
            }
            l4[0] = (uint8_t)type;
            l4[1] = (uint8_t)code;
            nd_put16(l4 + 2, 0);
            uint32_t roh = 0;
            if (p->icmp_kind != ND_ICMP_ERR) {
                uint16_t dseq = (uint16_t)nd_prow_get(r, ND_COL_ICMP + 48, 16, &tok);
                uint16_t seq;
                side *req = p->icmp_kind == ND_ICMP_REQ ? me : peer;
                if (p->icmp_kind == ND_ICMP_REQ) {
                    /* requests advance; a reply echoes a request's seq */
                    seq = !me->echo_set || (uint16_t)(dseq - me->echo_seq) - 1u < 1024u
                              ? dseq
                              : (uint16_t)(me->echo_seq + 1);
                    me->echo_seq = seq;
                    me->echo_set = true;
                } else {
                    seq = req->echo_set ? (uint16_t)req->echo_seq : dseq;
                }
                roh = (uint32_t)f->echo_id << 16 | seq;
            }
            nd_put32(l4 + 4, roh);
            cnt_field(&cn, ND_F_ICMP_TYPE, (uint64_t)type);
            cnt_field(&cn, ND_F_ICMP_CODE, (uint64_t)code);
            cnt_field(&cn, ND_F_ICMP_ROH, roh);
        }
        /* -- payload */
        uint8_t *pl = l4 + l4h;
        if (proto == 1 && p->icmp_kind == ND_ICMP_ERR) {
            /* the offending packet's headers: the peer's UDP datagram to us */
            uint8_t *q = pl;
            int qh = v4 ? 20 : 40;
            memset(q, 0, (size_t)qh + 8);
            uint16_t qs = (uint16_t)(1024 + (nd_rand(f->key, 0x9e17) & 0x7fff));
            if (v4) {
                q[0] = 0x45;
                nd_put16(q + 2, 28);
                q[8] = 64;
                q[9] = 17;
                memcpy(q + 12, addr[1 - d], 4);
                memcpy(q + 16, addr[d], 4);
                uint16_t qc = nd_sum_fold(nd_sum_add(0, q, 20)); /* memory order */
                memcpy(q + 10, &qc, 2);
            } else {
                nd_put32(q, 0x60000000u);
                nd_put16(q + 4, 8);
                q[6] = 17;
                q[7] = 64;
                memcpy(q + 8, addr[1 - d], 16);
                memcpy(q + 24, addr[d], 16);
            }
            uint8_t *u = q + qh;
            nd_put16(u, qs);
            nd_put16(u + 2, 33434); /* traceroute's port */
            nd_put16(u + 4, 8);
            uint8_t ph[40];
            int phn;
            if (v4) {
                memcpy(ph, q + 12, 8);
                ph[8] = 0;
                ph[9] = 17;
                nd_put16(ph + 10, 8);
                phn = 12;
            } else {
                memcpy(ph, q + 8, 32);
                nd_put32(ph + 32, 8);
                nd_put32(ph + 36, 17);
                phn = 40;
            }
            uint16_t uc = nd_sum_fold(nd_sum_add(nd_sum_add(0, ph, (size_t)phn), u, 8));
            if (uc == 0)
                uc = 0xffff;
            memcpy(u + 6, &uc, 2);
            pay = (uint32_t)qh + 8;
            cnt->seen[ND_RP_PAYLOAD]++;
            cnt->changed[ND_RP_PAYLOAD]++;
        } else if (pay) {
            bool all = fill_payload(f, cells, rows->payload_bytes, d,
                                    proto == 6 ? stream_off : ((uint64_t)k << 20), !retrans,
                                    pl, pay, avx2);
            /* random bytes where the port's protocol expects a message:
             * shaped into one (shape.c) */
            if (!all && proto == 17)
                nd_shape_udp(pl, pay, f->port, d, nd_mix64(f->key ^ ((uint64_t)k << 8)));
            else if (!all && proto == 6)
                nd_shape_tcp(pl, pay, stream_off - me->syn, f->port, d,
                             nd_mix64(f->key ^ 0x5ea9ULL ^ (uint64_t)d));
            cnt->seen[ND_RP_PAYLOAD]++;
            cnt->changed[ND_RP_PAYLOAD] += !all;
        }
        if ((uint32_t)(iph + l4h) + pay > (uint32_t)f->o.mtu)
            pay = (uint32_t)(f->o.mtu - iph - l4h); /* options kept made it longer */
        uint32_t l4len = (uint32_t)l4h + pay;
        /* -- lengths and checksums */
        if (v4) {
            uint16_t tl = (uint16_t)((uint32_t)iph + l4len);
            nd_put16(ip + 2, tl);
            nd_put16(ip + 10, 0);
            uint16_t ck = nd_sum_fold(nd_sum_add(0, ip, (size_t)iph));
            memcpy(ip + 10, &ck, 2);
            cnt_field(&cn, ND_F_IPV4_TL, tl);
            cnt_field(&cn, ND_F_IPV4_CKSUM, (uint64_t)ip[10] << 8 | ip[11]);
        } else {
            nd_put16(ip + 4, (uint16_t)l4len);
            cnt_field(&cn, ND_F_IPV6_LEN, l4len);
        }
        uint64_t s = 0;
        if (proto != 1 || !v4) {
            /* pseudo-header: addresses, length, protocol */
            if (v4)
                s = nd_sum_add(s, ip + 12, 8);
            else
                s = nd_sum_add(s, ip + 8, 32);
            uint8_t tail[8];
            nd_put32(tail, l4len);
            nd_put32(tail + 4, v4 ? (uint32_t)proto : ip[6]);
            s = nd_sum_add(s, tail, 8);
        }
        s = nd_sum_add_fast(s, l4, l4len, avx2);
        uint16_t ck = nd_sum_fold(s);
        int ckoff = proto == 6 ? 16 : proto == 17 ? 6 : 2;
        if (proto == 17 && ck == 0)
            ck = 0xffff; /* 0 means "no checksum" in UDP */
        memcpy(l4 + ckoff, &ck, 2);
        uint64_t ckv = (uint64_t)l4[ckoff] << 8 | l4[ckoff + 1];
        cnt_field(&cn, proto == 6 ? ND_F_TCP_CKSUM : proto == 17 ? ND_F_UDP_CKSUM : ND_F_ICMP_CKSUM,
                  ckv);
        o = pl + pay;
        nd_repair_pkt *op = &f->out[k];
        op->data = frame;
        op->len = (uint32_t)(o - frame);
        op->dir = (uint8_t)d;
        op->ts_sec = p->ts_us / 1000000;
        op->ts_nsec = (uint32_t)(p->ts_us % 1000000) * 1000;
#undef GET
    }
    out->n = np;
    return ND_OK;
}

nd_status nd_repair_write(nd_capwriter *w, const nd_repair_out *out, const char *comment,
                          nd_err *err)
{
    /* the flow's records in a few large writes (one per packet cost more
     * than the repair where the sink is a file) */
    nd_capwriter_hold(w);
    for (int i = 0; i < out->n; i++) {
        const nd_repair_pkt *p = &out->pkts[i];
        nd_status st = nd_capwriter_packet(w, p->ts_sec, p->ts_nsec, p->data, p->len, 0,
                                           comment, err);
        if (st) {
            nd_capwriter_flush(w, NULL); /* the packets before it, as before */
            return st;
        }
    }
    return nd_capwriter_flush(w, err);
}
