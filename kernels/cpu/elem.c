/* kernels/cpu/elem.c - element-wise and shape ops on the cpu backend:
 * activations (GELU, quick-GELU, SiLU, GEGLU), add/mul with broadcast, scale,
 * concat, nearest 2x upsample and the [B,M,N] -> [B,N,M] transpose. All
 * memory-bound: split into chunks over the pool, AVX2 inner loops where the
 * compiler would not vectorise on its own (transcendentals, possible
 * aliasing of in-place calls). */
#include "kernels/cpu/simd.h"

#include <string.h>

#define CHUNK 16384

typedef struct {
    nd_op op;
    const float *a, *b;
    float *y;
    int64_t n, L; /* elements; row length (geglu) */
    nd_bcast bc;
    int64_t nchunk; /* chunks per row of the broadcast plan */
    float s0, s1;
    bool avx2, avx512;
} elem_ctx;

/* ---- unary: y = f(x) -------------------------------------------------------------- */

static void unary_plain(nd_op op, const float *x, float *y, int64_t n, float s0, float s1)
{
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        switch (op) {
        case ND_OP_GELU: y[i] = nd_gelu_f(v); break;
        case ND_OP_QUICK_GELU: y[i] = v / (1.0f + expf(-1.702f * v)); break;
        case ND_OP_SILU: y[i] = nd_silu_f(v); break;
        default: y[i] = v * s0 + s1; break; /* ND_OP_SCALE */
        }
    }
}

#ifdef ND_HAVE_X86
ND_AVX2 static void unary_avx2(nd_op op, const float *x, float *y, int64_t n, float s0, float s1)
{
    int64_t i = 0;
    __m256 v0 = _mm256_set1_ps(s0), v1 = _mm256_set1_ps(s1), k = _mm256_set1_ps(1.702f);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i), r;
        switch (op) {
        case ND_OP_GELU: r = nd_gelu256(v); break;
        case ND_OP_QUICK_GELU: {
            __m256 e = nd_exp256(_mm256_mul_ps(v, _mm256_set1_ps(-1.702f)));
            (void)k;
            r = _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
            break;
        }
        case ND_OP_SILU: r = nd_silu256(v); break;
        default: r = _mm256_fmadd_ps(v, v0, v1); break;
        }
        _mm256_storeu_ps(y + i, r);
    }
    unary_plain(op, x + i, y + i, n - i, s0, s1);
}

ND_AVX2 static void geglu_avx2(const float *x, float *y, int64_t C)
{
    int64_t i = 0;
    for (; i + 8 <= C; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(x + i),
                                              nd_gelu256(_mm256_loadu_ps(x + C + i))));
    for (; i < C; i++)
        y[i] = x[i] * nd_gelu_f(x[C + i]);
}

/* y[i] = a[i] op b[i*bs], bs 0 or 1 */
ND_AVX2 static void binary_avx2(bool add, const float *a, const float *b, int64_t bs, float *y,
                                int64_t n)
{
    int64_t i = 0;
    if (bs == 0) {
        __m256 vb = _mm256_set1_ps(b[0]);
        for (; i + 8 <= n; i += 8) {
            __m256 va = _mm256_loadu_ps(a + i);
            _mm256_storeu_ps(y + i, add ? _mm256_add_ps(va, vb) : _mm256_mul_ps(va, vb));
        }
    } else {
        for (; i + 8 <= n; i += 8) {
            __m256 va = _mm256_loadu_ps(a + i), vb = _mm256_loadu_ps(b + i);
            _mm256_storeu_ps(y + i, add ? _mm256_add_ps(va, vb) : _mm256_mul_ps(va, vb));
        }
    }
    for (; i < n; i++)
        y[i] = add ? a[i] + b[i * bs] : a[i] * b[i * bs];
}
#endif

#ifdef ND_HAVE_X86
/* SiLU or GELU on 16 lanes, masked tail */
ND_AVX512 static void act_avx512(bool gelu, const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = lanes(n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        _mm512_mask_storeu_ps(y + i, m, gelu ? nd_gelu512(v) : nd_silu512(v));
    }
}

ND_AVX512 static void geglu_avx512(const float *x, float *y, int64_t C)
{
    for (int64_t i = 0; i < C; i += 16) {
        __mmask16 m = lanes(C - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i),
                                                      nd_gelu512(_mm512_maskz_loadu_ps(m, x + C + i))));
    }
}
#endif

static void unary_task(void *vc, int64_t t, int thread)
{
    (void)thread;
    const elem_ctx *c = vc;
    int64_t i0 = t * CHUNK, n = c->n - i0 < CHUNK ? c->n - i0 : CHUNK;
#ifdef ND_HAVE_X86
    if (c->avx512 && (c->op == ND_OP_SILU || c->op == ND_OP_GELU)) {
        act_avx512(c->op == ND_OP_GELU, c->a + i0, c->y + i0, n);
        return;
    }
    if (c->avx2) {
        unary_avx2(c->op, c->a + i0, c->y + i0, n, c->s0, c->s1);
        return;
    }
#endif
    unary_plain(c->op, c->a + i0, c->y + i0, n, c->s0, c->s1);
}

