/* kernels/cuda/backend.cu - the "cuda" backend (nvcc) and the "emu" backend
 * (the same file through the host compiler and kernels/emu/): the op table
 * on top of the kernels in kernels/cuda/ and cuBLAS.
 *
 * Tensors are device memory on both (ND_DEV_CUDA): on "emu" that is host
 * memory from the emulator's cudaMalloc, and an op whose tensors lie
 * anywhere else is refused, as a GPU would fault on them. Both compute
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
#ifndef ND_EMU
#include <cudnn.h>
#endif

#ifdef ND_EMU
#define BE_NAME "emu"
#define BE_DEVICE ND_DEV_CUDA
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
    bool sync_each;
#ifndef ND_EMU
    /* the cuDNN conv path: handle, its own workspace (grown to the largest
     * algorithm's need during the first step, then reused), and the
     * descriptors + algorithm of the last shapes seen */
    cudnnHandle_t dnn;
    void *dnn_ws;
    size_t dnn_ws_bytes;
    struct dnn_plan {
        ConvShape cs;
        cudnnTensorDescriptor_t x, y;
        cudnnFilterDescriptor_t w;
        cudnnConvolutionDescriptor_t conv;
        cudnnConvolutionFwdAlgo_t algo;
        size_t ws_bytes;
    } plans[32];
    int n_plans;
#endif
};

/* A failed call's error is also "the last error" until read: read it here,
 * so that a refused copy (bad pointer) is not blamed on the next op. */
#define CK(call)                                                                             \
    do {                                                                                     \
        cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess) {                                                             \
            (void)cudaGetLastError();                                                        \
            return nd_fail(err, ND_EBACKEND, BE_NAME ": %s: %s", #call,                      \
                           cudaGetErrorString(e_));                                          \
        }                                                                                    \
    } while (0)
#define CKD(call)                                                                            \
    do {                                                                                     \
        cudnnStatus_t d_ = (call);                                                           \
        if (d_ != CUDNN_STATUS_SUCCESS)                                                      \
            return nd_fail(err, ND_EBACKEND, BE_NAME ": %s: %s", #call,                      \
                           cudnnGetErrorString(d_));                                         \
    } while (0)
#define CKB(call)                                                                            \
    do {                                                                                     \
        cublasStatus_t s_ = (call);                                                          \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                     \
            return nd_fail(err, ND_EBACKEND, BE_NAME ": %s: %s", #call,                      \
                           cublasGetStatusString(s_));                                       \
    } while (0)

/* kernels/backend_impl.h's broadcast plan of a op b, as the kernels take it */
static Bcast bcast_of(const nd_tensor *a, const nd_tensor *b)
{
    nd_bcast p;
    nd_bcast_plan(a, b, &p);
    Bcast bc;
    bc.nd = p.nd;
    for (int i = 0; i < 4; i++) {
        bc.n[i] = p.n[i];
        bc.bs[i] = p.bs[i];
    }
    return bc;
}

static TP tp(const nd_tensor *t)
{
    TP r = {t ? t->data : NULL, t && t->dtype == ND_F16};
    return r;
}

/* linear runs in half precision on the tensor cores (cublasGemmEx, f16 x
 * f16, fp32 accumulation) when any of x, w, y is stored f16; all-f32 calls
 * keep f32 (cublasSgemm). */
static bool linear_half(const nd_op_call *c)
{
    return c->src[0]->dtype == ND_F16 || c->src[1]->dtype == ND_F16 || c->dst->dtype == ND_F16;
}

static bool cu_supports(const nd_backend *be, nd_op op, nd_dtype dt)
{
    (void)be;
    return (unsigned)op < ND_OP_COUNT && (dt == ND_F32 || dt == ND_F16);
}

static size_t cu_ws(const nd_backend *be, const nd_op_call *c)
{
    (void)be;
    if (c->op != ND_OP_LINEAR || !linear_half(c))
        return 0;
    /* f16 copies of the f32 operands of a half-precision GEMM */
    size_t n = 0;
    for (int i = 0; i < 2; i++)
        if (c->src[i]->dtype == ND_F32)
            n += (size_t)nd_tensor_numel(c->src[i]) * 2 + ND_ARENA_ALIGN;
    return n;
}

