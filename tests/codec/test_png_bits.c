/* tests/codec/test_png_bits.c - the three-colour PNG writer (codec/png_bits.c)
 * and its deflate block writer (codec/deflate.c): what they write must
 * decode, through libpng and through zlib on its own, to exactly the pixels
 * meant, for any size, any number of packet rows and any layout. */
#include "codec/codec.h"
#include "codec/internal.h"
#include "tests/harness.h"

#include <unistd.h>
#include <zlib.h>

static void colour(int8_t v, uint8_t *px)
{
    px[0] = v == 1 ? 255 : 0;
    px[1] = v == 0 ? 255 : 0;
    px[2] = v != 1 && v != 0 ? 255 : 0;
}

/* The PNG's own structure, without libpng: signature, chunk CRCs, IHDR, and
 * the IDAT stream inflated by zlib (which checks its Adler-32) to exactly
 * h rows of 1 + 3w bytes, unfiltered here into rgb. Returns 0 when sound. */
static int decode_with_zlib(const char *path, int w, int h, uint8_t *rgb)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *file = malloc(size > 0 ? (size_t)size : 1);
    size_t n = fread(file, 1, size > 0 ? (size_t)size : 0, f);
    fclose(f);
    static const uint8_t sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    if (n < 8 || memcmp(file, sig, 8)) {
        free(file);
        return -2;
    }
    uint8_t *z = malloc(n);
    size_t zn = 0, off = 8;
    int seen_ihdr = 0, seen_iend = 0, rc = 0;
    while (off + 12 <= n && !rc) {
        uint32_t len = (uint32_t)file[off] << 24 | file[off + 1] << 16 | file[off + 2] << 8 | file[off + 3];
        if (off + 12 + len > n) {
            rc = -3;
            break;
        }
        const uint8_t *type = file + off + 4, *data = file + off + 8;
        uint32_t crc = (uint32_t)data[len] << 24 | data[len + 1] << 16 | data[len + 2] << 8 | data[len + 3];
        if (crc32(crc32(0, NULL, 0), type, len + 4) != crc)
            rc = -4;
        if (!memcmp(type, "IHDR", 4)) {
            uint32_t iw = (uint32_t)data[0] << 24 | data[1] << 16 | data[2] << 8 | data[3];
            uint32_t ih = (uint32_t)data[4] << 24 | data[5] << 16 | data[6] << 8 | data[7];
            if (len != 13 || iw != (uint32_t)w || ih != (uint32_t)h || data[8] != 8 || data[9] != 2 ||
                data[12] != 0)
                rc = -5;
            seen_ihdr = 1;
        } else if (!memcmp(type, "IDAT", 4)) {
            memcpy(z + zn, data, len);
            zn += len;
        } else if (!memcmp(type, "IEND", 4)) {
            seen_iend = 1;
        }
        off += 12 + len;
    }
    size_t stride = (size_t)w * 3, want = (size_t)h * (stride + 1);
    uint8_t *raw = malloc(want + 1);
    uLongf got = (uLongf)want + 1;
    if (!rc && (!seen_ihdr || !seen_iend || off != n))
        rc = -6;
    if (!rc && (uncompress(raw, &got, z, (uLong)zn) != Z_OK || got != want))
        rc = -7;
    for (int y = 0; y < h && !rc; y++) {
        const uint8_t *in = raw + (size_t)y * (stride + 1);
        uint8_t *out = rgb + (size_t)y * stride;
        const uint8_t *up = y ? out - stride : NULL;
        for (size_t i = 0; i < stride; i++) {
            uint8_t a = i >= 3 ? out[i - 3] : 0, b = up ? up[i] : 0, c = up && i >= 3 ? up[i - 3] : 0;
            int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
            uint8_t pred[5] = {0, a, b, (uint8_t)((a + b) / 2),
                               pa <= pb && pa <= pc ? a : pb <= pc ? b : c};
            if (in[0] > 4) {
                rc = -8;
                break;
            }
            out[i] = (uint8_t)(in[1 + i] + pred[in[0]]);
        }
    }
    free(raw);
    free(z);
    free(file);
    return rc;
}

/* Writes bits (n rows of w) as a w x h image and checks both decoders
 * against the colours drawn here. */
