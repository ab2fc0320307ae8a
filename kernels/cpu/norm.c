/* kernels/cpu/norm.c - group norm (+ fused SiLU), layer norm and softmax.
 *
 * Group norm is one task per (image, group): statistics in two passes (mean,
 * then squared deviations, accumulated in double so large offsets cost no
 * accuracy), then one pass that applies the folded affine y = x*a + b per
 * channel and, when asked, SiLU, without writing an intermediate. A group of
 * the first UNet level is 160 KB, so the second and third passes hit cache. */
#include "kernels/cpu/simd.h"

#include <string.h>

/* ---- statistics: mean and biased variance of n floats -------------------------- */

static void stats_plain(const float *x, int64_t n, double *mean, double *var)
{
    double s = 0, q = 0;
    for (int64_t i = 0; i < n; i++)
        s += x[i];
    s /= (double)n;
    for (int64_t i = 0; i < n; i++)
        q += (x[i] - s) * (x[i] - s);
    *mean = s;
    *var = q / (double)n;
}

#ifdef ND_HAVE_X86
ND_AVX2 static double hsum_pd(__m256d v)
{
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

ND_AVX2 static void stats_avx2(const float *x, int64_t n, double *mean, double *var)
{
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    double s = hsum_pd(_mm256_add_pd(s0, s1));
    for (; i < n; i++)
        s += x[i];
    s /= (double)n;
    /* deviations are small: float differences, double sums */
    __m256 vm = _mm256_set1_ps((float)s);
    s0 = s1 = _mm256_setzero_pd();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 dv = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
        __m256d d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(dv));
        __m256d d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(dv, 1));
        s0 = _mm256_fmadd_pd(d0, d0, s0);
        s1 = _mm256_fmadd_pd(d1, d1, s1);
    }
    double q = hsum_pd(_mm256_add_pd(s0, s1));
    double mf = (float)s; /* the deviations above are from the float mean */
    for (; i < n; i++)
        q += (x[i] - mf) * (x[i] - mf);
    /* var about the true mean = E[(x - mf)^2] - (s - mf)^2 */
    double dm = s - mf;
    *mean = s;
    *var = q / (double)n - dm * dm;
    if (*var < 0)
        *var = 0;
}

/* The same statistics on 16 lanes without widening to double in the inner
 * loops (the conversions made layer norm slower than PyTorch's): float sums
 * over blocks of at most 1024 elements (2 x 16 accumulators: each adds at
 * most 32 terms, a few ulps), block totals in double. Pass 2 sums the
 * deviations from the first-pass mean m0 and their squares, and corrects:
 * mean = m0 + E[d], var = E[d^2] - E[d]^2, so an offset far larger than the
 * spread costs no accuracy (the shifted-data algorithm). */
#define ST_BLOCK 1024
ND_AVX512 static void stats_avx512(const float *x, int64_t n, double *mean, double *var)
{
    double s = 0;
    for (int64_t b0 = 0; b0 < n; b0 += ST_BLOCK) {
        int64_t b1 = b0 + ST_BLOCK < n ? b0 + ST_BLOCK : n;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        int64_t i = b0;
        for (; i + 32 <= b1; i += 32) {
            a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + i));
            a1 = _mm512_add_ps(a1, _mm512_loadu_ps(x + i + 16));
        }
        for (; i < b1; i += 16) {
            __mmask16 m = b1 - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (b1 - i)) - 1);
            a0 = _mm512_add_ps(a0, _mm512_maskz_loadu_ps(m, x + i));
        }
        s += (double)_mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    }
    float m0 = (float)(s / (double)n);
    const __m512 vm = _mm512_set1_ps(m0);
    double s1 = 0, s2 = 0;
    for (int64_t b0 = 0; b0 < n; b0 += ST_BLOCK) {
        int64_t b1 = b0 + ST_BLOCK < n ? b0 + ST_BLOCK : n;
        __m512 d1 = _mm512_setzero_ps(), d2 = _mm512_setzero_ps();
        __m512 q1 = _mm512_setzero_ps(), q2 = _mm512_setzero_ps();
        int64_t i = b0;
        for (; i + 32 <= b1; i += 32) {
            __m512 u = _mm512_sub_ps(_mm512_loadu_ps(x + i), vm);
            __m512 v = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vm);
            d1 = _mm512_add_ps(d1, u);
            d2 = _mm512_add_ps(d2, v);
            q1 = _mm512_fmadd_ps(u, u, q1);
            q2 = _mm512_fmadd_ps(v, v, q2);
        }
        for (; i < b1; i += 16) {
            __mmask16 m = b1 - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (b1 - i)) - 1);
            __m512 u = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + i), vm);
            d1 = _mm512_add_ps(d1, u);
            q1 = _mm512_fmadd_ps(u, u, q1);
        }
        s1 += (double)_mm512_reduce_add_ps(_mm512_add_ps(d1, d2));
        s2 += (double)_mm512_reduce_add_ps(_mm512_add_ps(q1, q2));
    }
    double e1 = s1 / (double)n;
    *mean = (double)m0 + e1;
    *var = s2 / (double)n - e1 * e1;
    if (*var < 0)
        *var = 0;
}

