/* codec/snap.c - generated pixels back to bits, with a confidence.
 *
 * The per-pixel loops are hot (a 1088x1024 image per flow, 13 MB of f32
 * planes, more than the bits, the repair and the pcap together): one pass
 * per pixel computes the bit and the confidence with min / max / compare
 * only, so that it vectorises and runs at the speed memory delivers the
 * planes. codec/module.mk builds this file with -O3 -fno-math-errno
 * -fno-trapping-math (nothing here traps). */
#include "codec/codec.h"

#include <string.h>

static inline float fmax_(float a, float b) { return a > b ? a : b; }
static inline float fmin_(float a, float b) { return a < b ? a : b; }
/* A VAE's output leaves [0, 1] a little; NaN reads as 0. */
static inline float clip01(float v) { return fmin_(fmax_(v, 0.0f), 1.0f); }

/* IEEE half -> float with integer ops and one multiply (vectorises where
 * a conversion instruction may be missing): the half's exponent and
 * mantissa moved to a float's place read as 2^-112 times the value, for
 * normal and subnormal halves alike. Inf / NaN become large finite values,
 * which clip01 makes 1 or 0. */
static inline float half_to_float(uint16_t h)
{
    uint32_t u = (uint32_t)(h & 0x7fff) << 13 | (uint32_t)(h & 0x8000) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f * 0x1p112f;
}

/* Nearest of red (1), green (0), blue (-1) for clipped channels, and the
 * confidence: the squared distance to colour c is |p|^2 - 2 p_c + 1, so the
 * nearest colour is the largest channel (ties: red, then green) and the
 * margin max - median orders pixels as the distances do (codec.h). */
static inline void nearest(float r, float g, float b, int8_t *bit, nd_conf *q)
{
    int red = (r >= g) & (r >= b);
    int green = (g > r) & (g >= b);
    *bit = (int8_t)(red - (1 - red - green));
    float mx = fmax_(r, fmax_(g, b));
    float med = fmax_(fmin_(r, g), fmin_(fmax_(r, g), b));
    *q = (nd_conf)(int)((mx - med) * 255.0f + 0.5f);
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
static inline float to255(float v) { return (float)(int)(clip01(v) * 255.0f + 0.5f); }

/* AVX2 where the CPU has it (gcc's ifunc clones), SSE2 otherwise. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define ND_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define ND_SIMD_CLONES
#endif

ND_SIMD_CLONES
static void run_f32(const float *restrict R, const float *restrict G, const float *restrict B,
                    size_t n, int8_t *restrict bits, nd_conf *restrict conf)
{
    for (size_t i = 0; i < n; i++)
        nearest(clip01(R[i]), clip01(G[i]), clip01(B[i]), &bits[i], &conf[i]);
}

ND_SIMD_CLONES
static void run_f16(const uint16_t *restrict R, const uint16_t *restrict G,
                    const uint16_t *restrict B, size_t n, int8_t *restrict bits,
                    nd_conf *restrict conf)
{
    for (size_t i = 0; i < n; i++)
        nearest(clip01(half_to_float(R[i])), clip01(half_to_float(G[i])),
                clip01(half_to_float(B[i])), &bits[i], &conf[i]);
}

/* Pixels [off, off + n) of a planar image whose planes hold `plane`
 * pixels each. conf may be NULL (a scratch block takes it). */
#define SNAP_BLOCK 4096
static void snap_run(nd_snap_mode m, nd_pixfmt fmt, const void *planes, size_t plane,
                     size_t off, size_t n, int8_t *bits, nd_conf *conf)
{
    nd_conf scratch[SNAP_BLOCK];
    for (size_t i0 = 0; i0 < n; i0 += SNAP_BLOCK) {
        size_t k = n - i0 < SNAP_BLOCK ? n - i0 : SNAP_BLOCK, at = off + i0;
        nd_conf *q = conf ? conf + i0 : scratch;
        if (fmt == ND_PIX_F16) {
            const uint16_t *p = planes;
            run_f16(p + at, p + plane + at, p + 2 * plane + at, k, bits + i0, q);
        } else {
            const float *p = planes;
            run_f32(p + at, p + plane + at, p + 2 * plane + at, k, bits + i0, q);
        }
        if (m != ND_SNAP_NETDIFFUSION)
            continue;
        for (size_t j = 0; j < k; j++) {
            float c[3];
            for (int ch = 0; ch < 3; ch++)
                c[ch] = fmt == ND_PIX_F16
                            ? half_to_float(((const uint16_t *)planes)[ch * plane + at + j])
                            : ((const float *)planes)[ch * plane + at + j];
            bits[i0 + j] = netdiffusion_rule(to255(c[0]), to255(c[1]), to255(c[2]));
        }
    }
}

void nd_snap_planar_f32(nd_snap_mode m, const float *planes, size_t n_pixels, int8_t *bits,
                        nd_conf *conf)
{
    snap_run(m, ND_PIX_F32, planes, n_pixels, 0, n_pixels, bits, conf);
}

int nd_snap_image(nd_snap_mode m, nd_pixfmt fmt, const void *planes, int width, int height,
                  int8_t *bits, nd_conf *conf)
{
    size_t w = (size_t)width, plane = w * (size_t)height;
    /* from the bottom: padding rows only need their (vacant) bits */
    int y = height - 1;
    for (; y >= 0; y--) {
        int8_t *b = bits + (size_t)y * w;
        snap_run(m, fmt, planes, plane, (size_t)y * w, w, b, NULL);
        size_t x = 0;
        while (x < w && b[x] == ND_VACANT)
            x++;
        if (x < w)
            break;
    }
    if (conf && y >= 0)
        snap_run(m, fmt, planes, plane, 0, (size_t)(y + 1) * w, bits, conf);
    else if (y > 0)
        snap_run(m, fmt, planes, plane, 0, (size_t)y * w, bits, NULL);
    return y + 1;
}

void nd_snap_f32(nd_snap_mode m, const float *rgb, size_t n_pixels, int8_t *bits, nd_conf *conf)
{
    for (size_t i = 0; i < n_pixels; i++) {
        float r = clip01(rgb[3 * i]), g = clip01(rgb[3 * i + 1]), b = clip01(rgb[3 * i + 2]);
        nd_conf q;
        nearest(r, g, b, &bits[i], &q);
        if (m == ND_SNAP_NETDIFFUSION)
            bits[i] = netdiffusion_rule(to255(r), to255(g), to255(b));
        if (conf)
            conf[i] = q;
    }
}

/* 8-bit pixels: the same rule in integers (the margin is exact). */
void nd_snap_u8(nd_snap_mode m, const uint8_t *rgb, size_t n_pixels, int8_t *bits, nd_conf *conf)
{
    for (size_t i = 0; i < n_pixels; i++) {
        int r = rgb[3 * i], g = rgb[3 * i + 1], b = rgb[3 * i + 2];
        int red = (r >= g) & (r >= b), green = (g > r) & (g >= b);
        bits[i] = m == ND_SNAP_NETDIFFUSION
                      ? netdiffusion_rule((float)r, (float)g, (float)b)
                      : (int8_t)(red - (1 - red - green));
        if (conf) {
            int mx = r > g ? (r > b ? r : b) : (g > b ? g : b);
            int lo = r < g ? r : g, hi = r < g ? g : r;
            int med = lo > (hi < b ? hi : b) ? lo : (hi < b ? hi : b);
            conf[i] = (nd_conf)(mx - med);
        }
    }
}
