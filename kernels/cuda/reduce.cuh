/* kernels/cuda/reduce.cuh - warp and block reductions (shuffles + shared memory). */
#ifndef ND_KERNELS_CUDA_REDUCE_CUH
#define ND_KERNELS_CUDA_REDUCE_CUH

#include "kernels/cuda/cu_compat.h"

static __device__ __forceinline__ float warp_sum(float v)
{
    for (int m = 16; m > 0; m >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, m);
    return v;
}
static __device__ __forceinline__ float warp_max(float v)
{
    for (int m = 16; m > 0; m >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, m));
    return v;
}

/* Sum (or max) over the block; every thread gets the result. blockDim.x is a
 * multiple of 32, at most 1024; `red` is 33 floats of shared memory. */
static __device__ __forceinline__ float block_reduce(float v, float *red, bool is_max)
{
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    v = is_max ? warp_max(v) : warp_sum(v);
    if (lane == 0)
        red[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float r = lane < nw ? red[lane] : (is_max ? -INFINITY : 0.0f);
        r = is_max ? warp_max(r) : warp_sum(r);
        if (lane == 0)
            red[32] = r;
    }
    __syncthreads();
    float r = red[32];
    __syncthreads(); /* red is reused by the next reduction */
    return r;
}

#endif
