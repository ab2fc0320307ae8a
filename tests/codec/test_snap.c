/* tests/codec/test_snap.c - colour snapping: the rules, the confidence
 * against its definition, and every entry point (u8, f32 interleaved,
 * planar f32, whole planar images in f32 and f16, straight to rows)
 * agreeing bit for bit. */
#include "codec/codec.h"
#include "tests/harness.h"

/* Reference confidence, written from its definition in codec.h: the
 * largest clipped channel minus the median one, scaled to 0..255. */
static int ref_conf(float r, float g, float b)
{
    float c[3] = {r, g, b};
    for (int i = 0; i < 3; i++)
        c[i] = c[i] < 0 ? 0 : c[i] > 1 ? 1 : c[i] != c[i] ? 0 : c[i];
    for (int i = 0; i < 2; i++) /* sort descending */
        for (int j = 0; j < 2 - i; j++)
            if (c[j] < c[j + 1]) {
                float t = c[j];
                c[j] = c[j + 1];
                c[j + 1] = t;
            }
    return (int)((c[0] - c[1]) * 255.0f + 0.5f);
}

/* IEEE half -> float, the textbook way (an independent reference). */
static float ref_half(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? INFINITY : ldexpf((float)(1024 + m), e - 25);
    return h & 0x8000 ? -v : v;
}

static void test_snap_rules(void)
{
    const uint8_t px[] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 150, 90, 0, 0, 0,
                          200, 40, 30, 100, 100, 100, 20, 30, 200};
    int8_t b[8], nd[8];
    nd_conf conf[8];
    nd_snap_u8(ND_SNAP_NEAREST, px, 8, b, conf);
    nd_snap_u8(ND_SNAP_NETDIFFUSION, px, 8, nd, NULL);
    CHECK(b[0] == 1 && b[1] == 0 && b[2] == ND_VACANT);
    CHECK(conf[0] == ND_CONF_SURE && conf[1] == ND_CONF_SURE && conf[2] == ND_CONF_SURE);
    CHECK(b[3] == 0);          /* (10,150,90) is nearest green ...            */
    CHECK(nd[3] == 1);         /* ... but NetDiffusion's rule calls it red    */
    CHECK_EQ_INT(conf[3], 60); /* green beat blue by 60                       */
    CHECK(nd[4] == 1);         /* black: ties go to red                        */
    CHECK_EQ_INT(conf[4], 0);
    CHECK(b[5] == 1 && nd[5] == 1);
    CHECK_EQ_INT(conf[5], 160);
    CHECK_EQ_INT(conf[6], 0);  /* grey: a tie */
    CHECK(b[7] == ND_VACANT && nd[7] == ND_VACANT);
    CHECK_EQ_INT(conf[7], 170);
    const float f[] = {0.9f, 0.1f, 0.05f, -0.2f, 1.3f, 0.0f};
    int8_t fb[2];
    nd_conf fq[2];
    nd_snap_f32(ND_SNAP_NEAREST, f, 2, fb, fq);
    CHECK(fb[0] == 1 && fb[1] == 0);
    CHECK_EQ_INT(fq[0], 204); /* 0.9 - 0.1 */
    CHECK_EQ_INT(fq[1], 255); /* clipped: exactly green */
    CHECK(nd_conf_weight(0) == 0.5f && nd_conf_weight(ND_CONF_SURE) == 1.0f);
}

/* On the line between two colours the weight 0.5 + q/510 is the old
 * distance ratio d2 / (d1 + d2), to the byte's resolution. */
static void test_snap_conf_is_distance_ratio(void)
{
    for (int k = 0; k <= 255; k++) {
        uint8_t px[3] = {(uint8_t)(255 - k), (uint8_t)k, 0};
        int8_t b;
        nd_conf q;
        nd_snap_u8(ND_SNAP_NEAREST, px, 1, &b, &q);
        double t = k / 255.0, d_red = t * sqrt(2.0), d_green = (1 - t) * sqrt(2.0);
        double near = d_red < d_green ? d_red : d_green, far = d_red < d_green ? d_green : d_red;
        double ratio = far / (near + far);
        CHECKF(fabs(nd_conf_weight(q) - ratio) <= 1.0 / 510 + 1e-6, "k %d: %f vs %f", k,
               (double)nd_conf_weight(q), ratio);
        CHECK_EQ_INT(b, k <= 127 ? 1 : 0);
    }
}

/* Every float entry point agrees with the reference confidence and with
 * each other, bit for bit, on random pixels (out-of-range values, ties). */
