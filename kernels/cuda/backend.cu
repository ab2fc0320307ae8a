/* kernels/cuda/backend.cu - the "cuda" backend (nvcc) and the "emu" backend
 * (the same file through the host compiler and kernels/emu/): the op table
 * on top of the kernels in kernels/cuda/ and cuBLAS.
 *
 * Tensors are device memory for "cuda" (ND_DEV_CUDA) and host memory for
 * "emu" (ND_DEV_CPU: emulated device memory is host memory). Both compute
 * f16 natively: every kernel reads and writes either storage type, math in
 * fp32. linear goes through cublasSgemm (f16 operands widened into the
 * workspace first). The workspace is device memory, carved by the arena.
 * Every CUDA and cuBLAS status is checked and returned as ND_EBACKEND. */
#include "kernels/cuda/launch.h"

extern "C" {
#include "kernels/backend_impl.h"
}

#include <stdlib.h>
#include <string.h>

#ifdef ND_EMU
#define BE_NAME "emu"
#define BE_DEVICE ND_DEV_CPU
#define BE_OPEN nd_emu_open
#else
#define BE_NAME "cuda"
#define BE_DEVICE ND_DEV_CUDA
#define BE_OPEN nd_cuda_open
#endif

struct cu_state {
    cudaStream_t st;
    cublasHandle_t blas;
    void *ws; /* device memory behind be->ws */
};

#define CK(call)                                                                             \
    do {                                                                                     \
        cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess)                                                               \
            return nd_fail(err, ND_EBACKEND, BE_NAME ": %s: %s", #call,                      \
                           cudaGetErrorString(e_));                                          \
    } while (0)
#define CKB(call)                                                                            \
    do {                                                                                     \
        cublasStatus_t s_ = (call);                                                          \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                     \
            return nd_fail(err, ND_EBACKEND, BE_NAME ": %s: %s", #call,                      \
                           cublasGetStatusString(s_));                                       \
    } while (0)

static TP tp(const nd_tensor *t)
{
    TP r = {t ? t->data : NULL, t && t->dtype == ND_F16};
    return r;
}

static size_t f32_bytes(const nd_tensor *t)
{
    return (size_t)nd_tensor_numel(t) * sizeof(float) + ND_ARENA_ALIGN;
}

static bool cu_supports(const nd_backend *be, nd_op op, nd_dtype dt)
{
    (void)be;
    return (unsigned)op < ND_OP_COUNT && (dt == ND_F32 || dt == ND_F16);
}

static size_t cu_ws(const nd_backend *be, const nd_op_call *c)
{
    (void)be;
    if (c->op != ND_OP_LINEAR)
        return 0;
    size_t n = 0;
    for (int i = 0; i < 2; i++)
        if (c->src[i]->dtype == ND_F16)
            n += f32_bytes(c->src[i]);
    if (c->dst->dtype == ND_F16)
        n += f32_bytes(c->dst);
    return n;
}

/* An f32 copy of t in the workspace (or t itself when it is f32). */
static nd_status as_f32(cudaStream_t st, const nd_tensor *t, nd_arena *ws, float **out,
                        nd_err *err)
{
    if (t->dtype == ND_F32) {
        *out = (float *)t->data;
        return ND_OK;
    }
    float *p = (float *)nd_arena_alloc(ws, (size_t)nd_tensor_numel(t) * sizeof(float), err);
    if (!p)
        return nd_wrap(err, ND_ENOMEM, BE_NAME " linear: workspace");
    TP dst = {p, 0};
    CK(cu_unary(st, EW_COPY, tp(t), dst, nd_tensor_numel(t), 1.0f, 0.0f));
    *out = p;
    return ND_OK;
}

