/* codec/png_bits.c - three-colour images straight from their values to PNG.
 *
 * A flow image is rows of 1 / 0 / -1 drawn red / green / blue, then blue
 * padding rows up to the packet budget (~95% of a NetDiffusion image). The
 * general writer (png.c) draws the RGB buffer and deflates it; this one
 * never draws it. Every row is UP-filtered (PNG filter 2), so a pixel equal
 * to the one above is three zero bytes and a changed pixel is one of twelve
 * byte triples (the colour above minus the colour now). Runs of equal pixels
 * become deflate matches at distance 1 (zeros) or 3 (a repeated triple),
 * found by comparing the value rows a word at a time - no match search, no
 * filtered bytes in memory - and the Adler-32 of the filtered bytes follows
 * from the runs arithmetically.
 *
 * The packet rows (and the first padding row) are one deflate block under a
 * fixed Huffman code, fitted once to the symbol counts of real flow images:
 * with one code for every image there is no counting pass, no token buffer
 * and no per-image tree, and each run is written as soon as it is found (a
 * changed pixel's three literals are one precomputed bit string). The pure
 * padding rows (filter byte, then zeros) are a second block, its code
 * fitted to one such row, whose bits are copied once per row. */
#include "codec/internal.h"

#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#define ADLER_MOD 65521u

/* colour index: 0 blue (-1), 1 green (0), 2 red (1), 3 black: the zero row
 * PNG's UP filter takes as the row above the first */
static const uint8_t colour_of[4][3] = {{0, 0, 255}, {0, 255, 0}, {255, 0, 0}, {0, 0, 0}};

/* Symbol counts (thousands) of the packet-row blocks of the 1460 flow images
 * of the codec benchmark's captures (60560 rows, TCP/UDP/ICMP, IPv4/IPv6).
 * Literals are only ever 0, 1, 255 (filtered colour bytes) and 2 (the
 * filter byte); distances only 1 and 3. Every length gets a code (unseen
 * ones a small count), so any image can be written; only the size depends
 * on how typical it is. */
static const struct {
    uint16_t sym;
    uint16_t count;
} row_counts[] = {
    {0, 2733},   {1, 2327},   {2, 62},     {255, 2498}, {256, 1},    {257, 1071}, {260, 413},
    {263, 181},  {265, 98},   {267, 47},   {268, 38},   {269, 23},   {270, 19},   {271, 33},
    {272, 7},    {273, 16},   {274, 14},   {275, 21},   {276, 23},   {277, 22},   {278, 13},
    {279, 48},   {280, 32},   {281, 61},   {282, 9},    {283, 22},   {284, 11},   {285, 578},
};
static const uint16_t row_dist_counts[2] = {2035, 775}; /* distance 1, 3 */

/* 3 * 86 = 258 bytes: a run this short is at most a literal part and one match */
#define SHORT_RUN 86

typedef struct {
    nd_huff h;
    uint64_t trip[4][3]; /* a changed pixel: [colour above][colour now] */
    uint8_t trip_n[4][3];
    uint64_t m1[259], m3[259]; /* a match of length 3..258 at distance 1 / 3 */
    uint8_t m1_n[259], m3_n[259];
    /* A run of L <= SHORT_RUN pixels of one key (0: unchanged, else 1 + 3 *
     * colour above + colour now) after a zero byte or not: its whole code,
     * bits | count << 56 (count 0xff: more than one put holds), and what it
     * adds to the Adler-32 sums (b also gains 3L times a). */
    uint64_t run[13][2][SHORT_RUN + 1];
    uint32_t run_b[13][SHORT_RUN + 1];
    uint16_t run_a[13][SHORT_RUN + 1];
    uint8_t key_last_zero[13];
    nd_bitbuf tables; /* the code lengths, as the block header sends them */
    int tables_ok;
} row_code;

static row_code rcode;

/* The next match of a run of len >= 3 bytes: at most 258, never leaving
 * 1 or 2 bytes behind. */
