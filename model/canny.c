/* model/canny.c - cv2.Canny(img, low, high) (apertureSize 3, L2gradient
 * false) as OpenCV computes it, for the ControlNet canny hint. The ControlNet
 * annotators (lllyasviel's gradio demo, Mikubill's sd-webui-controlnet,
 * controlnet_aux CannyDetector) call cv2.Canny on the RGB image itself, with
 * no blur and no grey conversion; OpenCV then takes, per pixel, the channel
 * whose L1 gradient |dx|+|dy| is largest (the first on ties).
 *   Sobel 3x3, BORDER_REPLICATE, integer
 *   non-maximum suppression in 4 directions (tan 22.5 in Q15, OpenCV's
 *   asymmetric > / >= tests), magnitudes outside the image count as 0
 *   hysteresis: a pixel passing NMS with m > low is an edge when 8-connected
 *   through such pixels to one with m > high. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/sd.h"

#define CANNY_SHIFT 15
#define TG22 13573 /* (int)(0.4142135623730950488 * (1 << 15) + 0.5) */

nd_status sd_canny(const uint8_t *img, int w, int h, int channels, size_t stride, int low,
                   int high, uint8_t *edges, nd_err *err)
{
    if (!img || !edges || w < 1 || h < 1 || (channels != 1 && channels != 3) ||
        stride < (size_t)w * (size_t)channels || low < 0 || high < 0)
        return nd_fail(err, ND_EINVAL, "canny: bad arguments");
    if ((size_t)w > 65536 || (size_t)h > 65536)
        return nd_fail(err, ND_EINVAL, "canny: image %dx%d too large", w, h);
    if (low > high) {
        int t = low;
        low = high;
        high = t;
    }
    const size_t W = (size_t)w + 2, npix = (size_t)w * (size_t)h;
    int32_t *mag = calloc(W * ((size_t)h + 2), sizeof *mag); /* zero border */
    int16_t *gx = malloc(npix * sizeof *gx), *gy = malloc(npix * sizeof *gy);
    uint8_t *map = calloc(npix, 1); /* 0 none, 1 candidate, 2 edge */
    int32_t *stack = malloc(npix * sizeof *stack);
    if (!mag || !gx || !gy || !map || !stack) {
        free(mag); free(gx); free(gy); free(map); free(stack);
        return nd_fail(err, ND_ENOMEM, "canny: out of memory");
    }
    for (int y = 0; y < h; y++) {
        const uint8_t *rp = img + (size_t)(y > 0 ? y - 1 : 0) * stride;
        const uint8_t *rc = img + (size_t)y * stride;
        const uint8_t *rn = img + (size_t)(y < h - 1 ? y + 1 : h - 1) * stride;
        for (int x = 0; x < w; x++) {
            size_t l = (size_t)(x > 0 ? x - 1 : 0) * (size_t)channels;
            size_t c = (size_t)x * (size_t)channels;
            size_t r = (size_t)(x < w - 1 ? x + 1 : w - 1) * (size_t)channels;
            int best = -1, bdx = 0, bdy = 0;
            for (int k = 0; k < channels; k++) {
                int dx = (rp[r + k] + 2 * rc[r + k] + rn[r + k]) - (rp[l + k] + 2 * rc[l + k] + rn[l + k]);
                int dy = (rn[l + k] + 2 * rn[c + k] + rn[r + k]) - (rp[l + k] + 2 * rp[c + k] + rp[r + k]);
                int m = abs(dx) + abs(dy);
                if (m > best) {
                    best = m;
                    bdx = dx;
                    bdy = dy;
                }
            }
            size_t i = (size_t)y * (size_t)w + (size_t)x;
            gx[i] = (int16_t)bdx;
            gy[i] = (int16_t)bdy;
            mag[((size_t)y + 1) * W + (size_t)x + 1] = best;
        }
    }
    size_t sp = 0;
    for (int y = 0; y < h; y++) {
        const int32_t *mp = mag + (size_t)y * W + 1, *mc = mp + W, *mn = mc + W;
        for (int x = 0; x < w; x++) {
            int m = mc[x];
            if (m <= low)
                continue;
            size_t i = (size_t)y * (size_t)w + (size_t)x;
            int xs = gx[i], ys = gy[i];
            int ax = abs(xs);
            int64_t ay = (int64_t)abs(ys) << CANNY_SHIFT;
            int64_t tg22x = (int64_t)ax * TG22;
            bool keep;
            if (ay < tg22x) {
                keep = m > mc[x - 1] && m >= mc[x + 1];
            } else {
                int64_t tg67x = tg22x + ((int64_t)ax << (CANNY_SHIFT + 1));
                if (ay > tg67x) {
                    keep = m > mp[x] && m >= mn[x];
                } else {
                    int s = (xs ^ ys) < 0 ? -1 : 1;
                    keep = m > mp[x - s] && m > mn[x + s];
                }
            }
            if (!keep)
                continue;
            if (m > high) {
                map[i] = 2;
                stack[sp++] = (int32_t)i;
            } else {
                map[i] = 1;
            }
        }
    }
    while (sp) {
        int32_t i = stack[--sp];
        int y = i / w, x = i % w;
        for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++) {
                int yy = y + dy, xx = x + dx;
                if (yy < 0 || yy >= h || xx < 0 || xx >= w)
                    continue;
                int32_t j = yy * w + xx;
                if (map[j] == 1) {
                    map[j] = 2;
                    stack[sp++] = j;
                }
            }
    }
    for (size_t i = 0; i < npix; i++)
        edges[i] = map[i] == 2 ? 255 : 0;
    free(mag); free(gx); free(gy); free(map); free(stack);
    return ND_OK;
}

