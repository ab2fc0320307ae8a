/* codec/png_bits.c - three-colour images straight from their values to PNG.
 *
 * A flow image is rows of 1 / 0 / -1 drawn red / green / blue, then blue
 * padding rows up to the packet budget (~95% of a NetDiffusion image). The
 * general writer (png.c) draws the RGB buffer and deflates it; this one
 * never draws it. Every row is UP-filtered (PNG filter 2), so a pixel equal
 * to the one above is three zero bytes and a changed pixel is one of twelve
 * byte triples (the colour above minus the colour now). Runs of equal pixels
 * become deflate matches at distance 1 (zeros) or 3 (a repeated triple), found
 * by comparing the value rows a word at a time - no match search, no
 * filtered bytes in memory - and the Adler-32 of the filtered bytes follows
 * from the runs arithmetically. The pure padding rows (filter byte then
 * zeros) are one token list, written as a second block as many times as
 * there are such rows. */
#include "codec/internal.h"

#include <stdlib.h>
#include <string.h>

#define ADLER_MOD 65521u

/* colour index: 0 blue (-1), 1 green (0), 2 red (1), 3 black: the zero row
 * PNG's UP filter takes as the row above the first */
static const uint8_t colour_of[4][3] = {{0, 0, 255}, {0, 255, 0}, {255, 0, 0}, {0, 0, 0}};

typedef struct {
    uint32_t *tok;
    size_t n, cap;
    uint32_t a, b;  /* Adler-32 of the bytes the tokens stand for */
    bool last_zero; /* the last of those bytes is 0 (a distance-1 run can go on) */
} tokens;

static int tok_reserve(tokens *t, size_t more)
{
    if (t->n + more <= t->cap)
        return 0;
    size_t nc = (t->n + more) * 2;
    uint32_t *np = realloc(t->tok, nc * sizeof *np);
    if (!np)
        return -1;
    t->tok = np;
    t->cap = nc;
    return 0;
}

/* Adler-32 sums are reduced after each run, not after each literal: at
 * most four literals come between reductions. */
static inline void lit(tokens *t, uint8_t v)
{
    t->tok[t->n++] = v;
    t->a += v;
    t->b += t->a;
    t->last_zero = v == 0;
}

static inline void reduce(tokens *t)
{
    t->a %= ADLER_MOD;
    t->b %= ADLER_MOD;
}

/* len >= 3 bytes copied from dist back, as matches of at most 258 */
static void copy(tokens *t, int len, int dist)
{
    while (len > 258) {
        int take = len - 258 >= 3 ? 258 : len - 3;
        t->tok[t->n++] = nd_tok_match(take, dist);
        len -= take;
    }
    t->tok[t->n++] = nd_tok_match(len, dist);
}

static void zeros(tokens *t, int len)
{
    if (!t->last_zero) {
        lit(t, 0);
        len--;
    }
    if (len < 3) {
        while (len-- > 0)
            lit(t, 0);
        reduce(t);
        return;
    }
    reduce(t);
    copy(t, len, 1);
    t->b = (uint32_t)((t->b + (uint64_t)len * t->a) % ADLER_MOD);
}

/* the triple tr once as literals, then k more times as a distance-3 copy */
static void triples(tokens *t, const uint8_t tr[3], int k)
{
    lit(t, tr[0]);
    lit(t, tr[1]);
    lit(t, tr[2]);
    reduce(t);
    if (k == 0)
        return;
    copy(t, 3 * k, 3);
    /* repeat j adds 3 (a + j s) + 3 tr0 + 2 tr1 + tr2 to b and s to a */
    uint64_t s = (uint64_t)tr[0] + tr[1] + tr[2], w = 3u * tr[0] + 2u * tr[1] + tr[2];
    uint64_t kk = (uint64_t)k * (uint64_t)(k - 1) / 2 % ADLER_MOD;
    t->b = (uint32_t)((t->b + 3 * (uint64_t)k % ADLER_MOD * t->a + 3 * s * kk + k % ADLER_MOD * w) %
                      ADLER_MOD);
    t->a = (uint32_t)((t->a + k % ADLER_MOD * s) % ADLER_MOD);
}

