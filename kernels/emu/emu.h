/* kernels/emu/emu.h - the SIMT emulation of the CUDA subset our .cu sources use,
 * for the host C++ compiler (g++ -x c++ -DND_EMU). kernels/cuda/cu_compat.h
 * includes it instead of the CUDA headers, so the very same kernels compile
 * both ways.
 *
 * Model: a launch is a loop over the grid's blocks (spread over a few worker
 * threads); a block's threads are cooperative fibers that run until they reach
 * a barrier: __syncthreads (the whole block) or a warp collective (shuffles,
 * votes, __syncwarp, the tensor-core wrappers: the 32 lanes of a warp). So a
 * missing __syncthreads is a real race here too, and shows as wrong results.
 *   __shared__        static thread_local: one copy per worker, and a worker
 *                     runs one block at a time, so one copy per running block
 *   dynamic smem      DYN_SMEM(type, name): a per-block buffer, filled with
 *                     0xff bytes (NaN) before every block
 *   threadIdx & co.   the running fiber's / block's coordinates
 *   memory            "device" memory is host memory, but every cudaMalloc
 *                     block is recorded: cudaMemcpy / cudaMemset check the
 *                     device side, and the emu backend refuses an op whose
 *                     tensors are not inside a block (emu_is_device)
 *   streams, events   launches are synchronous; events record host time
 *   cuBLAS            cublasSgemm as a plain loop (fp32 accumulation)
 * Not emulated: textures, cooperative groups, clusters, async copies, graphs,
 * anything not listed here (it fails to compile, which is the point). */
#ifndef ND_KERNELS_EMU_EMU_H
#define ND_KERNELS_EMU_EMU_H

#ifndef ND_EMU
#define ND_EMU 1
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- qualifiers and built-in variables ------------------------------------------- */

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __constant__ static const
#define warpSize 32

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

/* What a kernel sees of the running thread and block (the runtime's structs
 * start with these). */
struct emu_thread_pub {
    uint3 tid;
    unsigned linear, lane, warp;
};
struct emu_block_pub {
    uint3 bid;
    dim3 bdim, gdim;
};
extern __thread emu_thread_pub *emu_cur_thread;
extern __thread emu_block_pub *emu_cur_block;

#define threadIdx (emu_cur_thread->tid)
#define blockIdx (emu_cur_block->bid)
#define blockDim (emu_cur_block->bdim)
#define gridDim (emu_cur_block->gdim)

/* ---- runtime entry points (kernels/emu/emu_runtime.cpp) ---------------------------- */

typedef struct emu_stream *cudaStream_t;
typedef struct emu_event *cudaEvent_t;

enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDeviceFunction = 98,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotReady = 600,
    cudaErrorLaunchFailure = 719,
};
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

/* block barrier */
void emu_syncthreads(void);
/* Warp collective: every lane in `mask` (that is still running) deposits n <=
 * EMU_SLOT bytes; returns the warp's 32 slots once all have arrived. `got`
 * receives the mask of lanes whose slot is valid. */
#define EMU_SLOT 64
const unsigned char (*emu_warp_collective(unsigned mask, const void *in, size_t n,
                                          unsigned *got))[EMU_SLOT];
void *emu_dynamic_smem(void);
/* Aborts with the kernel, block and thread named. */
[[noreturn]] void emu_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void emu_launch_raw(dim3 grid, dim3 block, size_t smem, cudaStream_t st, const char *name,
                    const void *func, void (*thunk)(void *), void *ctx);
/* Worker threads for the grid (default: online cores, at most 8). */
void emu_set_workers(int n);

template <class F> static void emu_thunk(void *p)
{
    (*(F *)p)();
}
template <class F>
static inline void emu_launch(dim3 g, dim3 b, size_t smem, cudaStream_t st, const char *name,
                              const void *func, F f)
{
    emu_launch_raw(g, b, smem, st, name, func, emu_thunk<F>, &f);
}
#define EMU_LAUNCH(k, g, b, s, st, ...)                                                      \
    emu_launch(dim3(g), dim3(b), (s), (st), #k, (const void *)&k, [=]() { k(__VA_ARGS__); })

__forceinline__ void __syncthreads(void)
{
    emu_syncthreads();
}
__forceinline__ void __syncwarp(unsigned mask = 0xffffffffu)
{
    unsigned got;
    emu_warp_collective(mask, NULL, 0, &got);
}

/* ---- warp shuffles and votes ----------------------------------------------------------- */

template <class T> static inline T emu_shfl_from(unsigned mask, T v, int src)
{
    static_assert(sizeof(T) <= EMU_SLOT, "shuffle of a large type");
    unsigned got;
    const unsigned char(*s)[EMU_SLOT] = emu_warp_collective(mask, &v, sizeof v, &got);
    T r;
    if (src < 0 || src > 31 || !(got & (1u << src)))
        memset(&r, 0xff, sizeof r); /* undefined on the GPU: NaN / -1 here */
    else
        memcpy(&r, s[src], sizeof r);
    return r;
}
template <class T> static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32)
{
    int lane = (int)emu_cur_thread->lane;
    return emu_shfl_from(mask, v, (lane & ~(width - 1)) + (src & (width - 1)));
}
template <class T> static inline T __shfl_xor_sync(unsigned mask, T v, int m, int width = 32)
{
    int lane = (int)emu_cur_thread->lane, src = lane ^ m;
    if (src >= (lane & ~(width - 1)) + width)
        src = lane;
    return emu_shfl_from(mask, v, src);
}
template <class T> static inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32)
{
    int lane = (int)emu_cur_thread->lane, src = lane + (int)d;
    if (src >= (lane & ~(width - 1)) + width)
        src = lane;
    return emu_shfl_from(mask, v, src);
}
template <class T> static inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32)
{
    int lane = (int)emu_cur_thread->lane, src = lane - (int)d;
    if (src < (lane & ~(width - 1)))
        src = lane;
    return emu_shfl_from(mask, v, src);
}
static inline unsigned __ballot_sync(unsigned mask, int pred)
{
    unsigned got, r = 0;
    int p = pred != 0;
    const unsigned char(*s)[EMU_SLOT] = emu_warp_collective(mask, &p, sizeof p, &got);
    for (int l = 0; l < 32; l++)
        if ((got >> l) & 1) {
            int q;
            memcpy(&q, s[l], sizeof q);
            r |= (unsigned)q << l;
        }
    return r;
}
static inline int __any_sync(unsigned mask, int pred)
{
    return __ballot_sync(mask, pred) != 0;
}
static inline int __all_sync(unsigned mask, int pred)
{
    unsigned got, b;
    int p = pred != 0;
    const unsigned char(*s)[EMU_SLOT] = emu_warp_collective(mask, &p, sizeof p, &got);
    b = 0;
    for (int l = 0; l < 32; l++)
        if ((got >> l) & 1) {
            int q;
            memcpy(&q, s[l], sizeof q);
            b |= (unsigned)(q == 0) << l;
        }
    return b == 0;
}