/* An f16 copy of t in the workspace (or t itself when it is f16). */
static nd_status as_f16(cudaStream_t st, const nd_tensor *t, nd_arena *ws, void **out,
                        nd_err *err)
{
    if (t->dtype == ND_F16) {
        *out = t->data;
        return ND_OK;
    }
    void *p = nd_arena_alloc(ws, (size_t)nd_tensor_numel(t) * 2, err);
    if (!p)
        return nd_wrap(err, ND_ENOMEM, BE_NAME " linear: workspace");
    TP dst = {p, 1};
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
    /* row-major Y[M][N] = X[M][K] W[N][K]^T is column-major Y^T = W^T' X^T' */
    const float one = 1.0f, zero = 0.0f;
    if (!linear_half(c)) {
        CKB(cublasSgemm(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &one,
                        (const float *)w->data, (int)K, (const float *)x->data, (int)K, &zero,
                        (float *)y->data, (int)N));
    } else {
        void *X, *W;
        nd_status r = as_f16(s->st, x, ws, &X, err);
        if (!r)
            r = as_f16(s->st, w, ws, &W, err);
        if (r)
            return r;
        cudaDataType_t yt = y->dtype == ND_F16 ? CUDA_R_16F : CUDA_R_32F;
        CKB(cublasGemmEx(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &one, W,
                         CUDA_R_16F, (int)K, X, CUDA_R_16F, (int)K, &zero, y->data, yt, (int)N,
                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    if (b)
        CK(cu_bias_rows(s->st, tp(y), tp(b), M, N));
    return ND_OK;
}

#ifndef ND_EMU
/* ---- conv2d through cuDNN (--conv cudnn) ---------------------------------------- */

static bool same_cs(const ConvShape &a, const ConvShape &b)
{
    return !memcmp(&a, &b, sizeof a);
}

/* cuDNN takes x, w, y all f16 with symmetric padding; ours does the rest */
static bool dnn_takes(const nd_op_call *c)
{
    const nd_conv2d_params *p = &c->p.conv;
    return c->src[0]->dtype == ND_F16 && c->src[1]->dtype == ND_F16 && c->dst->dtype == ND_F16 &&
           (!c->src[2] || c->src[2]->dtype == ND_F16) && p->pad_top == p->pad_bottom &&
           p->pad_left == p->pad_right;
}

static void dnn_plan_destroy(cu_state::dnn_plan *p)
{
    if (p->x)
        cudnnDestroyTensorDescriptor(p->x);
    if (p->y)
        cudnnDestroyTensorDescriptor(p->y);
    if (p->w)
        cudnnDestroyFilterDescriptor(p->w);
    if (p->conv)
        cudnnDestroyConvolutionDescriptor(p->conv);
    memset(p, 0, sizeof *p);
}

/* Descriptors and cuDNN's algorithm for one shape (p zeroed on entry). */
static nd_status dnn_plan_build(cu_state *s, cu_state::dnn_plan *p, const ConvShape &cs,
                                nd_err *err)
{
    p->cs = cs;
    CKD(cudnnCreateTensorDescriptor(&p->x));
    CKD(cudnnCreateTensorDescriptor(&p->y));
    CKD(cudnnCreateFilterDescriptor(&p->w));
    CKD(cudnnCreateConvolutionDescriptor(&p->conv));
    CKD(cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_HALF, cs.B, cs.Ci, cs.H,
                                   cs.W));
    CKD(cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_HALF, cs.B, cs.Co, cs.Ho,
                                   cs.Wo));
    CKD(cudnnSetFilter4dDescriptor(p->w, CUDNN_DATA_HALF, CUDNN_TENSOR_NCHW, cs.Co, cs.Ci, cs.KH,
                                   cs.KW));
    CKD(cudnnSetConvolution2dDescriptor(p->conv, cs.pt, cs.pl, cs.stride, cs.stride, 1, 1,
                                        CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CKD(cudnnSetConvolutionMathType(p->conv, CUDNN_TENSOR_OP_MATH));
    /* cuDNN's own ranking (heuristics, no trial runs: a step must not stall) */
    cudnnConvolutionFwdAlgoPerf_t perf[8];
    int got = 0;
    CKD(cudnnGetConvolutionForwardAlgorithm_v7(s->dnn, p->x, p->w, p->conv, p->y, 8, &got, perf));
    int pick = -1;
    for (int i = 0; i < got && pick < 0; i++)
        if (perf[i].status == CUDNN_STATUS_SUCCESS)
            pick = i;
    if (pick < 0)
        return nd_fail(err, ND_EUNSUPPORTED, "cuda: cuDNN has no algorithm for this conv");
    p->algo = perf[pick].algo;
    CKD(cudnnGetConvolutionForwardWorkspaceSize(s->dnn, p->x, p->w, p->conv, p->y, p->algo,
                                                &p->ws_bytes));
    return ND_OK;
}

/* The cached plan of this shape, built on first sight; a plan that failed to
 * build is not kept. */
static nd_status dnn_plan_for(cu_state *s, const ConvShape &cs, cu_state::dnn_plan **out,
                              nd_err *err)
{
    for (int i = 0; i < s->n_plans; i++)
        if (same_cs(s->plans[i].cs, cs)) {
            *out = &s->plans[i];
            return ND_OK;
        }
    if (s->n_plans == (int)(sizeof s->plans / sizeof s->plans[0]))
        return nd_fail(err, ND_EUNSUPPORTED, "cuda: more than %d conv shapes for cuDNN",
                       s->n_plans);
    cu_state::dnn_plan *p = &s->plans[s->n_plans];
    memset(p, 0, sizeof *p);
    nd_status r = dnn_plan_build(s, p, cs, err);
    if (r) {
        dnn_plan_destroy(p);
        return r;
    }
    s->n_plans++;
    *out = p;
    return ND_OK;
}

static nd_status dnn_conv2d(cu_state *s, const nd_op_call *c, const ConvShape &cs, nd_err *err)
{
    cu_state::dnn_plan *p = NULL;
    nd_status r = dnn_plan_for(s, cs, &p, err);
    if (r)
        return r;
    if (p->ws_bytes > s->dnn_ws_bytes) { /* first calls only */
        CK(cudaStreamSynchronize(s->st));
        cudaFree(s->dnn_ws);
        s->dnn_ws = NULL;
        s->dnn_ws_bytes = 0;
        CK(cudaMalloc(&s->dnn_ws, p->ws_bytes));
        s->dnn_ws_bytes = p->ws_bytes;
    }
    const float one = 1.0f, zero = 0.0f;
    CKD(cudnnConvolutionForward(s->dnn, &one, p->x, c->src[0]->data, p->w, c->src[1]->data,
                                p->conv, p->algo, s->dnn_ws, p->ws_bytes, &zero, p->y,
                                c->dst->data));
    if (c->src[2]) { /* y += b over channels */
        const int64_t bsh[4] = {1, cs.Co, 1, 1};
        nd_tensor bv = nd_tensor_make(c->src[2]->data, ND_F16, c->dst->device, 4, bsh);
        CK(cu_binary(s->st, BIN_ADD, tp(c->dst), tp(&bv), tp(c->dst), nd_tensor_numel(c->dst),
                     bcast_of(c->dst, &bv)));
    }
    return ND_OK;
}
#endif

static nd_status cu_compute(nd_backend *be, const nd_op_call *c, nd_arena *ws, nd_err *err)
{
    cu_state *s = (cu_state *)be->impl;
    cudaStream_t S = s->st;
    const nd_tensor *a = c->src[0], *b = c->src[1], *d = c->src[2];
    nd_tensor *y = c->dst;
    int64_t n = nd_tensor_numel(y);
#ifdef ND_EMU
    for (int i = 0; i <= ND_OP_MAX_SRC; i++) {
        const nd_tensor *t = i < ND_OP_MAX_SRC ? c->src[i] : y;
        if (t && !emu_is_device(t->data, nd_tensor_bytes(t)))
            return nd_fail(err, ND_EINVAL,
                           "emu: %s %s %d is not device memory (a GPU would fault on it)",
                           nd_op_name(c->op), i < ND_OP_MAX_SRC ? "src" : "dst", i);
    }
#endif
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
#ifndef ND_EMU
        if (s->dnn && dnn_takes(c)) {
            nd_status r = dnn_conv2d(s, c, cs, err);
            if (r)
                return r;
            break;
        }
#endif
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
        CK(cu_binary(S, c->op == ND_OP_ADD ? BIN_ADD : BIN_MUL, tp(a), tp(b), tp(y), n,
                     bcast_of(a, b)));
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
    /* "cuda" queues the op and returns: a kernel's own error surfaces at the
     * next sync or copy (nd_backend_sync). ND_CUDA_SYNC=1 (read at open)
     * syncs after every op, to pin such an error on the op that made it;
     * the emulator runs a launch to its end anyway, so it always does. */
    if (s->sync_each)
        CK(cudaStreamSynchronize(S));
    else
        CK(cudaPeekAtLastError());
    return ND_OK;
}

/* "cuda": what the device has in use (the daemon owns its GPU, so this is
 * the context, cuBLAS, the workspace, weights and arenas); "emu": the bytes
 * in the emulator's live cudaMalloc blocks (every emu backend's). */
static size_t cu_device_bytes(const nd_backend *be)
{
#ifdef ND_EMU
    (void)be;
    return emu_device_bytes();
#else
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess && total_b >= free_b)
        return total_b - free_b;
    return be->ws.cap;
#endif
}

static nd_status cu_sync(nd_backend *be, nd_err *err)
{
    CK(cudaStreamSynchronize(((cu_state *)be->impl)->st));
    return ND_OK;
}

/* Tensors in device memory (the emulator's cudaMalloc on "emu"). Copies
 * are ordered after the work queued on the backend's stream and done when
 * they return. */
static void *cu_dev_alloc(nd_backend *be, size_t bytes)
{
    (void)be;
    void *p = NULL;
    return cudaMalloc(&p, bytes) == cudaSuccess ? p : NULL;
}

static void cu_dev_free(nd_backend *be, void *p)
{
    (void)be;
    cudaFree(p);
}

static nd_status cu_dev_copy(nd_backend *be, void *dst, const void *src, size_t bytes,
                             bool to_device, nd_err *err)
{
    cu_state *s = (cu_state *)be->impl;
    if (!bytes)
        return ND_OK;
    CK(cudaMemcpyAsync(dst, src, bytes, to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost,
                       s->st));
    CK(cudaStreamSynchronize(s->st));
    return ND_OK;
}

static nd_status cu_dev_zero(nd_backend *be, void *dst, size_t bytes, nd_err *err)
{
    if (bytes)
        CK(cudaMemsetAsync(dst, 0, bytes, ((cu_state *)be->impl)->st));
    return ND_OK;
}

static void cu_destroy(nd_backend *be)
{
    cu_state *s = (cu_state *)be->impl;
    if (s) {
        if (s->blas)
            cublasDestroy(s->blas);
#ifndef ND_EMU
        for (int i = 0; i < s->n_plans; i++)
            dnn_plan_destroy(&s->plans[i]);
        if (s->dnn)
            cudnnDestroy(s->dnn);
        cudaFree(s->dnn_ws);
#endif
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
    const char *conv = cfg->conv ? cfg->conv : getenv("ND_CUDA_CONV");
    if (conv && *conv && strcmp(conv, "ours") != 0) {
        if (strcmp(conv, "cudnn") != 0)
            return nd_fail(err, ND_EINVAL, BE_NAME ": conv path '%s' (want ours or cudnn)", conv);
#ifdef ND_EMU
        return nd_fail(err, ND_EUNSUPPORTED, "emu: no cuDNN in the emulator (conv path ours only)");
#else
        CKD(cudnnCreate(&s->dnn));
        CKD(cudnnSetStream(s->dnn, s->st));
#endif
    }
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
    be->sync = cu_sync;
#ifdef ND_EMU
    s->sync_each = true;
    if (cfg->n_threads > 0)
        emu_set_workers(cfg->n_threads);
#else
    const char *se = getenv("ND_CUDA_SYNC");
    s->sync_each = se && *se && strcmp(se, "0") != 0;
#endif
    be->dev_alloc = cu_dev_alloc;
    be->dev_free = cu_dev_free;
    be->dev_copy = cu_dev_copy;
    be->dev_zero = cu_dev_zero;
    nd_status st = cu_init(be, s, cfg, err);
    if (st) {
        cu_destroy(be);
        return st;
    }
    *out = be;
    return ND_OK;
}
