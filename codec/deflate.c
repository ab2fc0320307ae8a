/* codec/deflate.c - a small deflate (RFC 1951) block writer for encoders
 * that find their own matches: the caller turns its data into literal and
 * match tokens (it knows where the repeats are, so no search is needed) and
 * this writes one dynamic-Huffman block with codes fitted to those tokens. */
#include "codec/internal.h"

#include <stdlib.h>
#include <string.h>

/* padded to 32 so that a literal's (masked-off) lookup stays in bounds */
static const uint8_t len_xbits[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
                                      3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0, 0, 0, 0};
static const uint8_t dist_xbits[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                       6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

int nd_bits_reserve(nd_bitbuf *b, size_t more)
{
    if (b->n + more <= b->cap)
        return 0;
    size_t nc = (b->n + more) * 2;
    uint8_t *np = realloc(b->p, nc);
    if (!np)
        return -1;
    b->p = np;
    b->cap = nc;
    return 0;
}

void nd_bits_append(nd_bitbuf *b, const nd_bitbuf *src)
{
    size_t i = 0;
    for (; i + 6 <= src->n; i += 6) {
        uint64_t w;
        memcpy(&w, src->p + i, 8); /* within src's slack: puts store 8 bytes */
        nd_bits_put(b, w & 0xffffffffffffull, 48);
    }
    for (; i < src->n; i++)
        nd_bits_put(b, src->p[i], 8);
    if (src->nacc)
        nd_bits_put(b, src->acc, src->nacc);
}

int nd_bits_align(nd_bitbuf *b)
{
    if (nd_bits_reserve(b, 8))
        return -1;
    if (b->nacc > 0)
        b->p[b->n++] = (uint8_t)b->acc;
    b->acc = 0;
    b->nacc = 0;
    return 0;
}

/* Huffman code lengths of at most maxbits for freq[0..n): a plain Huffman
 * tree; where it is too deep the counts are halved and it is built again
 * (every count stays >= 1, so this ends with a balanced tree at worst). At
 * least two symbols get a code, as inflaters want a complete-looking code. */
static void huff_lengths(const uint32_t *freq_in, int n, int maxbits, uint8_t *len)
{
    uint32_t freq[286];
    int sym[286], parent[2 * 286], used = 0;
    uint64_t w[2 * 286];
    memcpy(freq, freq_in, (size_t)n * sizeof *freq);
    for (int i = 0; i < n && used < 2; i++)
        used += freq[i] != 0;
    for (int i = 0; i < n && used < 2; i++)
        if (!freq[i])
            freq[i] = 1, used++;
    for (;;) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (freq[i]) {
                /* insertion sort by count: n is at most 286 */
                int j = m++;
                while (j > 0 && freq[sym[j - 1]] > freq[i]) {
                    sym[j] = sym[j - 1];
                    j--;
                }
                sym[j] = i;
            }
        /* two queues: leaves (sorted) and inner nodes (made in rising order) */
        for (int i = 0; i < m; i++)
            w[i] = freq[sym[i]];
        int leaf = 0, inner = m, end = m;
        for (int k = 0; k < m - 1; k++) {
            int pick[2];
            for (int t = 0; t < 2; t++)
                pick[t] = (leaf < m && (inner == end || w[leaf] <= w[inner])) ? leaf++ : inner++;
            w[end] = w[pick[0]] + w[pick[1]];
            parent[pick[0]] = parent[pick[1]] = end;
            end++;
        }
        /* depth of each node, root (end - 1) first */
        int depth[2 * 286], deepest = 0;
        depth[end - 1] = 0;
        for (int k = end - 2; k >= 0; k--) {
            depth[k] = depth[parent[k]] + 1;
            if (k < m && depth[k] > deepest)
                deepest = depth[k];
        }
        if (deepest <= maxbits) {
            memset(len, 0, (size_t)n);
            for (int i = 0; i < m; i++)
                len[sym[i]] = (uint8_t)depth[i];
            return;
        }
        for (int i = 0; i < n; i++)
            if (freq[i])
                freq[i] = (freq[i] + 1) / 2;
    }
}