/* ---- atomics (blocks may run on different worker threads) ------------------------------- */

static inline int atomicAdd(int *p, int v)
{
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
static inline unsigned atomicAdd(unsigned *p, unsigned v)
{
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
static inline float atomicAdd(float *p, float v)
{
    uint32_t *u = (uint32_t *)p, old = __atomic_load_n(u, __ATOMIC_RELAXED), want;
    float f;
    do {
        memcpy(&f, &old, 4);
        f += v;
        memcpy(&want, &f, 4);
    } while (!__atomic_compare_exchange_n(u, &old, want, true, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    memcpy(&f, &old, 4);
    return f;
}
static inline int atomicMax(int *p, int v)
{
    int old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED,
                                                   __ATOMIC_RELAXED)) {
    }
    return old;
}

/* ---- device math ------------------------------------------------------------------------ */

/* __expf is glibc's own name: the kernels use expf */
static inline float __fdividef(float a, float b)
{
    return a / b;
}
static inline float rsqrtf(float x)
{
    return 1.0f / sqrtf(x);
}
static inline int min(int a, int b)
{
    return a < b ? a : b;
}
static inline int max(int a, int b)
{
    return a > b ? a : b;
}
static inline int64_t min(int64_t a, int64_t b)
{
    return a < b ? a : b;
}
static inline int64_t max(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* ---- host runtime shim -------------------------------------------------------------------- */

cudaError_t cudaMalloc(void **p, size_t n);
template <class T> static inline cudaError_t cudaMalloc(T **p, size_t n)
{
    return cudaMalloc((void **)p, n);
}
cudaError_t cudaFree(void *p);
/* Is [p, p+n) inside one live cudaMalloc block? (The emulator's check that a
 * kernel gets device memory, not host memory it could read only here.) */
bool emu_is_device(const void *p, size_t n);
size_t emu_device_bytes(void); /* bytes in live cudaMalloc blocks */
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k,
                            cudaStream_t st = 0);
cudaError_t cudaMemset(void *p, int v, size_t n);
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t st = 0);
cudaError_t cudaStreamCreate(cudaStream_t *st);
cudaError_t cudaStreamDestroy(cudaStream_t st);
cudaError_t cudaStreamSynchronize(cudaStream_t st);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t st = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
cudaError_t cudaSetDevice(int dev);
cudaError_t cudaGetDeviceCount(int *n);
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attr, int value);
template <class T> static inline cudaError_t cudaFuncSetAttribute(T *func, cudaFuncAttribute a, int v)
{
    return cudaFuncSetAttribute((const void *)func, a, v);
}

/* CUDA's 16-byte vector type, for 128-bit loads and stores */
struct alignas(16) uint4 {
    unsigned int x, y, z, w;
};

/* cuBLAS: the calls the backend makes */
typedef struct emu_cublas *cublasHandle_t;
enum cublasStatus_t {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
};
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
cublasStatus_t cublasCreate(cublasHandle_t *h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t st);
/* column-major C = alpha op(A) op(B) + beta C */
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float *alpha, const float *A, int lda,
                           const float *B, int ldb, const float *beta, float *C, int ldc);
/* cublasGemmEx for the types the backend uses: A, B, C each f16 or f32,
 * fp32 compute (a plain loop, fp32 accumulation, C rounded once) */
enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_16F = 2 };
typedef cudaDataType_t cudaDataType;
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68 };
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 };
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType_t at,
                            int lda, const void *B, cudaDataType_t bt, int ldb, const void *beta,
                            void *C, cudaDataType_t ct, int ldc, cublasComputeType_t comp,
                            cublasGemmAlgo_t algo);
const char *cublasGetStatusString(cublasStatus_t s);

#endif
