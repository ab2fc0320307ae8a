/* eval/memo.c - flow fingerprints and the memorization distance.
 *
 * A fingerprint keeps, for the first mem_packets packets, the header columns
 * a generator draws (not the ones its repair rewrites: addresses, ports,
 * IPv4 id, seq/ack, checksums), as two bit planes: value and present. Two
 * cells differ when their states (0, 1, vacant) differ; counting is
 * popcount((v1 ^ v2) | (p1 ^ p2)) per 64 columns. */
#include "eval/internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static uint16_t cols[ND_HDR_BITS];
static int ncols;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static bool skipped_field(int f)
{
    switch (f) {
    case ND_F_IPV4_SRC: case ND_F_IPV4_DST: case ND_F_IPV6_SRC: case ND_F_IPV6_DST:
    case ND_F_TCP_SPRT: case ND_F_TCP_DPRT: case ND_F_UDP_SPORT: case ND_F_UDP_DPORT:
    case ND_F_IPV4_ID: case ND_F_TCP_SEQ: case ND_F_TCP_ACKN:
    case ND_F_IPV4_CKSUM: case ND_F_TCP_CKSUM: case ND_F_UDP_CKSUM: case ND_F_ICMP_CKSUM:
        return true;
    default:
        return false;
    }
}

static void init_cols(void)
{
    for (int f = 0; f < ND_F_COUNT; f++)
        if (!skipped_field(f))
            for (int i = 0; i < nd_fields[f].width; i++)
                cols[ncols++] = (uint16_t)(nd_fields[f].col + i);
}

int nd_fp_columns(void)
{
    pthread_once(&once, init_cols);
    return ncols;
}

size_t nd_fp_size(int mem_packets) { return (size_t)mem_packets * 2 * ND_FP_WORDS; }

_Static_assert(ND_FP_WORDS * 64 >= ND_HDR_BITS - 64 - 256 - 64 - 16 - 64 - 64,
               "fingerprint words hold the compared columns");

void nd_fp_make(const nd_flow *f, int mem_packets, uint64_t *fp)
{
    int nc = nd_fp_columns();
    int8_t row[ND_HDR_BITS];
    memset(fp, 0, nd_fp_size(mem_packets) * sizeof *fp);
    for (int r = 0; r < mem_packets && r < f->n; r++) {
        if (!nd_row_encode(f->pkts[r].data, f->pkts[r].len, 0, row, NULL))
            continue;  /* no nPrint row: all vacant, like a missing packet */
        uint64_t *val = fp + (size_t)r * 2 * ND_FP_WORDS, *pres = val + ND_FP_WORDS;
        for (int i = 0; i < nc; i++) {
            int8_t b = row[cols[i]];
            if (b == ND_VACANT)
                continue;
            pres[i >> 6] |= 1ULL << (i & 63);
            if (b == 1)
                val[i >> 6] |= 1ULL << (i & 63);
        }
    }
}

uint64_t nd_fp_diff(const uint64_t *a, const uint64_t *b, int mem_packets, uint64_t limit)
{
    uint64_t d = 0;
    for (int r = 0; r < mem_packets; r++) {
        const uint64_t *va = a + (size_t)r * 2 * ND_FP_WORDS, *vb = b + (size_t)r * 2 * ND_FP_WORDS;
        for (int w = 0; w < ND_FP_WORDS; w++)
            d += (uint64_t)__builtin_popcountll((va[w] ^ vb[w]) |
                                                (va[w + ND_FP_WORDS] ^ vb[w + ND_FP_WORDS]));
        if (d > limit)
            return d;
    }
    return d;
}

double nd_eval_flow_distance(const nd_flow *a, const nd_flow *b, int mem_packets)
{
    if (mem_packets < 1)
        return 0;
    size_t n = nd_fp_size(mem_packets);
    uint64_t *fa = malloc(2 * n * sizeof *fa);
    if (!fa)
        return -1;
    uint64_t *fb = fa + n;
    nd_fp_make(a, mem_packets, fa);
    nd_fp_make(b, mem_packets, fb);
    double d = (double)nd_fp_diff(fa, fb, mem_packets, UINT64_MAX) /
               ((double)mem_packets * nd_fp_columns());
    free(fa);
    return d;
}
