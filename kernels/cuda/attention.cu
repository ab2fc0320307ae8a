/* kernels/cuda/attention.cu - flash attention: softmax(q k^T * scale) v with
 * an online softmax, never materialising the Nq x Nk scores.
 *
 * One block per (query tile of BQ rows, head, batch), 128 threads (4 warps).
 * Shared memory holds the block's Q tile (pre-scaled), one K tile and one V
 * tile of BK keys, the BQ x BK score tile, and the fp32 output accumulator
 * O[BQ][d] with the running row max m and row sum l. Per key tile:
 *   load K, V            | sync | scores S = Q K^T (masked) | sync |
 *   one warp per row: m' = max(m, max_j S), P = exp(S - m'), l = l a + sum P
 *   with a = exp(m - m') (lane j holds column j; warp shuffles) | sync |
 *   O = O a + P V        | sync
 * and finally O / l. fp32 throughout (SIMT); BQ = BK = 32 for d <= 160,
 * 16 above (d = 512 fits in 130 KiB). */
#include "kernels/cuda/launch.h"
#include "kernels/cuda/reduce.cuh"

static const int ATT_THREADS = 128;

static size_t att_smem(int d, int BQ, int BK)
{
    return sizeof(float) * ((size_t)BQ * d + (size_t)BK * (d + 1) + (size_t)BK * d +
                            (size_t)BQ * (BK + 1) + (size_t)BQ * d + 3 * (size_t)BQ);
}

__global__ void __launch_bounds__(128) k_attention(TP q, TP k, TP v, TP o, int Nq, int Nk, int H,
                                                   int d, float scale, int causal, int BQ, int BK)
{
    DYN_SMEM(float, sm);
    const int ldk = d + 1, lds = BK + 1;
    float *Qs = sm, *Ks = Qs + BQ * d, *Vs = Ks + BK * ldk, *S = Vs + BK * d;
    float *Os = S + BQ * lds, *mrow = Os + BQ * d, *lrow = mrow + BQ, *arow = lrow + BQ;
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * BQ;
    const int tid = threadIdx.x, nt = blockDim.x, lane = tid % 32, warp = tid / 32,
              nw = nt / 32;
    const int64_t C = (int64_t)H * d;

    for (int i = tid; i < BQ * d; i += nt) {
        int r = i / d, j = i % d, qi = q0 + r;
        Qs[i] = qi < Nq ? ld(q, ((int64_t)b * Nq + qi) * C + (int64_t)h * d + j) * scale : 0.0f;
        Os[i] = 0.0f;
    }
    for (int r = tid; r < BQ; r += nt) {
        mrow[r] = -INFINITY;
        lrow[r] = 0.0f;
    }
    __syncthreads();

    int kend = causal ? min(Nk, q0 + BQ) : Nk;
    for (int k0 = 0; k0 < kend; k0 += BK) {
        for (int i = tid; i < BK * d; i += nt) {
            int c = i / d, j = i % d, kj = k0 + c;
            int64_t at = ((int64_t)b * Nk + kj) * C + (int64_t)h * d + j;
            Ks[c * ldk + j] = kj < Nk ? ld(k, at) : 0.0f;
            Vs[c * d + j] = kj < Nk ? ld(v, at) : 0.0f;
        }
        __syncthreads();
        for (int e = tid; e < BQ * BK; e += nt) {
            int r = e / BK, c = e % BK, kj = k0 + c;
            float s = -INFINITY;
            if (kj < Nk && !(causal && kj > q0 + r)) {
                const float *qr = Qs + r * d, *kr = Ks + c * ldk;
                s = 0.0f;
                for (int j = 0; j < d; j++)
                    s += qr[j] * kr[j];
            }
            S[r * lds + c] = s;
        }
        __syncthreads();
        for (int r = warp; r < BQ; r += nw) { /* uniform per warp */
            float s = lane < BK ? S[r * lds + lane] : -INFINITY;
            float mo = mrow[r], mn = fmaxf(mo, warp_max(s));
            float p = (lane < BK && mn != -INFINITY) ? expf(s - mn) : 0.0f;
            if (lane < BK)
                S[r * lds + lane] = p;
            float sum = warp_sum(p);
            if (lane == 0) {
                float a = mn == -INFINITY ? 1.0f : expf(mo - mn);
                lrow[r] = lrow[r] * a + sum;
                mrow[r] = mn;
                arow[r] = a;
            }
        }
        __syncthreads();
        int kn = min(BK, Nk - k0);
        for (int i = tid; i < BQ * d; i += nt) {
            int r = i / d, j = i % d;
            const float *pr = S + r * lds;
            float acc = Os[i] * arow[r];
            for (int c = 0; c < kn; c++)
                acc += pr[c] * Vs[c * d + j];
            Os[i] = acc;
        }
        __syncthreads();
    }
    for (int i = tid; i < BQ * d; i += nt) {
        int r = i / d, j = i % d, qi = q0 + r;
        if (qi < Nq)
            st(o, ((int64_t)b * Nq + qi) * C + (int64_t)h * d + j, Os[i] / lrow[r]);
    }
}

cudaError_t cu_attention(cudaStream_t st, TP q, TP k, TP v, TP o, int B, int Nq, int Nk, int H,
                         int d, float scale, int causal)
{
    int BQ = d <= 160 ? 32 : 16, BK = BQ;
    size_t smem = att_smem(d, BQ, BK);
    if (smem > (48u << 10)) {
        cudaError_t e = cudaFuncSetAttribute(k_attention,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)smem);
        if (e != cudaSuccess)
            return e;
    }
    dim3 grid((unsigned)((Nq + BQ - 1) / BQ), (unsigned)H, (unsigned)B);
    LAUNCH(k_attention, grid, ATT_THREADS, smem, st, q, k, v, o, Nq, Nk, H, d, scale, causal, BQ,
           BK);
    return cudaGetLastError();
}
