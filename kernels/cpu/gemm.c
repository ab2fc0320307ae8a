/* kernels/cpu/gemm.c - linear and conv2d on OpenBLAS SGEMM.
 *
 * OpenBLAS runs single-threaded (cpu.c); every GEMM here is cut into tiles
 * of a fixed shape that run as tasks on the backend's pool (tiled_sgemm).
 * Two thread pools on the same cores (OpenBLAS's and ours) spun against each
 * other between ops and made timings erratic (a 320x320 linear's median was
 * half its best), and a tile shape that depends only on the sample, never on
 * the batch or the thread count, keeps each output element's arithmetic the
 * same in every batch (see gen/gen.h, "Determinism").
 *
 * linear: y[M,N] = x[M,K] w[N,K]^T + b, tiles of one sample's rows.
 * conv2d: 1x1 stride-1 unpadded convs are a plain GEMM per image
 * (w[Co,Ci] x[Ci,HW]); everything else is im2col over a band of output pixels
 * that fits the workspace, then a GEMM into the output band (ldc = Ho*Wo), so
 * the column buffer never grows with the image (the VAE at 1088x1024 would
 * need gigabytes for a full im2col).
 *
 * 3x3 stride-1 convs with enough channels use Winograd F(2x2,3x3) instead
 * (2.25x fewer multiplies): U = G g G^T per call ([16][Co][Ci]), then per band
 * of 2x2 output tiles V = B^T d B ([16][Ci][tiles]), 16 SGEMMs M_k = U_k V_k
 * and Y = A^T M A + bias. The transforms only add/subtract and halve, so the
 * error stays at a few f32 ulps of the sums (checked against cpu_ref).
 * ND_CONV_WINOGRAD=0 turns it off (1 forces it for any 3x3 stride-1 conv).
 *
 * Convs with a tiny reduction (K = Ci*kh*kw <= 64: conv_in's 4 channels)
 * starve SGEMM, and strided ones paid OpenBLAS's packing of both operands
 * per tile on top of im2col; on AVX-512 CPUs both run the attention's
 * micro-GEMM on the pool instead, straight from the column buffer in passes
 * of at most SK_KC rows, weights packed once per call, the bias in the first
 * pass's accumulators. */
#include "kernels/cpu/gemm512.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* Column-buffer budget per conv band. */
#define CONV_BAND_BYTES (24u << 20)

/* ---- tiled SGEMM on the pool ----------------------------------------------------
 * C_g[M,N] = A_g[M,K] op(B_g)[K,N] (+ bias) for G groups g (images, or
 * samples' row blocks), A_g = A + g*sa and so on. A task is one tile of at
 * most tm x TN of one group; its bias (per column or per row) is written
 * into the tile first and the GEMM adds to it. */
#define TM 192
#define TN 256

typedef struct {
    bool trans_b;
    int64_t M, N, K, tm, n_mt, n_nt; /* tm: rows per tile (0: TM) */
    const float *A, *B;
    float *C;
    int64_t lda, ldb, ldc, sa, sb, sc;
    const float *bias_n, *bias_m; /* per column / per row, or NULL */
} tg_ctx;

static void tg_task(void *vc, int64_t t, int thread)
{
    (void)thread;
    const tg_ctx *c = vc;
    int64_t nt = t % c->n_nt, mt = (t / c->n_nt) % c->n_mt, g = t / (c->n_nt * c->n_mt);
    int64_t m0 = mt * c->tm, n0 = nt * TN;
    int64_t mr = c->M - m0 < c->tm ? c->M - m0 : c->tm, nr = c->N - n0 < TN ? c->N - n0 : TN;
    float *C = c->C + g * c->sc + m0 * c->ldc + n0;
    float beta = 0.0f;
    if (c->bias_n || c->bias_m) {
        for (int64_t i = 0; i < mr; i++) {
            float *row = C + i * c->ldc;
            if (c->bias_n)
                memcpy(row, c->bias_n + n0, (size_t)nr * 4);
            else
                for (int64_t j = 0; j < nr; j++)
                    row[j] = c->bias_m[m0 + i];
        }
        beta = 1.0f;
    }
    const float *B = c->B + g * c->sb + (c->trans_b ? n0 * c->ldb : n0);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, c->trans_b ? CblasTrans : CblasNoTrans, (int)mr,
                (int)nr, (int)c->K, 1.0f, c->A + g * c->sa + m0 * c->lda, (int)c->lda, B,
                (int)c->ldb, beta, C, (int)c->ldc);
}

