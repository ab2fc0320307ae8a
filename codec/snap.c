/* codec/snap.c - generated pixels back to bits, with a confidence. */
#include "codec/codec.h"

#include <math.h>

/* Nearest of red (1), green (0), blue (-1); confidence from the two
 * smallest distances: d2 / (d1 + d2), 1 on an exact colour, 0.5 halfway. */
static inline void nearest(float r, float g, float b, float one, int8_t *bit, float *conf)
{
    float dr = (r - one) * (r - one) + g * g + b * b;
    float dg = r * r + (g - one) * (g - one) + b * b;
    float db = r * r + g * g + (b - one) * (b - one);
    dr = sqrtf(dr);
    dg = sqrtf(dg);
    db = sqrtf(db);
    float d1, d2;
    if (dr <= dg && dr <= db) {
        *bit = 1;
        d1 = dr;
        d2 = dg < db ? dg : db;
    } else if (dg <= db) {
        *bit = 0;
        d1 = dg;
        d2 = dr < db ? dr : db;
    } else {
        *bit = ND_VACANT;
        d1 = db;
        d2 = dr < dg ? dr : dg;
    }
    if (conf)
        *conf = d1 + d2 > 0 ? d2 / (d1 + d2) : 0.5f;
}

/* NetDiffusion's color_processor.py on 0..255 values (see codec.h). */
static inline int8_t netdiffusion_rule(float r, float g, float b)
{
    if (r > 0 && g < 160 && b < 100)
        return 1;
    if (r >= g && r >= b)
        return 1;
    if (g >= b)
        return 0;
    return ND_VACANT;
}

void nd_snap_u8(nd_snap_mode m, const uint8_t *rgb, size_t n_pixels, int8_t *bits, float *conf)
{
    for (size_t i = 0; i < n_pixels; i++) {
        float r = rgb[3 * i], g = rgb[3 * i + 1], b = rgb[3 * i + 2];
        float c;
        nearest(r, g, b, 255.0f, &bits[i], &c);
        if (m == ND_SNAP_NETDIFFUSION)
            bits[i] = netdiffusion_rule(r, g, b);
        if (conf)
            conf[i] = c;
    }
}

void nd_snap_f32(nd_snap_mode m, const float *rgb, size_t n_pixels, int8_t *bits, float *conf)
{
    for (size_t i = 0; i < n_pixels; i++) {
        float r = rgb[3 * i], g = rgb[3 * i + 1], b = rgb[3 * i + 2];
        r = r < 0 ? 0 : r > 1 ? 1 : r;
        g = g < 0 ? 0 : g > 1 ? 1 : g;
        b = b < 0 ? 0 : b > 1 ? 1 : b;
        float c;
        nearest(r, g, b, 1.0f, &bits[i], &c);
        if (m == ND_SNAP_NETDIFFUSION)
            bits[i] = netdiffusion_rule(floorf(r * 255.0f + 0.5f), floorf(g * 255.0f + 0.5f),
                                        floorf(b * 255.0f + 0.5f));
        if (conf)
            conf[i] = c;
    }
}
