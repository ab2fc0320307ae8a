/* kernels/cpu/gemm.c - linear and conv2d on OpenBLAS SGEMM.
 *
 * linear: y[M,N] = x[M,K] w[N,K]^T + b, one SGEMM (bias pre-filled, beta 1).
 * conv2d: 1x1 stride-1 unpadded convs are a plain SGEMM per image
 * (w[Co,Ci] x[Ci,HW]); everything else is im2col over a band of output pixels
 * that fits the workspace, then SGEMM into the output band (ldc = Ho*Wo), so
 * the column buffer never grows with the image (the VAE at 1088x1024 would
 * need gigabytes for a full im2col). im2col runs on the pool, SGEMM on
 * OpenBLAS's threads. */
#include "kernels/cpu/simd.h"

#include <cblas.h>
#include <string.h>

/* Column-buffer budget per conv band. */
#define CONV_BAND_BYTES (24u << 20)

typedef struct {
    float *y;
    const float *b;
    int64_t rows, n;
} bias_ctx;

static void bias_task(void *vc, int64_t t, int thread)
{
    (void)thread;
    bias_ctx *c = vc;
    int64_t r0 = t * 64, r1 = r0 + 64 < c->rows ? r0 + 64 : c->rows;
    for (int64_t r = r0; r < r1; r++)
        memcpy(c->y + r * c->n, c->b, (size_t)c->n * 4);
}

nd_status cpu_linear(nd_backend *be, const nd_op_call *c, nd_arena *ws, nd_err *err)
{
    (void)ws;
    (void)err;
    const nd_tensor *x = c->src[0], *w = c->src[1], *b = c->src[2];
    int64_t K = w->shape[1], N = w->shape[0], M = nd_tensor_numel(x) / K;
    float beta = 0.0f;
    if (b) {
        bias_ctx bc = {c->dst->data, b->data, M, N};
        nd_pool_run(cpu_of(be)->pool, (M + 63) / 64, bias_task, &bc);
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, x->data,
                (int)K, w->data, (int)K, beta, c->dst->data, (int)N);
    return ND_OK;
}

typedef struct {
    float *y;
    const float *b;
    int64_t co, plane;
} plane_ctx;

static void plane_task(void *vc, int64_t t, int thread)
{
    (void)thread;
    plane_ctx *c = vc;
    float v = c->b[t % c->co], *dst = c->y + t * c->plane;
    for (int64_t i = 0; i < c->plane; i++)
        dst[i] = v;
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

size_t cpu_conv2d_ws(const nd_backend *be, const nd_op_call *c)
{
    (void)be;
    if (conv_is_gemm(c))
        return 0;
    const nd_tensor *w = c->src[1];
    int64_t K = w->shape[1] * w->shape[2] * w->shape[3];
    return (size_t)(K * conv_band(c)) * 4 + ND_ARENA_ALIGN;
}

typedef struct {
    const float *x; /* one image [Ci,H,W] */
    float *cols;    /* [K, band] */
    int64_t H, W, Wo, KH, KW, p0, np;
    int stride, pt, pl;
} im2col_ctx;

/* One task = one input channel: its KH*KW rows of the column buffer. */
static void im2col_task(void *vc, int64_t ci, int thread)
{
    (void)thread;
    const im2col_ctx *c = vc;
    const float *xc = c->x + ci * c->H * c->W;
    for (int64_t ky = 0; ky < c->KH; ky++)
        for (int64_t kx = 0; kx < c->KW; kx++) {
            float *row = c->cols + ((ci * c->KH + ky) * c->KW + kx) * c->np;
            int64_t p = c->p0, end = c->p0 + c->np;
            while (p < end) {
                /* one run of the output row oy */
                int64_t oy = p / c->Wo, ox0 = p % c->Wo;
                int64_t ox1 = c->Wo < ox0 + (end - p) ? c->Wo : ox0 + (end - p);
                float *dst = row + (p - c->p0);
                int64_t iy = oy * c->stride - c->pt + ky;
                if (iy < 0 || iy >= c->H) {
                    memset(dst, 0, (size_t)(ox1 - ox0) * 4);
                } else {
                    const float *src = xc + iy * c->W;
                    for (int64_t ox = ox0; ox < ox1; ox++) {
                        int64_t ix = ox * c->stride - c->pl + kx;
                        dst[ox - ox0] = (ix >= 0 && ix < c->W) ? src[ix] : 0.0f;
                    }
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
    float *Y = y->data;
    const float *X = x->data;
    float beta = 0.0f;
    if (b) { /* every (image, channel) plane starts as its bias; SGEMM adds */
        plane_ctx pc = {Y, b->data, Co, P};
        nd_pool_run(cpu_of(be)->pool, B * Co, plane_task, &pc);
        beta = 1.0f;
    }
    if (conv_is_gemm(c)) {
        for (int64_t n = 0; n < B; n++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Co, (int)P, (int)Ci, 1.0f,
                        w->data, (int)Ci, X + n * Ci * H * W, (int)P, beta, Y + n * Co * P, (int)P);
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
                             p->stride, p->pad_top, p->pad_left};
            nd_pool_run(cpu_of(be)->pool, Ci, im2col_task, &ic);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Co, (int)np, (int)K, 1.0f,
                        w->data, (int)K, cols, (int)np, beta, Y + n * Co * P + p0, (int)P);
        }
    return ND_OK;
}