static inline int run_piece(int len)
{
    return len <= 258 ? len : len - 258 >= 3 ? 258 : len - 3;
}

typedef struct {
    nd_bitbuf *out;
    const row_code *c;
    uint64_t a, b;  /* Adler-32 sums of the filtered bytes so far, reduced at the end of each row */
    bool last_zero; /* the last of those bytes is 0 (a distance-1 run can go on) */
    bool wide;      /* rows too wide to leave the sums unreduced for a row */
} row_writer;

static inline void reduce(row_writer *r)
{
    r->a %= ADLER_MOD;
    r->b %= ADLER_MOD;
}

/* Between reductions a grows by at most 765 a pixel and b by 3a a pixel:
 * for rows up to 2^20 pixels both stay far below 2^64. */
#define ND_UNREDUCED_MAX_W (1 << 20)

static inline void lit(row_writer *r, uint8_t v)
{
    nd_bits_put(r->out, r->c->h.lcode[v], r->c->h.llen[v]);
    r->a += v;
    r->b += r->a;
    r->last_zero = v == 0;
}

/* len >= 3 bytes copied from dist (1 or 3) back */
static inline void copy(row_writer *r, int len, int dist)
{
    const uint64_t *m = dist == 1 ? r->c->m1 : r->c->m3;
    const uint8_t *mn = dist == 1 ? r->c->m1_n : r->c->m3_n;
    while (len > 0) {
        int take = run_piece(len);
        nd_bits_put(r->out, m[take], mn[take]);
        len -= take;
    }
}

static inline void zeros(row_writer *r, int len)
{
    if (!r->last_zero) {
        lit(r, 0);
        len--;
    }
    if (len < 3) {
        while (len-- > 0)
            lit(r, 0);
    } else {
        copy(r, len, 1);
        r->b += (uint64_t)len * r->a;
    }
    if (r->wide)
        reduce(r);
}

/* k + 1 pixels changed from colour p to q: the triple once as literals (one
 * precomputed bit string), then k more times as a distance-3 copy */
static inline void triples(row_writer *r, int p, int q, int k)
{
    const uint8_t *above = colour_of[p], *now = colour_of[q];
    uint8_t tr[3] = {(uint8_t)(now[0] - above[0]), (uint8_t)(now[1] - above[1]),
                     (uint8_t)(now[2] - above[2])};
    nd_bits_put(r->out, r->c->trip[p][q], r->c->trip_n[p][q]);
    for (int i = 0; i < 3; i++) {
        r->a += tr[i];
        r->b += r->a;
    }
    r->last_zero = tr[2] == 0;
    if (k > 0) {
        copy(r, 3 * k, 3);
        /* repeat j adds 3 (a + j s) + 3 tr0 + 2 tr1 + tr2 to b and s to a */
        uint64_t s = (uint64_t)tr[0] + tr[1] + tr[2], w = 3u * tr[0] + 2u * tr[1] + tr[2];
        uint64_t kk = (uint64_t)k * (uint64_t)(k - 1) / 2;
        r->b += 3 * (uint64_t)k * r->a + 3 * s * kk + (uint64_t)k * w;
        r->a += (uint64_t)k * s;
    }
    if (r->wide)
        reduce(r);
}

static pthread_once_t rcode_once = PTHREAD_ONCE_INIT;

