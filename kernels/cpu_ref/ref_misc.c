/* kernels/cpu_ref/ref_misc.c - the oracle for norms, activations, element-wise
 * and shape ops: plain loops, statistics in double. */
#include "kernels/cpu_ref/ref.h"

#include <math.h>
#include <string.h>

void ref_group_norm(const nd_tensor *x, const nd_tensor *g, const nd_tensor *b,
                    const nd_norm_params *p, nd_tensor *y)
{
    const float *X = x->data, *G = g ? g->data : NULL, *Bt = b ? b->data : NULL;
    float *Y = y->data;
    int64_t N = x->shape[0], C = x->shape[1], S = nd_tensor_numel(x) / (N * C);
    int64_t cg = C / p->groups;
    for (int64_t n = 0; n < N; n++)
        for (int64_t gi = 0; gi < p->groups; gi++) {
            const float *xs = X + (n * C + gi * cg) * S;
            int64_t cnt = cg * S;
            double mean = 0, var = 0;
            for (int64_t i = 0; i < cnt; i++)
                mean += xs[i];
            mean /= (double)cnt;
            for (int64_t i = 0; i < cnt; i++)
                var += (xs[i] - mean) * (xs[i] - mean);
            var /= (double)cnt;
            double inv = 1.0 / sqrt(var + p->eps);
            for (int64_t c = gi * cg; c < (gi + 1) * cg; c++)
                for (int64_t s = 0; s < S; s++) {
                    int64_t i = (n * C + c) * S + s;
                    double v = (X[i] - mean) * inv * (G ? G[c] : 1.0) + (Bt ? Bt[c] : 0.0);
                    if (p->silu)
                        v = v / (1.0 + exp(-v));
                    Y[i] = (float)v;
                }
        }
}

void ref_layer_norm(const nd_tensor *x, const nd_tensor *g, const nd_tensor *b,
                    const nd_norm_params *p, nd_tensor *y)
{
    const float *X = x->data, *G = g ? g->data : NULL, *Bt = b ? b->data : NULL;
    float *Y = y->data;
    int64_t C = x->shape[x->ndim - 1], R = nd_tensor_numel(x) / C;
    for (int64_t r = 0; r < R; r++) {
        const float *xr = X + r * C;
        double mean = 0, var = 0;
        for (int64_t c = 0; c < C; c++)
            mean += xr[c];
        mean /= (double)C;
        for (int64_t c = 0; c < C; c++)
            var += (xr[c] - mean) * (xr[c] - mean);
        var /= (double)C;
        double inv = 1.0 / sqrt(var + p->eps);
        for (int64_t c = 0; c < C; c++)
            Y[r * C + c] = (float)((xr[c] - mean) * inv * (G ? G[c] : 1.0) + (Bt ? Bt[c] : 0.0));
    }
}

void ref_softmax(const nd_tensor *x, nd_tensor *y)
{
    const float *X = x->data;
    float *Y = y->data;
    int64_t C = x->shape[x->ndim - 1], R = nd_tensor_numel(x) / C;
    for (int64_t r = 0; r < R; r++) {
        double mx = -INFINITY, sum = 0;
        for (int64_t c = 0; c < C; c++)
            mx = fmax(mx, X[r * C + c]);
        for (int64_t c = 0; c < C; c++)
            sum += exp(X[r * C + c] - mx);
        for (int64_t c = 0; c < C; c++)
            Y[r * C + c] = (float)(exp(X[r * C + c] - mx) / sum);
    }
}

static double gelu(double v)
{
    return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
}

void ref_unary(nd_op op, const nd_tensor *x, nd_tensor *y)
{
    const float *X = x->data;
    float *Y = y->data;
    int64_t n = nd_tensor_numel(x);
    for (int64_t i = 0; i < n; i++) {
        double v = X[i];
        switch (op) {
        case ND_OP_GELU: v = gelu(v); break;
        case ND_OP_QUICK_GELU: v = v / (1.0 + exp(-1.702 * v)); break;
        default: v = v / (1.0 + exp(-v)); break; /* ND_OP_SILU */
        }
        Y[i] = (float)v;
    }
}

