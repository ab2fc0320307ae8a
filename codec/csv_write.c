/* codec/csv_write.c - nPrint CSV output, byte for byte as nprint 1.2.1. */
#include "codec/codec.h"
#include "codec/internal.h"

#include <stdlib.h>
#include <string.h>

void nd_nprint_opts_init(nd_nprint_opts *o)
{
    memset(o, 0, sizeof *o);
    o->ipv4 = o->ipv6 = o->tcp = o->udp = o->icmp = true;
    o->fill = -1;
}

/* Column ranges (start, width) of the row that o shows, in nPrint order. */
typedef struct {
    int n;
    int start[6], width[6];
    int total;
} col_ranges;

static void ranges_of(const nd_nprint_opts *o, col_ranges *r)
{
    r->n = 0;
    r->total = 0;
    const bool on[5] = {o->ipv4, o->ipv6, o->tcp, o->udp, o->icmp};
    const int start[5] = {ND_COL_IPV4, ND_COL_IPV6, ND_COL_TCP, ND_COL_UDP, ND_COL_ICMP};
    const int width[5] = {ND_BITS_IPV4, ND_BITS_IPV6, ND_BITS_TCP, ND_BITS_UDP, ND_BITS_ICMP};
    for (int b = 0; b < 5; b++)
        if (on[b]) {
            r->start[r->n] = start[b];
            r->width[r->n] = width[b];
            r->n++;
            r->total += width[b];
        }
    if (o->payload_bytes > 0) {
        r->start[r->n] = ND_HDR_BITS;
        r->width[r->n] = 8 * o->payload_bytes;
        r->n++;
        r->total += 8 * o->payload_bytes;
    }
}

static const char *const index_names[] = {"src_ip", "dst_ip", "src_prt", "dst_prt", "flow"};

/* A growable output line. */
typedef struct {
    char *p;
    size_t n, cap;
} line_buf;

static int lb_reserve(line_buf *b, size_t more)
{
    if (b->n + more <= b->cap)
        return 0;
    size_t nc = (b->n + more) * 2;
    char *p = realloc(b->p, nc);
    if (!p)
        return -1;
    b->p = p;
    b->cap = nc;
    return 0;
}

