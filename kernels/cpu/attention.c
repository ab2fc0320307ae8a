/* kernels/cpu/attention.c - flash-style attention on the CPU.
 *
 * Layout [B, N, H*d] (what the q/k/v linears produce), so the model needs no
 * transposes. One task = (batch, head, tile of BQ query rows); the task walks
 * the keys in tiles of BK, keeping per query row a running max m, running sum
 * l and an unnormalised output O (online softmax). The BQ x BK score tile
 * and O live in per-thread scratch of (BQ*BK + BQ*d + 2*BQ) floats; K is
 * transposed once per call into the workspace (as big as K). Memory is
 * O(N*d); the N x N score matrix never exists.
 *
 * Both products (S = Q K^T with K packed transposed, O += P V) go through a
 * small register-blocked GEMM: on AVX-512 CPUs 8 rows x up to 48 columns with
 * masked edges, Q packed once per task and A's strides fixed at compile time
 * (plus a 16-lane softmax); else 6 x 16 with AVX2/FMA; else a plain loop.
 * (BQ*d more floats per thread hold the packed Q tile.) */
#include "kernels/cpu/gemm512.h"

#include <string.h>

#define BQ 96

/* keys per tile: 256 or 128 (the AVX-512 GEMM has these strides built in);
 * 256 for the small heads halves the per-tile softmax and rescale work */
static int64_t bk_for(int64_t d)
{
    return d <= 80 ? 256 : 128;
}

static size_t per_thread_floats(int64_t d)
{
    int64_t bk = bk_for(d);
    /* each piece rounded up to 16 floats (64 bytes) */
    return (size_t)(((BQ * bk + 15) / 16 + 2 * ((BQ * d + 15) / 16) + 2 * ((BQ + 15) / 16)) * 16);
}

/* K transposed once per call, tile by tile: [B][H][key tile][d][BK], so the
 * score GEMM reads one contiguous d x BK block (a [d][Nk] layout made the 40
 * rows of a block 70 KB apart at 17408 keys: TLB and cache-set thrashing).
 * As big as K plus one padded tile per head: O(N d). */
static size_t kt_bytes(const nd_op_call *c)
{
    const nd_tensor *k = c->src[1];
    int64_t d = k->shape[2] / c->p.attn.n_heads, bk = bk_for(d);
    int64_t nt = (k->shape[1] + bk - 1) / bk;
    return (size_t)(k->shape[0] * k->shape[2] * nt * bk) * 4 + ND_ARENA_ALIGN;
}

/* ---- heads of 8 or 16 channels: keys in the lanes ------------------------------
 * The tile GEMMs below have K = d; at d = 8 (the default model's heads) a
 * 16-lane micro-kernel spends more on loop overhead and the per-tile online
 * softmax than on multiplies (~20 GFLOP/s). Here the keys are in the lanes
 * instead: 16 scores of one query row are d FMAs on K^T, then one exp, then d
 * FMAs on V^T into 16-lane accumulators, reduced once per row at the end.
 * A row's scores all fit in scratch (Nk floats), so the softmax is exact in
 * two passes (max, then exp) with no rescaling. Memory stays O(N d): K^T and
 * V^T ([B][H][d][Nk rounded up to 16], zero-padded) plus 2 rows of scores
 * per thread. AVX-512 only, not causal (CLIP's heads are 64 wide). */
static bool small_heads(const nd_backend *be, const nd_op_call *c)
{
    int64_t d = c->src[0]->shape[2] / c->p.attn.n_heads;
    return cpu_of((nd_backend *)be)->avx512 && !c->p.attn.causal && (d == 8 || d == 16);
}

static int64_t small_nkp(const nd_op_call *c)
{
    return (c->src[1]->shape[1] + 15) / 16 * 16;
}

static size_t small_ws(const nd_backend *be, const nd_op_call *c)
{
    const nd_tensor *k = c->src[1];
    size_t kv = (size_t)(k->shape[0] * k->shape[2] * small_nkp(c)) * 4;
    return 2 * (kv + ND_ARENA_ALIGN) + (size_t)be->n_threads * (2 * small_nkp(c) * 4 + 64) +
           ND_ARENA_ALIGN;
}