static void check_image(const int8_t *bits, int w, int n, int h, const char *what)
{
    nd_err err;
    char png[] = "/tmp/ndtest_bits_XXXXXX";
    int fd = mkstemp(png);
    close(fd);
    CHECK_OK(nd_png_write_bits(png, bits, w, n, h, &err), &err);
    size_t npx = (size_t)w * h;
    uint8_t *want = malloc(npx * 3), *mine = malloc(npx * 3), *back = NULL;
    for (size_t i = 0; i < npx; i++)
        colour(i < (size_t)w * n ? bits[i] : ND_VACANT, want + 3 * i);
    int rw = 0, rh = 0;
    CHECK_OK(nd_png_read(png, &back, &rw, &rh, &err), &err);
    CHECKF(back && rw == w && rh == h && !memcmp(back, want, npx * 3),
           "%s %dx%d, %d rows: libpng reads other pixels", what, w, h, n);
    int zr = decode_with_zlib(png, w, h, mine);
    CHECKF(zr == 0 && !memcmp(mine, want, npx * 3), "%s %dx%d, %d rows: zlib decode %d / pixels",
           what, w, h, n, zr);
    unlink(png);
    free(want);
    free(mine);
    free(back);
}

/* Rows like a flow's: each the row above with a few changed runs, some
 * long; values -1 / 0 / 1 and, rarely, others (drawn blue). */
static void fill_rows(int8_t *bits, int w, int n)
{
    for (int y = 0; y < n; y++) {
        int8_t *row = bits + (size_t)y * w;
        if (y == 0 || nd_rnd() % 8 == 0) {
            for (int x = 0; x < w;) {
                int len = 1 + (int)(nd_rnd() % (nd_rnd() % 4 == 0 ? 400 : 6));
                int8_t v = nd_rnd() % 50 == 0 ? (int8_t)(nd_rnd() % 9 - 4) : (int8_t)(nd_rnd() % 3 - 1);
                for (; len-- > 0 && x < w; x++)
                    row[x] = v;
            }
            continue;
        }
        memcpy(row, row - w, (size_t)w);
        int changes = (int)(nd_rnd() % 12);
        for (int c = 0; c < changes; c++) {
            int x0 = (int)(nd_rnd() % (uint64_t)w), len = 1 + (int)(nd_rnd() % (nd_rnd() % 3 == 0 ? 300 : 4));
            int8_t v = (int8_t)(nd_rnd() % 3 - 1);
            for (int x = x0; x < x0 + len && x < w; x++)
                row[x] = c % 2 ? v : (int8_t)(nd_rnd() % 3 - 1);
        }
    }
}

/* Odd widths and heights, no packet rows (all padding), all packet rows (no
 * padding), and runs around the 258-byte match limit (86 pixels). */
static void test_sizes_and_padding(void)
{
    nd_rng_state = nd_test_seed();
    const int widths[] = {1, 2, 3, 5, 37, 85, 86, 87, 172, 259, 1088, 1104};
    const int heights[] = {1, 2, 3, 7, 64, 301};
    for (size_t a = 0; a < ND_ARRAY_LEN(widths); a++)
        for (size_t b = 0; b < ND_ARRAY_LEN(heights); b++) {
            int w = widths[a], h = heights[b];
            int ns[] = {0, 1, h / 2, h - 1, h};
            int8_t *bits = malloc((size_t)w * h);
            fill_rows(bits, w, h);
            for (size_t c = 0; c < ND_ARRAY_LEN(ns); c++)
                check_image(bits, w, ns[c], h, "random");
            /* every pixel one value: the longest runs */
            for (int v = -1; v <= 1; v++) {
                memset(bits, v, (size_t)w * h);
                check_image(bits, w, h, h, "uniform");
            }
            free(bits);
        }
    /* a NetDiffusion-sized image of only padding, and one without */
    int8_t *bits = malloc(1088 * 1024);
    fill_rows(bits, 1088, 1024);
    check_image(bits, 1088, 0, 1024, "padding only");
    check_image(bits, 1088, 1024, 1024, "no padding");
    free(bits);
}

/* Through the layout: the fast path's PNG holds nd_image_from_rows' pixels,
 * timing columns included, with and without padding. */