static nd_status op_linear(cu_state *s, const nd_op_call *c, nd_arena *ws, nd_err *err)
{
    const nd_tensor *x = c->src[0], *w = c->src[1], *b = c->src[2];
    nd_tensor *y = c->dst;
    int64_t K = w->shape[1], N = w->shape[0], M = nd_tensor_numel(x) / K;
    if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX)
        return nd_fail(err, ND_EUNSUPPORTED, BE_NAME " linear: dims beyond int32");
    float *X, *W, *Y;
    nd_status r = as_f32(s->st, x, ws, &X, err);
    if (!r)
        r = as_f32(s->st, w, ws, &W, err);
    if (r)
        return r;
    if (y->dtype == ND_F32) {
        Y = (float *)y->data;
    } else if (!(Y = (float *)nd_arena_alloc(ws, (size_t)M * N * sizeof(float), err))) {
        return nd_wrap(err, ND_ENOMEM, BE_NAME " linear: workspace");
    }
    /* row-major Y[M][N] = X[M][K] W[N][K]^T is column-major Y^T = W^T' X^T' */
    const float one = 1.0f, zero = 0.0f;
    CKB(cublasSgemm(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &one, W, (int)K,
                    X, (int)K, &zero, Y, (int)N));
    TP y32 = {Y, 0};
    if (b)
        CK(cu_bias_rows(s->st, y32, tp(b), M, N));
    if (y->dtype == ND_F16)
        CK(cu_unary(s->st, EW_COPY, y32, tp(y), M * N, 1.0f, 0.0f));
    return ND_OK;
}

static nd_status cu_compute(nd_backend *be, const nd_op_call *c, nd_arena *ws, nd_err *err)
{
    cu_state *s = (cu_state *)be->impl;
    cudaStream_t S = s->st;
    const nd_tensor *a = c->src[0], *b = c->src[1], *d = c->src[2];
    nd_tensor *y = c->dst;
    int64_t n = nd_tensor_numel(y);
    switch (c->op) {
    case ND_OP_LINEAR: {
        nd_status r = op_linear(s, c, ws, err);
        if (r)
            return r;
        break;
    }
    case ND_OP_CONV2D: {
        const nd_conv2d_params *p = &c->p.conv;
        ConvShape cs = {(int)a->shape[0], (int)a->shape[1], (int)a->shape[2], (int)a->shape[3],
                        (int)b->shape[0], (int)b->shape[2], (int)b->shape[3], (int)y->shape[2],
                        (int)y->shape[3], p->stride, p->pad_top, p->pad_left};
        CK(cu_conv2d(S, tp(a), tp(b), tp(d), tp(y), cs));
        break;
    }
    case ND_OP_GROUP_NORM: {
        int64_t N = a->shape[0], C = a->shape[1];
        CK(cu_group_norm(S, tp(a), tp(b), tp(d), tp(y), N, C, n / (N * C), c->p.norm.groups,
                         c->p.norm.eps, c->p.norm.silu));
        break;
    }
    case ND_OP_LAYER_NORM: {
        int64_t C = a->shape[a->ndim - 1];
        CK(cu_layer_norm(S, tp(a), tp(b), tp(d), tp(y), n / C, C, c->p.norm.eps));
        break;
    }
    case ND_OP_ATTENTION: {
        const nd_attention_params *p = &c->p.attn;
        int H = p->n_heads, dh = (int)(a->shape[2] / H);
        float scale = p->scale > 0 ? p->scale : 1.0f / sqrtf((float)dh);
        CK(cu_attention(S, tp(a), tp(b), tp(d), tp(y), (int)a->shape[0], (int)a->shape[1],
                        (int)b->shape[1], H, dh, scale, p->causal));
        break;
    }
    case ND_OP_SOFTMAX: {
        int64_t C = a->shape[a->ndim - 1];
        CK(cu_softmax(S, tp(a), tp(y), n / C, C));
        break;
    }
    case ND_OP_GEGLU: {
        int64_t C = y->shape[y->ndim - 1];
        CK(cu_geglu(S, tp(a), tp(y), n / C, C));
        break;
    }
    case ND_OP_GELU: CK(cu_unary(S, EW_GELU, tp(a), tp(y), n, 1, 0)); break;
    case ND_OP_QUICK_GELU: CK(cu_unary(S, EW_QUICK_GELU, tp(a), tp(y), n, 1, 0)); break;
    case ND_OP_SILU: CK(cu_unary(S, EW_SILU, tp(a), tp(y), n, 1, 0)); break;
    case ND_OP_SCALE:
        CK(cu_unary(S, EW_SCALE, tp(a), tp(y), n, c->p.scale.scale, c->p.scale.bias));
        break;
    case ND_OP_COPY:
        if (a->data == y->data && a->dtype != y->dtype)
            return nd_fail(err, ND_EINVAL, "copy: cannot convert dtype in place");
        CK(cu_unary(S, EW_COPY, tp(a), tp(y), n, 1, 0));
        break;
    case ND_OP_ADD:
    case ND_OP_MUL: {
        nd_bcast p;
        nd_bcast_plan(a, b, &p);
        Bcast bc;
        bc.nd = p.nd;
        for (int i = 0; i < 4; i++) {
            bc.n[i] = p.n[i];
            bc.bs[i] = p.bs[i];
        }
        CK(cu_binary(S, c->op == ND_OP_ADD ? BIN_ADD : BIN_MUL, tp(a), tp(b), tp(y), n, bc));
        break;
    }
    case ND_OP_CONCAT: {
        int64_t N = a->shape[0];
        CK(cu_concat(S, tp(a), tp(b), tp(y), N, nd_tensor_numel(a) / N, nd_tensor_numel(b) / N));
        break;
    }
    case ND_OP_UPSAMPLE2X:
        CK(cu_upsample2x(S, tp(a), tp(y), a->shape[0] * a->shape[1], a->shape[2], a->shape[3]));
        break;
    case ND_OP_TIMESTEP_EMB: {
        const nd_timestep_params *p = &c->p.ts;
        CK(cu_timestep(S, tp(a), tp(y), (int)a->shape[0], p->dim, p->max_period,
                       p->flip_sin_to_cos, p->freq_shift));
        break;
    }
    case ND_OP_TRANSPOSE:
        CK(cu_transpose(S, tp(a), tp(y), a->shape[0], a->shape[1], a->shape[2]));
        break;
    case ND_OP_COUNT: return nd_fail(err, ND_EINVAL, "bad op");
    }
    /* errors of the kernels themselves surface here, attributed to this op */
    CK(cudaStreamSynchronize(S));
    return ND_OK;
}

