/* heuristics/analyse.c - what a flow's rows say as a whole: which rows are
 * packets, which protocols win the vote, which side sent each packet, and
 * the steady per-direction values (TTL, flow label, echo id).
 *
 * Everything here reads rows only; the per-packet rules are in repair.c. */
#include "heuristics/flow.h"

#include <math.h>
#include <string.h>

/* Fixed-header cells that vote for a block's presence (options excluded:
 * they are vacant in most real packets, so they say nothing). */
static const int vote_col[ND_BLK_COUNT] = {ND_COL_IPV4, ND_COL_IPV6, ND_COL_TCP, ND_COL_UDP,
                                           ND_COL_ICMP};
static const int vote_n[ND_BLK_COUNT] = {160, 320, 160, 64, 64};

/* AVX2 where the CPU has it (gcc's ifunc clones), SSE2 otherwise. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define ND_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define ND_SIMD_CLONES
#endif

/* Presence of each block in one row, in [-1, 1]: +1 all cells drawn
 * (confidently), -1 all vacant. Confidence weighs each cell's vote by
 * 0.5 + q / 510, summed in integers as 255 + q (vectorises). And the row's
 * header cells packed (nd_prow), in the same pass over the row. */
ND_SIMD_CLONES
static void row_scan_generic(const int8_t *row, const nd_conf *conf, float pres[ND_BLK_COUNT],
                             nd_prow *pr)
{
    for (int i = 0; i < ND_HDR_BITS / 8; i++)
        pr->val[i] = nd_cells_byte(row + 8 * i, &pr->vac[i]);
    for (int b = 0; b < ND_BLK_COUNT; b++) {
        const int8_t *p = row + vote_col[b];
        int n = vote_n[b];
        if (!conf) {
            int vac = nd_cells_vacant(p, n);
            pres[b] = 1.0f - 2.0f * (float)vac / (float)n;
        } else {
            const nd_conf *c = conf + vote_col[b];
            int s = 0;
            for (int i = 0; i < n; i++) {
                int neg = -(p[i] == ND_VACANT); /* 0 or -1: negate by xor */
                s += ((255 + c[i]) ^ neg) - neg;
            }
            pres[b] = (float)s / (510.0f * (float)n);
        }
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define ND_SCAN_AVX2 1
/* The same by hand: 32 cells a step, packed with a byte shuffle and two
 * movemasks; the weighted vote as sum(255 + q) - 2 * sum over vacant cells
 * of (255 + q), byte sums by psadbw. Integer sums, so the presences are
 * the generic code's to the bit. Every vote block starts and ends on a
 * multiple of 32 cells. */
__attribute__((target("avx2,popcnt"))) static void
row_scan_avx2(const int8_t *row, const nd_conf *conf, float pres[ND_BLK_COUNT], nd_prow *pr)
{
    /* each 8-cell group reversed, so that movemask's bit order is MSB first */
    const __m256i rev = _mm256_setr_epi8(7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8,
                                         7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8);
    for (int i = 0; i < ND_HDR_BITS; i += 32) {
        __m256i v = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(row + i)), rev);
        /* as nd_cells_byte: bit 1 of a cell marks it vacant, bit 0 a 1 */
        uint32_t vac = (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(v, 6));
        uint32_t one = (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(v, 7)) & ~vac;
        memcpy(pr->val + i / 8, &one, 4);
        memcpy(pr->vac + i / 8, &vac, 4);
    }
    const __m256i m1 = _mm256_set1_epi8(-1), zero = _mm256_setzero_si256();
    for (int b = 0; b < ND_BLK_COUNT; b++) {
        int c0 = vote_col[b], n = vote_n[b];
        if (!conf) {
            int vac = 0;
            for (int i = c0 / 8; i < (c0 + n) / 8; i++)
                vac += __builtin_popcount(pr->vac[i]);
            pres[b] = 1.0f - 2.0f * (float)vac / (float)n;
            continue;
        }
        __m256i all = zero, onvac = zero;
        int nvac = 0;
        for (int i = c0; i < c0 + n; i += 32) {
            __m256i vm = _mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)(row + i)), m1);
            __m256i q = _mm256_loadu_si256((const __m256i *)(conf + i));
            all = _mm256_add_epi64(all, _mm256_sad_epu8(q, zero));
            onvac = _mm256_add_epi64(onvac, _mm256_sad_epu8(_mm256_and_si256(q, vm), zero));
            nvac += __builtin_popcount((uint32_t)_mm256_movemask_epi8(vm));
        }
        uint64_t sa[4], sv[4];
        _mm256_storeu_si256((__m256i *)sa, all);
        _mm256_storeu_si256((__m256i *)sv, onvac);
        int qa = (int)(sa[0] + sa[1] + sa[2] + sa[3]), qv = (int)(sv[0] + sv[1] + sv[2] + sv[3]);
        int s = 255 * n + qa - 2 * (255 * nvac + qv);
        pres[b] = (float)s / (510.0f * (float)n);
    }
}
#endif