static void test_layout_with_timing(void)
{
    nd_rng_state = nd_test_seed() + 1;
    nd_err err;
    const int budgets[] = {50, 23};
    for (size_t k = 0; k < ND_ARRAY_LEN(budgets); k++) {
        nd_layout l;
        CHECK_OK(nd_layout_init(&l, budgets[k], 11, 5, &err), &err);
        nd_rows t;
        CHECK_OK(nd_rows_init(&t, 0, 40, &err), &err);
        for (int r = 0; r < 40; r++) {
            int8_t *row = nd_rows_push(&t, &err);
            for (int c = 0; c < ND_HDR_BITS; c++)
                row[c] = (int8_t)((int)(nd_rnd() % 3) - 1);
            t.gap_us[r] = r == 0 ? 0 : (int64_t)(nd_rnd() % 9000000);
        }
        int8_t *bits = malloc((size_t)l.width * l.packets);
        int n = nd_image_bits_from_rows(&l, &t, bits);
        CHECK_EQ_INT(n, t.n < l.packets ? t.n : l.packets);
        uint8_t *want = malloc((size_t)l.width * l.packets * 3), *back = NULL;
        nd_image_from_rows(&l, &t, want);
        char png[] = "/tmp/ndtest_lay_XXXXXX";
        int fd = mkstemp(png);
        close(fd);
        CHECK_OK(nd_png_write_bits(png, bits, l.width, n, l.packets, &err), &err);
        int w, h;
        CHECK_OK(nd_png_read(png, &back, &w, &h, &err), &err);
        CHECKF(back && w == l.width && h == l.packets &&
                   !memcmp(back, want, (size_t)w * h * 3),
               "budget %d: pixels differ from nd_image_from_rows", l.packets);
        unlink(png);
        free(back);
        free(want);
        free(bits);
        nd_rows_free(&t);
    }
}

/* NetDiffusion's own fine-tune image, written by the fast path from its
 * nPrint, is their published PNG pixel for pixel. */
static void test_netdiffusion_png(void)
{
    nd_err err;
    nd_rows t;
    CHECK_OK(nd_csv_read(nd_td("nprint/netdiffusion_netflix_01.nprint.gz"), &t, &err), &err);
    nd_layout l;
    nd_layout_netdiffusion(&l, 1024);
    int8_t *bits = malloc((size_t)l.width * l.packets);
    int n = nd_image_bits_from_rows(&l, &t, bits);
    char png[] = "/tmp/ndtest_ndf_XXXXXX";
    int fd = mkstemp(png);
    close(fd);
    CHECK_OK(nd_png_write_bits(png, bits, l.width, n, l.packets, &err), &err);
    uint8_t *ours = NULL, *theirs = NULL;
    int w1, h1, w2, h2;
    CHECK_OK(nd_png_read(png, &ours, &w1, &h1, &err), &err);
    CHECK_OK(nd_png_read(nd_td("nprint/netdiffusion_netflix_01_finetune.png"), &theirs, &w2, &h2, &err),
             &err);
    CHECKF(ours && theirs && w1 == w2 && h1 == h2 && !memcmp(ours, theirs, (size_t)w1 * h1 * 3),
           "our PNG of netflix_01 differs from NetDiffusion's");
    unlink(png);
    free(ours);
    free(theirs);
    free(bits);
    nd_rows_free(&t);
}

/* The deflate block writer on its own: random literals and matches (every
 * length, distances up to 32768), counts skewed enough to need the code
 * length limit, once and repeated, inflate to the bytes they stand for. */