static void tiled_sgemm(nd_backend *be, int64_t G, tg_ctx *c)
{
    if (c->tm <= 0)
        c->tm = TM;
    c->n_mt = (c->M + c->tm - 1) / c->tm;
    c->n_nt = (c->N + TN - 1) / TN;
    nd_pool_run(cpu_of(be)->pool, G * c->n_mt * c->n_nt, tg_task, c);
}

nd_status cpu_linear(nd_backend *be, const nd_op_call *c, nd_arena *ws, nd_err *err)
{
    (void)ws;
    (void)err;
    const nd_tensor *x = c->src[0], *w = c->src[1], *b = c->src[2];
    int64_t K = w->shape[1], N = w->shape[0], M = nd_tensor_numel(x) / K;
    /* a sample's rows are a group: [B, T, K] has B groups of T rows (a 2-D
     * input is one group) */
    int64_t G = x->ndim >= 3 ? x->shape[0] : 1, R = M / G;
    /* a sample of a few hundred rows in one tile (the default model's 276
     * tokens as 192 + 84 cost OpenBLAS a second, thin pass) */
    tg_ctx tc = {.trans_b = true, .M = R, .N = N, .K = K, .tm = R <= 512 ? R : TM,
                 .A = x->data, .B = w->data,
                 .C = c->dst->data, .lda = K, .ldb = K, .ldc = N, .sa = R * K, .sb = 0,
                 .sc = R * N, .bias_n = b ? b->data : NULL};
    tiled_sgemm(be, G, &tc);
    return ND_OK;
}

static bool conv_is_gemm(const nd_op_call *c)
{
    const nd_conv2d_params *p = &c->p.conv;
    const nd_tensor *w = c->src[1];
    return w->shape[2] == 1 && w->shape[3] == 1 && p->stride == 1 && !p->pad_top &&
           !p->pad_bottom && !p->pad_left && !p->pad_right;
}

static int64_t conv_band(const nd_op_call *c)
{
    const nd_tensor *w = c->src[1];
    int64_t K = w->shape[1] * w->shape[2] * w->shape[3];
    int64_t P = c->dst->shape[2] * c->dst->shape[3];
    int64_t band = CONV_BAND_BYTES / (K * 4);
    if (band < 64)
        band = 64;
    band = band / 16 * 16;
    return band < P ? band : P;
}

/* ---- Winograd F(2x2,3x3) ------------------------------------------------------ */

#define WG_BAND_BYTES (24u << 20) /* V and M of one band of tiles, together */

static bool conv_is_winograd(const nd_op_call *c)
{
    const nd_tensor *w = c->src[1];
    if (w->shape[2] != 3 || w->shape[3] != 3 || c->p.conv.stride != 1)
        return false;
    const char *e = getenv("ND_CONV_WINOGRAD");
    if (e && *e)
        return *e != '0';
    int64_t Ci = w->shape[1], Co = w->shape[0];
    int64_t tiles = c->dst->shape[0] * ((c->dst->shape[2] + 1) / 2) * ((c->dst->shape[3] + 1) / 2);
    /* few channels: the transforms cost more than the multiplies they save;
     * U must stay small (1280x1280 would be 105 MB) and tiles many enough to
     * pay for transforming it */
    return Ci >= 8 && Co >= 8 && Ci * Co <= 640 * 640 && tiles * 4 >= Ci;
}

static int64_t wg_band(const nd_op_call *c)
{
    const nd_tensor *w = c->src[1];
    int64_t Ci = w->shape[1], Co = w->shape[0];
    int64_t T = ((c->dst->shape[2] + 1) / 2) * ((c->dst->shape[3] + 1) / 2);
    int64_t band = WG_BAND_BYTES / (16 * 4 * (Ci + Co));
    /* at most 512 tiles: with few channels a band of thousands of tiles
     * pushed V and M out of the caches between the transforms and the
     * products (the default model's 32-channel VAE convs ran 1.6x slower
     * at 6,144 tiles than at 512; SD1.5's 320-channel ones are as fast) */
    band = band > 512 ? 512 : band < 64 ? 64 : band / 16 * 16;
    const char *e = getenv("ND_WG_BAND"); /* tests: odd bands */
    if (e && atoi(e) > 0)
        band = atoi(e);
    return band < T ? band : T;
}

static size_t wg_ws(const nd_op_call *c)
{
    const nd_tensor *w = c->src[1];
    int64_t Ci = w->shape[1], Co = w->shape[0], band = wg_band(c);
    return (size_t)(16 * Co * Ci + 16 * (Ci + Co) * band) * 4 + 3 * ND_ARENA_ALIGN;
}

typedef struct {
    const float *w;
    float *u;
    int64_t Co, Ci;
} wgu_ctx;

