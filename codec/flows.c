/* codec/flows.c - captures to bidirectional 5-tuple flows, streaming.
 *
 * Memory is bounded by the flows alive at once: a flow's packets are handed
 * to the sink as soon as it ends (RST, FIN both ways then one more packet,
 * idle timeout, K packets kept) and freed. The ended flow stays as a small
 * tombstone that swallows its tail (the rest of a long connection, the last
 * ACK or a retransmitted FIN) until it idles out or a new SYN reuses the
 * 5-tuple, so stray packets do not become flows of their own. */
#include "codec/codec.h"
#include "codec/internal.h"

#include <stdlib.h>
#include <string.h>

const char *const nd_flow_end_names[ND_FLOW_END_COUNT] = {"eof", "fin", "rst", "idle"};

void nd_flow_opts_init(nd_flow_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_packets = 1024;
    o->idle_timeout = 120.0;
    o->end_on_fin_rst = true;
    o->keep_bytes = 120;
}

typedef struct {
    uint8_t ipver, proto;
    uint8_t lo[16], hi[16];
    uint16_t plo, phi;
} flow_key;

typedef struct slot {
    int used;              /* 0 empty, 1 live, 2 deleted */
    flow_key key;
    nd_flow f;
    uint8_t *data;         /* kept bytes, f.n * keep */
    int cap;               /* packets allocated */
    int64_t last_ns;
    uint8_t fin[2];
    int fin_both;          /* both FINs seen: the next packet ends the flow */
    int emitted;           /* tombstone: handed over (K packets, FIN or RST) */
    int label_weak;        /* label is the file-name fallback: comments win */
} slot;

typedef struct {
    slot *s;
    size_t cap, n_live, n_used;
    const nd_flow_opts *o;
    nd_flow_sink sink;
    void *ctx;
    nd_flow_stats *stats;
    uint64_t next_id;
    const char *path;
} table;