size_t cpu_attention_ws(const nd_backend *be, const nd_op_call *c)
{
    if (small_heads(be, c))
        return small_ws(be, c);
    int64_t d = c->src[0]->shape[2] / c->p.attn.n_heads;
    return kt_bytes(c) + (size_t)be->n_threads * per_thread_floats(d) * 4 + ND_ARENA_ALIGN;
}

typedef struct {
    const float *q, *k, *v, *kt;
    float *o;
    int64_t Nq, Nk, C, H, d, bk, n_qt, n_kt;
    float scale;
    bool causal, avx2, avx512;
    float *scratch;
    size_t per_thread;
} attn_ctx;

/* ---- the small GEMM: C[M,N] (+)= A[M,K] B[K,N], all row-major with strides --- */

static void gemm_plain(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float *C, int64_t ldc, bool acc)
{
    for (int64_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (!acc)
            memset(c, 0, (size_t)N * 4);
        for (int64_t k = 0; k < K; k++) {
            float a = A[i * lda + k];
            const float *b = B + k * ldb;
            for (int64_t j = 0; j < N; j++)
                c[j] += a * b[j];
        }
    }
}

#ifdef ND_HAVE_X86
ND_AVX2 static inline __attribute__((always_inline)) void
micro(const int mr, const int nv, const int nc, const bool full, int64_t K, const float *A, int64_t lda,
      const float *B, int64_t ldb, float *C, int64_t ldc, bool acc)
{
    __m256 c0[6], c1[6];
#pragma GCC unroll 6
    for (int r = 0; r < 6; r++)
        c0[r] = c1[r] = _mm256_setzero_ps();
    __m256i m0 = nd_tail_mask(nc >= 8 ? 8 : nc), m1 = nd_tail_mask(nc > 8 ? nc - 8 : 0);
    for (int64_t k = 0; k < K; k++) {
        const float *bk = B + k * ldb;
        __m256 b0 = full ? _mm256_loadu_ps(bk) : _mm256_maskload_ps(bk, m0);
        /* nv == 1: a block of at most 8 columns, one vector per row (d = 40
         * ends in one; two would waste half the FMAs) */
        __m256 b1 = nv == 1 ? _mm256_setzero_ps()
                    : full  ? _mm256_loadu_ps(bk + 8)
                            : _mm256_maskload_ps(bk + 8, m1);
#pragma GCC unroll 6
        for (int r = 0; r < 6; r++) {
            if (r < mr) {
                __m256 a = _mm256_broadcast_ss(A + r * lda + k);
                c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
                if (nv == 2)
                    c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
            }
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < 6; r++) {
        if (r >= mr)
            break;
        float *cr = C + r * ldc;
        if (full) {
            if (acc) {
                c0[r] = _mm256_add_ps(c0[r], _mm256_loadu_ps(cr));
                c1[r] = _mm256_add_ps(c1[r], _mm256_loadu_ps(cr + 8));
            }
            _mm256_storeu_ps(cr, c0[r]);
            _mm256_storeu_ps(cr + 8, c1[r]);
        } else {
            if (acc)
                c0[r] = _mm256_add_ps(c0[r], _mm256_maskload_ps(cr, m0));
            _mm256_maskstore_ps(cr, m0, c0[r]);
            if (nv == 2) {
                if (acc)
                    c1[r] = _mm256_add_ps(c1[r], _mm256_maskload_ps(cr + 8, m1));
                _mm256_maskstore_ps(cr + 8, m1, c1[r]);
            }
        }
    }
}

#define MICRO_CASES(NV, NC, FULL)                                                 \
    switch (mr) {                                                                 \
    case 6: micro(6, NV, NC, FULL, K, a, lda, b, ldb, c, ldc, acc); break;        \
    case 5: micro(5, NV, NC, FULL, K, a, lda, b, ldb, c, ldc, acc); break;        \
    case 4: micro(4, NV, NC, FULL, K, a, lda, b, ldb, c, ldc, acc); break;        \
    case 3: micro(3, NV, NC, FULL, K, a, lda, b, ldb, c, ldc, acc); break;        \
    case 2: micro(2, NV, NC, FULL, K, a, lda, b, ldb, c, ldc, acc); break;        \
    default: micro(1, NV, NC, FULL, K, a, lda, b, ldb, c, ldc, acc); break;       \
    }

ND_AVX2 static void gemm_avx2(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                              const float *B, int64_t ldb, float *C, int64_t ldc, bool acc)
{
    for (int64_t i = 0; i < M; i += 6) {
        int mr = M - i < 6 ? (int)(M - i) : 6;
        for (int64_t j = 0; j < N; j += 16) {
            int nc = N - j < 16 ? (int)(N - j) : 16;
            const float *a = A + i * lda, *b = B + j;
            float *c = C + i * ldc + j;
            if (nc == 16) {
                MICRO_CASES(2, 16, true)
            } else if (nc == 8) { /* masked stores are slow (microcoded on AMD) */
                MICRO_CASES(1, 8, true)
            } else if (nc > 8) {
                MICRO_CASES(2, nc, false)
            } else {
                MICRO_CASES(1, nc, false)
            }
        }
    }
}

/* softmax_tile_avx2 on 16 lanes, with masked tails and the O rescale
 * vectorised */
ND_AVX512 static void softmax_tile_avx512(float *S, int64_t ld, int64_t mq, int64_t nk,
                                          const int64_t *lim, float scale, float *m, float *l,
                                          float *O, int64_t d)
{
    const __m512 vs = _mm512_set1_ps(scale);
    for (int64_t r = 0; r < mq; r++) {
        float *s = S + r * ld;
        int64_t n = lim[r];
        if (n <= 0) {
            memset(s, 0, (size_t)nk * 4);
            continue;
        }
        __m512 vmx = _mm512_set1_ps(-INFINITY);
        for (int64_t j = 0; j < n; j += 16)
            vmx = _mm512_max_ps(vmx, _mm512_mask_loadu_ps(vmx, lanes(n - j), s + j));
        float mx = _mm512_reduce_max_ps(vmx) * scale;
        float mnew = m[r] > mx ? m[r] : mx;
        __m512 vm = _mm512_set1_ps(mnew), vsum = _mm512_setzero_ps();
        for (int64_t j = 0; j < nk; j += 16) {
            __mmask16 mk = lanes(n - j);
            __m512 p = _mm512_maskz_mov_ps(
                mk, nd_exp512(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(mk, s + j), vs, vm)));
            _mm512_mask_storeu_ps(s + j, lanes(nk - j), p);
            vsum = _mm512_add_ps(vsum, p);
        }
        float alpha = expf(m[r] - mnew);
        l[r] = l[r] * alpha + _mm512_reduce_add_ps(vsum);
        m[r] = mnew;
        if (alpha != 1.0f) {
            float *o = O + r * d;
            __m512 va = _mm512_set1_ps(alpha);
            for (int64_t c = 0; c < d; c += 16) {
                __mmask16 mk = lanes(d - c);
                _mm512_mask_storeu_ps(o + c, mk, _mm512_mul_ps(va, _mm512_maskz_loadu_ps(mk, o + c)));
            }
        }
    }
}