ND_AVX2 static void affine_avx2(const float *x, float *y, int64_t n, float a, float b, bool silu)
{
    __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), va, vb);
        _mm256_storeu_ps(y + i, silu ? nd_silu256(v) : v);
    }
    for (; i < n; i++) {
        float v = x[i] * a + b;
        y[i] = silu ? nd_silu_f(v) : v;
    }
}

ND_AVX512 static void affine_avx512(const float *x, float *y, int64_t n, float a, float b,
                                    bool silu)
{
    __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = lanes(n - i);
        __m512 v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), va, vb);
        _mm512_mask_storeu_ps(y + i, m, silu ? nd_silu512(v) : v);
    }
}
#endif

static void stats(bool avx2, bool avx512, const float *x, int64_t n, double *mean, double *var)
{
#ifdef ND_HAVE_X86
    if (avx512) {
        stats_avx512(x, n, mean, var);
        return;
    }
    if (avx2) {
        stats_avx2(x, n, mean, var);
        return;
    }
#endif
    (void)avx2;
    (void)avx512;
    stats_plain(x, n, mean, var);
}

static void affine(bool avx2, bool avx512, const float *x, float *y, int64_t n, float a, float b,
                   bool silu)
{
#ifdef ND_HAVE_X86
    if (avx512) {
        affine_avx512(x, y, n, a, b, silu);
        return;
    }
    if (avx2) {
        affine_avx2(x, y, n, a, b, silu);
        return;
    }
#endif
    (void)avx2;
    (void)avx512;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] * a + b;
        y[i] = silu ? nd_silu_f(v) : v;
    }
}

typedef struct {
    const float *x, *g, *b;
    float *y;
    int64_t C, S, groups, rows;
    float eps;
    bool silu, avx2, avx512;
} norm_ctx;

static void gn_task(void *vc, int64_t t, int thread)
{
    (void)thread;
    const norm_ctx *c = vc;
    int64_t n = t / c->groups, gi = t % c->groups, cg = c->C / c->groups;
    int64_t off = (n * c->C + gi * cg) * c->S;
    double mean, var;
    stats(c->avx2, c->avx512, c->x + off, cg * c->S, &mean, &var);
    double inv = 1.0 / sqrt(var + c->eps);
    for (int64_t ch = gi * cg; ch < (gi + 1) * cg; ch++) {
        double a = inv * (c->g ? c->g[ch] : 1.0);
        double b = (c->b ? c->b[ch] : 0.0) - mean * a;
        int64_t o = (n * c->C + ch) * c->S;
        affine(c->avx2, c->avx512, c->x + o, c->y + o, c->S, (float)a, (float)b, c->silu);
    }
}

#define LN_ROWS 64

static void ln_apply(const float *restrict x, float *restrict y, const float *restrict g,
                     const float *restrict b, int64_t n, float mean, float inv)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = (x[i] - mean) * inv * g[i] + b[i];
}

#ifdef ND_HAVE_X86
ND_AVX2 static void ln_apply_avx2(const float *x, float *y, const float *g, const float *b,
                                  int64_t n, float mean, float inv)
{
    __m256 vm = _mm256_set1_ps(mean), vi = _mm256_set1_ps(inv);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vi);
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(v, _mm256_loadu_ps(g + i), _mm256_loadu_ps(b + i)));
    }
    for (; i < n; i++)
        y[i] = (x[i] - mean) * inv * g[i] + b[i];
}
#endif