void ref_geglu(const nd_tensor *x, nd_tensor *y)
{
    const float *X = x->data;
    float *Y = y->data;
    int64_t C = y->shape[y->ndim - 1], R = nd_tensor_numel(y) / C;
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++)
            Y[r * C + c] = (float)((double)X[r * 2 * C + c] * gelu(X[r * 2 * C + C + c]));
}

void ref_binary(nd_op op, const nd_tensor *a, const nd_tensor *b, nd_tensor *y)
{
    const float *A = a->data, *Bv = b->data;
    float *Y = y->data;
    int64_t n = nd_tensor_numel(a);
    int off = a->ndim - b->ndim;
    for (int64_t i = 0; i < n; i++) {
        /* unravel i over a's shape, ravel over b's with broadcast dims at 0 */
        int64_t rem = i, bi = 0, bstride = 1;
        for (int d = a->ndim - 1; d >= 0; d--) {
            int64_t idx = rem % a->shape[d];
            rem /= a->shape[d];
            if (d - off >= 0) {
                int64_t bd = b->shape[d - off];
                bi += (bd == 1 ? 0 : idx) * bstride;
                bstride *= bd;
            }
        }
        Y[i] = op == ND_OP_ADD ? A[i] + Bv[bi] : A[i] * Bv[bi];
    }
}

void ref_scale(const nd_tensor *x, const nd_scale_params *p, nd_tensor *y)
{
    const float *X = x->data;
    float *Y = y->data;
    int64_t n = nd_tensor_numel(x);
    for (int64_t i = 0; i < n; i++)
        Y[i] = (float)((double)X[i] * p->scale + p->bias);
}

void ref_concat(const nd_tensor *a, const nd_tensor *b, nd_tensor *y)
{
    int64_t N = a->shape[0], Ca = a->shape[1], Cb = b->shape[1];
    int64_t S = nd_tensor_numel(a) / (N * Ca);
    const float *A = a->data, *Bv = b->data;
    float *Y = y->data;
    for (int64_t n = 0; n < N; n++) {
        for (int64_t i = 0; i < Ca * S; i++)
            Y[n * (Ca + Cb) * S + i] = A[n * Ca * S + i];
        for (int64_t i = 0; i < Cb * S; i++)
            Y[n * (Ca + Cb) * S + Ca * S + i] = Bv[n * Cb * S + i];
    }
}

void ref_upsample2x(const nd_tensor *x, nd_tensor *y)
{
    int64_t NC = x->shape[0] * x->shape[1], H = x->shape[2], W = x->shape[3];
    const float *X = x->data;
    float *Y = y->data;
    for (int64_t c = 0; c < NC; c++)
        for (int64_t oy = 0; oy < 2 * H; oy++)
            for (int64_t ox = 0; ox < 2 * W; ox++)
                Y[(c * 2 * H + oy) * 2 * W + ox] = X[(c * H + oy / 2) * W + ox / 2];
}

void ref_timestep_emb(const nd_tensor *t, const nd_timestep_params *p, nd_tensor *y)
{
    const float *T = t->data;
    float *Y = y->data;
    int half = p->dim / 2;
    for (int64_t b = 0; b < t->shape[0]; b++)
        for (int i = 0; i < half; i++) {
            double f = exp(-log((double)p->max_period) * i / ((double)half - p->freq_shift));
            double a = (double)T[b] * f;
            double s = sin(a), c = cos(a);
            Y[b * p->dim + i] = (float)(p->flip_sin_to_cos ? c : s);
            Y[b * p->dim + half + i] = (float)(p->flip_sin_to_cos ? s : c);
        }
}

void ref_transpose(const nd_tensor *x, nd_tensor *y)
{
    int64_t B = x->shape[0], M = x->shape[1], N = x->shape[2];
    const float *X = x->data;
    float *Y = y->data;
    for (int64_t b = 0; b < B; b++)
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++)
                Y[(b * N + n) * M + m] = X[(b * M + m) * N + n];
}