/* Canonical codes (RFC 1951 3.2.2), bit-reversed for LSB-first output. */
static void huff_codes(const uint8_t *len, int n, uint16_t *code)
{
    int count[16] = {0}, next[16];
    for (int i = 0; i < n; i++)
        count[len[i]]++;
    count[0] = 0;
    int c = 0;
    for (int b = 1; b < 16; b++) {
        c = (c + count[b - 1]) << 1;
        next[b] = c;
    }
    for (int i = 0; i < n; i++) {
        if (!len[i])
            continue;
        unsigned v = (unsigned)next[len[i]]++, r = 0;
        for (int b = 0; b < len[i]; b++)
            r = (r << 1) | ((v >> b) & 1);
        code[i] = (uint16_t)r;
    }
}

static const uint8_t cl_order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

/* The block header after BFINAL/BTYPE: the two code-length tables, run-length
 * coded (16 repeat, 17/18 zero runs) under a third Huffman code. */
static void put_tables(nd_bitbuf *b, const uint8_t *llen, int nl, const uint8_t *dlen, int nd)
{
    uint8_t all[286 + 30], rl[286 + 30], rx[286 + 30];
    memcpy(all, llen, (size_t)nl);
    memcpy(all + nl, dlen, (size_t)nd);
    int total = nl + nd, nr = 0;
    uint32_t cfreq[19] = {0};
    for (int i = 0; i < total;) {
        int v = all[i], run = 1;
        while (i + run < total && all[i + run] == v)
            run++;
        if (v == 0 && run >= 3) {
            int r = run > 138 ? 138 : run;
            rl[nr] = r >= 11 ? 18 : 17;
            rx[nr++] = (uint8_t)(r >= 11 ? r - 11 : r - 3);
            i += r;
        } else if (v != 0 && run >= 4) {
            rl[nr] = (uint8_t)v;
            rx[nr++] = 0;
            int r = run - 1 > 6 ? 6 : run - 1;
            rl[nr] = 16;
            rx[nr++] = (uint8_t)(r - 3);
            i += 1 + r;
        } else {
            rl[nr] = (uint8_t)v;
            rx[nr++] = 0;
            i++;
        }
        cfreq[rl[nr - 1]]++;
        if (rl[nr - 1] == 16)
            cfreq[v]++;
    }
    uint8_t clen[19];
    uint16_t ccode[19];
    huff_lengths(cfreq, 19, 7, clen);
    huff_codes(clen, 19, ccode);
    int ncl = 19;
    while (ncl > 4 && clen[cl_order[ncl - 1]] == 0)
        ncl--;
    nd_bits_put(b, (uint32_t)(nl - 257), 5);
    nd_bits_put(b, (uint32_t)(nd - 1), 5);
    nd_bits_put(b, (uint32_t)(ncl - 4), 4);
    for (int i = 0; i < ncl; i++)
        nd_bits_put(b, clen[cl_order[i]], 3);
    for (int i = 0; i < nr; i++) {
        nd_bits_put(b, ccode[rl[i]], clen[rl[i]]);
        if (rl[i] >= 16)
            nd_bits_put(b, rx[i], rl[i] == 16 ? 2 : rl[i] == 17 ? 3 : 7);
    }
}

/* Each token is one put of its code, extra bits and (for a match) distance
 * code and extra bits - no branch on the token's kind, whose mix is
 * unpredictable. At most 48 bits a token: reserve 6 bytes each. */
static void put_tokens(nd_bitbuf *b, const nd_huff *h, const uint32_t *tok, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t t = tok[i], s = t & 511, di = (t >> 14) & 31;
        uint64_t match = -(uint64_t)(s > 256);
        int lx = len_xbits[(s - 257) & 31] & (int)match;
        int ln = h->llen[s] + lx;
        uint64_t lv = h->lcode[s] | (uint64_t)((t >> 9) & 31) << h->llen[s];
        uint64_t dv = (h->dcode[di] | (uint64_t)(t >> 19) << h->dlen[di]) & match;
        int dn = (h->dlen[di] + dist_xbits[di]) & (int)match;
        nd_bits_put(b, lv | dv << ln, ln + dn);
    }
}

void nd_huff_from_freq(nd_huff *h, const uint32_t *lf, const uint32_t *df)
{
    huff_lengths(lf, 286, 15, h->llen);
    huff_lengths(df, 30, 15, h->dlen);
    huff_codes(h->llen, 286, h->lcode);
    huff_codes(h->dlen, 30, h->dcode);
}