/* Q rows [0,mq) (row stride ld) into [row block of 8][k][8], zero-padded */
static void pack_q8(const float *Q, int64_t ld, int64_t mq, int64_t d, float *P)
{
    for (int64_t i0 = 0; i0 < mq; i0 += 8)
        for (int64_t k = 0; k < d; k++)
            for (int r = 0; r < 8; r++)
                *P++ = i0 + r < mq ? Q[(i0 + r) * ld + k] : 0.0f;
}

/* Online-softmax update of rows [0,mq) of the score tile (see file comment). */
ND_AVX2 static void softmax_tile_avx2(float *S, int64_t ld, int64_t mq, int64_t nk,
                                      const int64_t *lim, float scale, float *m, float *l,
                                      float *O, int64_t d)
{
    const __m256 vs = _mm256_set1_ps(scale);
    for (int64_t r = 0; r < mq; r++) {
        float *s = S + r * ld;
        int64_t n = lim[r];
        if (n <= 0) {
            memset(s, 0, (size_t)nk * 4);
            continue;
        }
        __m256 vmx = _mm256_set1_ps(-INFINITY);
        int64_t j = 0;
        for (; j + 8 <= n; j += 8)
            vmx = _mm256_max_ps(vmx, _mm256_loadu_ps(s + j));
        float mx = nd_hmax256(vmx);
        for (; j < n; j++)
            mx = s[j] > mx ? s[j] : mx;
        mx *= scale;
        float mnew = m[r] > mx ? m[r] : mx;
        float alpha = expf(m[r] - mnew);
        __m256 vm = _mm256_set1_ps(mnew), vsum = _mm256_setzero_ps();
        for (j = 0; j + 8 <= n; j += 8) {
            __m256 p = nd_exp256(_mm256_fmsub_ps(_mm256_loadu_ps(s + j), vs, vm));
            _mm256_storeu_ps(s + j, p);
            vsum = _mm256_add_ps(vsum, p);
        }
        float sum = nd_hsum256(vsum);
        for (; j < n; j++) {
            s[j] = expf(s[j] * scale - mnew);
            sum += s[j];
        }
        for (; j < nk; j++)
            s[j] = 0.0f;
        l[r] = l[r] * alpha + sum;
        m[r] = mnew;
        if (alpha != 1.0f) {
            float *o = O + r * d;
            for (int64_t c = 0; c < d; c++)
                o[c] *= alpha;
        }
    }
}
#endif

