/* weights/dtype.c - dtype names, sizes and F32/F16/BF16 conversion. */
#include "weights/weights.h"

#include <string.h>

static const struct { const char *name; size_t size; } dtypes[ND_WDT_COUNT] = {
    [ND_WDT_F32] = {"F32", 4},         [ND_WDT_F16] = {"F16", 2},
    [ND_WDT_BF16] = {"BF16", 2},       [ND_WDT_F64] = {"F64", 8},
    [ND_WDT_F8_E5M2] = {"F8_E5M2", 1}, [ND_WDT_F8_E4M3] = {"F8_E4M3", 1},
    [ND_WDT_I64] = {"I64", 8},         [ND_WDT_I32] = {"I32", 4},
    [ND_WDT_I16] = {"I16", 2},         [ND_WDT_I8] = {"I8", 1},
    [ND_WDT_U64] = {"U64", 8},         [ND_WDT_U32] = {"U32", 4},
    [ND_WDT_U16] = {"U16", 2},         [ND_WDT_U8] = {"U8", 1},
    [ND_WDT_BOOL] = {"BOOL", 1},
};

const char *nd_wdtype_name(nd_wdtype dt)
{
    return (unsigned)dt < ND_WDT_COUNT ? dtypes[dt].name : "?";
}

size_t nd_wdtype_size(nd_wdtype dt)
{
    return (unsigned)dt < ND_WDT_COUNT ? dtypes[dt].size : 0;
}

/* Used by the safetensors parser; -1 for an unknown name. */
int nd_wdtype_from_name(const char *s)
{
    for (int i = 0; i < ND_WDT_COUNT; i++)
        if (!strcmp(s, dtypes[i].name))
            return i;
    return -1;
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            u = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    int32_t exp = (int32_t)((u >> 23) & 0xff);
    uint32_t man = u & 0x7fffff;
    if (exp == 255) /* inf / nan (keep nan quiet) */
        return (uint16_t)(sign | 0x7c00 | (man ? 0x200 | (man >> 13) : 0));
    int32_t e = exp - 127 + 15;
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00);
    if (e <= 0) { /* subnormal or zero */
        if (e < -10)
            return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = (uint32_t)(e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
        half++; /* may carry into the exponent, which is the right answer */
    return (uint16_t)(sign | half);
}

static float bf16_to_f32(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static int is_float(nd_wdtype d)
{
    return d == ND_WDT_F32 || d == ND_WDT_F16 || d == ND_WDT_BF16;
}

/* Source and destination may be unaligned (mmap views of odd offsets), so
 * every element goes through memcpy; compilers turn that into plain loads. */
nd_status nd_wconvert(void *dst, nd_wdtype dd, const void *src, nd_wdtype sd, size_t n,
                      nd_err *err)
{
    if (!is_float(dd) || !is_float(sd))
        return nd_fail(err, ND_EUNSUPPORTED, "cannot convert %s to %s", nd_wdtype_name(sd),
                       nd_wdtype_name(dd));
    if (dd == sd) {
        memcpy(dst, src, n * nd_wdtype_size(sd));
        return ND_OK;
    }
    const unsigned char *s = src;
    unsigned char *d = dst;
    for (size_t i = 0; i < n; i++) {
        float f;
        uint16_t h;
        if (sd == ND_WDT_F32) {
            memcpy(&f, s + 4 * i, 4);
        } else {
            memcpy(&h, s + 2 * i, 2);
            f = sd == ND_WDT_F16 ? f16_to_f32(h) : bf16_to_f32(h);
        }
        if (dd == ND_WDT_F32) {
            memcpy(d + 4 * i, &f, 4);
        } else {
            h = dd == ND_WDT_F16 ? f32_to_f16(f) : f32_to_bf16(f);
            memcpy(d + 2 * i, &h, 2);
        }
    }
    return ND_OK;
}