void sd_canny_hint(const uint8_t *edges, int w, int h, float *hint)
{
    size_t n = (size_t)w * (size_t)h;
    for (size_t i = 0; i < n; i++) {
        float v = (float)edges[i] / 255.0f;
        hint[i] = hint[n + i] = hint[2 * n + i] = v;
    }
}

/* OpenCV's BORDER_REFLECT_101 index */
static int reflect101(int i, int n)
{
    if (n == 1)
        return 0;
    while (i < 0 || i >= n) {
        if (i < 0)
            i = -i;
        if (i >= n)
            i = 2 * n - 2 - i;
    }
    return i;
}

nd_status sd_gaussian_blur5(const uint8_t *img, int w, int h, int channels, size_t stride,
                            double sigma, uint8_t *out, nd_err *err)
{
    if (!img || !out || w < 1 || h < 1 || channels < 1 || channels > 4 || !(sigma > 0) ||
        stride < (size_t)w * (size_t)channels || (size_t)w > 65536 || (size_t)h > 65536)
        return nd_fail(err, ND_EINVAL, "blur: bad arguments");
    /* cv2.GaussianBlur's bit-exact 8-bit path: the kernel in Q8 summing to
     * exactly 256 (the centre takes the remainder), a horizontal pass in Q8,
     * a vertical one in Q16, rounded half up */
    double g[3], sum = 0;
    for (int i = 0; i < 3; i++) {
        double x = i - 2;
        g[i] = exp(-x * x / (2 * sigma * sigma));
        sum += g[i] * (i < 2 ? 2 : 1);
    }
    uint32_t k[5];
    k[0] = k[4] = (uint32_t)lround(g[0] / sum * 256);
    k[1] = k[3] = (uint32_t)lround(g[1] / sum * 256);
    k[2] = 256 - 2 * (k[0] + k[1]);
    const size_t rowlen = (size_t)w * (size_t)channels;
    uint32_t *hrow = malloc(rowlen * (size_t)h * sizeof *hrow);
    if (!hrow)
        return nd_fail(err, ND_ENOMEM, "blur: out of memory");
    for (int y = 0; y < h; y++) {
        const uint8_t *r = img + (size_t)y * stride;
        for (int x = 0; x < w; x++)
            for (int c = 0; c < channels; c++) {
                uint32_t acc = 0;
                for (int t = 0; t < 5; t++)
                    acc += k[t] * r[(size_t)reflect101(x + t - 2, w) * (size_t)channels + (size_t)c];
                hrow[(size_t)y * rowlen + (size_t)x * (size_t)channels + (size_t)c] = acc;
            }
    }
    for (int y = 0; y < h; y++)
        for (size_t j = 0; j < rowlen; j++) {
            uint64_t acc = 0;
            for (int t = 0; t < 5; t++)
                acc += (uint64_t)k[t] * hrow[(size_t)reflect101(y + t - 2, h) * rowlen + j];
            uint64_t v = (acc + 0x8000) >> 16;
            out[(size_t)y * rowlen + j] = (uint8_t)(v > 255 ? 255 : v);
        }
    free(hrow);
    return ND_OK;
}