/* Tokens of one UP-filtered row: cur below prev (colour indices, w each). */
static int row_tokens(tokens *t, const uint8_t *prev, const uint8_t *cur, int w)
{
    /* a token per pixel at worst (3 literals), plus the filter byte */
    if (tok_reserve(t, 3 * (size_t)w + 8))
        return -1;
    lit(t, 2);
    int x = 0;
    while (x < w) {
        int e = x + 1;
        if (prev[x] == cur[x]) {
            for (; e + 8 <= w; e += 8) {
                uint64_t p, c;
                memcpy(&p, prev + e, 8);
                memcpy(&c, cur + e, 8);
                if (p != c)
                    break;
            }
            while (e < w && prev[e] == cur[e])
                e++;
            zeros(t, 3 * (e - x));
        } else {
            while (e < w && prev[e] == prev[x] && cur[e] == cur[x])
                e++;
            const uint8_t *above = colour_of[prev[x]], *now = colour_of[cur[x]];
            uint8_t tr[3] = {(uint8_t)(now[0] - above[0]), (uint8_t)(now[1] - above[1]),
                             (uint8_t)(now[2] - above[2])};
            triples(t, tr, e - x - 1);
        }
        x = e;
    }
    return 0;
}

/* vectorised (module.mk builds this file with -O3) */
static void colour_index(const int8_t *restrict v, uint8_t *restrict out, int w)
{
    for (int i = 0; i < w; i++)
        out[i] = (uint8_t)((v[i] == 0) + 2 * (v[i] == 1));
}

/* The zlib stream of the image: header, block of rows 0..n (row n is the
 * first padding row, against the last packet row), block of pure padding
 * rows, Adler-32. */
static int bits_zstream(const int8_t *bits, int w, int n, int h, nd_bitbuf *out)
{
    int diff_rows = n < h ? n + 1 : n, pad = h - diff_rows;
    uint8_t *row[2] = {malloc((size_t)w), malloc((size_t)w)};
    tokens t = {.a = 1}, tp = {.a = 1};
    int rc = !row[0] || !row[1];
    if (!rc)
        memset(row[0], 3, (size_t)w);
    for (int y = 0; y < diff_rows && !rc; y++) {
        uint8_t *prev = row[y & 1], *cur = row[(y + 1) & 1];
        if (y < n)
            colour_index(bits + (size_t)y * (size_t)w, cur, w);
        else
            memset(cur, 0, (size_t)w);
        rc = row_tokens(&t, prev, cur, w);
    }
    if (!rc) {
        rc = nd_bits_reserve(out, 2);
        nd_bits_put(out, 0x0178, 16); /* deflate, 32K window, fastest; a multiple of 31 */
    }
    if (!rc)
        rc = nd_deflate_block(out, t.tok, t.n, 1, pad == 0);
    uint32_t a = t.a, b = t.b;
    if (!rc && pad > 0) {
        /* a padding row below a padding row: filter byte, then 3w zeros */
        tp.last_zero = false;
        rc = tok_reserve(&tp, 16 + (size_t)w / 64);
        if (!rc) {
            lit(&tp, 2);
            zeros(&tp, 3 * w);
            rc = nd_deflate_block(out, tp.tok, tp.n, (uint32_t)pad, 1);
        }
        for (int y = 0; y < pad; y++) {
            a = (a + 2) % ADLER_MOD;
            b = (uint32_t)((b + a + (uint64_t)a * 3 * (uint64_t)w) % ADLER_MOD);
        }
    }
    if (!rc)
        rc = nd_bits_align(out);
    if (!rc && !(rc = nd_bits_reserve(out, 4))) {
        uint32_t adler = b << 16 | a;
        for (int i = 3; i >= 0; i--)
            out->p[out->n++] = (uint8_t)(adler >> (8 * i));
    }
    free(t.tok);
    free(tp.tok);
    free(row[0]);
    free(row[1]);
    return rc;
}

nd_status nd_png_write_bits(const char *path, const int8_t *bits, int w, int n, int h, nd_err *err)
{
    if (w <= 0 || h <= 0 || (uint64_t)w * (uint64_t)h > ND_PNG_MAX_PIXELS || n < 0 || n > h)
        return nd_fail(err, ND_EINVAL, "%s: bad image size %dx%d (%d rows given)", path, w, h, n);
    nd_bitbuf zs = {0};
    if (bits_zstream(bits, w, n, h, &zs)) {
        free(zs.p);
        return nd_fail(err, ND_ENOMEM, "%s: out of memory", path);
    }
    nd_status st = nd_png_put_file(path, w, h, zs.p, zs.n, err);
    free(zs.p);
    return st;
}
