/* kernels/cuda/launch.h - host-side entry points of the kernels in
 * kernels/cuda/ (compiled by nvcc for the "cuda" backend and by the host
 * compiler for "emu"). Each enqueues its kernels on `st` and returns the
 * launch status (cudaGetLastError after the launch). */
#ifndef ND_KERNELS_CUDA_LAUNCH_H
#define ND_KERNELS_CUDA_LAUNCH_H

#include "kernels/cuda/cu_compat.h"

enum { EW_GELU, EW_QUICK_GELU, EW_SILU, EW_SCALE, EW_COPY };
enum { BIN_ADD, BIN_MUL };

struct Bcast { /* kernels/backend_impl.h's nd_bcast, by value */
    int nd;
    int64_t n[4], bs[4];
};

cudaError_t cu_unary(cudaStream_t st, int op, TP x, TP y, int64_t n, float scale, float bias);
cudaError_t cu_binary(cudaStream_t st, int op, TP a, TP b, TP y, int64_t n, Bcast bc);
cudaError_t cu_geglu(cudaStream_t st, TP x, TP y, int64_t rows, int64_t C);
cudaError_t cu_concat(cudaStream_t st, TP a, TP b, TP y, int64_t N, int64_t as, int64_t bs);
cudaError_t cu_upsample2x(cudaStream_t st, TP x, TP y, int64_t NC, int64_t H, int64_t W);
cudaError_t cu_timestep(cudaStream_t st, TP t, TP y, int B, int dim, float max_period, int flip,
                        float shift);
cudaError_t cu_transpose(cudaStream_t st, TP x, TP y, int64_t B, int64_t M, int64_t N);
cudaError_t cu_bias_rows(cudaStream_t st, TP y, TP b, int64_t rows, int64_t N); /* y += b */

cudaError_t cu_group_norm(cudaStream_t st, TP x, TP g, TP b, TP y, int64_t N, int64_t C,
                          int64_t S, int groups, float eps, int silu);
cudaError_t cu_layer_norm(cudaStream_t st, TP x, TP g, TP b, TP y, int64_t rows, int64_t C,
                          float eps);
cudaError_t cu_softmax(cudaStream_t st, TP x, TP y, int64_t rows, int64_t C);

cudaError_t cu_attention(cudaStream_t st, TP q, TP k, TP v, TP o, int B, int Nq, int Nk, int H,
                         int d, float scale, int causal);

struct ConvShape {
    int B, Ci, H, W, Co, KH, KW, Ho, Wo, stride, pt, pl;
};
cudaError_t cu_conv2d(cudaStream_t st, TP x, TP w, TP b, TP y, ConvShape s);

#endif