/* one task = one output channel: U[k][co][ci] = (G g G^T)[k] */
static void wgu_task(void *vc, int64_t co, int thread)
{
    (void)thread;
    const wgu_ctx *c = vc;
    int64_t CC = c->Co * c->Ci;
    for (int64_t ci = 0; ci < c->Ci; ci++) {
        const float *g = c->w + (co * c->Ci + ci) * 9;
        float t[4][3]; /* G g: 4x3 */
        for (int j = 0; j < 3; j++) {
            float g0 = g[j], g1 = g[3 + j], g2 = g[6 + j];
            t[0][j] = g0;
            t[1][j] = 0.5f * (g0 + g1 + g2);
            t[2][j] = 0.5f * (g0 - g1 + g2);
            t[3][j] = g2;
        }
        float *u = c->u + co * c->Ci + ci;
        for (int i = 0; i < 4; i++) {
            float a0 = t[i][0], a1 = t[i][1], a2 = t[i][2];
            u[(i * 4 + 0) * CC] = a0;
            u[(i * 4 + 1) * CC] = 0.5f * (a0 + a1 + a2);
            u[(i * 4 + 2) * CC] = 0.5f * (a0 - a1 + a2);
            u[(i * 4 + 3) * CC] = a2;
        }
    }
}

typedef struct {
    const float *x; /* one image */
    float *v;       /* [16][Ci][nt] */
    int64_t H, W, Ci, tw, t0, nt;
    int pt, pl;
    bool avx2;
} wgv_ctx;

#ifdef ND_HAVE_X86
/* even and odd elements of the 16 floats at p */
ND_AVX2 static inline void deint(const float *p, __m256 *ev, __m256 *od)
{
    __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
    *ev = _mm256_castpd_ps(_mm256_permute4x64_pd(
        _mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0))), 0xD8));
    *od = _mm256_castpd_ps(_mm256_permute4x64_pd(
        _mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))), 0xD8));
}

/* 8 tiles side by side, all inside the image: row r of d for tile j is
 * src[r*W + 2j + q], q = 0..3 */
ND_AVX2 static void wgv8(const float *src, int64_t W, float *v, int64_t ks)
{
    __m256 e[4][4];
    __m256 d[4][4];
    for (int r = 0; r < 4; r++) {
        deint(src + r * W, &d[r][0], &d[r][1]);
        deint(src + r * W + 2, &d[r][2], &d[r][3]);
    }
    for (int q = 0; q < 4; q++) {
        e[0][q] = _mm256_sub_ps(d[0][q], d[2][q]);
        e[1][q] = _mm256_add_ps(d[1][q], d[2][q]);
        e[2][q] = _mm256_sub_ps(d[2][q], d[1][q]);
        e[3][q] = _mm256_sub_ps(d[1][q], d[3][q]);
    }
    for (int r = 0; r < 4; r++) {
        _mm256_storeu_ps(v + (r * 4 + 0) * ks, _mm256_sub_ps(e[r][0], e[r][2]));
        _mm256_storeu_ps(v + (r * 4 + 1) * ks, _mm256_add_ps(e[r][1], e[r][2]));
        _mm256_storeu_ps(v + (r * 4 + 2) * ks, _mm256_sub_ps(e[r][2], e[r][1]));
        _mm256_storeu_ps(v + (r * 4 + 3) * ks, _mm256_sub_ps(e[r][1], e[r][3]));
    }
}
#endif