static void rcode_init(void)
{
    uint32_t lf[286], df[30] = {0};
    for (int i = 0; i < 286; i++)
        lf[i] = i > 256 ? 2 : 0;
    for (size_t i = 0; i < ND_ARRAY_LEN(row_counts); i++)
        lf[row_counts[i].sym] = row_counts[i].count;
    df[0] = row_dist_counts[0];
    df[2] = row_dist_counts[1];
    row_code *c = &rcode;
    nd_huff_from_freq(&c->h, lf, df);
    for (int p = 0; p < 4; p++)
        for (int q = 0; q < 3; q++) {
            uint64_t v = 0;
            int n = 0;
            for (int i = 0; i < 3; i++) {
                uint8_t byte = (uint8_t)(colour_of[q][i] - colour_of[p][i]);
                v |= (uint64_t)c->h.lcode[byte] << n;
                n += c->h.llen[byte];
            }
            c->trip[p][q] = v;
            c->trip_n[p][q] = (uint8_t)n;
        }
    for (int len = 3; len <= 258; len++) {
        int n;
        c->m1[len] = nd_huff_match(&c->h, len, 1, &n);
        c->m1_n[len] = (uint8_t)n;
        c->m3[len] = nd_huff_match(&c->h, len, 3, &n);
        c->m3_n[len] = (uint8_t)n;
    }
    /* the header's code lengths, sent with every image */
    c->tables_ok = nd_deflate_tables(&c->tables, &c->h) == 0;
    /* the run table: each short run written once by the general code */
    for (int k = 0; k < 13; k++) {
        for (int lz = 0; lz < 2; lz++)
            for (int len = 1; len <= SHORT_RUN; len++) {
                uint8_t buf[64];
                nd_bitbuf bb = {.p = buf, .cap = sizeof buf};
                row_writer r = {.out = &bb, .c = c, .last_zero = lz};
                if (k == 0)
                    zeros(&r, 3 * len);
                else
                    triples(&r, (k - 1) / 3, (k - 1) % 3, len - 1);
                size_t nb = bb.n * 8 + (size_t)bb.nacc;
                uint64_t v = 0;
                if (nb <= 56) {
                    memcpy(&v, buf, bb.n);
                    v |= bb.acc << (bb.n * 8);
                }
                c->run[k][lz][len] = nb <= 56 ? v | (uint64_t)nb << 56 : 0xffull << 56;
                c->run_a[k][len] = (uint16_t)r.a;
                c->run_b[k][len] = (uint32_t)r.b;
                c->key_last_zero[k] = r.last_zero;
            }
    }
}

/* A run of len pixels of key k: when short (nearly all are) one table
 * entry. */
static inline void put_run(row_writer *r, int k, int len)
{
    const row_code *c = r->c;
    uint64_t ent = len <= SHORT_RUN ? c->run[k][r->last_zero][len] : 0xffull << 56;
    if ((ent >> 56) != 0xff) {
        nd_bits_put(r->out, ent & 0xffffffffffffffull, (int)(ent >> 56));
        r->b += 3 * (uint64_t)len * r->a + c->run_b[k][len];
        r->a += c->run_a[k][len];
        r->last_zero = c->key_last_zero[k];
        if (r->wide)
            reduce(r);
    } else if (k == 0) {
        zeros(r, 3 * len);
    } else {
        triples(r, (k - 1) / 3, (k - 1) % 3, len - 1);
    }
}

/* Bit i of starts (64 a word) is set where key i differs from key i - 1
 * (0 < i < w): where runs begin. 8 keys at a time, each differing byte to
 * its top bit, the 8 top bits gathered by one multiply. key[-1] and key up
 * to w rounded up to 64 must be readable. */
static void run_starts(const uint8_t *key, int w, uint64_t *starts)
{
    const uint64_t lo7 = 0x7f7f7f7f7f7f7f7full, hi = 0x8080808080808080ull;
    int nw = (w + 63) / 64;
    for (int j = 0; j < nw; j++) {
        uint64_t m = 0;
        for (int b = 0; b < 64; b += 8) {
            uint64_t v, u;
            memcpy(&v, key + 64 * j + b, 8);
            memcpy(&u, key + 64 * j + b - 1, 8);
            uint64_t x = v ^ u, t = (((x & lo7) + lo7) | x) & hi;
            /* byte i's bit 7 -> bit 56 + i (little-endian: byte i is key i) */
            m |= ((t >> 7) * 0x0102040810204080ull >> 56) << b;
        }
        starts[j] = m;
    }
    starts[0] &= ~1ull;
    if (w % 64)
        starts[nw - 1] &= (1ull << (w % 64)) - 1;
}

