/* codec/snap.c - generated pixels back to bits, with a confidence.
 *
 * The per-pixel loops are hot (a 1088x1024 image per flow, 13 MB of f32
 * planes, more than the bits, the repair and the pcap together): one pass
 * per pixel computes the bit and the confidence with min / max / compare
 * only, so that it vectorises and runs at the speed memory delivers the
 * planes. codec/module.mk builds this file with -O3 -fno-math-errno
 * -fno-trapping-math (nothing here traps). */
#include "codec/codec.h"
#include "codec/internal.h"

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

/* Hand-written AVX2 (+ F16C for halves): gcc's vectoriser handles the
 * mixed widths (float in, bytes out) poorly, at 0.65 ns a pixel (f32) and
 * 0.9 (f16) on a Zen 4; this does 32 pixels a round with the same results
 * (tests/codec/test_snap.c). Clipped channels are >= +0 (max with 0 turns
 * NaN and -0 into +0), and non-negative floats, like non-negative halves,
 * order as their bit patterns do as integers: so the clip's upper bound,
 * the compares and the max / median picks are integer ops, which pick the
 * same values; halves stay 16 bits wide (16 pixels a vector) until the
 * margin, computed in floats as the scalar code does (mul, then add: no
 * FMA). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define ND_SNAP_AVX2 1

#define ND_AVX2 __attribute__((target("avx2,f16c")))

/* Bits from byte masks: X "not red" (g > r or b > r), G green (g > r and
 * not b > g): 1 red, 0 green, -1 otherwise (blue or a tie lost). */
ND_AVX2 static inline __m256i bits_of(__m256i X, __m256i G)
{
    return _mm256_or_si256(_mm256_andnot_si256(X, _mm256_set1_epi8(1)),
                           _mm256_andnot_si256(G, X));
}
/* 32 confidences from the margins mx - med of pixels 8k..8k+7 in d[k]. */
ND_AVX2 static inline void put_conf(const __m256 d[4], __m256i order, nd_conf *conf)
{
    const __m256 k255 = _mm256_set1_ps(255.0f), half = _mm256_set1_ps(0.5f);
    __m256i q[4];
    for (int k = 0; k < 4; k++)
        q[k] = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(d[k], k255), half));
    __m256i q16 = _mm256_packus_epi16(_mm256_packus_epi32(q[0], q[1]),
                                      _mm256_packus_epi32(q[2], q[3]));
    _mm256_storeu_si256((__m256i *)conf, _mm256_permutevar8x32_epi32(q16, order));
}

/* The three planes' lines 1 KB ahead (n bytes of each: a round's worth):
 * the hardware prefetcher alone left a planar f32 image's snap at 70% of
 * the memory bandwidth a core gets (three read streams, two write). */
static inline void prefetch3(const void *r, const void *g, const void *b, int n)
{
    for (int k = 0; k < n; k += 64) {
        _mm_prefetch((const char *)r + k, _MM_HINT_T0);
        _mm_prefetch((const char *)g + k, _MM_HINT_T0);
        _mm_prefetch((const char *)b + k, _MM_HINT_T0);
    }
}

ND_AVX2 static inline __m256 clip_f32(const float *p)
{
    /* max(v, 0) returns 0 for NaN, as the scalar clip does */
    return _mm256_min_ps(_mm256_max_ps(_mm256_loadu_ps(p), _mm256_setzero_ps()),
                         _mm256_set1_ps(1.0f));
}

ND_AVX2 static void run_avx2_f32(const float *R, const float *G, const float *B, size_t n,
                                 int8_t *bits, nd_conf *conf)
{
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i xm[4], gm[4];
        __m256 d[4];
        prefetch3(R + i + 256, G + i + 256, B + i + 256, 128);
        for (int k = 0; k < 4; k++) {
            size_t at = i + 8 * (size_t)k;
            __m256 r = clip_f32(R + at), g = clip_f32(G + at), b = clip_f32(B + at);
            __m256i gr = _mm256_castps_si256(_mm256_cmp_ps(g, r, _CMP_GT_OQ));
            xm[k] = _mm256_or_si256(gr, _mm256_castps_si256(_mm256_cmp_ps(b, r, _CMP_GT_OQ)));
            gm[k] = _mm256_andnot_si256(_mm256_castps_si256(_mm256_cmp_ps(b, g, _CMP_GT_OQ)), gr);
            __m256 hi = _mm256_max_ps(r, g), lo = _mm256_min_ps(r, g);
            __m256 med = _mm256_max_ps(lo, _mm256_min_ps(hi, b));
            d[k] = _mm256_sub_ps(_mm256_max_ps(hi, b), med);
        }
        /* order undoes the packs' lane interleave (32-bit groups) */
        __m256i X = _mm256_packs_epi16(_mm256_packs_epi32(xm[0], xm[1]),
                                       _mm256_packs_epi32(xm[2], xm[3]));
        __m256i Gm = _mm256_packs_epi16(_mm256_packs_epi32(gm[0], gm[1]),
                                        _mm256_packs_epi32(gm[2], gm[3]));
        _mm256_storeu_si256((__m256i *)(bits + i),
                            _mm256_permutevar8x32_epi32(bits_of(X, Gm), order));
        put_conf(d, order, conf + i);
    }
    if (i < n)
        run_f32(R + i, G + i, B + i, n - i, bits + i, conf + i);
}