static void test_snap_planar_matches_interleaved(void)
{
    nd_rng_state = nd_test_seed() + 3;
    enum { N = 4099 };
    float *rgb = malloc(N * 3 * sizeof(float)), *pl = malloc(N * 3 * sizeof(float));
    int8_t *b1 = malloc(N), *b2 = malloc(N);
    nd_conf *c1 = malloc(N), *c2 = malloc(N);
    for (int i = 0; i < N; i++)
        for (int ch = 0; ch < 3; ch++) {
            float v = (float)(nd_rnd() % 1400) / 1000.0f - 0.2f;
            if (i % 7 == 0)
                v = 0.5f; /* a tie of all three */
            if (i % 11 == 0 && ch == 1)
                v = NAN; /* reads as 0 */
            rgb[3 * i + ch] = v;
            pl[ch * N + i] = v;
        }
    for (int mode = 0; mode < 2; mode++) {
        nd_snap_f32((nd_snap_mode)mode, rgb, N, b1, c1);
        nd_snap_planar_f32((nd_snap_mode)mode, pl, N, b2, c2);
        int bad_b = 0, bad_c = 0, bad_ref = 0;
        for (int i = 0; i < N; i++) {
            bad_b += b1[i] != b2[i];
            bad_c += c1[i] != c2[i];
            bad_ref += abs(c1[i] - ref_conf(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2])) > 0;
        }
        CHECK_EQ_INT(bad_b, 0);
        CHECK_EQ_INT(bad_c, 0);
        CHECK_EQ_INT(bad_ref, 0);
    }
    free(rgb); free(pl); free(b1); free(b2); free(c1); free(c2);
}

/* A value near colour ch (0 red, 1 green, 2 blue) with noise, as a half. */
static uint16_t half_near(int ch, int want, uint64_t r)
{
    /* halves in [0, 1): exponent 0..14; near 1: exponent 14, high mantissa */
    if (ch == want)
        return (uint16_t)(14 << 10 | (512 + (r & 511)));
    return (uint16_t)((r % 12) << 10 | ((r >> 8) & 1023));
}

/* Whole images: the flow's end is found (blue padding rows below it get
 * vacant bits and no confidence), and the rows above match the planar
 * path on the same pixels, from f32 and from f16 planes alike. */
static void test_snap_image(void)
{
    nd_rng_state = nd_test_seed() + 5;
    enum { W = 67, H = 40 };
    size_t n = (size_t)W * H;
    uint16_t *h16 = malloc(n * 3 * 2);
    float *f32 = malloc(n * 3 * sizeof(float));
    int8_t *bi = malloc(n), *bp = malloc(n);
    nd_conf *ci = malloc(n), *cp = malloc(n);
    for (int trial = 0; trial < 40; trial++) {
        int rows = trial == 0 ? 0 : trial == 1 ? H : (int)(nd_rnd() % (H + 1));
        for (size_t i = 0; i < n; i++) {
            int y = (int)(i / W);
            int want = y < rows ? (int)(nd_rnd() % 3) : 2; /* padding: blue */
            /* the last flow row: blue but for one pixel, anywhere */
            if (y == rows - 1 && trial % 2)
                want = (int)(i % W) == (int)(trial * 7 % W) ? 0 : 2;
            for (int ch = 0; ch < 3; ch++) {
                uint16_t hv = half_near(ch, want, nd_rnd());
                if (y < rows && nd_rnd() % 97 == 0) /* padding stays blue */
                    hv = (uint16_t)(nd_rnd() % 3 == 0 ? 0x7c00 : nd_rnd() % 2 ? 0xbc00 : 0x3e00);
                h16[(size_t)ch * n + i] = hv; /* +inf, -1, 1.5 now and then */
                f32[(size_t)ch * n + i] = ref_half(hv);
            }
        }
        for (int mode = 0; mode < 2; mode++) {
            nd_snap_planar_f32((nd_snap_mode)mode, f32, n, bp, cp);
            int last = -1;
            for (size_t i = 0; i < n; i++)
                if (bp[i] != ND_VACANT)
                    last = (int)(i / W);
            for (int fmt = 0; fmt < 2; fmt++) {
                memset(ci, 0xee, n);
                int got = nd_snap_image((nd_snap_mode)mode, fmt ? ND_PIX_F16 : ND_PIX_F32,
                                        fmt ? (const void *)h16 : (const void *)f32, W, H, bi, ci);
                CHECKF(got == last + 1, "trial %d mode %d fmt %d: %d rows, want %d", trial, mode,
                       fmt, got, last + 1);
                if (mode == 0 && trial % 2 == 0)
                    CHECK_EQ_INT(got, rows);
                int bad_b = 0, bad_c = 0, conf_written = 0;
                for (size_t i = 0; i < n; i++) {
                    bad_b += bi[i] != bp[i];
                    if ((int)(i / W) < got)
                        bad_c += ci[i] != cp[i];
                    else
                        conf_written += ci[i] != 0xee;
                }
                CHECK_EQ_INT(bad_b, 0);
                CHECK_EQ_INT(bad_c, 0);
                CHECK_EQ_INT(conf_written, 0);
            }
        }
        /* without confidence: the same bits */
        CHECK_EQ_INT(nd_snap_image(ND_SNAP_NEAREST, ND_PIX_F16, h16, W, H, bi, NULL),
                     nd_snap_image(ND_SNAP_NEAREST, ND_PIX_F16, h16, W, H, bp, cp));
        CHECK(memcmp(bi, bp, n) == 0);
    }
    free(h16); free(f32); free(bi); free(bp); free(ci); free(cp);
}