static void lb_put(line_buf *b, const char *s, size_t n)
{
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

/* The header line for o. */
static nd_status header_line(const nd_nprint_opts *o, line_buf *b, nd_err *err)
{
    col_ranges r;
    ranges_of(o, &r);
    if (lb_reserve(b, (size_t)r.total * 24 + 64))
        return nd_fail(err, ND_ENOMEM, "out of memory");
    const char *ix = index_names[o->index >= 0 && o->index < 5 ? o->index : 0];
    lb_put(b, ix, strlen(ix));
    if (o->rts)
        lb_put(b, ",rts", 4);
    if (o->abs_ts)
        lb_put(b, ",tv_sec,tv_usec", 15);
    char name[48];
    for (int k = 0; k < r.n; k++)
        for (int c = r.start[k]; c < r.start[k] + r.width[k]; c++) {
            nd_col_name(c, name, sizeof name);
            b->p[b->n++] = ',';
            lb_put(b, name, strlen(name));
        }
    b->p[b->n++] = '\n';
    return ND_OK;
}

/* Appends ",v" for every shown column; cell strings are precomputed. */
typedef struct {
    char cell[3][8];     /* for -1, 0, 1 (index v+1) */
    uint8_t len[3];
} cells;

static void cells_init(cells *c, int fill)
{
    snprintf(c->cell[0], sizeof c->cell[0], ",%d", fill);
    snprintf(c->cell[1], sizeof c->cell[1], ",0");
    snprintf(c->cell[2], sizeof c->cell[2], ",1");
    for (int i = 0; i < 3; i++)
        c->len[i] = (uint8_t)strlen(c->cell[i]);
}

static int row_line(const col_ranges *r, const cells *c, const char *prefix,
                    const int8_t *row, line_buf *b)
{
    size_t pl = strlen(prefix);
    if (lb_reserve(b, pl + (size_t)r->total * 8 + 2))
        return -1;
    lb_put(b, prefix, pl);
    char *o = b->p + b->n;
    for (int k = 0; k < r->n; k++) {
        const int8_t *v = row + r->start[k];
        for (int i = 0; i < r->width[k]; i++) {
            int x = v[i] == 1 ? 2 : v[i] == 0 ? 1 : 0;
            memcpy(o, c->cell[x], 8);  /* fixed-size copy; length decides */
            o += c->len[x];
        }
    }
    *o++ = '\n';
    b->n = (size_t)(o - b->p);
    return 0;
}

static void index_text(const nd_nprint_opts *o, const nd_pktinfo *pi, char *buf, size_t n)
{
    char a[48], d[48];
    switch (o->index) {
    case 1:
        nd_addr_text(pi->ipver, pi->dst, buf, n);
        break;
    case 2:
    case 3:
        if (pi->proto == 1)
            snprintf(buf, n, "NULL");
        else
            snprintf(buf, n, "%u", o->index == 2 ? pi->sport : pi->dport);
        break;
    case 4:
        nd_addr_text(pi->ipver, pi->src, a, sizeof a);
        nd_addr_text(pi->ipver, pi->dst, d, sizeof d);
        if (pi->proto == 1)
            snprintf(buf, n, "%s_%s_NULL_NULL_NULL", a, d);
        else
            snprintf(buf, n, "%s_%s_%u_%u_%s", a, d, pi->sport, pi->dport,
                     pi->proto == 6 ? "TCP" : "UDP");
        break;
    default:
        nd_addr_text(pi->ipver, pi->src, buf, n);
    }
}

nd_status nd_encode_csv(const char *path, const char *bpf, const nd_nprint_opts *o, FILE *out,
                        nd_encode_stats *stats, nd_err *err)
{
    if (o->payload_bytes < 0 || o->payload_bytes > ND_MAX_PAYLOAD_BYTES)
        return nd_fail(err, ND_EINVAL, "payload bytes %d out of range", o->payload_bytes);
    if (o->index < 0 || o->index > 4)
        return nd_fail(err, ND_EINVAL, "index column %d not supported (0..4)", o->index);
    nd_encode_stats st0 = {0};
    if (!stats)
        stats = &st0;
    memset(stats, 0, sizeof *stats);
    nd_reader *rd;
    nd_status st = nd_reader_open_prec(path, 1, &rd, err);
    if (st)
        return st;
    if (bpf && (st = nd_reader_set_filter(rd, bpf, err))) {
        nd_reader_close(rd);
        return nd_wrap(err, st, "%s", path);
    }
    line_buf b = {0};
    int8_t *row = malloc((size_t)nd_row_width(o->payload_bytes));
    col_ranges r;
    ranges_of(o, &r);
    cells c;
    cells_init(&c, o->fill);
    if (!row) {
        st = nd_fail(err, ND_ENOMEM, "out of memory");
        goto done;
    }
    if ((st = header_line(o, &b, err)))
        goto done;
    int64_t prev_sec = 0, prev_usec = 0;
    for (;;) {
        nd_packet p;
        int got;
        st = nd_reader_next(rd, &p, &got, err);
        if (st || !got)
            break;
        stats->packets++;
        nd_pktinfo pi;
        if (!p.l3 || !nd_row_encode(p.l3, p.l3_caplen, o->payload_bytes, row, &pi)) {
            stats->skipped++;
            continue;
        }
        /* nprint -c: exits when a parseable packet arrives after N read */
        if (o->count && stats->packets > o->count)
            break;
        char prefix[320];
        char ix[200];
        index_text(o, &pi, ix, sizeof ix);
        size_t pl = (size_t)snprintf(prefix, sizeof prefix, "%s", ix);
        int64_t sec = p.ts_sec, usec = p.ts_nsec / 1000;
        if (o->rts) {
            /* nprint: 0 while its previous timestamp's seconds are 0 */
            int64_t rts = prev_sec == 0 ? 0 : 1000000 * (sec - prev_sec) + usec - prev_usec;
            prev_sec = sec;
            prev_usec = usec;
            pl += (size_t)snprintf(prefix + pl, sizeof prefix - pl, ",%lld", (long long)rts);
        }
        if (o->abs_ts)
            snprintf(prefix + pl, sizeof prefix - pl, ",%lld,%lld", (long long)sec,
                     (long long)usec);
        if (row_line(&r, &c, prefix, row, &b)) {
            st = nd_fail(err, ND_ENOMEM, "out of memory");
            goto done;
        }
        stats->rows++;
        if (b.n > (1u << 20)) {
            if (fwrite(b.p, 1, b.n, out) != b.n) {
                st = nd_fail(err, ND_EIO, "write failed");
                goto done;
            }
            b.n = 0;
        }
    }
done:
    if (b.n && fwrite(b.p, 1, b.n, out) != b.n && st == ND_OK)
        st = nd_fail(err, ND_EIO, "write failed");
    free(b.p);
    free(row);
    nd_reader_close(rd);
    return st;
}

nd_status nd_csv_write(FILE *f, const nd_nprint_opts *o, const nd_rows *t, nd_err *err)
{
    if (o->payload_bytes > t->payload_bytes)
        return nd_fail(err, ND_EINVAL, "rows have %d payload bytes, %d asked", t->payload_bytes,
                       o->payload_bytes);
    line_buf b = {0};
    nd_status st = header_line(o, &b, err);
    col_ranges r;
    ranges_of(o, &r);
    cells c;
    cells_init(&c, o->fill);
    for (int i = 0; st == ND_OK && i < t->n; i++) {
        char prefix[160];
        size_t pl = (size_t)snprintf(prefix, sizeof prefix, "%s", t->index[i]);
        if (o->rts)
            snprintf(prefix + pl, sizeof prefix - pl, ",%lld",
                     (long long)(t->gap_us[i] < 0 ? 0 : t->gap_us[i]));
        if (row_line(&r, &c, prefix, nd_rows_at(t, i), &b))
            st = nd_fail(err, ND_ENOMEM, "out of memory");
    }
    if (st == ND_OK && fwrite(b.p, 1, b.n, f) != b.n)
        st = nd_fail(err, ND_EIO, "write failed");
    free(b.p);
    return st;
}