/* 16 halves clipped to [0, 1] as halves: negatives (and -0, -NaN) to 0 by
 * a signed max, NaN to 0, then at most 1.0 (0x3c00); +inf becomes 1. */
ND_AVX2 static inline __m256i clip_f16(const uint16_t *p)
{
    __m256i v = _mm256_max_epi16(_mm256_loadu_si256((const __m256i *)p), _mm256_setzero_si256());
    v = _mm256_andnot_si256(_mm256_cmpgt_epi16(v, _mm256_set1_epi16(0x7c00)), v);
    return _mm256_min_epi16(v, _mm256_set1_epi16(0x3c00));
}
ND_AVX2 static inline __m256 half8(__m256i v, int hi)
{
    return _mm256_cvtph_ps(hi ? _mm256_extracti128_si256(v, 1) : _mm256_castsi256_si128(v));
}

ND_AVX2 static void run_avx2_f16(const uint16_t *R, const uint16_t *G, const uint16_t *B,
                                 size_t n, int8_t *bits, nd_conf *conf)
{
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i xm[2], gm[2];
        __m256 d[4];
        prefetch3(R + i + 512, G + i + 512, B + i + 512, 64);
        for (int k = 0; k < 2; k++) {
            size_t at = i + 16 * (size_t)k;
            __m256i r = clip_f16(R + at), g = clip_f16(G + at), b = clip_f16(B + at);
            __m256i gr = _mm256_cmpgt_epi16(g, r);
            xm[k] = _mm256_or_si256(gr, _mm256_cmpgt_epi16(b, r));
            gm[k] = _mm256_andnot_si256(_mm256_cmpgt_epi16(b, g), gr);
            __m256i hi = _mm256_max_epi16(r, g), lo = _mm256_min_epi16(r, g);
            __m256i mx = _mm256_max_epi16(hi, b);
            __m256i med = _mm256_max_epi16(lo, _mm256_min_epi16(hi, b));
            d[2 * k] = _mm256_sub_ps(half8(mx, 0), half8(med, 0));
            d[2 * k + 1] = _mm256_sub_ps(half8(mx, 1), half8(med, 1));
        }
        /* 16-bit masks to bytes: the pack leaves pixels 0-7 16-23 8-15
         * 24-31 in 64-bit quarters */
        __m256i bt = bits_of(_mm256_packs_epi16(xm[0], xm[1]), _mm256_packs_epi16(gm[0], gm[1]));
        _mm256_storeu_si256((__m256i *)(bits + i), _mm256_permute4x64_epi64(bt, 0xd8));
        put_conf(d, order, conf + i);
    }
    if (i < n)
        run_f16(R + i, G + i, B + i, n - i, bits + i, conf + i);
}
#endif

/* Pixels [off, off + n) of a planar image whose planes hold `plane`
 * pixels each. conf may be NULL (a scratch block takes it). */
#define SNAP_BLOCK 4096
void nd_snap_run(nd_snap_mode m, nd_pixfmt fmt, const void *planes, size_t plane, size_t off,
                 size_t n, int8_t *bits, nd_conf *conf)
{
    nd_conf scratch[SNAP_BLOCK];
    for (size_t i0 = 0; i0 < n; i0 += SNAP_BLOCK) {
        size_t k = n - i0 < SNAP_BLOCK ? n - i0 : SNAP_BLOCK, at = off + i0;
        nd_conf *q = conf ? conf + i0 : scratch;
#ifdef ND_SNAP_AVX2
        if (__builtin_cpu_supports("avx2")) { /* every AVX2 CPU has F16C */
            if (fmt == ND_PIX_F16) {
                const uint16_t *p = planes;
                run_avx2_f16(p + at, p + plane + at, p + 2 * plane + at, k, bits + i0, q);
            } else {
                const float *p = planes;
                run_avx2_f32(p + at, p + plane + at, p + 2 * plane + at, k, bits + i0, q);
            }
        } else
#endif
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
    nd_snap_run(m, ND_PIX_F32, planes, n_pixels, 0, n_pixels, bits, conf);
}

int nd_snap_image(nd_snap_mode m, nd_pixfmt fmt, const void *planes, int width, int height,
                  int8_t *bits, nd_conf *conf)
{
    size_t w = (size_t)width, plane = w * (size_t)height;
    /* from the bottom: padding rows only need their (vacant) bits */
    int y = height - 1;
    for (; y >= 0; y--) {
        int8_t *b = bits + (size_t)y * w;
        nd_snap_run(m, fmt, planes, plane, (size_t)y * w, w, b, NULL);
        size_t x = 0;
        while (x < w && b[x] == ND_VACANT)
            x++;
        if (x < w)
            break;
    }
    if (conf && y >= 0)
        nd_snap_run(m, fmt, planes, plane, 0, (size_t)(y + 1) * w, bits, conf);
    else if (y > 0)
        nd_snap_run(m, fmt, planes, plane, 0, (size_t)y * w, bits, NULL);
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