static void softmax_tile_plain(float *S, int64_t ld, int64_t mq, int64_t nk, const int64_t *lim,
                               float scale, float *m, float *l, float *O, int64_t d)
{
    for (int64_t r = 0; r < mq; r++) {
        float *s = S + r * ld;
        int64_t n = lim[r];
        if (n <= 0) {
            memset(s, 0, (size_t)nk * 4);
            continue;
        }
        float mx = -INFINITY;
        for (int64_t j = 0; j < n; j++)
            mx = s[j] * scale > mx ? s[j] * scale : mx;
        float mnew = m[r] > mx ? m[r] : mx, alpha = expf(m[r] - mnew), sum = 0.0f;
        for (int64_t j = 0; j < n; j++) {
            s[j] = expf(s[j] * scale - mnew);
            sum += s[j];
        }
        for (int64_t j = n; j < nk; j++)
            s[j] = 0.0f;
        l[r] = l[r] * alpha + sum;
        m[r] = mnew;
        for (int64_t c = 0; c < d; c++)
            O[r * d + c] *= alpha;
    }
}

static void attn_task(void *vc, int64_t t, int thread)
{
    const attn_ctx *a = vc;
    int64_t qt = t % a->n_qt, h = (t / a->n_qt) % a->H, b = t / (a->n_qt * a->H);
    int64_t d = a->d, C = a->C, bk = a->bk;
    int64_t i0 = qt * BQ, mq = a->Nq - i0 < BQ ? a->Nq - i0 : BQ;
    float *S = a->scratch + (size_t)thread * a->per_thread;
    float *O = S + (BQ * bk + 15) / 16 * 16;
    float *m = O + (BQ * d + 15) / 16 * 16;
    float *l = m + (BQ + 15) / 16 * 16;
    float *Qp = l + (BQ + 15) / 16 * 16; /* Q tile packed (AVX-512 path) */
    int64_t lim[BQ];
    memset(O, 0, (size_t)(mq * d) * 4);
    for (int64_t r = 0; r < mq; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    const float *Q = a->q + (b * a->Nq + i0) * C + h * d;
    for (int64_t j0 = 0; j0 < a->Nk; j0 += bk) {
        if (a->causal && j0 > i0 + mq - 1)
            break; /* every later key is masked for this tile */
        int64_t nk = a->Nk - j0 < bk ? a->Nk - j0 : bk;
        const float *kt = a->kt + ((b * a->H + h) * a->n_kt + j0 / bk) * d * bk;
        for (int64_t r = 0; r < mq; r++) {
            int64_t n = a->causal ? i0 + r - j0 + 1 : nk;
            lim[r] = n < nk ? n : nk;
        }
        const float *Vb = a->v + (b * a->Nk + j0) * C + h * d;
#ifdef ND_HAVE_X86
        if (a->avx512) {
            if (j0 == 0)
                pack_q8(Q, C, mq, d, Qp);
            gemm_avx512(A_PACKED8, mq, nk, d, Qp, kt, bk, S, bk, false, NULL);
            softmax_tile_avx512(S, bk, mq, nk, lim, a->scale, m, l, O, d);
            gemm_avx512(bk == 256 ? A_ROW256 : bk == 128 ? A_ROW128 : A_ROW64, mq, d, nk, S, Vb,
                        C, O, d, true, NULL);
            continue;
        }
        if (a->avx2) {
            gemm_avx2(mq, nk, d, Q, C, kt, bk, S, bk, false);
            softmax_tile_avx2(S, bk, mq, nk, lim, a->scale, m, l, O, d);
            gemm_avx2(mq, d, nk, S, bk, Vb, C, O, d, true);
            continue;
        }
#endif
        gemm_plain(mq, nk, d, Q, C, kt, bk, S, bk, false);
        softmax_tile_plain(S, bk, mq, nk, lim, a->scale, m, l, O, d);
        gemm_plain(mq, d, nk, S, bk, Vb, C, O, d, true);
    }
    float *out = a->o + (b * a->Nq + i0) * C + h * d;
    for (int64_t r = 0; r < mq; r++) {
        float inv = 1.0f / l[r];
        for (int64_t c = 0; c < d; c++)
            out[r * C + c] = O[r * d + c] * inv;
    }
}

/* One task = one (batch, head, key tile): kt block[c][j] = k[b][j0+j][h*d+c]. */
typedef struct {
    const float *k;
    float *kt;
    int64_t Nk, C, H, d, bk, n_kt;
} kt_ctx;

static void kt_task(void *vc, int64_t t, int thread)
{
    (void)thread;
    const kt_ctx *c = vc;
    int64_t tile = t % c->n_kt, h = (t / c->n_kt) % c->H, b = t / (c->n_kt * c->H);
    int64_t j0 = tile * c->bk, nk = c->Nk - j0 < c->bk ? c->Nk - j0 : c->bk;
    const float *k = c->k + (b * c->Nk + j0) * c->C + h * c->d;
    float *kt = c->kt + t * c->d * c->bk;
    for (int64_t j = 0; j < nk; j++)
        for (int64_t ch = 0; ch < c->d; ch++)
            kt[ch * c->bk + j] = k[j * c->C + ch];
}

#ifdef ND_HAVE_X86
typedef struct {
    const float *q, *k, *v;
    float *kt, *vt, *o, *scratch;
    int64_t Nq, Nk, nkp, C, H, d, n_qb;
    float scale;
} small_ctx;

/* rows per task */
#define SQ 32

/* One task = (batch, head): kt[c][j] = k[j][h*d + c], the same for V;
 * the padding keys are zeros. */
static void small_tr_task(void *vc, int64_t t, int thread)
{
    (void)thread;
    const small_ctx *a = vc;
    int64_t h = t % a->H, b = t / a->H, d = a->d;
    const float *src[2] = {a->k + b * a->Nk * a->C + h * d, a->v + b * a->Nk * a->C + h * d};
    float *dst[2] = {a->kt + t * d * a->nkp, a->vt + t * d * a->nkp};
    for (int w = 0; w < 2; w++) {
        for (int64_t j = 0; j < a->Nk; j++)
            for (int64_t c = 0; c < d; c++)
                dst[w][c * a->nkp + j] = src[w][j * a->C + c];
        for (int64_t c = 0; c < d; c++)
            memset(dst[w] + c * a->nkp + a->Nk, 0, (size_t)(a->nkp - a->Nk) * 4);
    }
}

/* 2^x for x <= 0 (softmax arguments after the max is taken out): x = n + f
 * with |f| <= 1/2, 2^f by its Taylor series to f^6 (relative error below
 * 1.3e-7), scaled by 2^n with vscalefps, which flushes to 0 far below the
 * range. Five operations fewer than nd_exp512, whose clamps and ln 2
 * splitting the two-pass softmax does not need. */
ND_AVX512 static inline __m512 exp2_neg512(__m512 x)
{
    __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(x, n);
    __m512 y = _mm512_set1_ps(1.5403530393e-4f); /* ln2^6 / 720 */
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(1.3333558146e-3f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(9.6181291076e-3f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(5.5504108665e-2f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(2.4022650696e-1f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(6.9314718056e-1f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(y, n);
}

/* The 8 sums of the lanes of v[0..7] (sums[c] = sum of v[c]'s 16 lanes) in
 * one 8-float vector: a transposing add tree, 15 shuffles and adds instead
 * of 8 separate reductions (which were a quarter of a 77-key row's work). */
ND_AVX512 static inline __m256 hsum8x16(const __m512 *v)
{
    __m512 t[4], u[2];
    for (int i = 0; i < 4; i++) /* per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3] */
        t[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                             _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
    for (int i = 0; i < 2; i++) { /* per lane: [a, b, c, d] partial sums */
        __m512d lo = _mm512_unpacklo_pd(_mm512_castps_pd(t[2 * i]), _mm512_castps_pd(t[2 * i + 1]));
        __m512d hi = _mm512_unpackhi_pd(_mm512_castps_pd(t[2 * i]), _mm512_castps_pd(t[2 * i + 1]));
        u[i] = _mm512_add_ps(_mm512_castpd_ps(lo), _mm512_castpd_ps(hi));
    }
    /* lanes of u0 (sums 0-3) and u1 (sums 4-7): add the four 128-bit lanes */
    __m512 w = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(u[0], u[1], _MM_SHUFFLE(3, 1, 3, 1)));
    /* w = [u0 l0+l1, u0 l2+l3, u1 l0+l1, u1 l2+l3]; z's lane 0 = u0's
     * total (sums 0-3), lane 2 = u1's (sums 4-7) */
    __m512 z = _mm512_add_ps(w, _mm512_shuffle_f32x4(w, w, _MM_SHUFFLE(2, 3, 0, 1)));
    __m256 lo = _mm512_castps512_ps256(z);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(z), 1));
    return _mm256_permute2f128_ps(lo, hi, 0x20);
}

/* R query rows (q, row stride ldq) against all keys; D = head width (16:
 * heads of 8 take small_rows8 below). */
ND_AVX512 static inline __attribute__((always_inline)) void
small_rows(const int D, const int R, const small_ctx *a, const float *q, const float *kt,
           const float *vt, float *s, float *out)
{
    const int64_t Nk = a->Nk, nkp = a->nkp, ldq = a->C;
    __m512 vmax[2], acc[2];
    for (int r = 0; r < R; r++)
        vmax[r] = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < Nk; j += 16) {
        __mmask16 mk = lanes(Nk - j);
        for (int r = 0; r < R; r++)
            acc[r] = _mm512_setzero_ps();
#pragma GCC unroll 16
        for (int c = 0; c < D; c++) {
            __m512 kv = _mm512_loadu_ps(kt + c * nkp + j);
            for (int r = 0; r < R; r++)
                acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[r * ldq + c]), kv, acc[r]);
        }
        for (int r = 0; r < R; r++) {
            _mm512_storeu_ps(s + r * nkp + j, acc[r]);
            vmax[r] = _mm512_mask_max_ps(vmax[r], mk, vmax[r], acc[r]);
        }
    }
    /* p = exp(scale (s - max)) = 2^(s * scale log2(e) - max * scale log2(e)) */
    __m512 vm[2], sum[2], o[2][16];
    const float sl = a->scale * 1.44269504088896341f;
    const __m512 vs = _mm512_set1_ps(sl);
    for (int r = 0; r < R; r++) {
        vm[r] = _mm512_set1_ps(_mm512_reduce_max_ps(vmax[r]) * sl);
        sum[r] = _mm512_setzero_ps();
        for (int c = 0; c < D; c++)
            o[r][c] = _mm512_setzero_ps();
    }
    for (int64_t j = 0; j < Nk; j += 16) {
        __mmask16 mk = lanes(Nk - j);
        __m512 p[2];
        for (int r = 0; r < R; r++) {
            p[r] = _mm512_maskz_mov_ps(
                mk, exp2_neg512(_mm512_fmsub_ps(_mm512_loadu_ps(s + r * nkp + j), vs, vm[r])));
            sum[r] = _mm512_add_ps(sum[r], p[r]);
        }
#pragma GCC unroll 16
        for (int c = 0; c < D; c++) {
            __m512 vv = _mm512_loadu_ps(vt + c * nkp + j);
            for (int r = 0; r < R; r++)
                o[r][c] = _mm512_fmadd_ps(p[r], vv, o[r][c]);
        }
    }
    for (int r = 0; r < R; r++) {
        __m256 inv = _mm256_set1_ps(1.0f / _mm512_reduce_add_ps(sum[r]));
        for (int c = 0; c < D; c += 8)
            _mm256_storeu_ps(out + r * ldq + c, _mm256_mul_ps(hsum8x16(o[r] + c), inv));
    }
}

/* Heads of 8 (the default model's), R = 1 or 2 query rows: small_rows with
 * every loop over rows and channels unrolled by hand (GCC -O2 left the row
 * loops rolled and kept p and the accumulators on the stack), q broadcast
 * once per row, pre-scaled by scale log2(e) (the exp argument is then one
 * subtraction), and each score's 8 products in two chains of 4. 1.45x
 * small_rows(8, 2) on 1104 keys (0.50 against 0.73 ns per score, one Zen 4
 * core). Padding keys are zeros in K^T and V^T: their scores are left out
 * of the max and their p masked in the last block only. */
ND_AVX512 static inline __attribute__((always_inline)) void
small_rows8(const int R, const small_ctx *a, const float *q, const float *kt, const float *vt,
            float *s, float *out)
{
    const int64_t Nk = a->Nk, nkp = a->nkp, ldq = a->C;
    const float sl = a->scale * 1.44269504088896341f;
    __m512 qb[2][8], vmax[2];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
        vmax[r] = _mm512_set1_ps(-INFINITY);
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++)
            qb[r][c] = _mm512_set1_ps(q[r * ldq + c] * sl);
    }
    for (int64_t j = 0; j < Nk; j += 16) {
        __m512 k[8], x[2];
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++)
            k[c] = _mm512_loadu_ps(kt + c * nkp + j);
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            __m512 y;
            x[r] = _mm512_mul_ps(qb[r][0], k[0]);
            y = _mm512_mul_ps(qb[r][4], k[4]);
            x[r] = _mm512_fmadd_ps(qb[r][1], k[1], x[r]);
            y = _mm512_fmadd_ps(qb[r][5], k[5], y);
            x[r] = _mm512_fmadd_ps(qb[r][2], k[2], x[r]);
            y = _mm512_fmadd_ps(qb[r][6], k[6], y);
            x[r] = _mm512_fmadd_ps(qb[r][3], k[3], x[r]);
            y = _mm512_fmadd_ps(qb[r][7], k[7], y);
            x[r] = _mm512_add_ps(x[r], y);
            _mm512_storeu_ps(s + r * nkp + j, x[r]);
        }
        if (j + 16 <= Nk) {
#pragma GCC unroll 2
            for (int r = 0; r < R; r++)
                vmax[r] = _mm512_max_ps(vmax[r], x[r]);
        } else {
            __mmask16 mk = lanes(Nk - j);
#pragma GCC unroll 2
            for (int r = 0; r < R; r++)
                vmax[r] = _mm512_mask_max_ps(vmax[r], mk, vmax[r], x[r]);
        }
    }
    __m512 vm[2], sum[2], o[2][8];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
        vm[r] = _mm512_set1_ps(_mm512_reduce_max_ps(vmax[r]));
        sum[r] = _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++)
            o[r][c] = _mm512_setzero_ps();
    }
    for (int64_t j = 0; j < Nk; j += 16) {
        __m512 p[2];
#pragma GCC unroll 2
        for (int r = 0; r < R; r++)
            p[r] = exp2_neg512(_mm512_sub_ps(_mm512_loadu_ps(s + r * nkp + j), vm[r]));
        if (j + 16 > Nk) {
            __mmask16 mk = lanes(Nk - j);
#pragma GCC unroll 2
            for (int r = 0; r < R; r++)
                p[r] = _mm512_maskz_mov_ps(mk, p[r]);
        }
#pragma GCC unroll 2
        for (int r = 0; r < R; r++)
            sum[r] = _mm512_add_ps(sum[r], p[r]);
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            __m512 vv = _mm512_loadu_ps(vt + c * nkp + j);
#pragma GCC unroll 2
            for (int r = 0; r < R; r++)
                o[r][c] = _mm512_fmadd_ps(p[r], vv, o[r][c]);
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
        __m256 inv = _mm256_set1_ps(1.0f / _mm512_reduce_add_ps(sum[r]));
        _mm256_storeu_ps(out + r * ldq, _mm256_mul_ps(hsum8x16(o[r]), inv));
    }
}