uint64_t nd_huff_match(const nd_huff *h, int len, int dist, int *nbits)
{
    uint32_t t = nd_tok_match(len, dist), s = t & 511, di = (t >> 14) & 31;
    int ln = h->llen[s] + len_xbits[s - 257];
    uint64_t v = h->lcode[s] | (uint64_t)((t >> 9) & 31) << h->llen[s];
    v |= (h->dcode[di] | (uint64_t)(t >> 19) << h->dlen[di]) << ln;
    *nbits = ln + h->dlen[di] + dist_xbits[di];
    return v;
}

int nd_deflate_tables(nd_bitbuf *b, const nd_huff *h)
{
    int nl = 286, nd = 30;
    while (h->llen[nl - 1] == 0)
        nl--;
    while (nd > 1 && h->dlen[nd - 1] == 0)
        nd--;
    if (nd_bits_reserve(b, 1024)) /* the tables: under 600 bytes */
        return -1;
    put_tables(b, h->llen, nl, h->dlen, nd);
    return 0;
}

int nd_deflate_header(nd_bitbuf *b, const nd_huff *h, int final)
{
    if (nd_bits_reserve(b, 16))
        return -1;
    nd_bits_put(b, final ? 5u : 4u, 3); /* BFINAL, BTYPE 2 (dynamic) */
    return nd_deflate_tables(b, h);
}

int nd_deflate_block_parts(const uint32_t *tok, size_t n, uint32_t repeat, int final,
                          nd_block_parts *out)
{
    memset(out, 0, sizeof *out);
    uint32_t lf[286] = {0}, df[30] = {0};
    for (size_t i = 0; i < n; i++) {
        uint32_t t = tok[i], s = t & 511;
        lf[s] += repeat;
        if (s > 256)
            df[(t >> 14) & 31] += repeat;
    }
    lf[256] = 1;
    nd_huff h;
    nd_huff_from_freq(&h, lf, df);
    if (nd_deflate_header(&out->head, &h, final) || nd_bits_reserve(&out->once, n * 6 + 16)) {
        nd_block_parts_free(out);
        return -1;
    }
    put_tokens(&out->once, &h, tok, n);
    out->eob = h.lcode[256];
    out->eob_n = h.llen[256];
    return 0;
}

int nd_deflate_block_put(nd_bitbuf *b, const nd_block_parts *p, uint32_t repeat)
{
    if (nd_bits_reserve(b, p->head.n + 16))
        return -1;
    nd_bits_append(b, &p->head);
    size_t nb = p->once.n * 8 + (size_t)p->once.nacc;
    if (nb <= 56) {
        /* the usual case (padding rows: a thousand repeats of a dozen
         * tokens): the tokens' code fits one put */
        uint64_t v = 0;
        memcpy(&v, p->once.p, p->once.n);
        v |= p->once.acc << (p->once.n * 8);
        if (nd_bits_reserve(b, (size_t)repeat * 7 + 16))
            return -1;
        /* as many copies as fit one put (nb 0: an empty token list) */
        uint32_t k = nb ? (uint32_t)(56 / nb) : 1, r = 0;
        uint64_t vk = 0;
        for (uint32_t i = 0; i < k; i++)
            vk |= v << (i * nb);
        for (; r + k <= repeat; r += k)
            nd_bits_put(b, vk, (int)(k * nb));
        for (; r < repeat; r++)
            nd_bits_put(b, v, (int)nb);
    }
    for (uint32_t r = 0; r < repeat && nb > 56; r++) {
        if (nd_bits_reserve(b, p->once.n + 16))
            return -1;
        nd_bits_append(b, &p->once);
    }
    if (nd_bits_reserve(b, 16))
        return -1;
    nd_bits_put(b, p->eob, p->eob_n);
    return 0;
}

void nd_block_parts_free(nd_block_parts *p)
{
    free(p->head.p);
    free(p->once.p);
    memset(p, 0, sizeof *p);
}

int nd_deflate_block(nd_bitbuf *b, const uint32_t *tok, size_t n, uint32_t repeat, int final)
{
    nd_block_parts p;
    if (nd_deflate_block_parts(tok, n, repeat, final, &p))
        return -1;
    int rc = nd_deflate_block_put(b, &p, repeat);
    nd_block_parts_free(&p);
    return rc;
}