/* one task = one input channel: V[k][ci][t] = (B^T d B)[k] for the band's tiles */
static void wgv_task(void *vc, int64_t ci, int thread)
{
    (void)thread;
    const wgv_ctx *c = vc;
    const float *xc = c->x + ci * c->H * c->W;
    int64_t ks = c->Ci * c->nt;
    float *v = c->v + ci * c->nt;
    for (int64_t i = 0; i < c->nt; i++) {
        int64_t t = c->t0 + i, ty = t / c->tw, tx = t % c->tw;
        int64_t y0 = 2 * ty - c->pt, x0 = 2 * tx - c->pl;
#ifdef ND_HAVE_X86
        if (c->avx2) {
            /* up to 8 tiles of one tile row: straight from the image when
             * their 4x18 input block is inside, else from a zero-padded copy
             * of it (small latents are mostly border: at 4 rows every tile
             * touches the padding, and one tile at a time with 16 scattered
             * stores was a fifth of the default model's time) */
            int64_t n8 = c->nt - i < 8 ? c->nt - i : 8;
            n8 = c->tw - tx < n8 ? c->tw - tx : n8;
            if (n8 == 8 && y0 >= 0 && y0 + 4 <= c->H && x0 >= 0 && x0 + 18 <= c->W) {
                wgv8(xc + y0 * c->W + x0, c->W, v + i, ks);
            } else {
                float patch[4 * 18] = {0}, tmp[16 * 8];
                /* columns [qa, qb) of the block are inside the image */
                int64_t qa = x0 < 0 ? -x0 : 0, qb = 2 * n8 + 2;
                qb = x0 + qb > c->W ? c->W - x0 : qb;
                for (int r = 0; r < 4; r++)
                    if (y0 + r >= 0 && y0 + r < c->H && qb > qa)
                        memcpy(patch + r * 18 + qa, xc + (y0 + r) * c->W + x0 + qa,
                               (size_t)(qb - qa) * 4);
                if (n8 == 8) {
                    wgv8(patch, 18, v + i, ks);
                } else {
                    wgv8(patch, 18, tmp, 8);
                    for (int k = 0; k < 16; k++)
                        memcpy(v + k * ks + i, tmp + k * 8, (size_t)n8 * 4);
                }
            }
            i += n8 - 1;
            continue;
        }
#endif
        float d[4][4];
        if (y0 >= 0 && y0 + 4 <= c->H && x0 >= 0 && x0 + 4 <= c->W) {
            for (int r = 0; r < 4; r++)
                for (int q = 0; q < 4; q++)
                    d[r][q] = xc[(y0 + r) * c->W + x0 + q];
        } else {
            for (int r = 0; r < 4; r++)
                for (int q = 0; q < 4; q++) {
                    int64_t yy = y0 + r, xx = x0 + q;
                    d[r][q] = (yy >= 0 && yy < c->H && xx >= 0 && xx < c->W)
                                  ? xc[yy * c->W + xx] : 0.0f;
                }
        }
        float e[4][4]; /* B^T d */
        for (int q = 0; q < 4; q++) {
            e[0][q] = d[0][q] - d[2][q];
            e[1][q] = d[1][q] + d[2][q];
            e[2][q] = d[2][q] - d[1][q];
            e[3][q] = d[1][q] - d[3][q];
        }
        for (int r = 0; r < 4; r++) { /* (B^T d) B */
            v[(r * 4 + 0) * ks + i] = e[r][0] - e[r][2];
            v[(r * 4 + 1) * ks + i] = e[r][1] + e[r][2];
            v[(r * 4 + 2) * ks + i] = e[r][2] - e[r][1];
            v[(r * 4 + 3) * ks + i] = e[r][1] - e[r][3];
        }
    }
}

typedef struct {
    const float *m; /* [16][Co][nt] */
    const float *b;
    float *y; /* one image [Co,Ho,Wo] */
    int64_t Ho, Wo, Co, tw, t0, nt;
    bool avx2;
} wgy_ctx;

#ifdef ND_HAVE_X86
/* 8 tiles side by side, all inside the output: rows at y and y + Wo */
ND_AVX2 static void wgy8(const float *m, int64_t ks, float *y, int64_t Wo, float bias)
{
    __m256 a[4][4], r[2][4];
    for (int k = 0; k < 16; k++)
        a[k / 4][k % 4] = _mm256_loadu_ps(m + k * ks);
    for (int q = 0; q < 4; q++) {
        r[0][q] = _mm256_add_ps(_mm256_add_ps(a[0][q], a[1][q]), a[2][q]);
        r[1][q] = _mm256_sub_ps(_mm256_sub_ps(a[1][q], a[2][q]), a[3][q]);
    }
    __m256 vb = _mm256_set1_ps(bias);
    for (int p = 0; p < 2; p++) {
        __m256 o0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(r[p][0], r[p][1]), r[p][2]), vb);
        __m256 o1 = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(r[p][1], r[p][2]), r[p][3]), vb);
        __m256 lo = _mm256_unpacklo_ps(o0, o1), hi = _mm256_unpackhi_ps(o0, o1);
        _mm256_storeu_ps(y + p * Wo, _mm256_permute2f128_ps(lo, hi, 0x20));
        _mm256_storeu_ps(y + p * Wo + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
    }
}
#endif

