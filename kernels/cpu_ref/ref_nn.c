/* kernels/cpu_ref/ref_nn.c - the oracle for the heavy ops: linear, conv2d and
 * attention as plain loops with double accumulation. Slow on purpose: every
 * line should be checkable against the PyTorch definition by eye. */
#include "kernels/cpu_ref/ref.h"

#include <math.h>

void ref_linear(const nd_tensor *x, const nd_tensor *w, const nd_tensor *b, nd_tensor *y)
{
    const float *X = x->data, *W = w->data, *B = b ? b->data : NULL;
    float *Y = y->data;
    int64_t K = w->shape[1], N = w->shape[0], M = nd_tensor_numel(x) / K;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double acc = B ? B[n] : 0.0;
            for (int64_t k = 0; k < K; k++)
                acc += (double)X[m * K + k] * W[n * K + k];
            Y[m * N + n] = (float)acc;
        }
}

void ref_conv2d(const nd_tensor *x, const nd_tensor *w, const nd_tensor *b,
                const nd_conv2d_params *p, nd_tensor *y)
{
    const float *X = x->data, *W = w->data, *B = b ? b->data : NULL;
    float *Y = y->data;
    int64_t Bn = x->shape[0], Ci = x->shape[1], H = x->shape[2], Wd = x->shape[3];
    int64_t Co = w->shape[0], KH = w->shape[2], KW = w->shape[3];
    int64_t Ho = y->shape[2], Wo = y->shape[3];
    for (int64_t n = 0; n < Bn; n++)
        for (int64_t co = 0; co < Co; co++)
            for (int64_t oy = 0; oy < Ho; oy++)
                for (int64_t ox = 0; ox < Wo; ox++) {
                    double acc = B ? B[co] : 0.0;
                    for (int64_t ci = 0; ci < Ci; ci++)
                        for (int64_t ky = 0; ky < KH; ky++) {
                            int64_t iy = oy * p->stride - p->pad_top + ky;
                            if (iy < 0 || iy >= H)
                                continue;
                            for (int64_t kx = 0; kx < KW; kx++) {
                                int64_t ix = ox * p->stride - p->pad_left + kx;
                                if (ix < 0 || ix >= Wd)
                                    continue;
                                acc += (double)X[((n * Ci + ci) * H + iy) * Wd + ix] *
                                       W[((co * Ci + ci) * KH + ky) * KW + kx];
                            }
                        }
                    Y[((n * Co + co) * Ho + oy) * Wo + ox] = (float)acc;
                }
}

/* softmax(q k^T * scale) v per head, one query row at a time; `s` holds
 * Nk doubles of scores (from the workspace). */
void ref_attention(const nd_tensor *q, const nd_tensor *k, const nd_tensor *v,
                   const nd_attention_params *p, nd_tensor *o, double *s)
{
    const float *Q = q->data, *K = k->data, *V = v->data;
    float *O = o->data;
    int64_t B = q->shape[0], Nq = q->shape[1], Nk = k->shape[1], C = q->shape[2];
    int64_t H = p->n_heads, d = C / H;
    double scale = p->scale > 0 ? p->scale : 1.0 / sqrt((double)d);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Nq; i++) {
                const float *qi = Q + (b * Nq + i) * C + h * d;
                int64_t nk = p->causal ? i + 1 : Nk;
                double mx = -INFINITY;
                for (int64_t j = 0; j < nk; j++) {
                    const float *kj = K + (b * Nk + j) * C + h * d;
                    double acc = 0;
                    for (int64_t c = 0; c < d; c++)
                        acc += (double)qi[c] * kj[c];
                    s[j] = acc * scale;
                    if (s[j] > mx)
                        mx = s[j];
                }
                double sum = 0;
                for (int64_t j = 0; j < nk; j++) {
                    s[j] = exp(s[j] - mx);
                    sum += s[j];
                }
                float *oi = O + (b * Nq + i) * C + h * d;
                for (int64_t c = 0; c < d; c++) {
                    double acc = 0;
                    for (int64_t j = 0; j < nk; j++)
                        acc += s[j] * V[(b * Nk + j) * C + h * d + c];
                    oi[c] = (float)(acc / sum);
                }
            }
}