ND_AVX512 static void small_task(void *vc, int64_t t, int thread)
{
    const small_ctx *a = vc;
    int64_t qb = t % a->n_qb, bh = t / a->n_qb, h = bh % a->H, b = bh / a->H, d = a->d;
    int64_t i0 = qb * SQ, i1 = i0 + SQ < a->Nq ? i0 + SQ : a->Nq;
    const float *kt = a->kt + bh * d * a->nkp, *vt = a->vt + bh * d * a->nkp;
    float *s = a->scratch + (size_t)thread * (size_t)(2 * a->nkp + 16);
    for (int64_t i = i0; i < i1;) {
        const float *q = a->q + (b * a->Nq + i) * a->C + h * d;
        float *out = a->o + (b * a->Nq + i) * a->C + h * d;
        if (d == 8 && i + 2 <= i1) {
            small_rows8(2, a, q, kt, vt, s, out);
            i += 2;
        } else {
            if (d == 8)
                small_rows8(1, a, q, kt, vt, s, out);
            else
                small_rows(16, 1, a, q, kt, vt, s, out);
            i += 1;
        }
    }
}

static nd_status small_attention(nd_backend *be, const nd_op_call *c, nd_arena *ws, nd_err *err)
{
    const nd_tensor *q = c->src[0], *k = c->src[1];
    int64_t C = q->shape[2], H = c->p.attn.n_heads, d = C / H, B = q->shape[0];
    small_ctx a = {
        .q = q->data, .k = k->data, .v = c->src[2]->data, .o = c->dst->data,
        .Nq = q->shape[1], .Nk = k->shape[1], .nkp = small_nkp(c), .C = C, .H = H, .d = d,
        .n_qb = (q->shape[1] + SQ - 1) / SQ,
        .scale = c->p.attn.scale > 0 ? c->p.attn.scale : 1.0f / sqrtf((float)d),
    };
    size_t kv = (size_t)(B * C * a.nkp) * 4;
    a.kt = nd_arena_alloc(ws, kv, err);
    a.vt = a.kt ? nd_arena_alloc(ws, kv, err) : NULL;
    a.scratch = a.vt ? nd_arena_alloc(ws, (size_t)be->n_threads * (size_t)(2 * a.nkp + 16) * 4, err)
                     : NULL;
    if (!a.scratch)
        return nd_wrap(err, ND_ENOMEM, "attention (workspace needs %zu bytes)",
                       cpu_attention_ws(be, c));
    nd_pool_run(cpu_of(be)->pool, B * H, small_tr_task, &a);
    nd_pool_run(cpu_of(be)->pool, B * H * a.n_qb, small_task, &a);
    return ND_OK;
}
#endif