static void geglu_task(void *vc, int64_t r, int thread)
{
    (void)thread;
    const elem_ctx *c = vc;
    const float *x = c->a + r * 2 * c->L;
    float *y = c->y + r * c->L;
#ifdef ND_HAVE_X86
    if (c->avx512) {
        geglu_avx512(x, y, c->L);
        return;
    }
    if (c->avx2) {
        geglu_avx2(x, y, c->L);
        return;
    }
#endif
    for (int64_t i = 0; i < c->L; i++)
        y[i] = x[i] * nd_gelu_f(x[c->L + i]);
}

/* One task = one chunk of one row of the merged broadcast plan. */
static void binary_task(void *vc, int64_t t, int thread)
{
    (void)thread;
    const elem_ctx *c = vc;
    const nd_bcast *p = &c->bc;
    int last = p->nd - 1;
    int64_t L = p->n[last], row = t / c->nchunk, j0 = (t % c->nchunk) * CHUNK;
    int64_t n = L - j0 < CHUNK ? L - j0 : CHUNK;
    int64_t boff = 0, rem = row;
    for (int d = last - 1; d >= 0; d--) {
        boff += (rem % p->n[d]) * p->bs[d];
        rem /= p->n[d];
    }
    int64_t bs = p->bs[last];
    const float *a = c->a + row * L + j0, *b = c->b + boff + j0 * bs;
    float *y = c->y + row * L + j0;
    bool add = c->op == ND_OP_ADD;
#ifdef ND_HAVE_X86
    if (c->avx2) {
        binary_avx2(add, a, b, bs, y, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++)
        y[i] = add ? a[i] + b[i * bs] : a[i] * b[i * bs];
}

/* ---- shape ops ------------------------------------------------------------------------ */

typedef struct {
    const float *x;
    float *y;
    int64_t d0, d1, d2; /* op-specific sizes */
    bool avx2, avx512;
} shape_ctx;

/* concat: one task = one chunk of one of the two copies of one image */
typedef struct {
    const float *a, *b;
    float *y;
    int64_t sa, sb, nca, ncb; /* per-image sizes; chunks per copy */
} cat_ctx;

static void concat_task(void *vc, int64_t t, int thread)
{
    (void)thread;
    const cat_ctx *c = vc;
    int64_t per = c->nca + c->ncb, n = t / per, k = t % per;
    bool first = k < c->nca;
    int64_t s = first ? c->sa : c->sb, j0 = (first ? k : k - c->nca) * CHUNK;
    int64_t len = s - j0 < CHUNK ? s - j0 : CHUNK;
    const float *src = (first ? c->a + n * c->sa : c->b + n * c->sb) + j0;
    float *dst = c->y + n * (c->sa + c->sb) + (first ? 0 : c->sa) + j0;
    memcpy(dst, src, (size_t)len * 4);
}

#define UP_ROWS 32 /* input rows per task: one row (64 floats) was too small a task */

#ifdef ND_HAVE_X86
/* One input row into its two output rows: each 16 inputs become 32 outputs
 * by two lane permutes, stored to both rows (masked at the row's end). */
ND_AVX512 static void upsample_row_avx512(const float *src, float *d0, float *d1, int64_t W)
{
    const __m512i lo = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    const __m512i hi = _mm512_set_epi32(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8);
    for (int64_t x = 0; x < W; x += 16) {
        int64_t n = W - x; /* inputs left; the outputs' masks cover 2n */
        __mmask16 m = lanes(n), m0 = lanes(2 * n), m1 = lanes(2 * n - 16);
        __m512 v = _mm512_maskz_loadu_ps(m, src + x);
        __m512 a = _mm512_permutexvar_ps(lo, v), b = _mm512_permutexvar_ps(hi, v);
        _mm512_mask_storeu_ps(d0 + 2 * x, m0, a);
        _mm512_mask_storeu_ps(d1 + 2 * x, m0, a);
        _mm512_mask_storeu_ps(d0 + 2 * x + 16, m1, b);
        _mm512_mask_storeu_ps(d1 + 2 * x + 16, m1, b);
    }
}
#endif

static void upsample_task(void *vc, int64_t t, int thread)
{
    (void)thread;
    const shape_ctx *c = vc; /* rows [t*UP_ROWS, ...) of d2 = planes*H; d0 = H, d1 = W */
    int64_t H = c->d0, W = c->d1;
    int64_t r1 = (t + 1) * UP_ROWS < c->d2 ? (t + 1) * UP_ROWS : c->d2;
    for (int64_t r = t * UP_ROWS; r < r1; r++) {
        int64_t plane = r / H, iy = r % H;
        const float *src = c->x + (plane * H + iy) * W;
        float *dst = c->y + (plane * 2 * H + 2 * iy) * 2 * W;
#ifdef ND_HAVE_X86
        if (c->avx512) {
            upsample_row_avx512(src, dst, dst + 2 * W, W);
            continue;
        }
#endif
        for (int64_t x = 0; x < W; x++)
            dst[2 * x] = dst[2 * x + 1] = src[x];
        memcpy(dst + 2 * W, dst, (size_t)(2 * W) * 4);
    }
}

#define TB 32
#ifdef ND_HAVE_X86
/* y[j*ldy + i] = x[i*ldx + j], i, j < 8 */
ND_AVX2 static void tr8x8(const float *x, int64_t ldx, float *y, int64_t ldy)
{
    __m256 r[8], t[8];
    for (int i = 0; i < 8; i++)
        r[i] = _mm256_loadu_ps(x + i * ldx);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        _mm256_storeu_ps(y + i * ldy, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
        _mm256_storeu_ps(y + (i + 4) * ldy, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
    }
}

/* one task's share: output rows [n0,n1) (input columns), every m */
ND_AVX2 static void transpose_avx2(const float *x, float *y, int64_t M, int64_t N, int64_t n0,
                                   int64_t n1)
{
    int64_t m = 0;
    for (; m + 8 <= M; m += 8) {
        int64_t n = n0;
        for (; n + 8 <= n1; n += 8)
            tr8x8(x + m * N + n, N, y + n * M + m, M);
        for (; n < n1; n++)
            for (int64_t i = m; i < m + 8; i++)
                y[n * M + i] = x[i * N + n];
    }
    for (int64_t n = n0; n < n1; n++)
        for (int64_t i = m; i < M; i++)
            y[n * M + i] = x[i * N + n];
}

/* AVX2: one task = (b, block of TN output rows): the TN output rows are
 * written 8 columns at a time and stay in L1 until their lines are full */
#define TN 64
static void transpose_task_avx2(void *vc, int64_t t, int thread)
{
    (void)thread;
    const shape_ctx *c = vc;
    int64_t M = c->d1, N = c->d2, nnb = (N + TN - 1) / TN;
    int64_t b = t / nnb, n0 = (t % nnb) * TN, n1 = n0 + TN < N ? n0 + TN : N;
    transpose_avx2(c->x + b * M * N, c->y + b * M * N, M, N, n0, n1);
}
#endif

static void transpose_task(void *vc, int64_t t, int thread)
{
    (void)thread;
    const shape_ctx *c = vc; /* x[B,M,N]; t = (b, m-block) */
    int64_t M = c->d1, N = c->d2, nmb = (M + TB - 1) / TB;
    int64_t b = t / nmb, m0 = (t % nmb) * TB, m1 = m0 + TB < M ? m0 + TB : M;
    const float *x = c->x + b * M * N;
    float *y = c->y + b * M * N;
    for (int64_t n0 = 0; n0 < N; n0 += TB) {
        int64_t n1 = n0 + TB < N ? n0 + TB : N;
        for (int64_t n = n0; n < n1; n++) /* contiguous writes */
            for (int64_t m = m0; m < m1; m++)
                y[n * M + m] = x[m * N + n];
    }
}

/* ---- copy / dtype conversion ------------------------------------------------------- */

typedef struct {
    const void *x;
    void *y;
    nd_dtype dx, dy;
    int64_t n;
    bool avx512;
} copy_ctx;

/* f32 -> f16 and back; with AVX-512, vcvtps2ph / vcvtph2ps on 16 lanes:
 * IEEE round-to-nearest-even like F16C's 8-lane forms (nd_f32_to_f16_n),
 * so the same bits at twice the width; the tail (masked 16-bit stores
 * would need AVX-512BW) and other CPUs through nd_f32_to_f16_n */
#ifdef ND_HAVE_X86
ND_AVX512 static int64_t f32_to_f16_avx512(const float *x, uint16_t *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(y + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    return i;
}

ND_AVX512 static int64_t f16_to_f32_avx512(const uint16_t *x, float *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i))));
    return i;
}
#endif

