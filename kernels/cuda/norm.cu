/* kernels/cuda/norm.cu - group norm (+ fused SiLU), layer norm and softmax:
 * one block per group / row, statistics in two passes (mean, then the sum of
 * squared deviations) so that offset data keeps its precision. */
#include "kernels/cuda/reduce.cuh"

static const int NORM_THREADS = 256;

/* grid (groups, N); x[N][C][S] with C/groups channels per group */
__global__ void k_group_norm(TP x, TP g, TP b, TP y, int64_t C, int64_t S, int groups,
                             float eps, int silu)
{
    DYN_SMEM(float, red);
    int64_t cg = C / groups, n = blockIdx.y, gi = blockIdx.x;
    int64_t base = (n * C + gi * cg) * S, cnt = cg * S;
    float s = 0;
    for (int64_t i = threadIdx.x; i < cnt; i += blockDim.x)
        s += ld(x, base + i);
    float mean = block_reduce(s, red, false) / (float)cnt;
    float q = 0;
    for (int64_t i = threadIdx.x; i < cnt; i += blockDim.x) {
        float d = ld(x, base + i) - mean;
        q += d * d;
    }
    float inv = rsqrtf(block_reduce(q, red, false) / (float)cnt + eps);
    for (int64_t i = threadIdx.x; i < cnt; i += blockDim.x) {
        int64_t c = gi * cg + i / S;
        float v = (ld(x, base + i) - mean) * inv;
        if (g.p)
            v *= ld(g, c);
        if (b.p)
            v += ld(b, c);
        if (silu)
            v = v / (1.0f + expf(-v));
        st(y, base + i, v);
    }
}

cudaError_t cu_group_norm(cudaStream_t st, TP x, TP g, TP b, TP y, int64_t N, int64_t C,
                          int64_t S, int groups, float eps, int silu)
{
    LAUNCH(k_group_norm, dim3((unsigned)groups, (unsigned)N), NORM_THREADS, 33 * sizeof(float),
           st, x, g, b, y, C, S, groups, eps, silu);
    return cudaGetLastError();
}

__global__ void k_layer_norm(TP x, TP g, TP b, TP y, int64_t C, float eps)
{
    DYN_SMEM(float, red);
    int64_t base = (int64_t)blockIdx.x * C;
    float s = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        s += ld(x, base + c);
    float mean = block_reduce(s, red, false) / (float)C;
    float q = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float d = ld(x, base + c) - mean;
        q += d * d;
    }
    float inv = rsqrtf(block_reduce(q, red, false) / (float)C + eps);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float v = (ld(x, base + c) - mean) * inv;
        if (g.p)
            v *= ld(g, c);
        if (b.p)
            v += ld(b, c);
        st(y, base + c, v);
    }
}

static int row_threads(int64_t C)
{
    return C >= 512 ? 256 : C >= 128 ? 128 : 64;
}

cudaError_t cu_layer_norm(cudaStream_t st, TP x, TP g, TP b, TP y, int64_t rows, int64_t C,
                          float eps)
{
    LAUNCH(k_layer_norm, (unsigned)rows, row_threads(C), 33 * sizeof(float), st, x, g, b, y, C,
           eps);
    return cudaGetLastError();
}

__global__ void k_softmax(TP x, TP y, int64_t C)
{
    DYN_SMEM(float, red);
    int64_t base = (int64_t)blockIdx.x * C;
    float m = -INFINITY;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        m = fmaxf(m, ld(x, base + c));
    m = block_reduce(m, red, true);
    float s = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        s += expf(ld(x, base + c) - m);
    float inv = 1.0f / block_reduce(s, red, false);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        st(y, base + c, expf(ld(x, base + c) - m) * inv);
}

cudaError_t cu_softmax(cudaStream_t st, TP x, TP y, int64_t rows, int64_t C)
{
    LAUNCH(k_softmax, (unsigned)rows, row_threads(C), 33 * sizeof(float), st, x, y, C);
    return cudaGetLastError();
}
