/* codec/reader.c - pcap / pcapng (optionally gzip'd) through libpcap.
 *
 * libpcap reads every packet; it does not expose pcapng packet comments, so
 * for pcapng files a small block scanner walks the same file in lockstep and
 * picks up each packet's opt_comment (the pcapml label convention). */
#include "codec/codec.h"
#include "codec/internal.h"

#include <errno.h>
#include <pcap/pcap.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ---- a FILE* over a gzip stream, so libpcap can read .gz captures ---- */

static ssize_t gz_read(void *c, char *buf, size_t n)
{
    int r = gzread((gzFile)c, buf, n > (1u << 30) ? (1u << 30) : (unsigned)n);
    return r < 0 ? -1 : r;
}
static int gz_close(void *c) { return gzclose((gzFile)c) == Z_OK ? 0 : EOF; }

FILE *nd_open_maybe_gz(const char *path, int *is_gz)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char m[2] = {0, 0};
    size_t got = fread(m, 1, 2, f);
    *is_gz = got == 2 && m[0] == 0x1f && m[1] == 0x8b;
    if (!*is_gz) {
        rewind(f);
        return f;
    }
    fclose(f);
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return NULL;
    cookie_io_functions_t io = {.read = gz_read, .close = gz_close};
    FILE *cf = fopencookie(gz, "rb", io);
    if (!cf)
        gzclose(gz);
    return cf;
}

/* ---- pcapng comment scanner ---- */

typedef struct {
    FILE *f;
    int swap;          /* section is the other byte order */
    uint8_t *blk;
    size_t cap;
    char comment[1024];
    int failed;        /* scanner gave up: comments no longer available */
} ng_scan;

static uint32_t rd32(const uint8_t *p, int swap)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return swap ? __builtin_bswap32(v) : v;
}
static uint16_t rd16(const uint8_t *p, int swap)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return swap ? __builtin_bswap16(v) : v;
}

/* Advances to the next packet block (EPB, SPB or obsolete PB) and copies its
 * comment (or "") into s->comment. Returns 0 on success, -1 when the scanner
 * cannot follow (then comments are simply absent from there on). */
static int ng_next_packet(ng_scan *s)
{
    s->comment[0] = '\0';
    if (s->failed)
        return -1;
    for (;;) {
        uint8_t hdr[8];
        if (fread(hdr, 1, 8, s->f) != 8)
            goto fail;
        uint32_t type = rd32(hdr, 0);
        if (type == 0x0A0D0D0A) {
            /* SHB: the byte-order magic decides the section's endianness */
            uint8_t bom[4];
            if (fread(bom, 1, 4, s->f) != 4)
                goto fail;
            uint32_t m = rd32(bom, 0);
            if (m == 0x1A2B3C4D)
                s->swap = 0;
            else if (m == 0x4D3C2B1A)
                s->swap = 1;
            else
                goto fail;
            uint32_t len = rd32(hdr + 4, s->swap);
            if (len < 16 || len % 4 || fseek(s->f, (long)len - 12, SEEK_CUR))
                goto fail;
            continue;
        }
        type = rd32(hdr, s->swap);
        uint32_t len = rd32(hdr + 4, s->swap);
        if (len < 12 || len % 4 || len > (64u << 20))
            goto fail;
        size_t body = len - 8;
        if (body > s->cap) {
            uint8_t *b = realloc(s->blk, body);
            if (!b)
                goto fail;
            s->blk = b;
            s->cap = body;
        }
        if (fread(s->blk, 1, body, s->f) != body)
            goto fail;
        size_t opt_off;
        if (type == 6) {          /* EPB */
            if (body < 24)
                goto fail;
            uint32_t caplen = rd32(s->blk + 12, s->swap);
            opt_off = 20 + (((size_t)caplen + 3) & ~(size_t)3);
        } else if (type == 2) {   /* obsolete Packet Block */
            if (body < 24)
                goto fail;
            uint32_t caplen = rd32(s->blk + 12, s->swap);
            opt_off = 20 + (((size_t)caplen + 3) & ~(size_t)3);
        } else if (type == 3) {   /* SPB: no options */
            return 0;
        } else {
            continue;             /* IDB, NRB, ISB, DSB, custom: no packet */
        }
        size_t end = body - 4;   /* trailing length copy */
        while (opt_off + 4 <= end) {
            uint16_t code = rd16(s->blk + opt_off, s->swap);
            uint16_t olen = rd16(s->blk + opt_off + 2, s->swap);
            if (code == 0 || opt_off + 4 + olen > end)
                break;
            if (code == 1 && !s->comment[0]) {
                size_t n = olen < sizeof s->comment - 1 ? olen : sizeof s->comment - 1;
                memcpy(s->comment, s->blk + opt_off + 4, n);
                s->comment[n] = '\0';
                if (strlen(s->comment) != n)  /* embedded NUL: not text */
                    s->comment[0] = '\0';
            }
            opt_off += 4 + (((size_t)olen + 3) & ~(size_t)3);
        }
        return 0;
    }
fail:
    s->failed = 1;
    s->comment[0] = '\0';
    return -1;
}

/* ---- the reader ---- */

struct nd_reader {
    pcap_t *pc;
    char *path;
    int linktype;
    uint64_t index;
    ng_scan *ng;          /* pcapng only */
    struct bpf_program prog;
    int has_filter;
    int micro;            /* libpcap gives microseconds */
};


