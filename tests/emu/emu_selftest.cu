/* tests/emu/emu_selftest.cu - kernels that exercise the SIMT emulation runtime
 * itself (tests/emu/test_emu.c drives them). Written as ordinary CUDA: the
 * same file would run on a GPU. */
#include "kernels/cuda/cu_compat.h"

#include <math.h>

/* ---- block reduction: warp shuffles, then the warps' partial sums through
 * shared memory. SYNC=false drops the __syncthreads between the two: a race
 * that the emulator must expose (thread 0 reads slots other warps have not
 * written yet). */
template <bool SYNC> __global__ void k_block_sum(const float *x, float *out, int n)
{
    DYN_SMEM(float, part);
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = i < n ? x[i] : 0.0f;
    for (int m = 16; m > 0; m >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, m);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0)
        part[warp] = v;
    if (SYNC)
        __syncthreads();
    if (threadIdx.x == 0) {
        float s = 0;
        for (int w = 0; w < (int)blockDim.x / 32; w++)
            s += part[w];
        out[blockIdx.x] = s;
    }
}

extern "C" int emu_test_block_sum(const float *x, float *out, int n, int sync)
{
    int blocks = (n + 255) / 256;
    if (sync)
        LAUNCH(k_block_sum<true>, blocks, 256, 8 * sizeof(float), 0, x, out, n);
    else
        LAUNCH(k_block_sum<false>, blocks, 256, 8 * sizeof(float), 0, x, out, n);
    return (int)cudaGetLastError();
}

/* ---- shared-memory transpose (32x33 tile), x[M][N] -> y[N][M] ---- */
template <bool SYNC> __global__ void k_transpose(const float *x, float *y, int M, int N)
{
    __shared__ float tile[32][33];
    int bx = blockIdx.x * 32, by = blockIdx.y * 32;
    for (int r = threadIdx.y; r < 32; r += blockDim.y) {
        int m = by + r, nn = bx + threadIdx.x;
        tile[r][threadIdx.x] = (m < M && nn < N) ? x[(int64_t)m * N + nn] : 0.0f;
    }
    if (SYNC)
        __syncthreads();
    for (int r = threadIdx.y; r < 32; r += blockDim.y) {
        int nn = bx + r, m = by + threadIdx.x;
        if (nn < N && m < M)
            y[(int64_t)nn * M + m] = tile[threadIdx.x][r];
    }
}

extern "C" int emu_test_transpose(const float *x, float *y, int M, int N, int sync)
{
    dim3 grid((N + 31) / 32, (M + 31) / 32), block(32, 8);
    if (sync)
        LAUNCH(k_transpose<true>, grid, block, 0, 0, x, y, M, N);
    else
        LAUNCH(k_transpose<false>, grid, block, 0, 0, x, y, M, N);
    return (int)cudaGetLastError();
}

/* ---- shuffle and vote semantics, one warp of 32 (+ a partial second warp) ---- */
__global__ void k_shuffles(int *out)
{
    int lane = threadIdx.x % 32, t = threadIdx.x;
    int *o = out + t * 8;
    unsigned full = 0xffffffffu;
    if (t < 32) {
        o[0] = __shfl_sync(full, lane * 10, (lane + 3) % 32);
        o[1] = __shfl_xor_sync(full, lane * 10, 5);
        o[2] = __shfl_down_sync(full, lane * 10, 4);
        o[3] = __shfl_up_sync(full, lane * 10, 2, 8);
        o[4] = (int)__ballot_sync(full, lane % 3 == 0);
        o[5] = __any_sync(full, lane == 17);
        o[6] = __all_sync(full, lane < 31);
        o[7] = __shfl_sync(full, lane * 10, 1, 16); /* lane 1 of each 16-lane segment */
    } else {
        /* the second warp has 8 lanes (block of 40): a mask of those */
        unsigned m = 0xffu;
        o[0] = __shfl_xor_sync(m, lane, 1);
        o[1] = (int)__ballot_sync(m, 1);
        o[2] = o[3] = o[4] = o[5] = o[6] = o[7] = 0;
    }
}

extern "C" int emu_test_shuffles(int *out)
{
    LAUNCH(k_shuffles, 1, 40, 0, 0, out);
    return (int)cudaGetLastError();
}

/* ---- tensor-core wrapper: D = A B + C for one 16x16 by 16x8 tile ---- */
__global__ void k_mma(const uint16_t *A, const uint16_t *Bt, const float *C, float *D)
{
    int lane = threadIdx.x;
    FragA a;
    FragB b;
    FragC c, d;
    load_a(a, A, 16, lane);
    load_b(b, Bt, 16, lane); /* Bt[n][k] */
    int g = lane / 4, t = lane % 4;
    for (int i = 0; i < 4; i++)
        c.c[i] = C[(g + 8 * (i / 2)) * 8 + 2 * t + (i % 2)];
    mma_16816(d, a, b, c);
    for (int i = 0; i < 4; i++)
        D[(g + 8 * (i / 2)) * 8 + 2 * t + (i % 2)] = d.c[i];
}

extern "C" int emu_test_mma(const uint16_t *A, const uint16_t *Bt, const float *C, float *D)
{
    LAUNCH(k_mma, 1, 32, 0, 0, A, Bt, C, D);
    return (int)cudaGetLastError();
}

/* ---- threads that exit early still let the others pass __syncthreads ---- */
__global__ void k_early_exit(int *out, int n)
{
    DYN_SMEM(int, s);
    int t = threadIdx.x;
    if (t >= n)
        return;
    s[t] = t * t;
    __syncthreads();
    out[t] = s[n - 1 - t];
}

extern "C" int emu_test_early_exit(int *out, int n, int block)
{
    LAUNCH(k_early_exit, 1, block, block * sizeof(int), 0, out, n);
    return (int)cudaGetLastError();
}

/* ---- launch checks: > 48 KiB of dynamic shared memory needs the opt-in ---- */
__global__ void k_big_smem(float *out)
{
    DYN_SMEM(float, s);
    s[threadIdx.x * 1000] = 1.0f;
    __syncthreads();
    if (threadIdx.x == 0)
        out[0] = s[0] + s[1000] + s[15000];
}

extern "C" int emu_test_big_smem(float *out, int optin)
{
    size_t bytes = 64u << 10;
    if (optin) {
        cudaError_t e = cudaFuncSetAttribute(k_big_smem, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)bytes);
        if (e)
            return (int)e;
    }
    LAUNCH(k_big_smem, 1, 16, bytes, 0, out);
    return (int)cudaGetLastError();
}

extern "C" int emu_test_bad_config(void)
{
    float *p = 0;
    LAUNCH(k_big_smem, 1, 2048, 0, 0, p);
    return (int)cudaGetLastError();
}