/* one task = one output channel: Y = A^T M A + bias */
static void wgy_task(void *vc, int64_t co, int thread)
{
    (void)thread;
    const wgy_ctx *c = vc;
    int64_t ks = c->Co * c->nt;
    const float *m = c->m + co * c->nt;
    float *yc = c->y + co * c->Ho * c->Wo, bias = c->b ? c->b[co] : 0.0f;
    for (int64_t i = 0; i < c->nt; i++) {
        int64_t t = c->t0 + i, ty = t / c->tw, tx = t % c->tw;
#ifdef ND_HAVE_X86
        if (c->avx2) {
            /* as in wgv_task: 8 tiles at once, through a local block at the
             * edges */
            int64_t n8 = c->nt - i < 8 ? c->nt - i : 8;
            n8 = c->tw - tx < n8 ? c->tw - tx : n8;
            float *out = yc + 2 * ty * c->Wo + 2 * tx;
            if (n8 == 8 && 2 * ty + 2 <= c->Ho && 2 * tx + 16 <= c->Wo) {
                wgy8(m + i, ks, out, c->Wo, bias);
            } else {
                float in[16 * 8], blk[2 * 16];
                for (int k = 0; k < 16; k++) {
                    memcpy(in + k * 8, m + k * ks + i, (size_t)n8 * 4);
                    memset(in + k * 8 + n8, 0, (size_t)(8 - n8) * 4);
                }
                wgy8(in, 8, blk, 16, bias);
                int64_t rows = c->Ho - 2 * ty < 2 ? c->Ho - 2 * ty : 2;
                int64_t cols = c->Wo - 2 * tx < 2 * n8 ? c->Wo - 2 * tx : 2 * n8;
                for (int64_t p = 0; p < rows; p++)
                    memcpy(out + p * c->Wo, blk + p * 16, (size_t)cols * 4);
            }
            i += n8 - 1;
            continue;
        }
#endif
        float a[4][4];
        for (int k = 0; k < 16; k++)
            a[k / 4][k % 4] = m[k * ks + i];
        float r[2][4]; /* A^T M */
        for (int q = 0; q < 4; q++) {
            r[0][q] = a[0][q] + a[1][q] + a[2][q];
            r[1][q] = a[1][q] - a[2][q] - a[3][q];
        }
        int64_t oy = 2 * ty, ox = 2 * tx;
        for (int p = 0; p < 2 && oy + p < c->Ho; p++) {
            float *row = yc + (oy + p) * c->Wo + ox;
            row[0] = r[p][0] + r[p][1] + r[p][2] + bias;
            if (ox + 1 < c->Wo)
                row[1] = r[p][1] - r[p][2] - r[p][3] + bias;
        }
    }
}

typedef struct {
    const float *u, *v;
    float *m;
    int64_t Co, Ci, nt;
} wgm_ctx;

/* one task = one of the 16 products, on a single-threaded SGEMM */
static void wgm_task(void *vc, int64_t k, int thread)
{
    (void)thread;
    const wgm_ctx *c = vc;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)c->Co, (int)c->nt, (int)c->Ci, 1.0f,
                c->u + k * c->Co * c->Ci, (int)c->Ci, c->v + k * c->Ci * c->nt, (int)c->nt, 0.0f,
                c->m + k * c->Co * c->nt, (int)c->nt);
}

static nd_status conv_winograd(nd_backend *be, const nd_op_call *c, nd_arena *ws, nd_err *err)
{
    const nd_tensor *x = c->src[0], *w = c->src[1], *b = c->src[2];
    nd_tensor *y = c->dst;
    int64_t B = x->shape[0], Ci = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t Co = w->shape[0], Ho = y->shape[2], Wo = y->shape[3];
    int64_t tw = (Wo + 1) / 2, T = ((Ho + 1) / 2) * tw, band = wg_band(c);
    nd_pool *pool = cpu_of(be)->pool;
    float *u = nd_arena_alloc(ws, (size_t)(16 * Co * Ci) * 4, err);
    float *v = u ? nd_arena_alloc(ws, (size_t)(16 * Ci * band) * 4, err) : NULL;
    float *m = v ? nd_arena_alloc(ws, (size_t)(16 * Co * band) * 4, err) : NULL;
    if (!m)
        return nd_wrap(err, ND_ENOMEM, "conv2d: winograd tiles (workspace needs %zu bytes)",
                       cpu_conv2d_ws(be, c));
    /* the 16 products run on the pool, one single-threaded SGEMM each */
    wgu_ctx uc = {w->data, u, Co, Ci};
    nd_pool_run(pool, Co, wgu_task, &uc);
    for (int64_t n = 0; n < B; n++)
        for (int64_t t0 = 0; t0 < T; t0 += band) {
            int64_t nt = T - t0 < band ? T - t0 : band;
            wgv_ctx vcx = {(const float *)x->data + n * Ci * H * W, v, H, W, Ci, tw, t0, nt,
                           c->p.conv.pad_top, c->p.conv.pad_left, cpu_of(be)->avx2};
            nd_pool_run(pool, Ci, wgv_task, &vcx);
            wgm_ctx mc = {u, v, m, Co, Ci, nt};
            nd_pool_run(pool, 16, wgm_task, &mc);
            wgy_ctx yc = {m, b ? b->data : NULL, (float *)y->data + n * Co * Ho * Wo, Ho, Wo, Co,
                          tw, t0, nt, cpu_of(be)->avx2};
            nd_pool_run(pool, Co, wgy_task, &yc);
        }
    return ND_OK;
}