static void test_deflate_tokens(void)
{
    nd_rng_state = nd_test_seed() + 2;
    enum { MAXB = 1 << 21 };
    uint8_t *want = malloc(MAXB), *got = malloc(MAXB);
    uint32_t *tok = malloc(sizeof *tok * MAXB);
    for (int round = 0; round < 4; round++) {
        size_t n = 0, nb = 0;
        /* literal i about fib(i) times: a Huffman tree deeper than 15 */
        uint32_t fa = 1, fb = 1;
        for (int s = 0; s < 26 && round % 2 == 0; s++) {
            for (uint32_t k = 0; k < fa && nb < MAXB / 4; k++) {
                tok[n++] = (uint32_t)(s * 7);
                want[nb++] = (uint8_t)(s * 7);
            }
            uint32_t t = fa + fb;
            fa = fb;
            fb = t;
        }
        while (nb < MAXB / 2) {
            if (nb == 0 || nd_rnd() % 3 == 0) {
                uint8_t v = (uint8_t)nd_rnd();
                tok[n++] = v;
                want[nb++] = v;
                continue;
            }
            int len = 3 + (int)(nd_rnd() % 256);
            size_t maxd = nb < 32768 ? nb : 32768;
            int dist = (int)(nd_rnd() % 2 ? 1 + nd_rnd() % maxd : 1 + nd_rnd() % (maxd < 8 ? maxd : 8));
            tok[n++] = nd_tok_match(len, dist);
            for (int i = 0; i < len; i++, nb++)
                want[nb] = want[nb - (size_t)dist];
        }
        nd_bitbuf b = {0};
        CHECK(nd_bits_reserve(&b, 16) == 0);
        nd_bits_put(&b, 0x0178, 16);
        CHECK(nd_deflate_block(&b, tok, n, 1, 0) == 0);
        /* a second block: a self-contained token list (a literal, then
         * distance-1 copies of it) repeated many times */
        uint32_t rep[3] = {0x5a, nd_tok_match(258, 1), nd_tok_match(17, 1)};
        uint32_t times = 1 + (uint32_t)(nd_rnd() % 300);
        CHECK(nd_deflate_block(&b, rep, 3, times, 1) == 0);
        for (uint32_t r = 0; r < times; r++)
            for (int i = 0; i < 1 + 258 + 17; i++)
                want[nb++] = 0x5a;
        CHECK(nd_bits_align(&b) == 0);
        uLong ad = adler32(adler32(0, NULL, 0), want, (uInt)nb);
        CHECK(nd_bits_reserve(&b, 4) == 0);
        for (int i = 3; i >= 0; i--)
            b.p[b.n++] = (uint8_t)(ad >> (8 * i));
        uLongf gn = MAXB;
        int zr = uncompress(got, &gn, b.p, (uLong)b.n);
        CHECKF(zr == Z_OK && gn == nb && !memcmp(got, want, nb),
               "round %d: inflate %d, %lu of %zu bytes", round, zr, (unsigned long)gn, nb);
        free(b.p);
    }
    free(want);
    free(got);
    free(tok);
}

/* nd_flow_pngs (images from packets, files on a writer thread) writes the
 * bytes of the long way: nd_flow_rows -> nd_image_bits_from_rows ->
 * nd_png_write_bits, for every flow of real captures, several budgets
 * (padding blocks of many heights, the memo reused across them) and timing
 * columns. */
typedef struct {
    nd_flow_pngs *w;
    const nd_layout *l;
    char dir[64];
    int flows, files, differ;
    nd_err err;
} pngs_ctx;

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *b = NULL;
    size_t cap = 0;
    *n = 0;
    for (;;) {
        if (*n == cap && !(b = realloc(b, cap = cap * 2 + 4096)))
            break;
        size_t k = fread(b + *n, 1, cap - *n, f);
        if (!k)
            break;
        *n += k;
    }
    fclose(f);
    return b;
}

static nd_status pngs_sink(void *ctx, const nd_flow *f, nd_err *err)
{
    pngs_ctx *c = ctx;
    char fast[128], slow[128];
    /* named by arrival: flow ids start again with each capture */
    snprintf(fast, sizeof fast, "%s/f%d.png", c->dir, c->flows);
    snprintf(slow, sizeof slow, "%s/s%d.png", c->dir, c->flows);
    int rows;
    nd_status st = nd_flow_pngs_put(c->w, f, fast, &rows, err);
    if (st)
        return st;
    nd_rows t;
    if ((st = nd_flow_rows(f, 0, &t, err)))
        return st;
    int8_t *bits = malloc((size_t)c->l->width * (size_t)(t.n > 0 ? t.n : 1));
    int n = nd_image_bits_from_rows(c->l, &t, bits);
    if (n != rows)
        c->differ++;
    if (n > 0)
        st = nd_png_write_bits(slow, bits, c->l->width, n, c->l->packets, err);
    free(bits);
    nd_rows_free(&t);
    c->flows++;
    c->files += n > 0;
    return st;
}