static void copy_task(void *vc, int64_t t, int thread)
{
    (void)thread;
    const copy_ctx *c = vc;
    int64_t i0 = t * CHUNK, n = c->n - i0 < CHUNK ? c->n - i0 : CHUNK, i = 0;
    if (c->dx == c->dy) {
        size_t es = nd_dtype_size(c->dx);
        memcpy((char *)c->y + (size_t)i0 * es, (const char *)c->x + (size_t)i0 * es, (size_t)n * es);
    } else if (c->dy == ND_F16) {
        const float *x = (const float *)c->x + i0;
        uint16_t *y = (uint16_t *)c->y + i0;
#ifdef ND_HAVE_X86
        if (c->avx512)
            i = f32_to_f16_avx512(x, y, n);
#endif
        nd_f32_to_f16_n(x + i, y + i, (size_t)(n - i));
    } else {
        const uint16_t *x = (const uint16_t *)c->x + i0;
        float *y = (float *)c->y + i0;
#ifdef ND_HAVE_X86
        if (c->avx512)
            i = f16_to_f32_avx512(x, y, n);
#endif
        nd_f16_to_f32_n(x + i, y + i, (size_t)(n - i));
    }
}

nd_status cpu_copy(nd_backend *be, const nd_op_call *c)
{
    const nd_tensor *x = c->src[0];
    nd_tensor *y = c->dst;
    copy_ctx cc = {x->data, y->data, x->dtype, y->dtype, nd_tensor_numel(x),
                   cpu_of(be)->avx512};
    if (x->data == y->data) /* a copy onto itself (nd_op_run refuses converting in place) */
        return ND_OK;
    size_t bx = nd_tensor_bytes(x), by = nd_tensor_bytes(y);
    const char *xb = x->data, *yb = y->data;
    if (xb < yb + by && yb < xb + bx) { /* overlapping: one memmove, as cpu_ref */
        memmove(y->data, x->data, bx);
        return ND_OK;
    }
    nd_pool_run(cpu_of(be)->pool, (cc.n + CHUNK - 1) / CHUNK, copy_task, &cc);
    return ND_OK;
}