/* ---- direct 3x3 for a few output channels -------------------------------------- */

/* The VAE's conv_out (32 -> 3 channels at full image size): im2col would
 * write K = 288 floats per pixel to feed a 3-row GEMM, and that memory
 * traffic is the whole cost; direct accumulation reads each input row 9
 * times from L1 instead. One task = one output row of one image; every
 * output element sums its taps in (ci, ky, kx) order with FMAs. */
static bool conv_is_direct(const nd_op_call *c)
{
    const nd_tensor *w = c->src[1];
    return w->shape[0] <= 4 && w->shape[2] == 3 && w->shape[3] == 3 && c->p.conv.stride == 1 &&
           w->shape[1] * 9 > 64;
}

typedef struct {
    const float *x, *w, *b;
    float *y;
    int64_t Ci, H, W, Co, Ho, Wo;
    int pt, pl;
    bool avx2;
} dc_ctx;

static void axpy_plain(float *y, const float *x, float a, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = fmaf(a, x[i], y[i]);
}

#ifdef ND_HAVE_X86
ND_AVX2 static void axpy_avx2(float *y, const float *x, float a, int64_t n)
{
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] = fmaf(a, x[i], y[i]);
}
#endif

static void dc_task(void *vc, int64_t t, int thread)
{
    (void)thread;
    const dc_ctx *c = vc;
    int64_t n = t / c->Ho, oy = t % c->Ho;
    void (*axpy)(float *, const float *, float, int64_t) = axpy_plain;
#ifdef ND_HAVE_X86
    if (c->avx2)
        axpy = axpy_avx2;
#endif
    for (int64_t co = 0; co < c->Co; co++) {
        float *yr = c->y + ((n * c->Co + co) * c->Ho + oy) * c->Wo;
        float bv = c->b ? c->b[co] : 0.0f;
        for (int64_t ox = 0; ox < c->Wo; ox++)
            yr[ox] = bv;
        for (int64_t ci = 0; ci < c->Ci; ci++)
            for (int ky = 0; ky < 3; ky++) {
                int64_t iy = oy - c->pt + ky;
                if (iy < 0 || iy >= c->H)
                    continue;
                const float *xr = c->x + ((n * c->Ci + ci) * c->H + iy) * c->W;
                const float *wk = c->w + ((co * c->Ci + ci) * 3 + ky) * 3;
                for (int kx = 0; kx < 3; kx++) {
                    /* ox such that 0 <= ox - pl + kx < W */
                    int64_t o0 = c->pl - kx > 0 ? c->pl - kx : 0;
                    int64_t o1 = c->W + c->pl - kx < c->Wo ? c->W + c->pl - kx : c->Wo;
                    if (o1 > o0)
                        axpy(yr + o0, xr + o0 - c->pl + kx, wk[kx], o1 - o0);
                }
            }
    }
}

static nd_status conv_direct(nd_backend *be, const nd_op_call *c)
{
    const nd_tensor *x = c->src[0], *w = c->src[1], *b = c->src[2];
    nd_tensor *y = c->dst;
    dc_ctx dc = {x->data, w->data, b ? b->data : NULL, y->data, x->shape[1], x->shape[2],
                 x->shape[3], w->shape[0], y->shape[2], y->shape[3], c->p.conv.pad_top,
                 c->p.conv.pad_left, cpu_of(be)->avx2};
    nd_pool_run(cpu_of(be)->pool, x->shape[0] * y->shape[2], dc_task, &dc);
    return ND_OK;
}

/* ---- im2col + the AVX-512 micro-GEMM ------------------------------------------ */

/* Small K (conv_in's 4 channels: SGEMM starves) and strided convs (the
 * UNet's downsamplers: K = 9 Ci read straight from the column buffer in
 * passes of SK_KC rows, the weights packed once per call, where OpenBLAS
 * re-packed both per tile: 136x128 s2 320->320 49 -> 44 ms). */
static bool conv_is_smallk(const nd_backend *be, const nd_op_call *c)
{
    const nd_tensor *w = c->src[1];
    return cpu_of((nd_backend *)be)->avx512 && w->shape[0] >= 8 &&
           (w->shape[1] * w->shape[2] * w->shape[3] <= 64 || c->p.conv.stride > 1);
}

#ifdef ND_HAVE_X86
#define SK_COLS 192 /* output pixels per task (4 x 48) */
#define SK_KC 512   /* reduction rows per pass: A's and B's slices stay in L2 */
typedef struct {
    const float *wp, *cols, *b;
    float *y;
    int64_t Co, K, np, P;
} sk_ctx;

