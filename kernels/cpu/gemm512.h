/* kernels/cpu/gemm512.h - the AVX-512 register-blocked micro-GEMM shared by
 * attention (both tile products) and the small-K convolutions. Included
 * only by the cpu backend's .c files; everything is static. */
#ifndef ND_KERNELS_CPU_GEMM512_H
#define ND_KERNELS_CPU_GEMM512_H

#include "kernels/cpu/simd.h"

#ifdef ND_HAVE_X86
/* ---- AVX-512: 8 rows x up to 48 columns (24 accumulators), masked loads
 * and stores for every edge, so there are no scalar tails. A is read with
 * compile-time strides (AR between rows, AK between k) so the 8 broadcasts
 * come off one pointer: either Q packed per task as [row block][k][8], or the
 * probability tile with its row stride BK (128 or 64). */
ND_AVX512 static inline __attribute__((always_inline)) void
micro5(const int mr, const int nv, const bool full, const int AR, const int AK, int64_t K,
       const float *A,
       const float *B, int64_t ldb, float *C, int64_t ldc, bool acc, __mmask16 m0,
       __mmask16 m1, __mmask16 m2, const float *bias)
{
    __m512 c0[8], c1[8], c2[8];
    __m256 h2[8];
    __m256i hm = nv == 4 ? _mm256_loadu_si256((const __m256i *)(nd_mask_tab + 8 - __builtin_popcount(m2)))
                         : _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++) {
        /* bias: every row starts as its bias[r] */
        c0[r] = c1[r] = c2[r] = bias && r < mr ? _mm512_set1_ps(bias[r]) : _mm512_setzero_ps();
        h2[r] = _mm512_castps512_ps256(c0[r]);
    }
    for (int64_t k = 0; k < K; k++, A += AK, B += ldb) {
        /* full blocks: plain loads (m0..m2 all ones) */
        __m512 b0 = full ? _mm512_loadu_ps(B) : _mm512_maskz_loadu_ps(m0, B);
        __m512 b1 = nv < 2 ? _mm512_setzero_ps()
                    : full ? _mm512_loadu_ps(B + 16) : _mm512_maskz_loadu_ps(m1, B + 16);
        __m512 b2 = nv != 3 ? _mm512_setzero_ps()
                    : full  ? _mm512_loadu_ps(B + 32) : _mm512_maskz_loadu_ps(m2, B + 32);
        __m256 g2 = nv == 4 ? _mm256_maskload_ps(B + 32, hm) : _mm256_setzero_ps();
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            if (r < mr) {
                __m512 a = _mm512_set1_ps(A[r * AR]);
                c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
                if (nv >= 2)
                    c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
                if (nv == 3)
                    c2[r] = _mm512_fmadd_ps(a, b2, c2[r]);
                if (nv == 4)
                    h2[r] = _mm256_fmadd_ps(_mm512_castps512_ps256(a), g2, h2[r]);
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++) {
        if (r >= mr)
            break;
        float *cr = C + r * ldc;
        if (acc)
            c0[r] = _mm512_add_ps(c0[r], _mm512_maskz_loadu_ps(m0, cr));
        _mm512_mask_storeu_ps(cr, m0, c0[r]);
        if (nv >= 2) {
            if (acc)
                c1[r] = _mm512_add_ps(c1[r], _mm512_maskz_loadu_ps(m1, cr + 16));
            _mm512_mask_storeu_ps(cr + 16, m1, c1[r]);
        }
        if (nv == 3) {
            if (acc)
                c2[r] = _mm512_add_ps(c2[r], _mm512_maskz_loadu_ps(m2, cr + 32));
            _mm512_mask_storeu_ps(cr + 32, m2, c2[r]);
        }
        if (nv == 4) {
            if (acc)
                h2[r] = _mm256_add_ps(h2[r], _mm256_maskload_ps(cr + 32, hm));
            _mm256_maskstore_ps(cr + 32, hm, h2[r]);
        }
    }
}

/* A layouts */
enum { A_PACKED8, A_ROW256, A_ROW128, A_ROW64 };

#define M5(MR, NV, AR, AK) micro5(MR, NV, false, AR, AK, K, a, b, ldb, c, ldc, acc, m0, m1, m2, bias)
#define M5F(MR, NV, AR, AK) micro5(MR, NV, true, AR, AK, K, a, b, ldb, c, ldc, acc, m0, m1, m2, bias)
#define M5_MR(NV, AR, AK)                                                                  \
    switch (mr) {                                                                          \
    case 8: M5(8, NV, AR, AK); break; case 7: M5(7, NV, AR, AK); break;                    \
    case 6: M5(6, NV, AR, AK); break; case 5: M5(5, NV, AR, AK); break;                    \
    case 4: M5(4, NV, AR, AK); break; case 3: M5(3, NV, AR, AK); break;                    \
    case 2: M5(2, NV, AR, AK); break; default: M5(1, NV, AR, AK); break;                   \
    }
#define M5_NV(AR, AK)                                                                      \
    if (nc == 48 && mr == 8) {                                                             \
        M5F(8, 3, AR, AK);                                                                 \
    } else if (nc == 32 && mr == 8) {                                                      \
        M5F(8, 2, AR, AK);                                                                 \
    } else if (nv == 4) {                                                                  \
        M5_MR(4, AR, AK)                                                                   \
    } else if (nv == 3) {                                                                  \
        M5_MR(3, AR, AK)                                                                   \
    } else if (nv == 2) {                                                                  \
        M5_MR(2, AR, AK)                                                                   \
    } else {                                                                               \
        M5_MR(1, AR, AK)                                                                   \
    }

/* C[M,N] (+)= A[M,K] B[K,N] (+ bias[row] when bias != NULL); A in one of the
 * layouts above */
ND_AVX512 static void gemm_avx512(int alay, int64_t M, int64_t N, int64_t K, const float *A,
                                  const float *B, int64_t ldb, float *C, int64_t ldc, bool acc,
                                  const float *bias0)
{
    for (int64_t j = 0; j < N;) {
        int64_t rem = N - j, nc = rem < 48 ? rem : 48;
        /* 33..40 columns: the third vector a ymm (a zmm costs both FMA halves) */
        int nv = nc > 40 ? 3 : nc > 32 ? 4 : nc > 16 ? 2 : 1;
        __mmask16 m0 = lanes(nc), m1 = lanes(nc - 16), m2 = lanes(nc - 32);
        for (int64_t i = 0; i < M; i += 8) {
            int mr = M - i < 8 ? (int)(M - i) : 8;
            const float *b = B + j, *bias = bias0 ? bias0 + i : NULL;
            float *c = C + i * ldc + j;
            const float *a;
            if (alay == A_PACKED8) {
                a = A + i * K;
                M5_NV(1, 8)
            } else if (alay == A_ROW256) {
                a = A + i * 256;
                M5_NV(256, 1)
            } else if (alay == A_ROW128) {
                a = A + i * 128;
                M5_NV(128, 1)
            } else {
                a = A + i * 64;
                M5_NV(64, 1)
            }
        }
        j += nc;
    }
}

/* A rows [0,M) (row stride lda) into [row block of 8][k][8], zero-padded:
 * the A_PACKED8 layout */
static inline void pack_a8(const float *A, int64_t lda, int64_t M, int64_t K, float *P)
{
    for (int64_t i0 = 0; i0 < M; i0 += 8)
        for (int64_t k = 0; k < K; k++)
            for (int r = 0; r < 8; r++)
                *P++ = i0 + r < M ? A[(i0 + r) * lda + k] : 0.0f;
}
#endif

#endif
