/* kernels/cuda/elem.cu - element-wise and shape ops: grid-stride loops over
 * the output, f32 math, any mix of f32/f16 storage. transpose goes through a
 * 32x33 shared-memory tile. */
#include "kernels/cuda/launch.h"

#include <math.h>

static const int EW_THREADS = 256;

static dim3 ew_grid(int64_t n)
{
    int64_t b = (n + EW_THREADS - 1) / EW_THREADS;
    return dim3((unsigned)(b < 4096 ? (b > 0 ? b : 1) : 4096));
}

#define GRID_STRIDE(i, n)                                                                    \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                \
         i += (int64_t)blockDim.x * gridDim.x)

static __device__ __forceinline__ float gelu_f(float v)
{
    return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
}

__global__ void k_unary(int op, TP x, TP y, int64_t n, float scale, float bias)
{
    GRID_STRIDE(i, n)
    {
        float v = ld(x, i);
        switch (op) {
        case EW_GELU: v = gelu_f(v); break;
        case EW_QUICK_GELU: v = v / (1.0f + expf(-1.702f * v)); break;
        case EW_SILU: v = v / (1.0f + expf(-v)); break;
        case EW_SCALE: v = v * scale + bias; break;
        default: break; /* EW_COPY */
        }
        st(y, i, v);
    }
}

cudaError_t cu_unary(cudaStream_t s, int op, TP x, TP y, int64_t n, float scale, float bias)
{
    LAUNCH(k_unary, ew_grid(n), EW_THREADS, 0, s, op, x, y, n, scale, bias);
    return cudaGetLastError();
}

__global__ void k_binary(int op, TP a, TP b, TP y, int64_t n, Bcast bc)
{
    GRID_STRIDE(i, n)
    {
        int64_t rem = i, bi = 0;
        for (int d = bc.nd - 1; d >= 0; d--) {
            bi += (rem % bc.n[d]) * bc.bs[d];
            rem /= bc.n[d];
        }
        float u = ld(a, i), v = ld(b, bi);
        st(y, i, op == BIN_ADD ? u + v : u * v);
    }
}

cudaError_t cu_binary(cudaStream_t s, int op, TP a, TP b, TP y, int64_t n, Bcast bc)
{
    LAUNCH(k_binary, ew_grid(n), EW_THREADS, 0, s, op, a, b, y, n, bc);
    return cudaGetLastError();
}

__global__ void k_geglu(TP x, TP y, int64_t rows, int64_t C)
{
    GRID_STRIDE(i, rows * C)
    {
        int64_t r = i / C, c = i % C;
        st(y, i, ld(x, r * 2 * C + c) * gelu_f(ld(x, r * 2 * C + C + c)));
    }
}

cudaError_t cu_geglu(cudaStream_t s, TP x, TP y, int64_t rows, int64_t C)
{
    LAUNCH(k_geglu, ew_grid(rows * C), EW_THREADS, 0, s, x, y, rows, C);
    return cudaGetLastError();
}

__global__ void k_concat(TP a, TP b, TP y, int64_t N, int64_t as, int64_t bs)
{
    GRID_STRIDE(i, N * (as + bs))
    {
        int64_t n = i / (as + bs), j = i % (as + bs);
        st(y, i, j < as ? ld(a, n * as + j) : ld(b, n * bs + j - as));
    }
}

cudaError_t cu_concat(cudaStream_t s, TP a, TP b, TP y, int64_t N, int64_t as, int64_t bs)
{
    LAUNCH(k_concat, ew_grid(N * (as + bs)), EW_THREADS, 0, s, a, b, y, N, as, bs);
    return cudaGetLastError();
}

__global__ void k_upsample2x(TP x, TP y, int64_t NC, int64_t H, int64_t W)
{
    GRID_STRIDE(i, NC * 4 * H * W)
    {
        int64_t ox = i % (2 * W), oy = (i / (2 * W)) % (2 * H), c = i / (4 * H * W);
        st(y, i, ld(x, (c * H + oy / 2) * W + ox / 2));
    }
}

cudaError_t cu_upsample2x(cudaStream_t s, TP x, TP y, int64_t NC, int64_t H, int64_t W)
{
    LAUNCH(k_upsample2x, ew_grid(NC * 4 * H * W), EW_THREADS, 0, s, x, y, NC, H, W);
    return cudaGetLastError();
}

/* [B, dim] once per step: double precision so that sin(999 f) keeps 1e-7 */
__global__ void k_timestep(TP t, TP y, int B, int dim, float max_period, int flip, float shift)
{
    int half = dim / 2;
    GRID_STRIDE(i, (int64_t)B * half)
    {
        int b = (int)(i / half), j = (int)(i % half);
        double f = exp(-log((double)max_period) * j / ((double)half - shift));
        double a = (double)ld(t, b) * f, sn = sin(a), cs = cos(a);
        st(y, (int64_t)b * dim + j, (float)(flip ? cs : sn));
        st(y, (int64_t)b * dim + half + j, (float)(flip ? sn : cs));
    }
}

cudaError_t cu_timestep(cudaStream_t s, TP t, TP y, int B, int dim, float max_period, int flip,
                        float shift)
{
    LAUNCH(k_timestep, ew_grid((int64_t)B * dim / 2), EW_THREADS, 0, s, t, y, B, dim, max_period,
           flip, shift);
    return cudaGetLastError();
}

/* x[B][M][N] -> y[B][N][M], 32x32 tiles through shared memory (+1 column
 * against bank conflicts); block (32, 8), grid (N/32, M/32, B) */
__global__ void k_transpose(TP x, TP y, int64_t M, int64_t N)
{
    __shared__ float tile[32][33];
    int64_t b = blockIdx.z, m0 = (int64_t)blockIdx.y * 32, n0 = (int64_t)blockIdx.x * 32;
    for (int r = threadIdx.y; r < 32; r += blockDim.y) {
        int64_t m = m0 + r, n = n0 + threadIdx.x;
        if (m < M && n < N)
            tile[r][threadIdx.x] = ld(x, (b * M + m) * N + n);
    }
    __syncthreads();
    for (int r = threadIdx.y; r < 32; r += blockDim.y) {
        int64_t n = n0 + r, m = m0 + threadIdx.x;
        if (m < M && n < N)
            st(y, (b * N + n) * M + m, tile[threadIdx.x][r]);
    }
}

cudaError_t cu_transpose(cudaStream_t s, TP x, TP y, int64_t B, int64_t M, int64_t N)
{
    dim3 grid((unsigned)((N + 31) / 32), (unsigned)((M + 31) / 32), (unsigned)B);
    LAUNCH(k_transpose, grid, dim3(32, 8), 0, s, x, y, M, N);
    return cudaGetLastError();
}

__global__ void k_bias_rows(TP y, TP b, int64_t rows, int64_t N)
{
    GRID_STRIDE(i, rows * N)
    st(y, i, ld(y, i) + ld(b, i % N));
}

cudaError_t cu_bias_rows(cudaStream_t s, TP y, TP b, int64_t rows, int64_t N)
{
    LAUNCH(k_bias_rows, ew_grid(rows * N), EW_THREADS, 0, s, y, b, rows, N);
    return cudaGetLastError();
}
