/* heuristics/stats.c - per-class statistics the repair draws from: gaps per
 * direction change and TTLs per side, measured from real flows. */
#include "heuristics/flow.h"

#include <string.h>

/* Log2 bin of a gap: 0 for 0 us, k for [2^(k-1), 2^k). */

int nd_gap_bin(int64_t gap_us)
{
    if (gap_us <= 0)
        return 0;
    int b = 64 - __builtin_clzll((uint64_t)gap_us);
    return b < ND_GAP_BINS ? b : ND_GAP_BINS - 1;
}

void nd_class_stats_clear(nd_class_stats *s) { memset(s, 0, sizeof *s); }

void nd_class_stats_default(nd_class_stats *s)
{
    memset(s, 0, sizeof *s);
    /* Same direction: bursts (a few us .. 1 ms) dominate; direction
     * changes: a round trip, 1 .. 50 ms. Bins 7..11 = 64 us .. 2 ms,
     * bins 10..16 = 0.5 ms .. 65 ms. Log-uniform within each bin. */
    for (int b = 3; b <= 12; b++)
        s->gap_hist[0][b] = b >= 7 && b <= 11 ? 4 : 1;
    for (int b = 8; b <= 17; b++)
        s->gap_hist[1][b] = b >= 10 && b <= 16 ? 4 : 1;
    s->ttl_hist[0][64] = 1;
    s->ttl_hist[1][56] = 1;
}

void nd_class_stats_add_flow(nd_class_stats *s, const nd_flow *f)
{
    s->flows++;
    int64_t prev_us = 0;
    int prev_dir = -1;
    for (int i = 0; i < f->n; i++) {
        const nd_flow_pkt *p = &f->pkts[i];
        int64_t t = p->ts_sec * 1000000 + p->ts_nsec / 1000;
        if (prev_dir >= 0) {
            int64_t g = t - prev_us;
            s->gap_hist[p->dir != prev_dir][nd_gap_bin(g < 0 ? 0 : g)]++;
        }
        prev_us = t;
        prev_dir = p->dir;
        s->packets++;
        /* TTL (IPv4 byte 8) or hop limit (IPv6 byte 7) */
        if (p->len >= 20 && (p->data[0] >> 4) == 4)
            s->ttl_hist[p->dir & 1][p->data[8]]++;
        else if (p->len >= 40 && (p->data[0] >> 4) == 6)
            s->ttl_hist[p->dir & 1][p->data[7]]++;
    }
}

void nd_class_stats_merge(nd_class_stats *a, const nd_class_stats *b)
{
    for (int d = 0; d < 2; d++) {
        for (int k = 0; k < ND_GAP_BINS; k++)
            a->gap_hist[d][k] += b->gap_hist[d][k];
        for (int k = 0; k < 256; k++)
            a->ttl_hist[d][k] += b->ttl_hist[d][k];
    }
    a->flows += b->flows;
    a->packets += b->packets;
}