static void row_scan(const int8_t *row, const nd_conf *conf, float pres[ND_BLK_COUNT],
                     nd_prow *pr, bool avx2)
{
    memset(pr->val + ND_HDR_BITS / 8, 0, ND_PROW_BYTES - ND_HDR_BITS / 8);
    memset(pr->vac + ND_HDR_BITS / 8, 0, ND_PROW_BYTES - ND_HDR_BITS / 8);
#ifdef ND_SCAN_AVX2
    if (avx2) {
        row_scan_avx2(row, conf, pres, pr);
        return;
    }
#endif
    (void)avx2;
    row_scan_generic(row, conf, pres, pr);
}

/* ---- mode finder: open addressing, cleared by generation stamps. */
void nd_mode_reset(nd_flowctx *f)
{
    if (++f->hgen == 0) {
        memset(f->hstamp, 0, (size_t)f->hcap * sizeof *f->hstamp);
        f->hgen = 1;
    }
    f->hbest_n = 0;
    f->hbest = 0;
}
void nd_mode_add(nd_flowctx *f, uint64_t key)
{
    uint32_t mask = (uint32_t)f->hcap - 1;
    uint32_t h = (uint32_t)(nd_mix64(key) & mask);
    for (;;) {
        if (f->hstamp[h] != f->hgen) {
            f->hstamp[h] = f->hgen;
            f->hkey[h] = key;
            f->hcnt[h] = 0;
            break;
        }
        if (f->hkey[h] == key)
            break;
        h = (h + 1) & mask;
    }
    /* strictly more: ties go to the value seen first */
    if (++f->hcnt[h] > f->hbest_n) {
        f->hbest_n = f->hcnt[h];
        f->hbest = key;
    }
}

/* Weighted mismatch between 16 drawn port cells and a port value, in
 * units of 1/1020: a wrong cell costs its weight (2 * (255 + q)), a vacant
 * one half of it. */
static int port_cost(const nd_prow *pr, int col, const nd_conf *c, uint16_t v)
{
    uint32_t vac = (uint32_t)nd_bits_at(pr->vac, col, 16);
    uint32_t wrong = ((uint32_t)nd_bits_at(pr->val, col, 16) ^ v) & ~vac;
    if (!c)
        return 510 * __builtin_popcount(vac) + 1020 * __builtin_popcount(wrong);
    int s = 0;
    for (uint32_t m = vac | wrong; m; m &= m - 1) {
        int b = __builtin_ctz(m), w = 255 + c[15 - b]; /* bit b is cell 15 - b */
        s += (wrong >> b & 1) ? 2 * w : w;
    }
    return s;
}

static int ttl_of(const nd_flowctx *f, const nd_prow *pr)
{
    bool ok = true;
    return (int)nd_prow_get(pr, nd_fields[f->ipver == 4 ? ND_F_IPV4_TTL : ND_F_IPV6_HL].col, 8,
                            &ok);
}

