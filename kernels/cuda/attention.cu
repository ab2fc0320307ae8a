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
 * 16 above (d = 512 fits in 130 KiB). This path serves f32 storage (whose
 * 1e-4 contract fp16 operands cannot meet) and d = 512; f16 q/k/v at the
 * UNet/CLIP head dims take the tensor-core kernel k_attention_tc below. */
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
            /* every lane read mrow[r] above; lane 0 rewrites it: the shuffles
             * order the lanes but not their shared-memory accesses
             * (compute-sanitizer racecheck flagged this WAR hazard) */
            __syncwarp();
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

/* ---- tensor cores: f16 q, k, v and d in {40, 64, 80, 160} -------------------------
 * One block per 64 queries, 4 warps of 16 query rows each; key tiles of 64.
 * The warp's Q fragments stay in registers (d padded to DP, a multiple of
 * 16, with zeros). S = Q K^T per warp with mma_16816 (K tile n-major in
 * shared memory), fp32 scores scaled and masked in the accumulator layout
 * (lane: rows g and g+8, two adjacent columns per 8-column tile; a row's max
 * and sum over its 4 lanes with shfl_xor 1, 2), P rounded to f16 and re-used
 * as A fragments straight from the accumulators (the C and A layouts line
 * up), O += P V with V transposed in shared memory; O and the row sums in
 * fp32 registers. Q/K/V rows are read 16 bytes at a time (d is a multiple
 * of 8; the caller checks the pointers' alignment). */
enum { TC_BQ = 64, TC_BK = 64 };

static size_t att_tc_smem(int DP)
{
    return sizeof(uint16_t) * (2 * (size_t)TC_BQ * (DP + 8) + (size_t)DP * (TC_BK + 8));
}