static void sk_task(void *vc, int64_t t, int thread)
{
    (void)thread;
    const sk_ctx *c = vc;
    int64_t j0 = t * SK_COLS, n = c->np - j0 < SK_COLS ? c->np - j0 : SK_COLS;
    int64_t co8 = (c->Co + 7) / 8 * 8;
    for (int64_t k0 = 0; k0 < c->K; k0 += SK_KC) { /* the bias on the first pass */
        int64_t kc = c->K - k0 < SK_KC ? c->K - k0 : SK_KC;
        gemm_avx512(A_PACKED8, c->Co, n, kc, c->wp + k0 * co8, c->cols + k0 * c->np + j0, c->np,
                    c->y + j0, c->P, k0 > 0, k0 ? NULL : c->b);
    }
}
#endif

size_t cpu_conv2d_ws(const nd_backend *be, const nd_op_call *c)
{
    (void)be;
    if (conv_is_gemm(c) || conv_is_direct(c))
        return 0;
    if (conv_is_winograd(c))
        return wg_ws(c);
    if (conv_is_smallk(be, c)) {
        const nd_tensor *w = c->src[1];
        int64_t K = w->shape[1] * w->shape[2] * w->shape[3];
        return (size_t)(K * conv_band(c) + (w->shape[0] + 7) / 8 * 8 * K) * 4 +
               2 * ND_ARENA_ALIGN;
    }
    const nd_tensor *w = c->src[1];
    int64_t K = w->shape[1] * w->shape[2] * w->shape[3];
    return (size_t)(K * conv_band(c)) * 4 + ND_ARENA_ALIGN;
}

typedef struct {
    const float *x; /* one image [Ci,H,W] */
    float *cols;    /* [K, band] */
    int64_t H, W, Wo, KH, KW, p0, np;
    int stride, pt, pl;
    bool avx512;
} im2col_ctx;

#ifdef ND_HAVE_X86
/* dst[i] = src[2 i], i < n: two loads and one permute per 16 values. The
 * second load is masked to 15 lanes so nothing past src[2 (n - 1)] is read
 * (the last row of the last channel ends there). */
ND_AVX512 static void take_even512(float *dst, const float *src, int64_t n)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 a = _mm512_loadu_ps(src + 2 * i);
        __m512 b = _mm512_maskz_loadu_ps(0x7fff, src + 2 * i + 16);
        _mm512_storeu_ps(dst + i, _mm512_permutex2var_ps(a, even, b));
    }
    for (; i < n; i++)
        dst[i] = src[2 * i];
}
#endif

/* dst[i] = src[i * stride], i < n. */
static void take_strided(float *dst, const float *src, int64_t n, int stride, bool avx512)
{
    if (stride == 1) {
        memcpy(dst, src, (size_t)n * 4);
        return;
    }
#ifdef ND_HAVE_X86
    if (stride == 2 && avx512) {
        take_even512(dst, src, n);
        return;
    }
#else
    (void)avx512;
#endif
    for (int64_t i = 0; i < n; i++)
        dst[i] = src[i * stride];
}

/* One task = one input channel: its KH*KW rows of the column buffer. Each
 * run of an output row is zeros where the taps fall in the padding and a
 * strided copy between: no per-element bounds test (bench_ops' s2 conv at
 * [1,320,64,64]: 11.7 -> 11.2 ms best of the rows, the GEMM is the rest). */
static void im2col_task(void *vc, int64_t ci, int thread)
{
    (void)thread;
    const im2col_ctx *c = vc;
    const float *xc = c->x + ci * c->H * c->W;
    const int64_t s = c->stride;
    for (int64_t ky = 0; ky < c->KH; ky++)
        for (int64_t kx = 0; kx < c->KW; kx++) {
            float *row = c->cols + ((ci * c->KH + ky) * c->KW + kx) * c->np;
            /* ix = ox s + off lies in [0, W) for ox in [in_lo, in_hi) */
            const int64_t off = kx - c->pl;
            const int64_t in_lo = off >= 0 ? 0 : (-off + s - 1) / s;
            const int64_t in_hi = c->W - 1 - off < 0 ? 0 : (c->W - 1 - off) / s + 1;
            int64_t p = c->p0, end = c->p0 + c->np;
            while (p < end) {
                /* one run of the output row oy */
                int64_t oy = p / c->Wo, ox0 = p % c->Wo;
                int64_t ox1 = c->Wo < ox0 + (end - p) ? c->Wo : ox0 + (end - p);
                float *dst = row + (p - c->p0); /* output pixel ox0 */
                int64_t iy = oy * s - c->pt + ky;
                if (iy < 0 || iy >= c->H) {
                    memset(dst, 0, (size_t)(ox1 - ox0) * 4);
                } else {
                    int64_t lo = in_lo > ox0 ? in_lo : ox0, hi = in_hi < ox1 ? in_hi : ox1;
                    if (hi < lo)
                        lo = hi = ox1;
                    memset(dst, 0, (size_t)(lo - ox0) * 4);
                    take_strided(dst + (lo - ox0), xc + iy * c->W + lo * s + off, hi - lo,
                                 (int)s, c->avx512);
                    memset(dst + (hi - ox0), 0, (size_t)(ox1 - hi) * 4);
                }
                p += ox1 - ox0;
            }
        }
}