nd_status nd_reader_open_prec(const char *path, int micro, nd_reader **out, nd_err *err)
{
    *out = NULL;
    nd_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        return nd_fail(err, ND_ENOMEM, "%s: out of memory", path);
    }
    char eb[PCAP_ERRBUF_SIZE] = "";
    FILE *f;
    int is_gz = 0;
    if (!strcmp(path, "-"))
        f = stdin;
    else
        f = nd_open_maybe_gz(path, &is_gz);
    if (!f) {
        nd_status st = nd_fail(err, ND_EIO, "%s: %s", path, strerror(errno));
        free(r->path);
        free(r);
        return st;
    }
    unsigned char magic[4] = {0, 0, 0, 0};
    if (f != stdin) {
        /* Sniff the magic for the comment scanner; libpcap sniffs its own. */
        size_t got = fread(magic, 1, 4, f);
        if (got == 4 && !memcmp(magic, "\x0a\x0d\x0d\x0a", 4)) {
            r->ng = calloc(1, sizeof *r->ng);
            if (r->ng)
                r->ng->f = nd_open_maybe_gz(path, &is_gz);
            if (r->ng && !r->ng->f) {
                free(r->ng);
                r->ng = NULL;
            }
        }
        if (!is_gz) {
            rewind(f);
        } else {
            fclose(f);
            f = nd_open_maybe_gz(path, &is_gz);
            if (!f) {
                nd_reader_close(r);
                return nd_fail(err, ND_EIO, "%s: cannot reopen", path);
            }
        }
    }
    r->micro = micro;
    r->pc = pcap_fopen_offline_with_tstamp_precision(
        f, micro ? PCAP_TSTAMP_PRECISION_MICRO : PCAP_TSTAMP_PRECISION_NANO, eb);
    if (!r->pc) {
        if (f != stdin)
            fclose(f);
        nd_reader_close(r);
        return nd_fail(err, ND_EFORMAT, "%s: not a pcap or pcapng capture (%s)", path, eb);
    }
    r->linktype = pcap_datalink(r->pc);
    *out = r;
    return ND_OK;
}

nd_status nd_reader_set_filter(nd_reader *r, const char *bpf, nd_err *err)
{
    /* Applied by us with pcap_offline_filter, not pcap_setfilter, so that
     * the pcapng comment scanner still sees every packet and stays in step. */
    struct bpf_program prog;
    if (pcap_compile(r->pc, &prog, bpf, 1, PCAP_NETMASK_UNKNOWN) < 0)
        return nd_fail(err, ND_EINVAL, "bad filter '%s': %s", bpf, pcap_geterr(r->pc));
    if (r->has_filter)
        pcap_freecode(&r->prog);
    r->prog = prog;
    r->has_filter = 1;
    return ND_OK;
}

nd_status nd_reader_next(nd_reader *r, nd_packet *pkt, int *got, nd_err *err)
{
    struct pcap_pkthdr *h;
    const u_char *data;
    *got = 0;
    for (;;) {
        int rc = pcap_next_ex(r->pc, &h, &data);
        if (rc == PCAP_ERROR_BREAK)
            return ND_OK;
        if (rc < 0)
            return nd_fail(err, ND_EFORMAT, "%s: damaged after packet %llu: %s", r->path,
                           (unsigned long long)r->index, pcap_geterr(r->pc));
        if (rc == 0)
            continue;
        if (r->ng)
            ng_next_packet(r->ng);
        uint64_t index = r->index++;
        if (r->has_filter && !pcap_offline_filter(&r->prog, h, data))
            continue;
        memset(pkt, 0, sizeof *pkt);
        pkt->index = index;
        pkt->ts_sec = h->ts.tv_sec;
        pkt->ts_nsec = (uint32_t)h->ts.tv_usec * (r->micro ? 1000u : 1u);
        pkt->caplen = h->caplen;
        pkt->wirelen = h->len;
        pkt->linktype = r->linktype;
        pkt->frame = data;
        long off = nd_link_l3_offset(r->linktype, data, h->caplen);
        if (off >= 0 && (uint32_t)off < h->caplen) {
            pkt->l3 = data + off;
            pkt->l3_caplen = h->caplen - (uint32_t)off;
            pkt->ipver = (uint8_t)(pkt->l3[0] >> 4);
            if (pkt->ipver != 4 && pkt->ipver != 6) {
                pkt->l3 = NULL;
                pkt->l3_caplen = 0;
                pkt->ipver = 0;
            }
        }
        pkt->comment = (r->ng && r->ng->comment[0]) ? r->ng->comment : NULL;
        *got = 1;
        return ND_OK;
    }
}

nd_status nd_reader_open(const char *path, nd_reader **out, nd_err *err)
{
    return nd_reader_open_prec(path, 0, out, err);
}

int nd_reader_linktype(const nd_reader *r) { return r->linktype; }
const char *nd_reader_path(const nd_reader *r) { return r->path; }

void nd_reader_close(nd_reader *r)
{
    if (!r)
        return;
    if (r->has_filter)
        pcap_freecode(&r->prog);
    if (r->pc)
        pcap_close(r->pc);
    if (r->ng) {
        if (r->ng->f)
            fclose(r->ng->f);
        free(r->ng->blk);
        free(r->ng);
    }
    free(r->path);
    free(r);
}