/* "cuda": what the device has in use (the daemon owns its GPU, so this is
 * the context, cuBLAS and the workspace); "emu": the emulated device memory
 * this backend allocated (the workspace). */
static size_t cu_device_bytes(const nd_backend *be)
{
#ifndef ND_EMU
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess && total_b >= free_b)
        return total_b - free_b;
#endif
    return be->ws.cap;
}

static void cu_destroy(nd_backend *be)
{
    cu_state *s = (cu_state *)be->impl;
    if (s) {
        if (s->blas)
            cublasDestroy(s->blas);
        if (s->st)
            cudaStreamDestroy(s->st);
        if (s->ws)
            cudaFree(s->ws);
        free(s);
    }
    free(be);
}

static nd_status cu_init(nd_backend *be, cu_state *s, const nd_backend_config *cfg, nd_err *err)
{
    CK(cudaSetDevice(0));
    CK(cudaStreamCreate(&s->st));
    CKB(cublasCreate(&s->blas));
    CKB(cublasSetStream(s->blas, s->st));
    size_t bytes = cfg->workspace_bytes ? cfg->workspace_bytes : 64u << 20;
    bytes = (bytes + ND_ARENA_ALIGN - 1) & ~(size_t)(ND_ARENA_ALIGN - 1);
    CK(cudaMalloc(&s->ws, bytes));
    be->ws.base = (uint8_t *)s->ws;
    be->ws.cap = bytes;
    return ND_OK;
}

extern "C" nd_status BE_OPEN(const nd_backend_config *cfg, nd_backend **out, nd_err *err)
{
    nd_backend *be = (nd_backend *)calloc(1, sizeof *be);
    cu_state *s = (cu_state *)calloc(1, sizeof *s);
    if (!be || !s) {
        free(be);
        free(s);
        return nd_fail(err, ND_ENOMEM, BE_NAME ": out of memory");
    }
    be->name = BE_NAME;
    be->device = BE_DEVICE;
    be->n_threads = 1;
    be->supports_op = cu_supports;
    be->workspace_bytes = cu_ws;
    be->compute = cu_compute;
    be->destroy = cu_destroy;
    be->device_bytes = cu_device_bytes;
    be->f16_native = true;
    be->impl = s;
#ifdef ND_EMU
    if (cfg->n_threads > 0)
        emu_set_workers(cfg->n_threads);
#endif
    nd_status st = cu_init(be, s, cfg, err);
    if (st) {
        cu_destroy(be);
        return st;
    }
    *out = be;
    return ND_OK;
}