template <int DP>
__global__ void __launch_bounds__(128) k_attention_tc(TP q, TP k, TP v, TP o, int Nq, int Nk,
                                                      int H, int d, float scale, int causal)
{
    DYN_SMEM(uint16_t, sm);
    const int ldq = DP + 8, ldv = TC_BK + 8;
    uint16_t *Qs = sm, *Ks = Qs + TC_BQ * ldq, *Vt = Ks + TC_BK * ldq;
    const uint16_t *Q = (const uint16_t *)q.p, *K = (const uint16_t *)k.p,
                   *V = (const uint16_t *)v.p;
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * TC_BQ;
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, g = lane / 4, t = lane % 4;
    const int64_t C = (int64_t)H * d;

    for (int i = tid; i < TC_BQ * DP; i += blockDim.x) {
        int r = i / DP, j = i % DP, qi = q0 + r;
        Qs[r * ldq + j] =
            (qi < Nq && j < d) ? Q[((int64_t)b * Nq + qi) * C + (int64_t)h * d + j] : (uint16_t)0;
    }
    __syncthreads();
    FragA qa[DP / 16];
    for (int kk = 0; kk < DP / 16; kk++)
        load_a(qa[kk], Qs + warp * 16 * ldq + kk * 16, ldq, lane);
    float oacc[DP / 8][4];
    for (int n = 0; n < DP / 8; n++)
        for (int i = 0; i < 4; i++)
            oacc[n][i] = 0.0f;
    float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.0f, 0.0f};
    const int row0 = q0 + warp * 16 + g; /* this lane's rows: row0, row0 + 8 */

    int kend = causal ? min(Nk, q0 + TC_BQ) : Nk;
    for (int k0 = 0; k0 < kend; k0 += TC_BK) {
        __syncthreads(); /* the previous tile is no longer read */
        /* 8 halves (16 bytes) per load: d, DP and C are multiples of 8 */
        for (int i = tid; i < TC_BK * (DP / 8); i += blockDim.x) {
            int c = i / (DP / 8), j = (i % (DP / 8)) * 8, kj = k0 + c;
            uint4 uk = {0, 0, 0, 0}, uv = {0, 0, 0, 0};
            if (kj < Nk && j < d) {
                int64_t at = ((int64_t)b * Nk + kj) * C + (int64_t)h * d + j;
                uk = *(const uint4 *)(K + at);
                uv = *(const uint4 *)(V + at);
            }
            *(uint4 *)(Ks + c * ldq + j) = uk;
            const uint32_t vw[4] = {uv.x, uv.y, uv.z, uv.w};
            for (int e = 0; e < 8; e++)
                Vt[(j + e) * ldv + c] = (uint16_t)(vw[e / 2] >> (16 * (e % 2)));
        }
        __syncthreads();
        FragC s[TC_BK / 8];
        for (int n = 0; n < TC_BK / 8; n++) {
            for (int i = 0; i < 4; i++)
                s[n].c[i] = 0.0f;
            for (int kk = 0; kk < DP / 16; kk++) {
                FragB kb;
                load_b(kb, Ks + n * 8 * ldq + kk * 16, ldq, lane);
                mma_16816(s[n], qa[kk], kb, s[n]);
            }
        }
        float mx[2] = {-INFINITY, -INFINITY};
        for (int n = 0; n < TC_BK / 8; n++)
            for (int i = 0; i < 4; i++) {
                int row = row0 + 8 * (i / 2), key = k0 + n * 8 + 2 * t + (i % 2);
                float val = s[n].c[i] * scale;
                if (key >= Nk || (causal && key > row))
                    val = -INFINITY;
                s[n].c[i] = val;
                mx[i / 2] = fmaxf(mx[i / 2], val);
            }
        float alpha[2];
        for (int r = 0; r < 2; r++) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            float mn = fmaxf(mrow[r], mx[r]);
            alpha[r] = mn == -INFINITY ? 1.0f : expf(mrow[r] - mn);
            mrow[r] = mn;
            lrow[r] *= alpha[r];
        }
        for (int n = 0; n < DP / 8; n++)
            for (int i = 0; i < 4; i++)
                oacc[n][i] *= alpha[i / 2];
        FragA pa[TC_BK / 16];
        for (int n = 0; n < TC_BK / 8; n++) {
            uint16_t ph[4];
            for (int i = 0; i < 4; i++) {
                float m = mrow[i / 2];
                float p = m == -INFINITY ? 0.0f : expf(s[n].c[i] - m);
                ph[i] = f2h(p);
                lrow[i / 2] += h2f(ph[i]); /* the sum of what is multiplied */
            }
            /* C tile n -> A fragment n / 2: even tiles are columns 0-7 of the
             * 16-key step (regs 0, 1), odd tiles columns 8-15 (regs 2, 3) */
            pa[n / 2].r[2 * (n % 2) + 0] = pack_h2(ph[0], ph[1]);
            pa[n / 2].r[2 * (n % 2) + 1] = pack_h2(ph[2], ph[3]);
        }
        for (int n = 0; n < DP / 8; n++)
            for (int kk = 0; kk < TC_BK / 16; kk++) {
                FragB vb;
                load_b(vb, Vt + n * 8 * ldv + kk * 16, ldv, lane);
                mma_16816(*(FragC *)oacc[n], pa[kk], vb, *(FragC *)oacc[n]);
            }
    }
    for (int r = 0; r < 2; r++) {
        lrow[r] += __shfl_xor_sync(0xffffffffu, lrow[r], 1);
        lrow[r] += __shfl_xor_sync(0xffffffffu, lrow[r], 2);
    }
    for (int n = 0; n < DP / 8; n++)
        for (int i = 0; i < 4; i++) {
            int row = row0 + 8 * (i / 2), j = n * 8 + 2 * t + (i % 2);
            if (row < Nq && j < d)
                st(o, ((int64_t)b * Nq + row) * C + (int64_t)h * d + j, oacc[n][i] / lrow[i / 2]);
        }
}

template <int DP>
static cudaError_t launch_tc(cudaStream_t st, TP q, TP k, TP v, TP o, int B, int Nq, int Nk,
                             int H, int d, float scale, int causal)
{
    size_t smem = att_tc_smem(DP);
    if (smem > (48u << 10)) {
        cudaError_t e = cudaFuncSetAttribute(k_attention_tc<DP>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)smem);
        if (e != cudaSuccess)
            return e;
    }
    dim3 grid((unsigned)((Nq + TC_BQ - 1) / TC_BQ), (unsigned)H, (unsigned)B);
    LAUNCH(k_attention_tc<DP>, grid, 128, smem, st, q, k, v, o, Nq, Nk, H, d, scale, causal);
    return cudaGetLastError();
}

cudaError_t cu_attention(cudaStream_t st, TP q, TP k, TP v, TP o, int B, int Nq, int Nk, int H,
                         int d, float scale, int causal)
{
    /* tensor cores; their tiles load 16 bytes at a time */
    uintptr_t al = (uintptr_t)q.p | (uintptr_t)k.p | (uintptr_t)v.p;
    if (q.f16 && k.f16 && v.f16 && al % 16 == 0) {
        switch (d) {
        case 40: return launch_tc<48>(st, q, k, v, o, B, Nq, Nk, H, d, scale, causal);
        case 64: return launch_tc<64>(st, q, k, v, o, B, Nq, Nk, H, d, scale, causal);
        case 80: return launch_tc<80>(st, q, k, v, o, B, Nq, Nk, H, d, scale, causal);
        case 160: return launch_tc<160>(st, q, k, v, o, B, Nq, Nk, H, d, scale, causal);
        default: break;
        }
    }
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