static void ln_task(void *vc, int64_t t, int thread)
{
    (void)thread;
    const norm_ctx *c = vc;
    int64_t r1 = (t + 1) * LN_ROWS < c->rows ? (t + 1) * LN_ROWS : c->rows;
    for (int64_t r = t * LN_ROWS; r < r1; r++) {
        const float *x = c->x + r * c->C;
        float *y = c->y + r * c->C;
        double mean, var;
        stats(c->avx2, c->avx512, x, c->C, &mean, &var);
        float inv = (float)(1.0 / sqrt(var + c->eps)), mf = (float)mean;
#ifdef ND_HAVE_X86
        if (c->avx2 && c->g && c->b)
            ln_apply_avx2(x, y, c->g, c->b, c->C, mf, inv);
        else
#endif
        if (c->g && c->b) /* the common case, a loop the compiler vectorises */
            ln_apply(x, y, c->g, c->b, c->C, mf, inv);
        else
            for (int64_t i = 0; i < c->C; i++)
                y[i] = (x[i] - mf) * inv * (c->g ? c->g[i] : 1.0f) + (c->b ? c->b[i] : 0.0f);
    }
}

#ifdef ND_HAVE_X86
ND_AVX2 static void softmax_row_avx2(const float *x, float *y, int64_t n)
{
    __m256 vmx = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        vmx = _mm256_max_ps(vmx, _mm256_loadu_ps(x + i));
    float mx = nd_hmax256(vmx);
    for (; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    __m256 vm = _mm256_set1_ps(mx), vs = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = nd_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(y + i, e);
        vs = _mm256_add_ps(vs, e);
    }
    float s = nd_hsum256(vs);
    for (; i < n; i++) {
        y[i] = expf(x[i] - mx);
        s += y[i];
    }
    __m256 vinv = _mm256_set1_ps(1.0f / s);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), vinv));
    for (; i < n; i++)
        y[i] *= 1.0f / s;
}
#endif

#ifdef ND_HAVE_X86
/* 16 lanes with a masked last vector: the 77 keys of cross attention are
 * 4 x 16 + 13, where the AVX2 row left 5 elements to scalar expf. */
ND_AVX512 static void softmax_row_avx512(const float *x, float *y, int64_t n)
{
    __m512 vmx = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = lanes(n - i);
        vmx = _mm512_mask_max_ps(vmx, m, vmx, _mm512_maskz_loadu_ps(m, x + i));
    }
    __m512 vm = _mm512_set1_ps(_mm512_reduce_max_ps(vmx)), vs = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = lanes(n - i);
        __m512 e = nd_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm));
        _mm512_mask_storeu_ps(y + i, m, e);
        vs = _mm512_mask_add_ps(vs, m, vs, e);
    }
    __m512 vinv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vs));
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = lanes(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, y + i), vinv));
    }
}
#endif

static void softmax_task(void *vc, int64_t t, int thread)
{
    (void)thread;
    const norm_ctx *c = vc;
    int64_t r1 = (t + 1) * LN_ROWS < c->rows ? (t + 1) * LN_ROWS : c->rows;
    for (int64_t r = t * LN_ROWS; r < r1; r++) {
        const float *x = c->x + r * c->C;
        float *y = c->y + r * c->C;
#ifdef ND_HAVE_X86
        if (c->avx512) {
            softmax_row_avx512(x, y, c->C);
            continue;
        }
        if (c->avx2) {
            softmax_row_avx2(x, y, c->C);
            continue;
        }
#endif
        float mx = -INFINITY, s = 0;
        for (int64_t i = 0; i < c->C; i++)
            mx = x[i] > mx ? x[i] : mx;
        for (int64_t i = 0; i < c->C; i++) {
            y[i] = expf(x[i] - mx);
            s += y[i];
        }
        for (int64_t i = 0; i < c->C; i++)
            y[i] /= s;
    }
}

nd_status cpu_norm(nd_backend *be, const nd_op_call *c, nd_err *err)
{
    (void)err;
    const nd_tensor *x = c->src[0], *g = c->src[1], *b = c->src[2];
    norm_ctx n = {
        .x = x->data, .g = g ? g->data : NULL, .b = b ? b->data : NULL, .y = c->dst->data,
        .eps = c->p.norm.eps, .silu = c->p.norm.silu, .avx2 = cpu_of(be)->avx2,
        .avx512 = cpu_of(be)->avx512,
    };
    nd_pool *pool = cpu_of(be)->pool;
    if (c->op == ND_OP_GROUP_NORM) {
        n.C = x->shape[1];
        n.S = nd_tensor_numel(x) / (x->shape[0] * n.C);
        n.groups = c->p.norm.groups;
        nd_pool_run(pool, x->shape[0] * n.groups, gn_task, &n);
    } else {
        n.silu = false;
        n.C = x->shape[x->ndim - 1];
        n.rows = nd_tensor_numel(x) / n.C;
        nd_pool_run(pool, (n.rows + LN_ROWS - 1) / LN_ROWS,
                    c->op == ND_OP_LAYER_NORM ? ln_task : softmax_task, &n);
    }
    return ND_OK;
}
