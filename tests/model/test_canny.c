/* tests/model/test_canny.c - sd_canny against cv2.Canny on real flow images
 * (netdiff encode --images, 1088x128) and a synthetic one
 * (tests/fixtures/model/canny/, made by train/make_model_fixtures.py). */
#include "codec/codec.h"
#include "model/sd.h"
#include "tests/harness.h"

#define FX "tests/fixtures/model/canny/"

static uint8_t *load(const char *name, int *w, int *h)
{
    char path[256];
    snprintf(path, sizeof path, FX "%s.png", name);
    uint8_t *rgb = NULL;
    nd_err err = {{0}};
    nd_status st = nd_png_read(path, &rgb, w, h, &err);
    CHECKF(st == ND_OK, "%s: %s", path, err.msg);
    return st == ND_OK ? rgb : NULL;
}

/* compares sd_canny(in) with the expected 0/255 map; returns differing pixels */
static long compare(const char *in_name, int channels, int lo, int hi, const char *want_name,
                    long *edges_out)
{
    int w, h, ww, wh;
    uint8_t *in = load(in_name, &w, &h), *want = load(want_name, &ww, &wh);
    long diff = -1;
    if (in && want && w == ww && h == wh) {
        uint8_t *src = in;
        if (channels == 1) { /* the grey PNG comes back as RGB: take R */
            src = malloc((size_t)w * h);
            for (size_t i = 0; i < (size_t)w * h; i++)
                src[i] = in[3 * i];
        }
        uint8_t *e = malloc((size_t)w * h);
        nd_err err;
        CHECK_OK(sd_canny(src, w, h, channels, (size_t)w * channels, lo, hi, e, &err), &err);
        diff = 0;
        long edges = 0;
        for (size_t i = 0; i < (size_t)w * h; i++) {
            diff += e[i] != want[3 * i];
            edges += want[3 * i] != 0;
            CHECK(e[i] == 0 || e[i] == 255);
        }
        *edges_out = edges;
        printf("    %-8s %d ch %3d/%3d: %dx%d, %ld edge pixels, %ld differ\n", in_name, channels, lo,
               hi, w, h, edges, diff);
        free(e);
        if (src != in)
            free(src);
    }
    free(in);
    free(want);
    return diff;
}

static void test_vs_opencv(void)
{
    const char *names[] = {"flow0", "flow1", "flow2", "synth"};
    for (size_t k = 0; k < ND_ARRAY_LEN(names); k++) {
        char want[64], grey[64];
        long edges = 0;
        snprintf(want, sizeof want, "%s_rgb_100_200", names[k]);
        CHECK_EQ_INT(compare(names[k], 3, 100, 200, want, &edges), 0);
        CHECK(edges > 100); /* the fixture has edges to get wrong */
        snprintf(want, sizeof want, "%s_rgb_50_120", names[k]);
        CHECK_EQ_INT(compare(names[k], 3, 50, 120, want, &edges), 0);
        snprintf(grey, sizeof grey, "%s_grey", names[k]);
        snprintf(want, sizeof want, "%s_grey_100_200", names[k]);
        CHECK_EQ_INT(compare(grey, 1, 100, 200, want, &edges), 0);
    }
}

static void test_blur(void)
{
    const char *names[] = {"flow0", "flow1", "flow2", "synth"};
    for (size_t k = 0; k < ND_ARRAY_LEN(names); k++) {
        char nb[64];
        int w, h, bw, bh, ew, eh;
        snprintf(nb, sizeof nb, "%s_blur", names[k]);
        uint8_t *in = load(names[k], &w, &h), *want = load(nb, &bw, &bh);
        snprintf(nb, sizeof nb, "%s_blur_100_200", names[k]);
        uint8_t *want_e = load(nb, &ew, &eh);
        if (in && want && want_e && w == bw && h == bh && w == ew && h == eh) {
            size_t n = (size_t)w * h;
            uint8_t *b = malloc(3 * n), *e = malloc(n);
            nd_err err;
            CHECK_OK(sd_gaussian_blur5(in, w, h, 3, 3 * (size_t)w, 1.4, b, &err), &err);
            long diff = 0, ediff = 0, changed = 0;
            for (size_t i = 0; i < 3 * n; i++) {
                diff += b[i] != want[i];
                changed += b[i] != in[i];
            }
            CHECK_OK(sd_canny(b, w, h, 3, 3 * (size_t)w, 100, 200, e, &err), &err);
            for (size_t i = 0; i < n; i++)
                ediff += e[i] != want_e[3 * i];
            printf("    %-6s blur: %ld of %zu bytes differ from cv2.GaussianBlur (%ld changed), "
                   "canny %ld differ\n", names[k], diff, 3 * n, changed, ediff);
            CHECK(changed > 0);
            CHECK_EQ_INT(diff, 0);
            CHECK_EQ_INT(ediff, 0);
            free(b);
            free(e);
        }
        free(in);
        free(want);
        free(want_e);
    }
    nd_err err;
    uint8_t one = 9, o = 0;
    CHECK_OK(sd_gaussian_blur5(&one, 1, 1, 1, 1, 1.4, &o, &err), &err);
    CHECK_EQ_INT(o, 9);
    CHECK_EQ_INT(sd_gaussian_blur5(&one, 1, 1, 1, 1, 0.0, &o, &err), ND_EINVAL);
}

static void test_small_cases(void)
{
    nd_err err;
    uint8_t img[8 * 6], e[8 * 6];
    /* a vertical step edge: edges on the two columns beside it */
    for (int y = 0; y < 6; y++)
        for (int x = 0; x < 8; x++)
            img[y * 8 + x] = x < 4 ? 0 : 200;
    CHECK_OK(sd_canny(img, 8, 6, 1, 8, 100, 200, e, &err), &err);
    int n = 0;
    for (int i = 0; i < 48; i++)
        n += e[i] == 255;
    CHECK(n == 6 && e[3] == 255);
    /* flat image: nothing */
    memset(img, 77, sizeof img);
    CHECK_OK(sd_canny(img, 8, 6, 1, 8, 100, 200, e, &err), &err);
    for (int i = 0; i < 48; i++)
        CHECK(e[i] == 0);
    /* 1x1 and bad arguments */
    CHECK_OK(sd_canny(img, 1, 1, 1, 1, 100, 200, e, &err), &err);
    CHECK_EQ_INT(sd_canny(img, 8, 6, 2, 16, 100, 200, e, &err), ND_EINVAL);
    CHECK_EQ_INT(sd_canny(img, 8, 6, 3, 8, 100, 200, e, &err), ND_EINVAL);
    CHECK_EQ_INT(sd_canny(img, 0, 6, 1, 8, 100, 200, e, &err), ND_EINVAL);
    /* hint: [3,h,w] in [0,1] */
    uint8_t ed[4] = {0, 255, 255, 0};
    float hint[12];
    sd_canny_hint(ed, 2, 2, hint);
    CHECK(hint[0] == 0 && hint[1] == 1 && hint[5] == 1 && hint[10] == 1 && hint[11] == 0);
}

ND_TEST_MAIN(ND_TEST(test_vs_opencv), ND_TEST(test_blur), ND_TEST(test_small_cases))
