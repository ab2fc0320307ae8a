/* eval/extract.c - one flow -> binned feature values (and packet checks).
 * Header fields are read the way the model sees them: through codec's
 * nd_row_encode, so "a field" here is exactly an nPrint field. */
#include "eval/internal.h"

#include <stdlib.h>
#include <string.h>

static bool push(nd_featvec *v, int f, uint64_t value)
{
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 256;
        nd_featval *nv = realloc(v->v, nc * sizeof *nv);
        if (!nv)
            return false;
        v->v = nv;
        v->cap = nc;
    }
    const nd_eval_feature *fe = &nd_eval_features[f];
    v->v[v->n++] = (nd_featval){(uint16_t)f, nd_eval_bin(fe->binning, fe->width, value)};
    return true;
}

static uint64_t fnv_bits(const int8_t *bits, int n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < n; i++) {
        h ^= (uint64_t)(uint8_t)bits[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static int present_bits(const int8_t *bits, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += bits[i] != ND_VACANT;
    return k;
}

static int64_t ts_us(const nd_flow_pkt *p)
{
    return p->ts_sec * 1000000 + (int64_t)(p->ts_nsec / 1000);
}

/* The feature values of one packet's row. */
static bool row_features(const int8_t *row, const nd_pktinfo *info, nd_featvec *out)
{
    bool ok = true;
    uint64_t v;
    bool blk[ND_BLK_COUNT] = {
        [ND_BLK_IPV4] = nd_row_get(row, ND_F_IPV4_VER, &v),
        [ND_BLK_IPV6] = nd_row_get(row, ND_F_IPV6_VER, &v),
        [ND_BLK_TCP] = nd_row_get(row, ND_F_TCP_SPRT, &v),
        [ND_BLK_UDP] = nd_row_get(row, ND_F_UDP_SPORT, &v),
        [ND_BLK_ICMP] = nd_row_get(row, ND_F_ICMP_TYPE, &v),
    };
    for (int f = 0; f < ND_F_COUNT; f++) {
        const nd_field *fd = &nd_fields[f];
        if (!blk[fd->block])
            continue;
        if (f == ND_F_IPV4_OPT || f == ND_F_TCP_OPT) {
            ok &= push(out, f, (uint64_t)present_bits(row + fd->col, fd->width) / 8);
        } else if (fd->width > 64) {      /* IPv6 addresses */
            if (present_bits(row + fd->col, fd->width) == fd->width)
                ok &= push(out, f, fnv_bits(row + fd->col, fd->width));
        } else if (nd_row_get(row, (nd_field_id)f, &v)) {
            if (nd_eval_features[f].binning == ND_BIN_HASH)
                v = fnv_bits(row + fd->col, fd->width);
            ok &= push(out, f, v);
        }
    }
    ok &= push(out, ND_EF_TRANSPORT, (uint64_t)info->ipver << 8 | info->proto);
    if (blk[ND_BLK_TCP])
        ok &= push(out, ND_EF_TCP_FLAGS, info->tcp_flags);
    return ok;
}

void nd_valid_count(nd_valid_counts *vc, const uint8_t *l3, uint32_t caplen, uint32_t wirelen)
{
    nd_valid_result r = nd_valid_check(l3, caplen, wirelen);
    vc->packets++;
    vc->invalid += r.bad != 0;
    for (int c = 0; c < ND_V_COUNT; c++) {
        vc->bad[c] += (r.bad >> c) & 1;
        vc->unverified[c] += (r.unverified >> c) & 1;
    }
}

bool nd_eval_extract(const nd_flow *f, nd_featvec *out, nd_valid_counts *vc)
{
    int8_t row[ND_HDR_BITS];
    nd_pktinfo info;
    bool ok = true;
    int n_init = 0;
    uint64_t pattern = 0;
    int k = f->n < 8 ? f->n : 8;
    for (int i = 0; i < f->n; i++) {
        const nd_flow_pkt *p = &f->pkts[i];
        if (vc)
            nd_valid_count(vc, p->data, p->len, p->wirelen);
        if (nd_row_encode(p->data, p->len, 0, row, &info))
            ok &= row_features(row, &info, out);
        ok &= push(out, ND_EF_PKT_SIZE, p->wirelen ? p->wirelen : p->len);
        if (i > 0) {
            int64_t gap = ts_us(p) - ts_us(&f->pkts[i - 1]);
            ok &= push(out, ND_EF_IAT, gap > 0 ? (uint64_t)gap : 0);
        }
        n_init += p->dir == 0;
        if (i < k)
            pattern = pattern << 1 | (p->dir & 1);
    }
    if (f->n > 0) {
        uint64_t total = f->n_total > (uint64_t)f->n ? f->n_total : (uint64_t)f->n;
        ok &= push(out, ND_EF_FLOW_LEN, total);
        int64_t dur = ts_us(&f->pkts[f->n - 1]) - ts_us(&f->pkts[0]);
        ok &= push(out, ND_EF_FLOW_DUR, dur > 0 ? (uint64_t)dur : 0);
        ok &= push(out, ND_EF_DIR_PATTERN, (uint64_t)k << 8 | pattern);
        int tenth = (int)((10 * (int64_t)n_init) / f->n);
        ok &= push(out, ND_EF_DIR_FRAC, (uint64_t)(tenth > 9 ? 9 : tenth));
    }
    return ok;
}