/* nd_snap_rows against the three steps it fuses: nd_snap_image, then
 * nd_rows_from_bits, and each row cell's confidence read from its pixel
 * (ND_CONF_SURE where no pixel shows the cell), on three layouts:
 * NetDiffusion's, one with timing columns, and one that shows the address
 * fields and puts some columns out of row order. Images have padding rows
 * at the bottom, blue rows in the middle, and rows whose network blocks
 * are blue (no address zeros there). */
static void test_snap_rows(void)
{
    nd_rng_state = nd_test_seed() + 9;
    enum { H = 24 };
    nd_layout lays[3];
    nd_layout_netdiffusion(&lays[0], H);
    nd_err err = {{0}};
    CHECK_OK(nd_layout_init(&lays[1], H, 8, 4, &err), &err);
    nd_layout *lc = &lays[2];
    memset(lc, 0, sizeof *lc);
    lc->packets = H;
    for (int c = 0; c < ND_HDR_BITS; c += 1 + (c % 7 == 3)) /* every row column, some skipped */
        lc->bit_cols[lc->n_bit_cols++] = (uint16_t)c;
    for (int x = 40; x < 56; x++) /* two bytes of IPv4 swapped */
        lc->bit_cols[x] = (uint16_t)(x < 48 ? lc->bit_cols[x] + 8 : lc->bit_cols[x] - 8);
    lc->width = lc->n_bit_cols;
    for (int li = 0; li < 3; li++) {
        const nd_layout *l = &lays[li];
        size_t n = (size_t)l->width * H;
        uint16_t *h16 = malloc(n * 3 * 2);
        float *f32 = malloc(n * 3 * sizeof(float));
        int8_t *bits = malloc(n);
        nd_conf *conf = malloc(n), *rc = malloc((size_t)H * ND_HDR_BITS);
        for (int trial = 0; trial < 12; trial++) {
            int rows = trial == 0 ? 0 : trial == 1 ? H : 1 + (int)(nd_rnd() % H);
            for (int y = 0; y < H; y++) {
                int kind = y >= rows ? 2 : (int)(nd_rnd() % 8); /* 2: blue row, 3: blue blocks */
                for (int x = 0; x < l->width; x++) {
                    int c = x < l->n_bit_cols ? l->bit_cols[x] : -1;
                    bool blue = kind == 2 || (kind == 3 && c >= 0 && c < ND_COL_TCP);
                    int want = blue ? 2 : (int)(nd_rnd() % 3);
                    for (int ch = 0; ch < 3; ch++) {
                        size_t i = (size_t)ch * n + (size_t)y * (size_t)l->width + (size_t)x;
                        h16[i] = half_near(ch, want, nd_rnd());
                        f32[i] = ref_half(h16[i]);
                    }
                }
            }
            for (int mode = 0; mode < 2; mode++)
                for (int fmt = 0; fmt < 2; fmt++) {
                    const void *px = fmt ? (const void *)h16 : (const void *)f32;
                    nd_pixfmt pf = fmt ? ND_PIX_F16 : ND_PIX_F32;
                    nd_snap_image((nd_snap_mode)mode, pf, px, l->width, H, bits, conf);
                    nd_rows want, got;
                    CHECK_OK(nd_rows_from_bits(l, bits, &want, &err), &err);
                    memset(rc, 0xee, (size_t)H * ND_HDR_BITS);
                    CHECK_OK(nd_snap_rows((nd_snap_mode)mode, pf, px, l, &got, rc, &err), &err);
                    CHECKF(got.n == want.n, "layout %d trial %d: %d rows, want %d", li, trial,
                           got.n, want.n);
                    int bad_b = 0, bad_g = 0, bad_c = 0, gaps = 0;
                    for (int y = 0; y < got.n && y < want.n; y++) {
                        bad_b += memcmp(nd_rows_at(&got, y), nd_rows_at(&want, y), ND_HDR_BITS) != 0;
                        bad_g += got.gap_us[y] != want.gap_us[y] || got.index[y][0];
                        gaps += want.gap_us[y] >= 0;
                        for (int c = 0; c < ND_HDR_BITS; c++) {
                            int q = ND_CONF_SURE;
                            for (int x = 0; x < l->n_bit_cols; x++)
                                if (l->bit_cols[x] == c)
                                    q = conf[(size_t)y * (size_t)l->width + (size_t)x];
                            bad_c += rc[(size_t)y * ND_HDR_BITS + (size_t)c] != q;
                        }
                    }
                    CHECK_EQ_INT(bad_b, 0);
                    CHECK_EQ_INT(bad_g, 0);
                    CHECK_EQ_INT(bad_c, 0);
                    if (li == 1 && trial == 1)
                        CHECK(gaps > 0); /* the timing columns were read */
                    nd_rows_free(&want);
                    nd_rows_free(&got);
                }
        }
        free(h16); free(f32); free(bits); free(conf); free(rc);
    }
}

ND_TEST_MAIN(ND_TEST(test_snap_rules), ND_TEST(test_snap_conf_is_distance_ratio),
             ND_TEST(test_snap_planar_matches_interleaved), ND_TEST(test_snap_image),
             ND_TEST(test_snap_rows))
