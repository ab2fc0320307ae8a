/* kernels/cpu/simd.h - AVX2/FMA building blocks for the cpu backend, used only
 * from functions compiled with ND_AVX2 and called after a run-time CPU check
 * (the build has no -march flag), plus the shared internal interface of the
 * cpu backend files. */
#ifndef ND_KERNELS_CPU_SIMD_H
#define ND_KERNELS_CPU_SIMD_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "kernels/backend_impl.h"
#include "kernels/cpu/pool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define ND_HAVE_X86 1
#define ND_AVX2 __attribute__((target("avx2,fma")))
#define ND_AVX512 __attribute__((target("avx512f,avx2,fma")))
#endif

typedef struct {
    nd_pool *pool;
    bool avx2;   /* AVX2+FMA present: take the ND_AVX2 paths */
    bool avx512; /* AVX-512F too (ND_NO_AVX512=1 turns it off): ND_AVX512 paths */
} cpu_state;

static inline cpu_state *cpu_of(nd_backend *be)
{
    return be->impl;
}

/* per-file entry points (all take validated f32 calls) */
nd_status cpu_linear(nd_backend *be, const nd_op_call *c, nd_arena *ws, nd_err *err);
nd_status cpu_conv2d(nd_backend *be, const nd_op_call *c, nd_arena *ws, nd_err *err);
size_t cpu_conv2d_ws(const nd_backend *be, const nd_op_call *c);
nd_status cpu_attention(nd_backend *be, const nd_op_call *c, nd_arena *ws, nd_err *err);
size_t cpu_attention_ws(const nd_backend *be, const nd_op_call *c);
nd_status cpu_norm(nd_backend *be, const nd_op_call *c, nd_err *err); /* GN, LN, softmax */
nd_status cpu_elem(nd_backend *be, const nd_op_call *c, nd_err *err); /* the rest */
nd_status cpu_copy(nd_backend *be, const nd_op_call *c); /* ND_OP_COPY, in chunks on the pool */

/* the scalar definitions the fallbacks use */
static inline float nd_silu_f(float x)
{
    return x / (1.0f + expf(-x));
}
static inline float nd_gelu_f(float x)
{
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

#ifdef ND_HAVE_X86
/* exp(x), Cephes-style: 2^n * p(r), max rel. error ~2e-7 over the range; below
 * -87.3 it flushes to 0 (so exp(-inf) = 0, what masked softmax needs). */
ND_AVX2 static inline __m256 nd_exp256(__m256 x)
{
    const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365447504f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
    fx = _mm256_floor_ps(fx);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    __m256i n = _mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127));
    __m256 p2 = _mm256_castsi256_ps(_mm256_slli_epi32(n, 23));
    return _mm256_andnot_ps(under, _mm256_mul_ps(y, p2));
}

/* the same exp on 16 lanes: p(r) scaled by 2^n with vscalefps, which also
 * flushes to 0 below the range (exp(-inf) = 0) */
ND_AVX512 static inline __m512 nd_exp512(__m512 x)
{
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.3762626647949f)),
                      _mm512_set1_ps(-103.0f));
    __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
    __m512 y = _mm512_set1_ps(1.9875691500E-4f);
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507E-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073E-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894E-2f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459E-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201E-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(y, fx);
}

/* x * sigmoid(x) on 16 lanes: the reciprocal by vrcp14ps and one Newton
 * step (relative error ~1e-7, like the division it replaces at a fraction of
 * its cost) */
ND_AVX512 static inline __m512 nd_silu512(__m512 x)
{
    __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), nd_exp512(_mm512_sub_ps(_mm512_setzero_ps(), x)));
    __m512 r = _mm512_rcp14_ps(d);
    r = _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
    return _mm512_mul_ps(x, r);
}

/* nd_erf256 / nd_gelu256 on 16 lanes (the reciprocal as in nd_silu512) */
ND_AVX512 static inline __m512 nd_erf512(__m512 x)
{
    __m512 a = _mm512_abs_ps(x);
    __m512 d = _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), a, _mm512_set1_ps(1.0f));
    __m512 t = _mm512_rcp14_ps(d);
    t = _mm512_mul_ps(t, _mm512_fnmadd_ps(d, t, _mm512_set1_ps(2.0f)));
    __m512 y = _mm512_set1_ps(1.061405429f);
    y = _mm512_fmadd_ps(y, t, _mm512_set1_ps(-1.453152027f));
    y = _mm512_fmadd_ps(y, t, _mm512_set1_ps(1.421413741f));
    y = _mm512_fmadd_ps(y, t, _mm512_set1_ps(-0.284496736f));
    y = _mm512_fmadd_ps(y, t, _mm512_set1_ps(0.254829592f));
    y = _mm512_mul_ps(y, t);
    __m512 e = nd_exp512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(a, a)));
    __m512 r = _mm512_fnmadd_ps(y, e, _mm512_set1_ps(1.0f));
    /* the sign of x onto r (r >= 0) */
    return _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_castps_si512(r),
        _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u))));
}

ND_AVX512 static inline __m512 nd_gelu512(__m512 x)
{
    __m512 e = nd_erf512(_mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f)));
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x),
                         _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

ND_AVX2 static inline __m256 nd_silu256(__m256 x)
{
    __m256 e = nd_exp256(_mm256_sub_ps(_mm256_setzero_ps(), x));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/* erf via Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7). */
ND_AVX2 static inline __m256 nd_erf256(__m256 x)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 s = _mm256_and_ps(x, sign), a = _mm256_andnot_ps(sign, x);
    __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f),
                             _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), a, _mm256_set1_ps(1.0f)));
    __m256 y = _mm256_set1_ps(1.061405429f);
    y = _mm256_fmadd_ps(y, t, _mm256_set1_ps(-1.453152027f));
    y = _mm256_fmadd_ps(y, t, _mm256_set1_ps(1.421413741f));
    y = _mm256_fmadd_ps(y, t, _mm256_set1_ps(-0.284496736f));
    y = _mm256_fmadd_ps(y, t, _mm256_set1_ps(0.254829592f));
    y = _mm256_mul_ps(y, t);
    __m256 e = nd_exp256(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(a, a)));
    __m256 r = _mm256_fnmadd_ps(y, e, _mm256_set1_ps(1.0f));
    return _mm256_or_ps(r, s);
}

ND_AVX2 static inline __m256 nd_gelu256(__m256 x)
{
    __m256 e = nd_erf256(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f)));
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x),
                         _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

ND_AVX2 static inline float nd_hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

ND_AVX2 static inline float nd_hmax256(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* AVX-512 mask of lanes [0, n), n clamped to 0..16 */
static inline __mmask16 lanes(int64_t n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* lanes [0, n) set, n in 0..8 */
static const int32_t nd_mask_tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
ND_AVX2 static inline __m256i nd_tail_mask(int n)
{
    return _mm256_loadu_si256((const __m256i *)(nd_mask_tab + 8 - n));
}
#endif

#endif