/* One UP-filtered row: cur below prev (colour indices, w each); key (with
 * a byte before it, rounded up to 64) and starts ((w + 63) / 64 words) scratch.
 * The runs are walked by the set bits of starts: no branch per run on where
 * it ends, which is unpredictable. */
static int put_row(row_writer *r, const uint8_t *restrict prev, const uint8_t *restrict cur,
                   uint8_t *restrict key, uint64_t *restrict starts, int w)
{
    /* at most 6 bytes a pixel (a triple's 45 bits, or a short zero run) */
    if (nd_bits_reserve(r->out, 6 * (size_t)w + 64))
        return -1;
    for (int i = 0; i < w; i++)
        key[i] = (uint8_t)(prev[i] == cur[i] ? 0 : 1 + 3 * prev[i] + cur[i]);
    run_starts(key, w, starts);
    lit(r, 2);
    int x = 0;
    for (int j = 0; j < (w + 63) / 64; j++) {
        for (uint64_t m = starts[j]; m; m &= m - 1) {
            int e = 64 * j + __builtin_ctzll(m);
            put_run(r, key[x], e - x);
            x = e;
        }
    }
    put_run(r, key[x], w - x);
    reduce(r);
    return 0;
}

/* vectorised (module.mk builds this file with -O3) */
static void colour_index(const int8_t *restrict v, uint8_t *restrict out, int w)
{
    for (int i = 0; i < w; i++)
        out[i] = (uint8_t)((v[i] == 0) + 2 * (v[i] == 1));
}

/* The pure padding rows' block: `pad` rows of the filter byte and 3w zeros,
 * final, with its own code. */
static int padding_parts(int w, int pad, nd_block_parts *p)
{
    int n = 0;
    uint32_t *tok = malloc((4 + (size_t)w / 64) * sizeof *tok);
    if (!tok)
        return -1;
    tok[n++] = 2;
    tok[n++] = 0;
    int rest = 3 * w - 1;
    if (rest < 3) {
        while (rest-- > 0)
            tok[n++] = 0;
    }
    while (rest >= 3) {
        int take = run_piece(rest);
        tok[n++] = nd_tok_match(take, 1);
        rest -= take;
    }
    int rc = nd_deflate_block_parts(tok, (size_t)n, (uint32_t)pad, 1, p);
    free(tok);
    return rc;
}

/* The block depends only on w and pad: a writer of many images of one size
 * makes each padding count's parts once. */
struct nd_pad_memo {
    int w, h;
    nd_block_parts *parts; /* [pad], h + 1 of them; made[pad] once written */
    uint8_t *made;
};

nd_pad_memo *nd_pad_memo_new(int w, int h)
{
    nd_pad_memo *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->w = w;
    m->h = h;
    m->parts = calloc((size_t)h + 1, sizeof *m->parts);
    m->made = calloc((size_t)h + 1, 1);
    if (!m->parts || !m->made) {
        nd_pad_memo_free(m);
        return NULL;
    }
    return m;
}

void nd_pad_memo_free(nd_pad_memo *m)
{
    if (!m)
        return;
    for (int i = 0; m->made && i <= m->h; i++)
        if (m->made[i])
            nd_block_parts_free(&m->parts[i]);
    free(m->parts);
    free(m->made);
    free(m);
}

static int put_padding(nd_bitbuf *out, int w, int pad, nd_pad_memo *m, uint32_t *a, uint32_t *b)
{
    nd_block_parts local, *p = &local;
    if (m && m->w == w && pad <= m->h) {
        p = &m->parts[pad];
        if (!m->made[pad]) {
            if (padding_parts(w, pad, p))
                return -1;
            m->made[pad] = 1;
        }
    } else if (padding_parts(w, pad, &local)) {
        return -1;
    }
    int rc = nd_deflate_block_put(out, p, (uint32_t)pad);
    if (p == &local)
        nd_block_parts_free(&local);
    /* Adler-32: row k adds 2 to a, then b gains (3w + 1) times the new a,
     * so over pad rows b gains (3w + 1)(pad a0 + pad (pad + 1)) */
    uint64_t p64 = (uint64_t)pad, a0 = *a;
    uint64_t sum = (p64 * a0 + p64 * (p64 + 1)) % ADLER_MOD;
    *b = (uint32_t)((*b + sum * (3 * (uint64_t)w + 1)) % ADLER_MOD);
    *a = (uint32_t)((a0 + 2 * p64) % ADLER_MOD);
    return rc;
}