nd_status cpu_elem(nd_backend *be, const nd_op_call *c, nd_err *err)
{
    const nd_tensor *a = c->src[0], *b = c->src[1];
    nd_tensor *y = c->dst;
    nd_pool *pool = cpu_of(be)->pool;
    elem_ctx e = {.op = c->op, .a = a->data, .b = b ? b->data : NULL, .y = y->data,
                  .n = nd_tensor_numel(a), .avx2 = cpu_of(be)->avx2,
                  .avx512 = cpu_of(be)->avx512};
    switch (c->op) {
    case ND_OP_GELU:
    case ND_OP_QUICK_GELU:
    case ND_OP_SILU:
    case ND_OP_SCALE:
        if (c->op == ND_OP_SCALE) {
            e.s0 = c->p.scale.scale;
            e.s1 = c->p.scale.bias;
        }
        nd_pool_run(pool, (e.n + CHUNK - 1) / CHUNK, unary_task, &e);
        return ND_OK;
    case ND_OP_GEGLU:
        e.L = y->shape[y->ndim - 1];
        nd_pool_run(pool, nd_tensor_numel(y) / e.L, geglu_task, &e);
        return ND_OK;
    case ND_OP_ADD:
    case ND_OP_MUL: {
        nd_bcast_plan(a, b, &e.bc);
        int64_t L = e.bc.n[e.bc.nd - 1];
        e.nchunk = (L + CHUNK - 1) / CHUNK;
        nd_pool_run(pool, e.n / L * e.nchunk, binary_task, &e);
        return ND_OK;
    }
    case ND_OP_CONCAT: {
        /* per image: two copies, in chunks over the pool */
        int64_t N = a->shape[0], sa = nd_tensor_numel(a) / N, sb = nd_tensor_numel(b) / N;
        cat_ctx cc = {a->data, b->data, y->data, sa, sb, (sa + CHUNK - 1) / CHUNK,
                      (sb + CHUNK - 1) / CHUNK};
        nd_pool_run(pool, N * (cc.nca + cc.ncb), concat_task, &cc);
        return ND_OK;
    }
    case ND_OP_UPSAMPLE2X: {
        int64_t rows = a->shape[0] * a->shape[1] * a->shape[2];
        shape_ctx s = {a->data, y->data, a->shape[2], a->shape[3], rows, e.avx2, e.avx512};
        nd_pool_run(pool, (rows + UP_ROWS - 1) / UP_ROWS, upsample_task, &s);
        return ND_OK;
    }
    case ND_OP_TRANSPOSE: {
        shape_ctx s = {a->data, y->data, a->shape[0], a->shape[1], a->shape[2], e.avx2, e.avx512};
#ifdef ND_HAVE_X86
        if (e.avx2) {
            nd_pool_run(pool, a->shape[0] * ((a->shape[2] + TN - 1) / TN), transpose_task_avx2, &s);
            return ND_OK;
        }
#endif
        nd_pool_run(pool, a->shape[0] * ((a->shape[1] + TB - 1) / TB), transpose_task, &s);
        return ND_OK;
    }
    default:
        return nd_fail(err, ND_EUNSUPPORTED, "cpu: no element-wise kernel for %s",
                       nd_op_name(c->op));
    }
}
