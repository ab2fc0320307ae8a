/* kernels/cuda/conv.cu - conv2d as an implicit GEMM (no im2col buffer):
 *   Y[co][p] = sum_k W[co][k] X~[k][p],  k = (ci, ky, kx), p = (n, oy, ox)
 * where X~ is gathered from x on the fly (zero outside the padded input).
 * Any kernel size, stride and asymmetric padding. Two kernels:
 *  - k_conv2d_tc (x or w stored f16): tensor cores through mma_16816
 *    (f16 x f16, fp32 accumulation). Block tile 128 (co) x 128 (p) x 32 (k),
 *    8 warps of 64 x 32; the next k tile is fetched into registers while the
 *    tensor cores work on the current one in shared memory. An f32 operand
 *    is rounded to f16 on its way into shared memory (its storage partner is
 *    half precision already).
 *  - k_conv2d (both f32): fp32 SIMT, block tile 64 x 64 x 16, 256 threads of
 *    4 x 4, so that an all-f32 call keeps f32 accuracy. */
#include "kernels/cuda/launch.h"

enum { CB_M = 64, CB_N = 64, CB_K = 16, CB_LD = 64 + 4, CB_THREADS = 256 };

__global__ void __launch_bounds__(256) k_conv2d(TP x, TP w, TP b, TP y, ConvShape s)
{
    DYN_SMEM(float, sm);
    float *As = sm, *Bs = sm + CB_K * CB_LD; /* As[k][m], Bs[k][n] */
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int64_t HWo = (int64_t)s.Ho * s.Wo, NP = (int64_t)s.B * HWo;
    const int KHW = s.KH * s.KW, K = s.Ci * KHW;
    const int co0 = blockIdx.y * CB_M;
    const int64_t p0 = (int64_t)blockIdx.x * CB_N;
    float acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += CB_K) {
        for (int e = tid; e < CB_K * CB_M; e += CB_THREADS) {
            int kk = e % CB_K, m = e / CB_K, co = co0 + m, kg = k0 + kk;
            As[kk * CB_LD + m] = (co < s.Co && kg < K) ? ld(w, (int64_t)co * K + kg) : 0.0f;
        }
        for (int e = tid; e < CB_K * CB_N; e += CB_THREADS) {
            int pp = e % CB_N, kk = e / CB_N, kg = k0 + kk;
            int64_t p = p0 + pp;
            float val = 0.0f;
            if (p < NP && kg < K) {
                int ci = kg / KHW, r = kg % KHW, ky = r / s.KW, kx = r % s.KW;
                int64_t n = p / HWo, rem = p % HWo;
                int oy = (int)(rem / s.Wo), ox = (int)(rem % s.Wo);
                int iy = oy * s.stride - s.pt + ky, ix = ox * s.stride - s.pl + kx;
                if (iy >= 0 && iy < s.H && ix >= 0 && ix < s.W)
                    val = ld(x, ((n * s.Ci + ci) * s.H + iy) * s.W + ix);
            }
            Bs[kk * CB_LD + pp] = val;
        }
        __syncthreads();
        for (int kk = 0; kk < CB_K; kk++) {
            float a[4], bv[4];
            for (int i = 0; i < 4; i++) {
                a[i] = As[kk * CB_LD + ty * 4 + i];
                bv[i] = Bs[kk * CB_LD + tx * 4 + i];
            }
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++)
                    acc[i][j] += a[i] * bv[j];
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; i++) {
        int co = co0 + ty * 4 + i;
        if (co >= s.Co)
            continue;
        float bias = b.p ? ld(b, co) : 0.0f;
        for (int j = 0; j < 4; j++) {
            int64_t p = p0 + tx * 4 + j;
            if (p >= NP)
                continue;
            int64_t n = p / HWo, rem = p % HWo;
            st(y, (n * s.Co + co) * HWo + rem, acc[i][j] + bias);
        }
    }
}

enum { TC_M = 128, TC_N = 128, TC_K = 32, TC_LD = TC_K + 8, TC_THREADS = 256 };

