/* kernels/cuda/conv.cu - conv2d as an implicit GEMM (no im2col buffer):
 *   Y[co][p] = sum_k W[co][k] X~[k][p],  k = (ci, ky, kx), p = (n, oy, ox)
 * where X~ is gathered from x on the fly (zero outside the padded input).
 * Block tile 64 (co) x 64 (p) x 16 (k), 256 threads each computing 4x4,
 * both operand tiles staged in shared memory; fp32 accumulation. Any kernel
 * size, stride and asymmetric padding. */
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

cudaError_t cu_conv2d(cudaStream_t st, TP x, TP w, TP b, TP y, ConvShape s)
{
    int64_t NP = (int64_t)s.B * s.Ho * s.Wo;
    dim3 grid((unsigned)((NP + CB_N - 1) / CB_N), (unsigned)((s.Co + CB_M - 1) / CB_M));
    LAUNCH(k_conv2d, grid, CB_THREADS, 2 * CB_K * CB_LD * sizeof(float), st, x, w, b, y, s);
    return cudaGetLastError();
}