nd_status cpu_conv2d(nd_backend *be, const nd_op_call *c, nd_arena *ws, nd_err *err)
{
    const nd_tensor *x = c->src[0], *w = c->src[1], *b = c->src[2];
    nd_tensor *y = c->dst;
    const nd_conv2d_params *p = &c->p.conv;
    int64_t B = x->shape[0], Ci = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t Co = w->shape[0], KH = w->shape[2], KW = w->shape[3];
    int64_t Ho = y->shape[2], Wo = y->shape[3], P = Ho * Wo, K = Ci * KH * KW;
    if (conv_is_winograd(c))
        return conv_winograd(be, c, ws, err);
    if (conv_is_direct(c))
        return conv_direct(be, c);
    float *Y = y->data;
    const float *X = x->data;
#ifdef ND_HAVE_X86
    if (conv_is_smallk(be, c)) {
        int64_t band = conv_band(c);
        float *cols = nd_arena_alloc(ws, (size_t)(K * band) * 4, err);
        float *wp = cols ? nd_arena_alloc(ws, (size_t)((Co + 7) / 8 * 8 * K) * 4, err) : NULL;
        if (!wp)
            return nd_wrap(err, ND_ENOMEM, "conv2d: im2col band (workspace needs %zu bytes)",
                           cpu_conv2d_ws(be, c));
        for (int64_t k0 = 0; k0 < K; k0 += SK_KC) /* per pass of sk_task */
            pack_a8((const float *)w->data + k0, K, Co, K - k0 < SK_KC ? K - k0 : SK_KC,
                    wp + k0 * ((Co + 7) / 8 * 8));
        for (int64_t n = 0; n < B; n++)
            for (int64_t p0 = 0; p0 < P; p0 += band) {
                int64_t np = P - p0 < band ? P - p0 : band;
                im2col_ctx ic = {X + n * Ci * H * W, cols, H, W, Wo, KH, KW, p0, np,
                                 p->stride, p->pad_top, p->pad_left, cpu_of(be)->avx512};
                nd_pool_run(cpu_of(be)->pool, Ci, im2col_task, &ic);
                sk_ctx sc = {wp, cols, b ? b->data : NULL, Y + n * Co * P + p0, Co, K, np, P};
                nd_pool_run(cpu_of(be)->pool, (np + SK_COLS - 1) / SK_COLS, sk_task, &sc);
            }
        return ND_OK;
    }
#endif
    if (conv_is_gemm(c)) { /* one group per image */
        tg_ctx tc = {.M = Co, .N = P, .K = Ci, .A = w->data, .B = X, .C = Y, .lda = Ci,
                     .ldb = P, .ldc = P, .sa = 0, .sb = Ci * H * W, .sc = Co * P,
                     .bias_m = b ? b->data : NULL};
        tiled_sgemm(be, B, &tc);
        return ND_OK;
    }
    int64_t band = conv_band(c);
    float *cols = nd_arena_alloc(ws, (size_t)(K * band) * 4, err);
    if (!cols)
        return nd_wrap(err, ND_ENOMEM, "conv2d: im2col band (workspace needs %zu bytes)",
                       cpu_conv2d_ws(be, c));
    for (int64_t n = 0; n < B; n++)
        for (int64_t p0 = 0; p0 < P; p0 += band) {
            int64_t np = P - p0 < band ? P - p0 : band;
            im2col_ctx ic = {X + n * Ci * H * W, cols, H, W, Wo, KH, KW, p0, np,
                             p->stride, p->pad_top, p->pad_left, cpu_of(be)->avx512};
            nd_pool_run(cpu_of(be)->pool, Ci, im2col_task, &ic);
            tg_ctx tc = {.M = Co, .N = np, .K = K, .A = w->data, .B = cols,
                         .C = Y + n * Co * P + p0, .lda = K, .ldb = np, .ldc = P,
                         .bias_m = b ? b->data : NULL};
            tiled_sgemm(be, 1, &tc);
        }
    return ND_OK;
}