int nd_flow_analyse(nd_flowctx *f, const nd_rows *rows, const nd_conf *conf,
                    nd_repair_counts *cnt)
{
    int n = rows->n, w = nd_row_width(rows->payload_bytes);
    /* 1. presence per row; the last row with a network header ends the flow */
    int last = -1;
    double vote[ND_BLK_COUNT] = {0};
#ifdef ND_SCAN_AVX2
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
#else
    bool avx2 = false;
#endif
    for (int i = 0; i < n; i++) {
        float *pr = f->pres + (size_t)i * ND_BLK_COUNT;
        row_scan(rows->bits + (size_t)i * w, conf ? conf + (size_t)i * w : NULL, pr,
                 &f->prow[i], avx2);
        if (pr[ND_BLK_IPV4] > 0 || pr[ND_BLK_IPV6] > 0)
            last = i;
    }
    cnt->rows += (uint64_t)n;
    cnt->rows_padding += (uint64_t)(n - 1 - last);
    for (int i = 0; i <= last; i++) {
        const float *pr = f->pres + (size_t)i * ND_BLK_COUNT;
        if (pr[ND_BLK_IPV4] > 0 || pr[ND_BLK_IPV6] > 0)
            for (int b = 0; b < ND_BLK_COUNT; b++)
                vote[b] += pr[b];
    }
    if (last < 0) {
        f->np = 0;
        return 0;
    }
    /* 2. the vote: ties to IPv4, then TCP > UDP > ICMP */
    int net = vote[ND_BLK_IPV6] > vote[ND_BLK_IPV4] ? ND_BLK_IPV6 : ND_BLK_IPV4;
    int tr = ND_BLK_TCP;
    if (vote[ND_BLK_UDP] > vote[tr])
        tr = ND_BLK_UDP;
    if (vote[ND_BLK_ICMP] > vote[tr])
        tr = ND_BLK_ICMP;
    f->ipver = net == ND_BLK_IPV4 ? 4 : 6;
    f->proto = tr == ND_BLK_TCP ? 6 : tr == ND_BLK_UDP ? 17 : 1;
    f->net_blk = net;
    f->tr_blk = tr;

    /* 3. packets: rows up to `last` whose voted network block is present */
    int np = 0;
    for (int i = 0; i <= last; i++) {
        const float *pr = f->pres + (size_t)i * ND_BLK_COUNT;
        if (!(pr[net] > 0)) {
            cnt->rows_dropped++;
            continue;
        }
        for (int b = 0; b < ND_BLK_COUNT; b++)
            if (b != net && b != tr && pr[b] > -1.0f + 1e-6f)
                cnt->blocks_vacated++;
        nd_pkt *p = &f->pk[np++];
        memset(p, 0, sizeof *p);
        p->row = i;
    }
    f->np = np;

    /* 4. direction */
    const nd_prow *r0 = &f->prow[f->pk[0].row];
    if (f->proto != 1) {
        int pc = tr == ND_BLK_TCP ? ND_COL_TCP : ND_COL_UDP;
        nd_mode_reset(f);
        for (int k = 0; k < np; k++) {
            const nd_prow *r = &f->prow[f->pk[k].row];
            uint32_t sp = (uint32_t)nd_bits_at(r->val, pc, 16);
            uint32_t dp = (uint32_t)nd_bits_at(r->val, pc + 16, 16);
            uint32_t a = sp < dp ? sp : dp, b = sp < dp ? dp : sp;
            nd_mode_add(f, (uint64_t)a << 16 | b);
        }
        uint16_t a = (uint16_t)(f->hbest >> 16), b = (uint16_t)f->hbest;
        const nd_conf *c0 = conf ? conf + (size_t)f->pk[0].row * w + pc : NULL;
        /* the initiator is the side whose port is the source of packet 0 */
        int ab = port_cost(r0, pc, c0, a) + port_cost(r0, pc + 16, c0 ? c0 + 16 : NULL, b);
        int ba = port_cost(r0, pc, c0, b) + port_cost(r0, pc + 16, c0 ? c0 + 16 : NULL, a);
        f->port[0] = ba < ab ? b : a;
        f->port[1] = ba < ab ? a : b;
    }
    int ttl0 = ttl_of(f, r0);
    int seen_req = 0;
    for (int k = 0; k < np; k++) {
        const nd_prow *r = &f->prow[f->pk[k].row];
        int dir = 0;
        bool ambiguous = false;
        if (f->proto != 1 && f->port[0] != f->port[1]) {
            int pc = tr == ND_BLK_TCP ? ND_COL_TCP : ND_COL_UDP;
            const nd_conf *c = conf ? conf + (size_t)f->pk[k].row * w + pc : NULL;
            int c0 = port_cost(r, pc, c, f->port[0]) +
                     port_cost(r, pc + 16, c ? c + 16 : NULL, f->port[1]);
            int c1 = port_cost(r, pc, c, f->port[1]) +
                     port_cost(r, pc + 16, c ? c + 16 : NULL, f->port[0]);
            dir = c1 < c0;
            ambiguous = c1 == c0;
            if (ambiguous) /* the ports cannot tell: a fair coin, seeded */
                dir = (int)(nd_rand(f->key ^ 0xd1, (uint64_t)k) & 1);
        } else if (f->proto == 1) {
            bool ok = true;
            int t = (int)nd_prow_get(r, ND_COL_ICMP, 8, &ok);
            int kind = nd_icmp_kind(f, t);
            f->pk[k].icmp_kind = (uint8_t)kind;
            if (kind == ND_ICMP_REQ) {
                dir = 0;
                seen_req = 1;
            } else if (kind == ND_ICMP_REP) {
                dir = 1;
            } else {
                /* an error answers a packet the other side sent */
                dir = seen_req ? 1 : ttl_of(f, r) != ttl0;
            }
        } else {
            /* same port on both sides (NTP 123<->123, mDNS): only the TTL
             * can tell the two senders apart */
            dir = ttl_of(f, r) != ttl0;
            ambiguous = true;
        }
        f->pk[k].dir = (uint8_t)dir;
        cnt->seen[ND_RP_DIR]++;
        cnt->changed[ND_RP_DIR] += ambiguous;
    }
    /* packet 0 defines the initiator */
    if (f->pk[0].dir)
        for (int k = 0; k < np; k++)
            f->pk[k].dir ^= 1;

    /* 5. steady values per direction: TTL / hop limit, flow label, echo id */
    memset(f->ttl_hist, 0, sizeof f->ttl_hist);
    int ttl_col = f->ipver == 4 ? nd_fields[ND_F_IPV4_TTL].col : nd_fields[ND_F_IPV6_HL].col;
    for (int k = 0; k < np; k++) {
        bool ok = true;
        int t = (int)nd_prow_get(&f->prow[f->pk[k].row], ttl_col, 8, &ok);
        if (ok && t)
            f->ttl_hist[f->pk[k].dir][t]++;
    }
    for (int d = 0; d < 2; d++) {
        int best = 0;
        for (int t = 1; t < 256; t++)
            if (f->ttl_hist[d][t] > f->ttl_hist[d][best])
                best = t;
        f->ttl[d] = (uint8_t)best; /* 0: none drawn, repair.c takes the class's */
    }
    if (f->ipver == 6) {
        for (int d = 0; d < 2; d++) {
            nd_mode_reset(f);
            for (int k = 0; k < np; k++) {
                if (f->pk[k].dir != d)
                    continue;
                bool ok = true;
                nd_mode_add(f, nd_prow_get(&f->prow[f->pk[k].row], nd_fields[ND_F_IPV6_FL].col,
                                           20, &ok));
            }
            f->flow_label[d] = (uint32_t)f->hbest;
        }
    }
    if (f->proto == 1) {
        nd_mode_reset(f);
        for (int k = 0; k < np; k++) {
            if (f->pk[k].icmp_kind == ND_ICMP_ERR)
                continue;
            bool ok = true;
            nd_mode_add(f, nd_prow_get(&f->prow[f->pk[k].row], ND_COL_ICMP + 32, 16, &ok));
        }
        f->echo_id = (uint16_t)f->hbest;
    }
    return np;
}

int nd_icmp_kind(const nd_flowctx *f, int t)
{
    if (t == 8 || t == 128)
        return ND_ICMP_REQ;
    if (t == 0 || t == 129)
        return ND_ICMP_REP;
    if (t == 3 || t == 11 || (f->ipver == 6 && t == 1))
        return ND_ICMP_ERR;
    /* anything else: the nearer of request / reply in bits */
    int d8 = __builtin_popcount((unsigned)(t ^ 8)), d0 = __builtin_popcount((unsigned)t);
    return d8 <= d0 ? ND_ICMP_REQ : ND_ICMP_REP;
}