static void test_flow_pngs_same_bytes(void)
{
    const char *caps[] = {"apps/netflix/ndpi_netflix__netflix.pcap",
                          "protocols/dns/dpkt_examples_data_dns_icmp.pcap",
                          "apps/meet/ndpi_stun_google_meet__meet.pcapng"};
    const struct { int packets, timing; } lay[] = {{1024, 0}, {40, 4}, {3, 0}};
    nd_err err;
    for (size_t k = 0; k < ND_ARRAY_LEN(lay); k++) {
        nd_layout l;
        CHECK_OK(nd_layout_init(&l, lay[k].packets, lay[k].timing, 8, &err), &err);
        pngs_ctx c = {.l = &l};
        snprintf(c.dir, sizeof c.dir, "/tmp/ndtest_pngs_XXXXXX");
        CHECK(mkdtemp(c.dir) != NULL);
        CHECK_OK(nd_flow_pngs_new(&l, &c.w, &err), &err);
        nd_flow_opts o;
        nd_flow_opts_init(&o);
        o.max_packets = l.packets;
        for (size_t i = 0; i < ND_ARRAY_LEN(caps); i++)
            CHECK_OK(nd_flows_from_capture(nd_td(caps[i]), &o, pngs_sink, &c, NULL, &err), &err);
        uint64_t written = 0;
        CHECK_OK(nd_flow_pngs_flush(c.w, &written, &err), &err);
        nd_flow_pngs_free(c.w);
        CHECKF(c.differ == 0, "K %d: %d flows with another row count", l.packets, c.differ);
        CHECKF(written == (uint64_t)c.files && c.files > 20, "K %d: %llu of %d files written",
               l.packets, (unsigned long long)written, c.files);
        int same = 0;
        for (int id = 0; id < c.flows; id++) {
            char fast[128], slow[128];
            snprintf(fast, sizeof fast, "%s/f%d.png", c.dir, id);
            snprintf(slow, sizeof slow, "%s/s%d.png", c.dir, id);
            size_t na = 0, nb = 0;
            uint8_t *a = slurp(fast, &na), *b = slurp(slow, &nb);
            CHECKF(!a == !b, "K %d flow %d: one file of two", l.packets, id);
            if (a && b && na == nb && !memcmp(a, b, na))
                same++;
            free(a);
            free(b);
            unlink(fast);
            unlink(slow);
        }
        CHECKF(same == c.files, "K %d: %d of %d files the same bytes", l.packets, same, c.files);
        rmdir(c.dir);
    }
}

/* A file that cannot be made is reported once, naming it, and the writer
 * goes on after the flush. */
static void test_flow_pngs_errors(void)
{
    nd_err err = {{0}};
    nd_layout l;
    nd_layout_netdiffusion(&l, 16);
    nd_flow_pngs *w;
    CHECK_OK(nd_flow_pngs_new(&l, &w, &err), &err);
    uint8_t pkt[40] = {0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
                       0x30, 0x39, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff};
    nd_flow_pkt p = {.ts_sec = 1, .len = sizeof pkt, .wirelen = sizeof pkt, .data = pkt};
    nd_flow f = {.n = 1, .pkts = &p};
    int rows;
    nd_status st = nd_flow_pngs_put(w, &f, "/nonexistent/dir/a.png", &rows, &err);
    CHECK_EQ_INT(rows, 1);
    if (!st)
        st = nd_flow_pngs_flush(w, NULL, &err);
    CHECKF(st == ND_EIO && strstr(err.msg, "/nonexistent/dir/a.png"), "status %d: %s", st, err.msg);
    CHECK_OK(nd_flow_pngs_flush(w, NULL, &err), &err);
    char path[] = "/tmp/ndtest_pngsok_XXXXXX";
    close(mkstemp(path));
    uint64_t written = 0;
    CHECK_OK(nd_flow_pngs_put(w, &f, path, &rows, &err), &err);
    CHECK_OK(nd_flow_pngs_flush(w, &written, &err), &err);
    CHECK(written == 1);
    uint8_t *rgb = NULL;
    int iw, ih;
    CHECK_OK(nd_png_read(path, &rgb, &iw, &ih, &err), &err);
    CHECK(iw == l.width && ih == 16);
    free(rgb);
    unlink(path);
    nd_flow zero = {.n = 0};
    CHECK_OK(nd_flow_pngs_put(w, &zero, "/nonexistent/b.png", &rows, &err), &err);
    CHECK_EQ_INT(rows, 0);
    nd_flow_pngs_free(w);
}

ND_TEST_MAIN(ND_TEST(test_sizes_and_padding), ND_TEST(test_layout_with_timing),
             ND_TEST(test_netdiffusion_png), ND_TEST(test_deflate_tokens),
             ND_TEST(test_flow_pngs_same_bytes), ND_TEST(test_flow_pngs_errors))
