/* kernels/cuda/cu_compat.h - the one header every .cu under kernels/cuda/
 * includes first. Under nvcc it pulls in the CUDA runtime; under the host
 * compiler with -DND_EMU it pulls in the SIMT emulation (kernels/emu/emu.h).
 * Kernels use only what both provide:
 *   __global__/__device__, threadIdx/blockIdx/blockDim/gridDim, __shared__,
 *   DYN_SMEM(type, name) for dynamic shared memory, __syncthreads,
 *   __shfl_*_sync, __ballot_sync/__any_sync/__all_sync, atomicAdd,
 *   LAUNCH(kernel, grid, block, smem, stream, args...),
 *   h2f/f2h (fp16 bits <-> float), and the tensor-core wrapper mma_16816
 *   (mma.sync.m16n8k16 f16 x f16 + f32, PTX ISA fragment layouts). */
#ifndef ND_KERNELS_CUDA_CU_COMPAT_H
#define ND_KERNELS_CUDA_CU_COMPAT_H

#include <stdint.h>

#ifdef ND_EMU
#include "kernels/emu/emu.h"
extern "C" {
float nd_f16_to_f32(uint16_t h);
uint16_t nd_f32_to_f16(float f);
}
#define LAUNCH(k, g, b, s, st, ...) EMU_LAUNCH(k, g, b, s, st, __VA_ARGS__)
#define DYN_SMEM(type, name) type *name = (type *)emu_dynamic_smem()
static __forceinline__ float h2f(uint16_t h) /* exact, subnormals included */
{
    uint32_t sgn = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
    if (e == 0) {
        float f = (float)m * 5.9604644775390625e-8f; /* m * 2^-24 */
        return sgn ? -f : f;
    }
    bits = e == 31 ? sgn | 0x7f800000u | (m << 13) : sgn | ((e + 112) << 23) | (m << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
static __forceinline__ uint16_t f2h(float f)
{
    return nd_f32_to_f16(f);
}
#else
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#define LAUNCH(k, g, b, s, st, ...) k<<<(g), (b), (s), (st)>>>(__VA_ARGS__)
#define DYN_SMEM(type, name)                                                                 \
    extern __shared__ __align__(16) unsigned char nd_dyn_smem_[];                            \
    type *name = (type *)nd_dyn_smem_
static __device__ __forceinline__ float h2f(uint16_t h)
{
    return __half2float(__ushort_as_half(h));
}
static __device__ __forceinline__ uint16_t f2h(float f)
{
    return __half_as_ushort(__float2half_rn(f));
}
#endif

/* A tensor as a kernel sees it: a pointer and its storage type (any op input
 * may be f32 or f16; the branch is uniform across a launch). */
struct TP {
    void *p;
    int f16;
};
static __device__ __forceinline__ float ld(const TP t, int64_t i)
{
    return t.f16 ? h2f(((const uint16_t *)t.p)[i]) : ((const float *)t.p)[i];
}
static __device__ __forceinline__ void st(const TP t, int64_t i, float v)
{
    if (t.f16)
        ((uint16_t *)t.p)[i] = f2h(v);
    else
        ((float *)t.p)[i] = v;
}

/* ---- tensor cores: mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 ----------------
 * Fragments as the PTX ISA documents them (g = lane / 4, t = lane % 4):
 *   A 16x16 (row): a[0..7] halves; a[i] = A[g + 8*((i/2)%2)][2t + (i%2) + 8*(i/4)]
 *   B 16x8  (col): b[0..3] halves; b[i] = B[2t + (i%2) + 8*(i/2)][g]
 *   C,D 16x8 f32:  c[0..3];        c[i] = C[g + 8*(i/2)][2t + (i%2)]
 * Halves are packed two per 32-bit register, lower index in the low bits.
 * d = a*b + c, accumulated in fp32. All 32 lanes of the warp must call it. */
struct FragA {
    uint32_t r[4];
};
struct FragB {
    uint32_t r[2];
};
struct FragC {
    float c[4];
};

static __device__ __forceinline__ uint32_t pack_h2(uint16_t lo, uint16_t hi)
{
    return (uint32_t)lo | ((uint32_t)hi << 16);
}

#ifdef ND_EMU
/* Lane-exact emulation: the warp exchanges its fragments; each lane then
 * decodes the two rows of A and the two columns of B it owns in D (from the
 * lanes that hold them in the documented layout) and computes its four
 * outputs. */
static inline void mma_16816(FragC &d, const FragA &a, const FragB &b, const FragC &c)
{
    struct {
        FragA a;
        FragB b;
    } mine = {a, b};
    unsigned got;
    const unsigned char(*s)[EMU_SLOT] = emu_warp_collective(0xffffffffu, &mine, sizeof mine, &got);
    if (got != 0xffffffffu)
        emu_fatal("mma_16816 needs all 32 lanes (got 0x%08x)", got);
    int lane = (int)emu_cur_thread->lane, g = lane / 4, t = lane % 4;
    float Ar[2][16], Bc[2][16]; /* rows g, g+8 of A; columns 2t, 2t+1 of B */
    for (int tp = 0; tp < 4; tp++) {
        FragA fa;
        memcpy(&fa, s[g * 4 + tp], sizeof fa);
        for (int e = 0; e < 2; e++) {
            Ar[0][2 * tp + e] = h2f((uint16_t)(fa.r[0] >> (16 * e)));
            Ar[1][2 * tp + e] = h2f((uint16_t)(fa.r[1] >> (16 * e)));
            Ar[0][2 * tp + 8 + e] = h2f((uint16_t)(fa.r[2] >> (16 * e)));
            Ar[1][2 * tp + 8 + e] = h2f((uint16_t)(fa.r[3] >> (16 * e)));
        }
        for (int cc = 0; cc < 2; cc++) {
            FragB fb;
            memcpy(&fb, s[(2 * t + cc) * 4 + tp] + sizeof(FragA), sizeof fb);
            for (int e = 0; e < 2; e++) {
                Bc[cc][2 * tp + e] = h2f((uint16_t)(fb.r[0] >> (16 * e)));
                Bc[cc][2 * tp + 8 + e] = h2f((uint16_t)(fb.r[1] >> (16 * e)));
            }
        }
    }
    FragC r;
    for (int i = 0; i < 4; i++) {
        float acc = c.c[i];
        for (int k = 0; k < 16; k++)
            acc += Ar[i / 2][k] * Bc[i % 2][k]; /* products of halves are exact in fp32 */
        r.c[i] = acc;
    }
    d = r;
}
#else
static __device__ __forceinline__ void mma_16816(FragC &d, const FragA &a, const FragB &b,
                                                 const FragC &c)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
                 : "=f"(d.c[0]), "=f"(d.c[1]), "=f"(d.c[2]), "=f"(d.c[3])
                 : "r"(a.r[0]), "r"(a.r[1]), "r"(a.r[2]), "r"(a.r[3]), "r"(b.r[0]),
                   "r"(b.r[1]), "f"(c.c[0]), "f"(c.c[1]), "f"(c.c[2]), "f"(c.c[3]));
}
#endif

/* Fragment loaders from row-major fp16 tiles in shared memory.
 * A: element (r, k) at As[r * lda + k]; B: element (k, n) at Bs[n * ldb + k]
 * (i.e. B stored n-major, as K rows are for Q K^T). */
static __device__ __forceinline__ void load_a(FragA &a, const uint16_t *As, int lda, int lane)
{
    int g = lane / 4, t = lane % 4;
    for (int j = 0; j < 4; j++) {
        int row = g + 8 * (j % 2), col = 2 * t + 8 * (j / 2);
        a.r[j] = pack_h2(As[row * lda + col], As[row * lda + col + 1]);
    }
}
static __device__ __forceinline__ void load_b(FragB &b, const uint16_t *Bs, int ldb, int lane)
{
    int g = lane / 4, t = lane % 4;
    for (int j = 0; j < 2; j++) {
        int k = 2 * t + 8 * j;
        b.r[j] = pack_h2(Bs[g * ldb + k], Bs[g * ldb + k + 1]);
    }
}

#endif
