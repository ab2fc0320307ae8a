/* kernels/tensor.c - tensor descriptors, arenas and f16 <-> f32 conversion. */
#include "kernels/ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define ND_X86 1
#endif

const char *nd_dtype_name(nd_dtype t)
{
    return t == ND_F32 ? "f32" : t == ND_F16 ? "f16" : "?";
}

size_t nd_dtype_size(nd_dtype t)
{
    return t == ND_F16 ? 2 : 4;
}

int64_t nd_tensor_numel(const nd_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

size_t nd_tensor_bytes(const nd_tensor *t)
{
    return (size_t)nd_tensor_numel(t) * nd_dtype_size(t->dtype);
}

nd_tensor nd_tensor_make(void *data, nd_dtype dtype, nd_device dev, int ndim, const int64_t *shape)
{
    nd_tensor t = {.data = data, .dtype = dtype, .device = dev, .ndim = ndim};
    for (int i = 0; i < ND_MAX_DIMS; i++)
        t.shape[i] = i < ndim ? shape[i] : 1;
    return t;
}

nd_status nd_tensor_view(const nd_tensor *t, int ndim, const int64_t *shape, nd_tensor *out,
                         nd_err *err)
{
    if (ndim < 1 || ndim > ND_MAX_DIMS)
        return nd_fail(err, ND_EINVAL, "view: ndim %d outside 1..%d", ndim, ND_MAX_DIMS);
    nd_tensor v = nd_tensor_make(t->data, t->dtype, t->device, ndim, shape);
    if (nd_tensor_numel(&v) != nd_tensor_numel(t)) {
        char a[96], b[96];
        return nd_fail(err, ND_EINVAL, "view: %s cannot become %s", nd_tensor_str(t, a, sizeof a),
                       nd_tensor_str(&v, b, sizeof b));
    }
    *out = v;
    return ND_OK;
}

const char *nd_tensor_str(const nd_tensor *t, char *buf, size_t n)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int i = 0; i < t->ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? "," : "", (long long)t->shape[i]);
    if (o < n)
        snprintf(buf + o, n - o, "] %s", nd_dtype_name(t->dtype));
    return buf;
}

/* ---- f16 ---------------------------------------------------------------------
 * Portable bit-level conversion (round to nearest even, subnormals, inf/nan),
 * with an F16C path chosen at run time for the bulk conversions. */

float nd_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 112) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t nd_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7c00);
    if (absx < 0x38800000u) { /* below the smallest normal half: subnormal or 0 */
        if (absx < 0x33000000u)
            return (uint16_t)sign;
        uint32_t e = absx >> 23, man = (absx & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t v = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (v & 1)))
            v++;
        return (uint16_t)(sign | v);
    }
    uint32_t v = ((absx - 0x38000000u) >> 13); /* rebias exponent 127 -> 15 */
    uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (v & 1)))
        v++;
    return (uint16_t)(sign | v);
}

#ifdef ND_X86
__attribute__((target("f16c,avx"))) static void f16_to_f32_f16c(const uint16_t *s, float *d,
                                                                 size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    for (; i < n; i++)
        d[i] = nd_f16_to_f32(s[i]);
}

__attribute__((target("f16c,avx"))) static void f32_to_f16_f16c(const float *s, uint16_t *d,
                                                                 size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(d + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        d[i] = nd_f32_to_f16(s[i]);
}

static int have_f16c(void)
{
    static int v = -1;
    if (v < 0) {
        /* cpuid rather than __builtin_cpu_supports("f16c"), which clang-14
         * (the fuzz build's compiler) does not know: leaf 1 ECX bit 29 is
         * F16C, bit 28 AVX, bit 27 OSXSAVE (the OS saves YMM state). */
        unsigned a, b, c, d;
        v = __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1) && (c >> 28 & 1) && (c >> 27 & 1);
    }
    return v;
}
#endif

void nd_f16_to_f32_n(const uint16_t *src, float *dst, size_t n)
{
#ifdef ND_X86
    if (have_f16c()) {
        f16_to_f32_f16c(src, dst, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++)
        dst[i] = nd_f16_to_f32(src[i]);
}

void nd_f32_to_f16_n(const float *src, uint16_t *dst, size_t n)
{
#ifdef ND_X86
    if (have_f16c()) {
        f32_to_f16_f16c(src, dst, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++)
        dst[i] = nd_f32_to_f16(src[i]);
}

/* ---- arenas ------------------------------------------------------------------ */

nd_status nd_arena_init(nd_arena *a, size_t bytes, nd_err *err)
{
    memset(a, 0, sizeof *a);
    bytes = (bytes + ND_ARENA_ALIGN - 1) & ~(size_t)(ND_ARENA_ALIGN - 1);
    if (bytes == 0)
        return ND_OK;
    a->base = aligned_alloc(ND_ARENA_ALIGN, bytes);
    if (!a->base)
        return nd_fail(err, ND_ENOMEM, "arena: cannot allocate %zu bytes", bytes);
    a->cap = bytes;
    return ND_OK;
}

void nd_arena_init_measure(nd_arena *a)
{
    memset(a, 0, sizeof *a);
    a->measuring = true;
    a->cap = SIZE_MAX;
}

void nd_arena_free(nd_arena *a)
{
    if (!a->measuring)
        free(a->base);
    memset(a, 0, sizeof *a);
}

void *nd_arena_alloc(nd_arena *a, size_t bytes, nd_err *err)
{
    size_t need = (bytes + ND_ARENA_ALIGN - 1) & ~(size_t)(ND_ARENA_ALIGN - 1);
    if (need < bytes || need > a->cap - a->used) {
        nd_fail(err, ND_ENOMEM, "arena full: need %zu more bytes, %zu of %zu used", bytes,
                a->used, a->cap);
        return NULL;
    }
    void *p = a->measuring ? NULL : a->base + a->used;
    a->used += need;
    if (a->used > a->peak)
        a->peak = a->used;
    return p;
}

size_t nd_arena_mark(const nd_arena *a)
{
    return a->used;
}

void nd_arena_reset(nd_arena *a, size_t mark)
{
    if (mark <= a->used)
        a->used = mark;
}

nd_status nd_arena_tensor(nd_arena *a, nd_dtype dtype, int ndim, const int64_t *shape,
                          nd_tensor *out, nd_err *err)
{
    if (ndim < 1 || ndim > ND_MAX_DIMS)
        return nd_fail(err, ND_EINVAL, "tensor: ndim %d outside 1..%d", ndim, ND_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 1)
            return nd_fail(err, ND_EINVAL, "tensor: dim %d is %lld", i, (long long)shape[i]);
    nd_tensor t = nd_tensor_make(NULL, dtype, a->device, ndim, shape);
    size_t bytes = nd_tensor_bytes(&t);
    void *p = nd_arena_alloc(a, bytes, err);
    if (!p && !a->measuring)
        return ND_ENOMEM;
    t.data = p;
    *out = t;
    return ND_OK;
}