static uint64_t key_hash(const flow_key *k)
{
    uint64_t h = 1469598103934665603ull;
    const uint8_t *p = (const uint8_t *)k;
    for (size_t i = 0; i < sizeof *k; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static void make_key(const nd_pktinfo *pi, flow_key *k, int *dir_is_lo)
{
    memset(k, 0, sizeof *k);
    k->ipver = pi->ipver;
    k->proto = pi->proto;
    size_t al = pi->ipver == 4 ? 4 : 16;
    int c = memcmp(pi->src, pi->dst, al);
    if (c == 0)
        c = (int)pi->sport - (int)pi->dport;
    int src_lo = c <= 0;
    memcpy(k->lo, src_lo ? pi->src : pi->dst, al);
    memcpy(k->hi, src_lo ? pi->dst : pi->src, al);
    k->plo = src_lo ? pi->sport : pi->dport;
    k->phi = src_lo ? pi->dport : pi->sport;
    *dir_is_lo = src_lo;
}

static int grow(table *t)
{
    size_t nc = t->cap ? t->cap * 2 : 1024;
    slot *ns = calloc(nc, sizeof *ns);
    if (!ns)
        return -1;
    for (size_t i = 0; i < t->cap; i++)
        if (t->s[i].used == 1) {
            size_t j = key_hash(&t->s[i].key) & (nc - 1);
            while (ns[j].used)
                j = (j + 1) & (nc - 1);
            ns[j] = t->s[i];
        }
    free(t->s);
    t->s = ns;
    t->cap = nc;
    t->n_used = t->n_live;
    return 0;
}

static slot *find(table *t, const flow_key *k)
{
    if (!t->cap)
        return NULL;
    size_t j = key_hash(k) & (t->cap - 1);
    while (t->s[j].used) {
        if (t->s[j].used == 1 && !memcmp(&t->s[j].key, k, sizeof *k))
            return &t->s[j];
        j = (j + 1) & (t->cap - 1);
    }
    return NULL;
}

static slot *insert(table *t, const flow_key *k)
{
    if ((t->n_used + 1) * 2 > t->cap && grow(t))
        return NULL;
    size_t j = key_hash(k) & (t->cap - 1);
    while (t->s[j].used == 1)
        j = (j + 1) & (t->cap - 1);
    if (t->s[j].used == 0)
        t->n_used++;
    memset(&t->s[j], 0, sizeof t->s[j]);
    t->s[j].used = 1;
    t->s[j].key = *k;
    t->n_live++;
    return &t->s[j];
}

/* Hands a flow to the sink (unless already handed over) and frees it. */
static nd_status finish(table *t, slot *s, nd_flow_end why, int remove, nd_err *err)
{
    nd_status st = ND_OK;
    if (!s->emitted) {
        s->f.end = why;
        int keep = t->o->keep_bytes;
        for (int i = 0; i < s->f.n; i++)
            s->f.pkts[i].data = s->data + (size_t)i * (size_t)keep;
        if (!(t->o->drop_unlabelled && !s->f.label[0])) {
            t->stats->flows++;
            if (s->f.label[0])
                t->stats->flows_labelled++;
            st = t->sink(t->ctx, &s->f, err);
        }
        s->emitted = 1;
    }
    free(s->f.pkts);
    free(s->data);
    s->f.pkts = NULL;
    s->data = NULL;
    s->cap = 0;
    if (remove) {
        s->used = 2;
        t->n_live--;
    }
    return st;
}

static int cmp_slot_id(const void *a, const void *b)
{
    const slot *x = *(slot *const *)a, *y = *(slot *const *)b;
    return x->f.id < y->f.id ? -1 : x->f.id > y->f.id;
}

/* Ends every live flow idle since before `now` (all of them when now < 0),
 * in order of flow id so that output order never depends on the table. */
static nd_status sweep(table *t, int64_t now_ns, nd_flow_end why, nd_err *err)
{
    int64_t idle = (int64_t)(t->o->idle_timeout * 1e9);
    slot **v = malloc((t->n_live + 1) * sizeof *v);
    if (!v)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < t->cap; i++)
        if (t->s[i].used == 1 && (now_ns < 0 || now_ns - t->s[i].last_ns > idle))
            v[n++] = &t->s[i];
    qsort(v, n, sizeof *v, cmp_slot_id);
    nd_status st = ND_OK;
    for (size_t i = 0; i < n && !st; i++)
        st = finish(t, v[i], why, 1, err);
    free(v);
    return st;
}

static nd_status add_packet(table *t, slot *s, const nd_packet *p, const nd_pktinfo *pi, int dir,
                            int64_t now, nd_err *err)
{
    s->f.n_total++;
    s->last_ns = now;
    if (s->emitted)
        return ND_OK;
    if (s->f.n == s->cap) {
        int nc = s->cap ? s->cap * 2 : 8;
        if (nc > t->o->max_packets)
            nc = t->o->max_packets;
        size_t keep = (size_t)t->o->keep_bytes;
        nd_flow_pkt *np = realloc(s->f.pkts, (size_t)nc * sizeof *np);
        if (np)
            s->f.pkts = np;
        uint8_t *nd = realloc(s->data, (size_t)nc * keep);
        if (nd)
            s->data = nd;
        if (!np || !nd)
            return nd_fail(err, ND_ENOMEM, "out of memory for flow %llu",
                           (unsigned long long)s->f.id);
        s->cap = nc;
    }
    nd_flow_pkt *fp = &s->f.pkts[s->f.n];
    uint32_t keep = (uint32_t)t->o->keep_bytes;
    fp->ts_sec = p->ts_sec;
    fp->ts_nsec = p->ts_nsec;
    fp->len = p->l3_caplen < keep ? p->l3_caplen : keep;
    fp->wirelen = p->wirelen - (uint32_t)(p->l3 - p->frame);
    fp->dir = (uint8_t)dir;
    fp->data = NULL;
    memcpy(s->data + (size_t)s->f.n * keep, p->l3, fp->len);
    s->f.n++;
    if ((s->label_weak || !s->f.label[0]) && p->comment && nd_labeler_comments(t->o->labeler) &&
        nd_label_from_comment(p->comment, s->f.label, sizeof s->f.label))
        s->label_weak = 0;
    (void)pi;
    if (s->f.n == t->o->max_packets)
        return finish(t, s, ND_FLOW_END_EOF, 0, err);  /* tombstone stays */
    return ND_OK;
}

nd_status nd_flows_from_capture(const char *path, const nd_flow_opts *o, nd_flow_sink sink,
                                void *ctx, nd_flow_stats *stats, nd_err *err)
{
    if (o->max_packets < 1 || o->keep_bytes < 120 || !(o->idle_timeout > 0))
        return nd_fail(err, ND_EINVAL, "bad flow options (K %d, keep %d, idle %g)",
                       o->max_packets, o->keep_bytes, o->idle_timeout);
    nd_flow_stats st0;
    if (!stats)
        stats = &st0;
    memset(stats, 0, sizeof *stats);
    nd_reader *rd;
    nd_status st = nd_reader_open(path, &rd, err);
    if (st)
        return st;
    if (o->bpf && (st = nd_reader_set_filter(rd, o->bpf, err))) {
        nd_reader_close(rd);
        return st;
    }
    table t = {.o = o, .sink = sink, .ctx = ctx, .stats = stats, .path = path};
    int64_t last_sweep = 0;
    nd_status read_st = ND_OK;
    for (;;) {
        nd_packet p;
        int got;
        read_st = nd_reader_next(rd, &p, &got, err);
        if (read_st || !got)
            break;
        stats->packets++;
        if (!p.l3)
            continue;
        nd_pktinfo pi;
        /* the flow key only: the rows are made once, when the flow ends */
        if (!nd_row_encode(p.l3, p.l3_caplen, 0, NULL, &pi))
            continue;
        /* a non-first IPv4 fragment has no transport header: no ports */
        if (pi.ipver == 4 && p.l3_caplen >= 8 && ((p.l3[6] & 0x1f) | p.l3[7]))
            continue;
        stats->ip_packets++;
        int64_t now = p.ts_sec * 1000000000LL + p.ts_nsec;
        if (now - last_sweep > 1000000000LL || now < last_sweep) {
            if ((st = sweep(&t, now, ND_FLOW_END_IDLE, err)))
                goto out;
            last_sweep = now;
        }
        flow_key k;
        int src_lo;
        make_key(&pi, &k, &src_lo);
        slot *s = find(&t, &k);
        if (s && (now - s->last_ns > (int64_t)(o->idle_timeout * 1e9) ||
                  (s->emitted && pi.proto == 6 && (pi.tcp_flags & 0x12) == 0x02))) {
            /* idle, or a fresh SYN on a finished connection: a new flow */
            if ((st = finish(&t, s, ND_FLOW_END_IDLE, 1, err)))
                goto out;
            s = NULL;
        }
        if (!s) {
            s = insert(&t, &k);
            if (!s) {
                st = nd_fail(err, ND_ENOMEM, "out of memory for the flow table");
                goto out;
            }
            s->f.id = t.next_id++;
            s->f.ipver = pi.ipver;
            s->f.proto = pi.proto;
            memcpy(s->f.addr[0], pi.src, 16);
            memcpy(s->f.addr[1], pi.dst, 16);
            s->f.port[0] = pi.sport;
            s->f.port[1] = pi.dport;
            const char *lab = nd_labeler_lookup(o->labeler, path, &p, &pi);
            if (lab)
                snprintf(s->f.label, sizeof s->f.label, "%s", lab);
            else if (!o->labeler || !o->drop_unlabelled) {
                nd_label_from_filename(path, s->f.label, sizeof s->f.label);
                s->label_weak = 1;
            }
            if (o->drop_unlabelled && !lab)
                s->f.label[0] = '\0';
        }
        size_t al = pi.ipver == 4 ? 4 : 16;
        int dir = !(memcmp(pi.src, s->f.addr[0], al) == 0 && pi.sport == s->f.port[0]);
        if ((st = add_packet(&t, s, &p, &pi, dir, now, err)))
            goto out;
        if (o->end_on_fin_rst && pi.proto == 6 && !s->emitted) {
            if (pi.tcp_flags & 0x04) {
                if ((st = finish(&t, s, ND_FLOW_END_RST, 0, err)))
                    goto out;
                continue;
            }
            if (s->fin_both) {
                if ((st = finish(&t, s, ND_FLOW_END_FIN, 0, err)))
                    goto out;
                continue;
            }
            if (pi.tcp_flags & 0x01) {
                s->fin[dir] = 1;
                if (s->fin[0] && s->fin[1])
                    s->fin_both = 1;
            }
        }
    }
    st = sweep(&t, -1, ND_FLOW_END_EOF, err);
out:
    if (st) {
        /* free what is left without calling the sink again */
        for (size_t i = 0; i < t.cap; i++)
            if (t.s[i].used == 1) {
                free(t.s[i].f.pkts);
                free(t.s[i].data);
            }
    }
    free(t.s);
    nd_reader_close(rd);
    if (!st && read_st)
        st = read_st;  /* flows before the damage were delivered */
    return st;
}

bool nd_flow_walk_next(nd_flow_walk *w, int payload_bytes, int8_t *row, nd_pktinfo *pi,
                       int64_t *gap_us)
{
    for (; w->i < w->f->n; w->i++) {
        const nd_flow_pkt *p = &w->f->pkts[w->i];
        if (!nd_row_encode(p->data, p->len, payload_bytes, row, pi))
            continue;
        int64_t t_us = p->ts_sec * 1000000LL + p->ts_nsec / 1000;
        *gap_us = w->prev_us < 0 ? 0 : (t_us - w->prev_us < 0 ? 0 : t_us - w->prev_us);
        w->prev_us = t_us;
        w->i++;
        return true;
    }
    return false;
}

nd_status nd_flow_rows(const nd_flow *f, int payload_bytes, nd_rows *out, nd_err *err)
{
    nd_status st = nd_rows_init(out, payload_bytes, f->n, err);
    if (st)
        return st;
    nd_flow_walk w = nd_flow_walk_start(f);
    for (;;) {
        int8_t *row = nd_rows_push(out, err);
        if (!row) {
            nd_rows_free(out);
            return ND_ENOMEM;
        }
        nd_pktinfo pi;
        if (!nd_flow_walk_next(&w, payload_bytes, row, &pi, &out->gap_us[out->n - 1])) {
            out->n--;
            return ND_OK;
        }
        nd_addr_text(pi.ipver, pi.src, out->index[out->n - 1], sizeof out->index[0]);
    }
}