__global__ void __launch_bounds__(256) k_conv2d_tc(TP x, TP w, TP b, TP y, ConvShape s)
{
    /* As[m][k]: weights, row-major as load_a wants; Bs[n][k]: gathered input,
     * n-major as load_b wants. The 8-half pad keeps fragment loads off
     * shared bank conflicts (row stride 20 words). */
    DYN_SMEM(uint16_t, sm);
    uint16_t *As = sm, *Bs = sm + TC_M * TC_LD;
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int wm = warp / 4, wn = warp % 4; /* 2 x 4 warps of 64 (co) x 32 (p) */
    const int64_t HWo = (int64_t)s.Ho * s.Wo, NP = (int64_t)s.B * HWo;
    const int KHW = s.KH * s.KW, K = s.Ci * KHW;
    const int co0 = blockIdx.y * TC_M;
    const int64_t p0 = (int64_t)blockIdx.x * TC_N;

    /* this thread's loads: A row ar, k ak..ak+15; B pixel bp, k bk, bk+2, .. */
    const int ar = tid / 2, ak = (tid % 2) * 16, bp = tid % TC_N, bk = tid / TC_N;
    const int a_co = co0 + ar;
    const int64_t p = p0 + bp;
    const bool p_ok = p < NP;
    int64_t x_base = 0;
    int iy0 = 0, ix0 = 0;
    if (p_ok) {
        int64_t n = p / HWo, rem = p % HWo;
        int oy = (int)(rem / s.Wo), ox = (int)(rem % s.Wo);
        iy0 = oy * s.stride - s.pt;
        ix0 = ox * s.stride - s.pl;
        x_base = n * s.Ci * (int64_t)s.H * s.W;
    }
    /* B's k walk: this thread's k are bk, bk + 2, ...; (ci, ky, kx) of the
     * next one is carried along instead of divided out per element */
    int kb = bk, kci = bk / KHW, kky = (bk % KHW) / s.KW, kkx = (bk % KHW) % s.KW;
    /* A rows as 16-byte vectors when w is f16 and rows start 16-byte aligned
     * (weights mmapped from a safetensors file may start anywhere: UBSan in
     * the emu build caught such a misaligned vector load) */
    const bool a_vec = w.f16 && K % 8 == 0 && ((uintptr_t)w.p & 15) == 0;
    const uint16_t *Wh = (const uint16_t *)w.p;
    uint16_t ra[16], rb[16];
    /* global -> registers for the k tile at k0 */
#define FETCH(k0)                                                                            \
    do {                                                                                     \
        if (a_vec) {                                                                         \
            for (int c = 0; c < 2; c++) {                                                    \
                int kg = (k0) + ak + 8 * c;                                                  \
                uint4 u = {0, 0, 0, 0};                                                      \
                if (a_co < s.Co && kg < K)                                                   \
                    u = *(const uint4 *)(Wh + (int64_t)a_co * K + kg);                       \
                const uint32_t uw[4] = {u.x, u.y, u.z, u.w};                                 \
                for (int e = 0; e < 8; e++)                                                  \
                    ra[8 * c + e] = (uint16_t)(uw[e / 2] >> (16 * (e % 2)));                 \
            }                                                                                \
        } else {                                                                             \
            for (int j = 0; j < 16; j++) {                                                   \
                int kg = (k0) + ak + j;                                                      \
                ra[j] = (a_co < s.Co && kg < K) ? f2h(ld(w, (int64_t)a_co * K + kg)) : 0;    \
            }                                                                                \
        }                                                                                    \
        for (int j = 0; j < 16; j++) {                                                       \
            uint16_t v = 0;                                                                  \
            if (p_ok && kb < K) {                                                            \
                int iy = iy0 + kky, ix = ix0 + kkx;                                          \
                if (iy >= 0 && iy < s.H && ix >= 0 && ix < s.W)                              \
                    v = f2h(ld(x, x_base + ((int64_t)kci * s.H + iy) * s.W + ix));           \
            }                                                                                \
            rb[j] = v;                                                                       \
            kb += 2;                                                                         \
            for (kkx += 2; kkx >= s.KW;) {                                                   \
                kkx -= s.KW;                                                                 \
                if (++kky == s.KH) {                                                         \
                    kky = 0;                                                                 \
                    kci++;                                                                   \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    } while (0)

    FragC acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            for (int e = 0; e < 4; e++)
                acc[i][j].c[e] = 0.0f;

    FETCH(0);
    for (int k0 = 0; k0 < K; k0 += TC_K) {
        for (int j = 0; j < 16; j++)
            As[ar * TC_LD + ak + j] = ra[j];
        for (int j = 0; j < 16; j++)
            Bs[bp * TC_LD + bk + 2 * j] = rb[j];
        __syncthreads();
        if (k0 + TC_K < K)
            FETCH(k0 + TC_K); /* in flight while the tensor cores run */
        for (int ks = 0; ks < TC_K; ks += 16) {
            FragA fa[4];
            FragB fb[4];
            for (int mi = 0; mi < 4; mi++)
                load_a(fa[mi], As + (wm * 64 + mi * 16) * TC_LD + ks, TC_LD, lane);
            for (int ni = 0; ni < 4; ni++)
                load_b(fb[ni], Bs + (wn * 32 + ni * 8) * TC_LD + ks, TC_LD, lane);
            for (int mi = 0; mi < 4; mi++)
                for (int ni = 0; ni < 4; ni++)
                    mma_16816(acc[mi][ni], fa[mi], fb[ni], acc[mi][ni]);
        }
        __syncthreads();
    }
#undef FETCH
    /* c[e] = C[g + 8 (e/2)][2t + e%2] of each 16 x 8 tile */
    const int g = lane / 4, t = lane % 4;
    for (int mi = 0; mi < 4; mi++)
        for (int h = 0; h < 2; h++) {
            int co = co0 + wm * 64 + mi * 16 + g + 8 * h;
            if (co >= s.Co)
                continue;
            float bias = b.p ? ld(b, co) : 0.0f;
            for (int ni = 0; ni < 4; ni++)
                for (int e = 0; e < 2; e++) {
                    int64_t q = p0 + wn * 32 + ni * 8 + 2 * t + e;
                    if (q >= NP)
                        continue;
                    int64_t n = q / HWo, rem = q % HWo;
                    st(y, (n * s.Co + co) * HWo + rem, acc[mi][ni].c[2 * h + e] + bias);
                }
        }
}

cudaError_t cu_conv2d(cudaStream_t st, TP x, TP w, TP b, TP y, ConvShape s)
{
    if (x.f16 || w.f16) {
        int64_t NP = (int64_t)s.B * s.Ho * s.Wo;
        dim3 grid((unsigned)((NP + TC_N - 1) / TC_N), (unsigned)((s.Co + TC_M - 1) / TC_M));
        LAUNCH(k_conv2d_tc, grid, TC_THREADS, 2 * TC_M * TC_LD * sizeof(uint16_t), st, x, w, b, y,
               s);
        return cudaGetLastError();
    }
    int64_t NP = (int64_t)s.B * s.Ho * s.Wo;
    dim3 grid((unsigned)((NP + CB_N - 1) / CB_N), (unsigned)((s.Co + CB_M - 1) / CB_M));
    LAUNCH(k_conv2d, grid, CB_THREADS, 2 * CB_K * CB_LD * sizeof(float), st, x, w, b, y, s);
    return cudaGetLastError();
}