/* The zlib stream of the image: header, block of rows 0..n (row n is the
 * first padding row, against the last packet row), block of pure padding
 * rows, Adler-32. */
int nd_png_bits_zstream(const int8_t *bits, int w, int n, int h, nd_pad_memo *memo,
                        nd_bitbuf *out)
{
    pthread_once(&rcode_once, rcode_init);
    int diff_rows = n < h ? n + 1 : n, pad = h - diff_rows;
    uint8_t *row[2] = {malloc((size_t)w), malloc((size_t)w)};
    /* keys: one byte before, and up to a whole word of 64 (run_starts reads
     * them; zero) */
    uint8_t *keys = calloc(((size_t)w + 63) / 64 * 64 + 8, 1), *key = keys ? keys + 1 : NULL;
    uint64_t *starts = malloc(((size_t)w + 63) / 64 * sizeof *starts);
    row_writer r = {.out = out, .c = &rcode, .a = 1, .wide = w > ND_UNREDUCED_MAX_W};
    int rc = !row[0] || !row[1] || !key || !starts || nd_bits_reserve(out, 16);
    if (!rc) {
        memset(row[0], 3, (size_t)w);
        nd_bits_put(out, 0x0178, 16); /* deflate, 32K window, fastest; a multiple of 31 */
        nd_bits_put(out, pad == 0 ? 5u : 4u, 3); /* BFINAL, BTYPE 2 (dynamic) */
        rc = !rcode.tables_ok || nd_bits_reserve(out, rcode.tables.n + 16);
    }
    if (!rc)
        nd_bits_append(out, &rcode.tables);
    for (int y = 0; y < diff_rows && !rc; y++) {
        uint8_t *prev = row[y & 1], *cur = row[(y + 1) & 1];
        if (y < n)
            colour_index(bits + (size_t)y * (size_t)w, cur, w);
        else
            memset(cur, 0, (size_t)w);
        rc = put_row(&r, prev, cur, key, starts, w);
    }
    if (!rc && !(rc = nd_bits_reserve(out, 16)))
        nd_bits_put(out, rcode.h.lcode[256], rcode.h.llen[256]);
    uint32_t a = (uint32_t)r.a, b = (uint32_t)r.b;
    if (!rc && pad > 0)
        rc = put_padding(out, w, pad, memo, &a, &b);
    if (!rc)
        rc = nd_bits_align(out);
    if (!rc && !(rc = nd_bits_reserve(out, 4))) {
        uint32_t adler = b << 16 | a;
        for (int i = 3; i >= 0; i--)
            out->p[out->n++] = (uint8_t)(adler >> (8 * i));
    }
    free(row[0]);
    free(row[1]);
    free(keys);
    free(starts);
    return rc;
}

nd_status nd_png_write_bits(const char *path, const int8_t *bits, int w, int n, int h, nd_err *err)
{
    if (w <= 0 || h <= 0 || (uint64_t)w * (uint64_t)h > ND_PNG_MAX_PIXELS || n < 0 || n > h)
        return nd_fail(err, ND_EINVAL, "%s: bad image size %dx%d (%d rows given)", path, w, h, n);
    nd_bitbuf zs = {0};
    if (nd_png_bits_zstream(bits, w, n, h, NULL, &zs)) {
        free(zs.p);
        return nd_fail(err, ND_ENOMEM, "%s: out of memory", path);
    }
    nd_status st = nd_png_put_file(path, w, h, zs.p, zs.n, err);
    free(zs.p);
    return st;
}