nd_status cpu_attention(nd_backend *be, const nd_op_call *c, nd_arena *ws, nd_err *err)
{
#ifdef ND_HAVE_X86
    if (small_heads(be, c))
        return small_attention(be, c, ws, err);
#endif
    const nd_tensor *q = c->src[0], *k = c->src[1];
    int64_t C = q->shape[2], H = c->p.attn.n_heads, d = C / H;
    attn_ctx a = {
        .q = q->data, .k = k->data, .v = c->src[2]->data, .o = c->dst->data,
        .Nq = q->shape[1], .Nk = k->shape[1], .C = C, .H = H, .d = d, .bk = bk_for(d),
        .n_qt = (q->shape[1] + BQ - 1) / BQ,
        .scale = c->p.attn.scale > 0 ? c->p.attn.scale : 1.0f / sqrtf((float)d),
        .causal = c->p.attn.causal, .avx2 = cpu_of(be)->avx2,
        .avx512 = cpu_of(be)->avx512, .per_thread = per_thread_floats(d),
    };
    float *kt = nd_arena_alloc(ws, kt_bytes(c), err);
    a.scratch = kt ? nd_arena_alloc(ws, (size_t)be->n_threads * a.per_thread * 4, err) : NULL;
    if (!a.scratch)
        return nd_wrap(err, ND_ENOMEM, "attention tiles (workspace needs %zu bytes)",
                       cpu_attention_ws(be, c));
    a.n_kt = (a.Nk + a.bk - 1) / a.bk;
    kt_ctx tc = {k->data, kt, a.Nk, C, H, d, a.bk, a.n_kt};
    nd_pool_run(cpu_of(be)->pool, q->shape[0] * H * a.n_kt, kt_task, &tc);
    a.kt = kt;
    nd_pool_run(cpu_of(be)->pool, q->shape[0] * H * a.n_qt, attn_task, &a);
    return ND_OK;
}
