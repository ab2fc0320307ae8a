/* codec/snap.c - generated pixels back to bits, with a confidence. */
/* The per-pixel loops are hot (a 1088x1024 image per flow): codec/module.mk
 * builds this file with -O3 -fno-math-errno -fno-trapping-math so that they
 * vectorise (sqrtf's argument is clamped at 0; nothing here traps). */
#include "codec/codec.h"

static inline float fmax_(float a, float b) { return a > b ? a : b; }
static inline float fmin_(float a, float b) { return a < b ? a : b; }

#include <math.h>

/* Nearest of red (1), green (0), blue (-1). The squared distance to colour
 * c is |p|^2 - 2*one*p_c + one^2, so the nearest colour is simply the largest
 * channel (ties: red, then green), and the runner-up is the middle channel.
 * Confidence from the two distances: d2 / (d1 + d2), 1 on an exact colour,
 * 0.5 halfway between two. Branch-free so the compiler vectorises it. */
static inline void nearest(float r, float g, float b, float one, int8_t *bit, float *conf)
{
    float mx = fmax_(r, fmax_(g, b)), mn = fmin_(r, fmin_(g, b));
    float mid = r + g + b - mx - mn;
    float s = r * r + g * g + b * b + one * one;
    float d1 = sqrtf(fmax_(s - 2 * one * mx, 0.0f));
    float d2 = sqrtf(fmax_(s - 2 * one * mid, 0.0f));
    *bit = (int8_t)(r >= g && r >= b ? 1 : g >= b ? 0 : ND_VACANT);
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

/* Blocks of 256 pixels: a scalar pass finds each pixel's bit and its two
 * squared distances, then a pure float pass (sqrt, divide) that the compiler
 * vectorises turns them into confidences. */
#define SNAP_BLOCK 256
/* AVX2 where the CPU has it (gcc's ifunc clones), SSE2 otherwise. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define ND_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define ND_SIMD_CLONES
#endif

/* No pixel is at distance 0 from two colours, so d1 + d2 > 0; the tiny
 * constant only keeps the division unconditional (and vectorised). */
ND_SIMD_CLONES
static void conf_block(const float *restrict d1sq, const float *restrict d2sq,
                       float *restrict conf, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        float d1 = sqrtf(d1sq[k]), d2 = sqrtf(d2sq[k]);
        conf[k] = d2 / (d1 + d2 + 1e-30f);
    }
}

void nd_snap_u8(nd_snap_mode m, const uint8_t *rgb, size_t n_pixels, int8_t *bits, float *conf)
{
    float d1sq[SNAP_BLOCK], d2sq[SNAP_BLOCK];
    for (size_t i0 = 0; i0 < n_pixels; i0 += SNAP_BLOCK) {
        size_t n = n_pixels - i0 < SNAP_BLOCK ? n_pixels - i0 : SNAP_BLOCK;
        const uint8_t *p = rgb + 3 * i0;
        for (size_t k = 0; k < n; k++) {
            int r = p[3 * k], g = p[3 * k + 1], b = p[3 * k + 2];
            int mx = r > g ? (r > b ? r : b) : (g > b ? g : b);
            int mn = r < g ? (r < b ? r : b) : (g < b ? g : b);
            int mid = r + g + b - mx - mn;
            int sq = r * r + g * g + b * b + 255 * 255;
            d1sq[k] = (float)(sq - 510 * mx);
            d2sq[k] = (float)(sq - 510 * mid);
            int8_t bit = (int8_t)(r >= g && r >= b ? 1 : g >= b ? 0 : ND_VACANT);
            if (m == ND_SNAP_NETDIFFUSION)
                bit = netdiffusion_rule((float)r, (float)g, (float)b);
            bits[i0 + k] = bit;
        }
        if (conf)
            conf_block(d1sq, d2sq, conf + i0, n);
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

ND_SIMD_CLONES
static void planar_bits(const float *restrict R, const float *restrict G,
                        const float *restrict B, size_t n, int8_t *restrict bits)
{
    /* the largest channel wins, ties red then green: 1, 0 or -1; values
     * are clipped to [0, 1] first, as the VAE's output is */
    for (size_t i = 0; i < n; i++) {
        float r = fmin_(fmax_(R[i], 0), 1), g = fmin_(fmax_(G[i], 0), 1),
              b = fmin_(fmax_(B[i], 0), 1);
        int red = (r >= g) & (r >= b);
        int green = (g > r) & (g >= b);
        bits[i] = (int8_t)(red - (1 - red - green));
    }
}

ND_SIMD_CLONES
static void planar_dist(const float *restrict R, const float *restrict G,
                        const float *restrict B, size_t n, float *restrict d1sq,
                        float *restrict d2sq)
{
    for (size_t k = 0; k < n; k++) {
        float r = fmin_(fmax_(R[k], 0), 1), g = fmin_(fmax_(G[k], 0), 1),
              b = fmin_(fmax_(B[k], 0), 1);
        float mx = fmax_(r, fmax_(g, b)), mn = fmin_(r, fmin_(g, b));
        float mid = r + g + b - mx - mn;
        float sq = r * r + g * g + b * b + 1.0f;
        d1sq[k] = fmax_(sq - 2 * mx, 0.0f);
        d2sq[k] = fmax_(sq - 2 * mid, 0.0f);
    }
}

void nd_snap_planar_f32(nd_snap_mode m, const float *planes, size_t n_pixels, int8_t *bits,
                        float *conf)
{
    const float *R = planes, *G = planes + n_pixels, *B = planes + 2 * n_pixels;
    if (m == ND_SNAP_NETDIFFUSION) {
        for (size_t i = 0; i < n_pixels; i++)
            bits[i] = netdiffusion_rule(floorf(fmin_(fmax_(R[i], 0), 1) * 255.0f + 0.5f),
                                        floorf(fmin_(fmax_(G[i], 0), 1) * 255.0f + 0.5f),
                                        floorf(fmin_(fmax_(B[i], 0), 1) * 255.0f + 0.5f));
    } else {
        planar_bits(R, G, B, n_pixels, bits);
    }
    if (!conf)
        return;
    for (size_t i0 = 0; i0 < n_pixels; i0 += SNAP_BLOCK) {
        size_t n = n_pixels - i0 < SNAP_BLOCK ? n_pixels - i0 : SNAP_BLOCK;
        float d1sq[SNAP_BLOCK], d2sq[SNAP_BLOCK];
        planar_dist(R + i0, G + i0, B + i0, n, d1sq, d2sq);
        conf_block(d1sq, d2sq, conf + i0, n);
    }
}
